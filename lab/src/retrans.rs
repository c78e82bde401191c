//! A MoldUDP64 re-request server answering from a capture: for labs, tests
//! and demos. It loads the messages of one session from the capture,
//! numbered by their sequence numbers, and answers each request packet with
//! ordinary downstream packets carrying those messages, capped per request.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ticklane_protocols::moldudp64::{PacketBuilder, Request, Session};

use ticklane_capture::feed::{FeedDecoder, FeedFilter, FeedSink, Location, Problem};
use ticklane_capture::{self as capture, CaptureError, Record};
use ticklane_protocols::itch::MessageRef;

/// The messages of one session, by sequence number.
#[derive(Debug)]
pub struct RetransStore {
    session: Session,
    first_seq: u64,
    /// `offsets[i]..offsets[i + 1]` holds message `first_seq + i`.
    offsets: Vec<usize>,
    bytes: Vec<u8>,
}

struct Collect<'a> {
    session: &'a mut Option<Session>,
    messages: &'a mut std::collections::BTreeMap<u64, Vec<u8>>,
}

impl FeedSink for Collect<'_> {
    fn message(&mut self, session: &Session, seq: u64, message: MessageRef<'_>) {
        if *self.session.get_or_insert(*session) == *session {
            self.messages
                .entry(seq)
                .or_insert_with(|| message.as_bytes().to_vec());
        }
    }
    fn problem(&mut self, _: Location, _: Problem) {}
}

impl RetransStore {
    /// Loads the first session found in a capture (pcap or pcapng of a
    /// MoldUDP64 feed). Duplicates are kept once; a sequence number missing
    /// from the capture ends what can be served contiguously.
    pub fn load(path: &Path) -> Result<Self, CaptureError> {
        let mut session = None;
        let mut messages = std::collections::BTreeMap::new();
        let mut decoder = FeedDecoder::new(FeedFilter::default());
        capture::read(path, |r| {
            if let Record::Frame(_) = r {
                decoder.record(
                    r,
                    &mut Collect {
                        session: &mut session,
                        messages: &mut messages,
                    },
                );
            }
        })?;
        let session = session.ok_or_else(|| CaptureError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            what: "no MoldUDP64 message in this capture (a BinaryFILE has no sessions to serve)"
                .into(),
        })?;
        let first_seq = messages.keys().next().copied().unwrap_or(1);
        let mut offsets = vec![0];
        let mut bytes = Vec::new();
        for (i, (seq, m)) in messages.into_iter().enumerate() {
            if seq != first_seq + i as u64 {
                break;
            }
            bytes.extend_from_slice(&m);
            offsets.push(bytes.len());
        }
        Ok(Self {
            session,
            first_seq,
            offsets,
            bytes,
        })
    }

    /// The session served.
    pub fn session(&self) -> Session {
        self.session
    }

    /// Sequence numbers served: `first..end`.
    pub fn range(&self) -> (u64, u64) {
        (
            self.first_seq,
            self.first_seq + self.offsets.len() as u64 - 1,
        )
    }

    /// Message `seq`, if held.
    pub fn message(&self, seq: u64) -> Option<&[u8]> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        Some(&self.bytes[*self.offsets.get(i)?..*self.offsets.get(i + 1)?])
    }
}

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Most messages sent for one request (larger requests are clamped).
    pub max_count: u16,
    /// Largest UDP payload sent.
    pub max_payload: usize,
}

/// What the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Valid requests answered.
    pub requests: u64,
    /// Messages sent.
    pub messages: u64,
    /// Packets sent.
    pub packets: u64,
    /// Requests that were not 20 bytes, named another session, or asked for
    /// nothing this server holds.
    pub bad_requests: u64,
    /// Requests clamped to `max_count`.
    pub clamped: u64,
}

/// Why a request could not be answered (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a 20-byte request packet.
    Malformed(usize),
    /// Another session.
    WrongSession(Session),
    /// Outside what the server holds.
    OutOfRange(u64),
}

/// Answers one request into `send`; returns the refusal if it was not answered.
pub fn answer(
    store: &RetransStore,
    cfg: &ServeConfig,
    datagram: &[u8],
    stats: &mut ServeStats,
    mut send: impl FnMut(&[u8]),
) -> Result<(), Refusal> {
    let request = Request::decode(datagram).map_err(|_| {
        stats.bad_requests += 1;
        Refusal::Malformed(datagram.len())
    })?;
    if request.session != store.session {
        stats.bad_requests += 1;
        return Err(Refusal::WrongSession(request.session));
    }
    let mut count = request.message_count;
    if count > cfg.max_count {
        stats.clamped += 1;
        count = cfg.max_count;
    }
    let from = request.sequence_number;
    if store.message(from).is_none() {
        stats.bad_requests += 1;
        return Err(Refusal::OutOfRange(from));
    }
    stats.requests += 1;
    let mut buf = vec![0u8; cfg.max_payload];
    let mut seq = from;
    let end = from + u64::from(count);
    while seq < end && store.message(seq).is_some() {
        let Some(mut b) = PacketBuilder::new(&mut buf, store.session, seq) else {
            return Ok(());
        };
        while seq < end {
            let Some(m) = store.message(seq) else { break };
            if b.push(m).is_err() {
                break;
            }
            seq += 1;
        }
        if b.is_empty() {
            break; // a message larger than a packet: nothing sensible to send
        }
        stats.messages += u64::from(b.count());
        stats.packets += 1;
        send(b.finish());
    }
    Ok(())
}

/// Serves requests on `socket` until `stop` is set; `log` receives one line
/// per refused request (rate-limited by the caller if it wishes).
pub fn serve(
    socket: &UdpSocket,
    store: &RetransStore,
    cfg: &ServeConfig,
    stop: &AtomicBool,
    mut log: impl FnMut(SocketAddr, Refusal),
) -> std::io::Result<ServeStats> {
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut stats = ServeStats::default();
    let mut rx = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match socket.recv_from(&mut rx) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Err(refusal) = answer(store, cfg, &rx[..n], &mut stats, |p| {
            let _ = socket.send_to(p, peer);
        }) {
            log(peer, refusal);
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticklane_protocols::moldudp64::Packet;

    fn is_downstream(bytes: &[u8]) -> bool {
        Packet::new_checked(bytes).is_ok()
    }

    fn store() -> RetransStore {
        let mut offsets = vec![0];
        let mut bytes = Vec::new();
        for seq in 10..20u64 {
            bytes.extend_from_slice(&seq.to_be_bytes());
            offsets.push(bytes.len());
        }
        RetransStore {
            session: Session::from_name(b"S").unwrap(),
            first_seq: 10,
            offsets,
            bytes,
        }
    }

    fn ask(
        store: &RetransStore,
        cfg: &ServeConfig,
        from: u64,
        count: u16,
    ) -> (Result<(), Refusal>, Vec<u64>) {
        let req = Request {
            session: store.session(),
            sequence_number: from,
            message_count: count,
        }
        .encode();
        let mut got = Vec::new();
        let r = answer(store, cfg, &req, &mut ServeStats::default(), |p| {
            assert!(is_downstream(p));
            let p = Packet::new_checked(p).unwrap();
            for (seq, m) in p.messages() {
                assert_eq!(m, seq.to_be_bytes());
                got.push(seq);
            }
        });
        (r, got)
    }

    #[test]
    fn answers_with_the_messages_asked_for() {
        let cfg = ServeConfig {
            max_count: 100,
            max_payload: 1400,
        };
        assert_eq!(store().range(), (10, 20));
        assert_eq!(ask(&store(), &cfg, 12, 3), (Ok(()), vec![12, 13, 14]));
        assert_eq!(
            ask(&store(), &cfg, 18, 5),
            (Ok(()), vec![18, 19]),
            "up to what it holds"
        );
    }

    #[test]
    fn caps_splits_and_refuses() {
        let cfg = ServeConfig {
            max_count: 4,
            max_payload: 20 + 2 * 10,
        };
        let (r, got) = ask(&store(), &cfg, 10, 9);
        assert_eq!(
            (r, got),
            (Ok(()), vec![10, 11, 12, 13]),
            "clamped to 4, two per packet"
        );
        assert_eq!(ask(&store(), &cfg, 30, 1).0, Err(Refusal::OutOfRange(30)));
        let mut stats = ServeStats::default();
        assert_eq!(
            answer(&store(), &cfg, b"short", &mut stats, |_| {}),
            Err(Refusal::Malformed(5))
        );
        let other = Request {
            session: Session::from_name(b"X").unwrap(),
            sequence_number: 10,
            message_count: 1,
        };
        assert!(matches!(
            answer(&store(), &cfg, &other.encode(), &mut stats, |_| {}),
            Err(Refusal::WrongSession(_))
        ));
        assert_eq!(stats.bad_requests, 2);
    }
}
