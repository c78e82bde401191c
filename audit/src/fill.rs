//! Filling the audit's gaps from the re-request servers.
//!
//! What the poller delivered but could not hand to the auditor (the audit
//! ring was full) is asked for again, by exact (session, seq) range, from
//! the same MoldUDP64 re-request servers the session layer uses (its
//! requests, through its socket code: [`ticklane_appliance::recovery`]).
//! This runs on the audit writer's thread, never on the poller's.
//!
//! The ranges go out in requests of at most `max_request` messages, at most
//! `max_in_flight` at once, at most `rate` messages asked per second; an
//! unanswered request is asked again (from its first message still missing)
//! after a timeout that doubles, moving to the next server every
//! `attempts_per_server`, up to `max_attempts`, and everything stops at
//! `deadline`. Only answers in the session asked for, inside a range still
//! missing, that parse as ITCH are taken, each message once. What is still
//! missing at the end is returned with exact bounds (an unrecoverable gap).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ticklane_appliance::delivery::SeqRange;
use ticklane_appliance::recovery;
use ticklane_protocols::itch;
use ticklane_protocols::moldudp64::{Packet, Request, Session};

/// How gaps are filled.
#[derive(Debug, Clone)]
pub struct FillConfig {
    /// The re-request servers, in fail-over order (none: nothing is filled).
    pub servers: Vec<SocketAddr>,
    /// Most messages asked for in one request.
    pub max_request: u16,
    /// Most requests outstanding at once.
    pub max_in_flight: usize,
    /// Most messages asked for per second (retries included).
    pub rate: u64,
    /// Wait for the answer to a first request; doubles with each retry.
    pub timeout: Duration,
    /// Requests of one piece before it is given up.
    pub max_attempts: u32,
    /// Attempts on one server before the next is asked.
    pub attempts_per_server: u32,
    /// The whole fill stops this long after it started.
    pub deadline: Duration,
}

impl Default for FillConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            max_request: 1000,
            // One at a time: a server that limits each client's bytes (the
            // lab's does) answers each request whole rather than refusing
            // the second of two sent together.
            max_in_flight: 1,
            rate: 50_000,
            timeout: Duration::from_millis(100),
            max_attempts: 6,
            attempts_per_server: 2,
            deadline: Duration::from_secs(10),
        }
    }
}

/// What a fill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillReport {
    /// Messages received and handed over (each once).
    pub filled: u64,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Messages asked for, retries included.
    pub requested: u64,
    /// Answers refused: another session, outside what is missing, not ITCH.
    pub refused: u64,
    /// What could not be filled, exact ranges, by session and sequence number.
    pub unfilled: Vec<SeqRange>,
    /// Why nothing could be asked at all (no server, the socket failed).
    pub not_asked: Option<String>,
}

/// One request's worth of a range.
#[derive(Debug)]
struct Piece {
    session: Session,
    from: u64,
    got: Vec<bool>,
    missing: usize,
    attempts: u32,
    /// While a request is out: when it times out.
    deadline: Option<Instant>,
}

impl Piece {
    fn end(&self) -> u64 {
        self.from + self.got.len() as u64
    }

    fn first_missing(&self) -> Option<u64> {
        self.got
            .iter()
            .position(|g| !g)
            .map(|i| self.from + i as u64)
    }

    /// Whether it may be asked for now.
    fn askable(&self, cfg: &FillConfig) -> bool {
        self.missing > 0 && self.deadline.is_none() && self.attempts < cfg.max_attempts
    }
}

/// Splits `ranges` into pieces of at most `max` messages.
fn pieces(ranges: &[SeqRange], max: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    for r in ranges {
        let mut from = r.from;
        while from < r.end {
            let end = r.end.min(from.saturating_add(max));
            let n = (end - from) as usize;
            out.push(Piece {
                session: r.session,
                from,
                got: vec![false; n],
                missing: n,
                attempts: 0,
                deadline: None,
            });
            from = end;
        }
    }
    // Sorted, so that an answer finds its piece by binary search.
    out.sort_by_key(|p| (p.session.0, p.from));
    out
}

/// What is still missing of `pieces`, as ranges (adjoining ones merged).
fn missing(pieces: &[Piece]) -> Vec<SeqRange> {
    let mut out: Vec<SeqRange> = Vec::new();
    for p in pieces {
        for (i, got) in p.got.iter().enumerate() {
            if *got {
                continue;
            }
            let seq = p.from + i as u64;
            match out.last_mut() {
                Some(last) if last.session == p.session && last.end == seq => last.end = seq + 1,
                _ => out.push(SeqRange {
                    session: p.session,
                    from: seq,
                    end: seq + 1,
                }),
            }
        }
    }
    out
}

/// Asks the servers for `ranges` and hands every message received to
/// `take` (session, seq, bytes), once each; returns what could not be had.
pub fn fill(
    ranges: &[SeqRange],
    cfg: &FillConfig,
    mut take: impl FnMut(Session, u64, &[u8]),
) -> FillReport {
    let mut report = FillReport::default();
    let mut pieces = pieces(ranges, u64::from(cfg.max_request.clamp(1, u16::MAX - 1)));
    if pieces.is_empty() {
        return report;
    }
    let socket = match recovery::open(&cfg.servers) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            report.not_asked = Some("no re-request server (--retrans)".into());
            None
        }
        Err(e) => {
            report.not_asked = Some(format!("cannot open the re-request socket: {e}"));
            None
        }
    };
    let Some((mut requester, mut answers)) = socket else {
        report.unfilled = missing(&pieces);
        return report;
    };
    let start = Instant::now();
    let per_server = cfg.attempts_per_server.max(1);
    // One piece's worth may go at once; beyond that, `rate` per second.
    let burst = u64::from(cfg.max_request);
    loop {
        let now = Instant::now();
        if now.duration_since(start) >= cfg.deadline {
            break;
        }
        for p in &mut pieces {
            if p.deadline.is_some_and(|d| now >= d) {
                p.deadline = None;
            }
        }
        let in_flight = pieces.iter().filter(|p| p.deadline.is_some()).count();
        let allowed = burst.saturating_add(
            (now.duration_since(start).as_secs_f64() * cfg.rate as f64).min(u64::MAX as f64) as u64,
        );
        let mut room = cfg.max_in_flight.max(1).saturating_sub(in_flight);
        for p in pieces.iter_mut().filter(|p| p.askable(cfg)) {
            let Some(from) = p.first_missing() else {
                continue;
            };
            let count = p.end() - from;
            if room == 0 || report.requested.saturating_add(count) > allowed {
                break;
            }
            p.attempts += 1;
            let server = ((p.attempts - 1) / per_server) as usize % cfg.servers.len();
            let wait = cfg
                .timeout
                .saturating_mul(1u32 << (p.attempts - 1).min(10))
                .min(Duration::from_secs(2));
            p.deadline = Some(now + wait);
            requester.send(
                server,
                &Request {
                    session: p.session,
                    sequence_number: from,
                    message_count: count as u16,
                },
            );
            report.requests += 1;
            report.requested += count;
            room -= 1;
        }
        if pieces.iter().all(|p| p.missing == 0) {
            break;
        }
        if pieces
            .iter()
            .all(|p| p.missing == 0 || (p.deadline.is_none() && p.attempts >= cfg.max_attempts))
        {
            break;
        }
        ticklane_appliance::sys::wait_readable(&[answers.fd()], 1);
        let _ = answers.receive(|datagram| {
            let Ok(packet) = Packet::new_checked(datagram) else {
                report.refused += 1;
                return;
            };
            let session = packet.session();
            for (seq, message) in packet.messages() {
                let at = pieces.partition_point(|p| (p.session.0, p.end()) <= (session.0, seq));
                let slot = pieces.get_mut(at).and_then(|p| {
                    (p.session == session && seq >= p.from)
                        .then(|| (seq - p.from) as usize)
                        .map(|i| (p, i))
                });
                match slot {
                    Some((p, i)) if !p.got[i] && itch::parse(message).is_ok() => {
                        p.got[i] = true;
                        p.missing -= 1;
                        // The server answers: its retries count from here
                        // (a server that cuts long answers is asked for
                        // the rest as often as it takes, within the deadline).
                        p.attempts = p.attempts.min(1);
                        if p.missing == 0 {
                            p.deadline = None;
                        }
                        report.filled += 1;
                        take(session, seq, message);
                    }
                    // A copy already taken is no refusal.
                    Some((p, i)) if p.got[i] => {}
                    _ => report.refused += 1,
                }
            }
        });
    }
    report.unfilled = missing(&pieces);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use ticklane_protocols::moldudp64::PacketBuilder;

    /// A system event message whose timestamp is `seq` (so each is its own).
    fn message(seq: u64) -> Vec<u8> {
        let mut m = b"S\x00\x00\x00\x00".to_vec();
        m.extend_from_slice(&seq.to_be_bytes()[2..]);
        m.push(b'O');
        m
    }

    fn session(name: &[u8]) -> Session {
        Session::from_name(name).unwrap()
    }

    fn range(name: &[u8], from: u64, end: u64) -> SeqRange {
        SeqRange {
            session: session(name),
            from,
            end,
        }
    }

    fn quick(servers: Vec<SocketAddr>) -> FillConfig {
        FillConfig {
            servers,
            timeout: Duration::from_millis(20),
            deadline: Duration::from_secs(5),
            ..FillConfig::default()
        }
    }

    /// A re-request server of session `F1` holding messages 1..=`held`: it
    /// answers at most 300 messages a request, and adds to each answer a
    /// packet of another session and a message that is not ITCH.
    fn server(held: u64, stop: Arc<AtomicBool>) -> (SocketAddr, std::thread::JoinHandle<u64>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut requests = 0;
            let mut rx = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut rx) else {
                    continue;
                };
                let Ok(r) = Request::decode(&rx[..n]) else {
                    continue;
                };
                requests += 1;
                let end = (r.sequence_number + u64::from(r.message_count.min(300))).min(held + 1);
                let mut seq = r.sequence_number;
                while seq < end {
                    let mut buf = [0u8; 1400];
                    let mut b = PacketBuilder::new(&mut buf, r.session, seq).unwrap();
                    while seq < end && b.push(&message(seq)).is_ok() {
                        seq += 1;
                    }
                    socket.send_to(b.finish(), peer).unwrap();
                }
                let mut buf = [0u8; 1400];
                let mut b =
                    PacketBuilder::new(&mut buf, session(b"OTHER"), r.sequence_number).unwrap();
                b.push(&message(r.sequence_number)).unwrap();
                socket.send_to(b.finish(), peer).unwrap();
                let mut b = PacketBuilder::new(&mut buf, r.session, r.sequence_number).unwrap();
                b.push(b"\xffjunk").unwrap();
                socket.send_to(b.finish(), peer).unwrap();
            }
            requests
        });
        (addr, handle)
    }

    #[test]
    fn without_a_server_every_range_is_left_exactly() {
        let ranges = [range(b"F1", 5, 9), range(b"F1", 20, 2500)];
        let r = fill(&ranges, &quick(Vec::new()), |_, _, _| {
            panic!("nothing asked")
        });
        assert_eq!(r.unfilled, ranges);
        assert!(r.not_asked.unwrap().contains("no re-request server"));
        assert_eq!((r.filled, r.requests), (0, 0));
    }

    #[test]
    fn the_missing_ranges_are_filled_once_each_and_what_the_server_lacks_is_left_exactly() {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) = server(3000, stop.clone());
        // Pieces of at most 1000 answered 300 at a time; 2900..3100: the
        // server holds only up to 3000.
        let ranges = [
            range(b"F1", 10, 12),
            range(b"F1", 1000, 2500),
            range(b"F1", 2900, 3100),
        ];
        let mut got = Vec::new();
        let started = Instant::now();
        let r = fill(&ranges, &quick(vec![addr]), |s, seq, bytes| {
            assert_eq!(s, session(b"F1"));
            assert_eq!(bytes, message(seq));
            got.push(seq);
        });
        stop.store(true, Ordering::Relaxed);
        let requests = handle.join().unwrap();
        got.sort_unstable();
        let want: Vec<u64> = (10..12).chain(1000..2500).chain(2900..3001).collect();
        assert_eq!(got, want, "each message once");
        assert_eq!(r.filled, want.len() as u64);
        assert_eq!(r.unfilled, vec![range(b"F1", 3001, 3100)]);
        assert_eq!(r.requests, requests, "every request counted");
        assert!(
            r.refused > 0,
            "another session's and non-ITCH answers are refused"
        );
        // The hole the server cannot fill is asked for max_attempts times.
        assert!(r.requests < 40, "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_silent_server_is_asked_a_bounded_number_of_times() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let cfg = FillConfig {
            max_attempts: 3,
            ..quick(vec![silent.local_addr().unwrap()])
        };
        let ranges = [range(b"F1", 1, 2001)];
        let started = Instant::now();
        let r = fill(&ranges, &cfg, |_, _, _| panic!("nothing answered"));
        assert_eq!(r.unfilled, ranges);
        assert_eq!(r.requests, 2 * 3, "two pieces, three attempts each");
        // 20 + 40 + 80 ms of timeouts, far below the deadline.
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
