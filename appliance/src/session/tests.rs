//! The scenarios a trusted MoldUDP64 client must get right, one test each.

use super::*;
use ticklane_protocols::moldudp64::{self, END_OF_SESSION, PacketBuilder};

const MS: u64 = 1_000_000;

fn session(name: &[u8]) -> Session {
    Session::from_name(name).unwrap()
}

/// A packet of `count` messages from `seq`; message k is `k` as 8 bytes.
fn packet(name: &[u8], seq: u64, count: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 1400];
    let mut b = PacketBuilder::new(&mut buf, session(name), seq).unwrap();
    for k in seq..seq + count {
        b.push(&k.to_be_bytes()).unwrap();
    }
    b.finish().to_vec()
}

/// A packet of `count` messages from `seq` whose bytes are not the feed's
/// (the [`Log`] refuses to see them delivered).
fn forged(name: &[u8], seq: u64, count: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 1400];
    let mut b = PacketBuilder::new(&mut buf, session(name), seq).unwrap();
    for k in seq..seq + count {
        b.push(&(!k).to_be_bytes()).unwrap();
    }
    b.finish().to_vec()
}

fn heartbeat(name: &[u8], next: u64) -> Vec<u8> {
    moldudp64::header(session(name), next, 0).to_vec()
}

fn end_of_session(name: &[u8], next: u64) -> Vec<u8> {
    moldudp64::header(session(name), next, END_OF_SESSION).to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    Deliver(u64),
    Request {
        server: usize,
        from: u64,
        count: u16,
    },
    Gap(u64, u64),
    Filled(u64, u64),
    Lost(u64, u64),
    Stale,
    Fresh,
    End(u64),
    New(Vec<u8>),
    Down(usize),
    Up(usize),
}

#[derive(Default)]
struct Log(Vec<Rec>);

impl ActionSink for Log {
    fn action(&mut self, a: Action<'_>) {
        self.0.push(match a {
            Action::Deliver { seq, message } => {
                assert_eq!(message, seq.to_be_bytes(), "the bytes of message {seq}");
                Rec::Deliver(seq)
            }
            Action::Request { server, request } => Rec::Request {
                server,
                from: request.sequence_number,
                count: request.message_count,
            },
            Action::Event(SessionEvent::GapDetected { from, end }) => Rec::Gap(from, end),
            Action::Event(SessionEvent::GapFilled { from, end }) => Rec::Filled(from, end),
            Action::Event(SessionEvent::Unrecoverable { from, end }) => Rec::Lost(from, end),
            Action::Event(SessionEvent::Stale) => Rec::Stale,
            Action::Event(SessionEvent::Fresh) => Rec::Fresh,
            Action::Event(SessionEvent::EndOfSession { next_seq }) => Rec::End(next_seq),
            Action::Event(SessionEvent::NewSession { session }) => {
                Rec::New(session.trimmed().to_vec())
            }
            Action::Event(SessionEvent::LineDown { line }) => Rec::Down(line),
            Action::Event(SessionEvent::LineUp { line }) => Rec::Up(line),
        });
    }
}

impl Log {
    fn take(&mut self) -> Vec<Rec> {
        std::mem::take(&mut self.0)
    }

    fn delivered(&self) -> Vec<u64> {
        self.0
            .iter()
            .filter_map(|r| {
                if let Rec::Deliver(s) = r {
                    Some(*s)
                } else {
                    None
                }
            })
            .collect()
    }
}

struct Rig {
    t: SessionTracker,
    log: Log,
}

impl Rig {
    fn new(cfg: SessionConfig) -> Self {
        Self {
            t: SessionTracker::new(cfg),
            log: Log::default(),
        }
    }

    fn feed(&mut self, now: u64, bytes: &[u8]) {
        let p = moldudp64::Packet::new_checked(bytes).unwrap();
        self.t.on_packet(now, &p, &mut self.log);
    }

    fn timer(&mut self, now: u64) {
        self.t.on_timer(now, &mut self.log);
    }
}

/// A request to server `server` for `count` messages from `from`.
fn req(server: usize, from: u64, count: u16) -> Rec {
    Rec::Request {
        server,
        from,
        count,
    }
}

/// No servers; holes wait `reorder_wait_ns` for a late copy.
fn waiting(reorder_wait_ns: u64) -> SessionConfig {
    SessionConfig {
        reorder_wait_ns,
        ..SessionConfig::default()
    }
}

/// `n` servers, asked at once when a hole opens (no reorder delay).
fn with_servers(n: usize) -> SessionConfig {
    SessionConfig {
        servers: n,
        request_timeout_ns: 10 * MS,
        request_delay_ns: 0,
        ..SessionConfig::default()
    }
}

fn deliveries(range: std::ops::Range<u64>) -> Vec<Rec> {
    range.map(Rec::Deliver).collect()
}

#[test]
fn in_order_packets_are_delivered_once_in_order() {
    let mut r = Rig::new(SessionConfig::default());
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(1, &packet(b"S1", 4, 2));
    let mut expected = vec![Rec::New(b"S1".to_vec())];
    expected.extend(deliveries(1..6));
    assert_eq!(r.log.take(), expected);
    assert_eq!(r.t.stats().delivered, 5);
    assert!(!r.t.is_stale());
}

#[test]
fn fully_and_partially_obsolete_packets() {
    let mut r = Rig::new(SessionConfig::default());
    r.feed(0, &packet(b"S1", 1, 5));
    r.log.take();
    r.feed(1, &packet(b"S1", 2, 3)); // fully obsolete
    assert_eq!(r.log.take(), vec![]);
    r.feed(2, &packet(b"S1", 4, 4)); // 4,5 old; 6,7 new
    assert_eq!(r.log.take(), deliveries(6..8));
    let s = r.t.stats();
    assert_eq!(
        (s.duplicate_packets, s.partial_packets, s.delivered),
        (1, 1, 7)
    );
}

#[test]
fn reordered_packets_are_held_and_released() {
    let mut r = Rig::new(SessionConfig::default());
    r.feed(0, &packet(b"S1", 1, 2));
    r.feed(1, &packet(b"S1", 5, 2));
    r.feed(2, &packet(b"S1", 3, 2));
    let log = r.log.take();
    assert_eq!(
        log[1..],
        [
            Rec::Deliver(1),
            Rec::Deliver(2),
            Rec::Gap(3, 5),
            Rec::Stale,
            Rec::Deliver(3),
            Rec::Deliver(4),
        ],
        "the held packet waits for a packet that follows it"
    );
    r.feed(3, &packet(b"S1", 7, 2));
    assert_eq!(
        r.log.take(),
        [
            Rec::Deliver(5),
            Rec::Deliver(6),
            Rec::Filled(3, 7),
            Rec::Fresh,
            Rec::Deliver(7),
            Rec::Deliver(8),
        ],
        "corroborated, it goes, and the next packet follows it at once"
    );
    assert_eq!(r.t.stats().held_packets, 1);
}

#[test]
fn gap_fill_from_a_server() {
    let mut r = Rig::new(with_servers(1));
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(MS, &packet(b"S1", 7, 3));
    r.feed(MS, &packet(b"S1", 10, 2));
    let log = r.log.take();
    assert_eq!(log[4..], [Rec::Gap(4, 7), Rec::Stale, req(0, 4, 3)]);
    r.feed(2 * MS, &packet(b"S1", 4, 3)); // the retransmission
    assert_eq!(r.log.take(), deliveries(4..10));
    r.timer(4 * MS);
    assert_eq!(
        r.log.take(),
        vec![req(0, 10, 2)],
        "the last packet held has nothing after it: after a while its messages are asked for"
    );
    r.feed(5 * MS, &packet(b"S1", 10, 2)); // the answer
    let mut expected = deliveries(10..12);
    expected.extend([Rec::Filled(4, 12), Rec::Fresh]);
    assert_eq!(r.log.take(), expected);
}

#[test]
fn gap_fill_timeout_retries_fails_over_then_gives_up() {
    let cfg = SessionConfig {
        max_attempts: 4,
        attempts_per_server: 2,
        ..with_servers(2)
    };
    let mut r = Rig::new(cfg);
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(0, &packet(b"S1", 5, 1));
    r.feed(0, &packet(b"S1", 6, 1));
    r.log.take();
    r.timer(5 * MS);
    assert_eq!(r.log.take(), vec![], "not yet timed out");
    r.timer(10 * MS);
    assert_eq!(r.log.take(), vec![req(0, 2, 3)], "retry, same server");
    r.timer(29 * MS);
    assert_eq!(r.log.take(), vec![], "backoff doubled the timeout");
    r.timer(30 * MS);
    assert_eq!(r.log.take(), vec![req(1, 2, 3)], "fail-over");
    r.timer(70 * MS);
    assert_eq!(r.log.take(), vec![req(1, 2, 3)]);
    r.timer(150 * MS);
    assert_eq!(r.log.take(), vec![Rec::Lost(2, 5), Rec::Deliver(5)]);
    r.timer(152 * MS);
    assert_eq!(
        r.log.take(),
        vec![req(1, 6, 1)],
        "what the last held packet says is asked of the server"
    );
    r.feed(153 * MS, &packet(b"S1", 6, 1));
    assert_eq!(r.log.take(), vec![Rec::Deliver(6), Rec::Fresh]);
    let s = r.t.stats();
    assert_eq!(
        (s.requests, s.retries, s.failovers, s.unrecoverable_messages),
        (5, 3, 1, 3)
    );
}

#[test]
fn gap_fill_after_end_of_session() {
    let mut r = Rig::new(with_servers(1));
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(MS, &moldudp64::header(session(b"S1"), 8, END_OF_SESSION));
    let log = r.log.take();
    assert_eq!(log[4..], [Rec::Gap(4, 8), Rec::Stale, req(0, 4, 4)]);
    assert!(!r.t.is_finished(), "the end waits for the gap");
    r.feed(2 * MS, &packet(b"S1", 4, 4));
    let mut expected = deliveries(4..8);
    expected.extend([Rec::Filled(4, 8), Rec::Fresh, Rec::End(8)]);
    assert_eq!(r.log.take(), expected);
    assert!(r.t.is_finished());
}

#[test]
fn heartbeats_reveal_tail_gaps() {
    let mut r = Rig::new(with_servers(1));
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(MS, &moldudp64::header(session(b"S1"), 6, 0));
    let log = r.log.take();
    assert_eq!(log[4..], [Rec::Gap(4, 6), Rec::Stale, req(0, 4, 2)]);
    assert_eq!(r.t.stats().heartbeats, 1);
}

#[test]
fn backfill_from_the_first_message() {
    let cfg = SessionConfig {
        backfill_from: Some(1),
        ..with_servers(1)
    };
    let mut r = Rig::new(cfg);
    r.feed(0, &packet(b"S1", 100, 1));
    let log = r.log.take();
    assert_eq!(log[1..], [Rec::Gap(1, 100), Rec::Stale, req(0, 1, 99)]);
}

/// A session resumed after a restart (the audit journal holds 1..=499):
/// only what came after the journal is requested, and what the journal
/// holds is not delivered again; another session starts from the backfill.
#[test]
fn a_resumed_session_requests_only_what_came_after_it() {
    let cfg = SessionConfig {
        backfill_from: Some(1),
        resume: Some((session(b"S1"), 500)),
        ..with_servers(1)
    };
    let mut r = Rig::new(cfg.clone());
    r.feed(0, &packet(b"S1", 700, 1));
    let log = r.log.take();
    assert_eq!(log[1..], [Rec::Gap(500, 700), Rec::Stale, req(0, 500, 200)]);
    let mut r = Rig::new(cfg.clone());
    r.feed(0, &packet(b"S1", 495, 10));
    let log = r.log.take();
    assert_eq!(
        log[1..],
        (500..505).map(Rec::Deliver).collect::<Vec<_>>(),
        "a packet straddling the resume point delivers only what is new"
    );
    let mut r = Rig::new(cfg);
    r.feed(0, &packet(b"S2", 3, 1));
    let log = r.log.take();
    assert_eq!(log[1..], [Rec::Gap(1, 3), Rec::Stale, req(0, 1, 2)]);
}

#[test]
fn maximum_message_length_exceeded_rejects_the_packet() {
    let cfg = SessionConfig {
        max_message_len: Some(8),
        ..with_servers(1)
    };
    let mut r = Rig::new(cfg);
    r.feed(0, &packet(b"S1", 1, 1));
    let mut buf = [0u8; 64];
    let mut b = PacketBuilder::new(&mut buf, session(b"S1"), 2).unwrap();
    b.push(&[0u8; 9]).unwrap();
    r.feed(MS, b.finish());
    assert_eq!(r.t.stats().rejected_packets, 1);
    let log = r.log.take();
    assert_eq!(log[2..], [Rec::Gap(2, 3), Rec::Stale, req(0, 2, 1)]);
}

#[test]
fn several_requests_for_one_large_gap_paced() {
    let cfg = SessionConfig {
        max_request: 1000,
        max_in_flight: 2,
        ..with_servers(1)
    };
    let mut r = Rig::new(cfg);
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(0, &moldudp64::header(session(b"S1"), 3502, 0));
    let requests: Vec<Rec> = r
        .log
        .take()
        .into_iter()
        .filter(|x| matches!(x, Rec::Request { .. }))
        .collect();
    assert_eq!(
        requests,
        [req(0, 2, 1000), req(0, 1002, 1000)],
        "two in flight at most, each at most 1000 messages"
    );
    // The first answer arrives in pieces; once it is complete the third request goes out.
    for seq in (2..1002).step_by(50) {
        r.feed(MS, &packet(b"S1", seq, 50));
    }
    let requests: Vec<Rec> = r
        .log
        .take()
        .into_iter()
        .filter(|x| matches!(x, Rec::Request { .. }))
        .collect();
    assert_eq!(requests, [req(0, 2002, 1000)]);
}

#[test]
fn a_new_session_starts_clean() {
    let mut r = Rig::new(SessionConfig {
        backfill_from: None,
        ..SessionConfig::default()
    });
    r.feed(0, &packet(b"DAY1", 500, 2));
    r.feed(MS, &packet(b"DAY2", 1, 2));
    assert_eq!(
        r.log.take(),
        [
            Rec::New(b"DAY1".to_vec()),
            Rec::Deliver(500),
            Rec::Deliver(501),
            Rec::New(b"DAY2".to_vec()),
            Rec::Deliver(1),
            Rec::Deliver(2),
        ]
    );
    assert_eq!(r.t.stats().session_changes, 1);
}

#[test]
fn without_servers_a_hole_waits_then_is_lost() {
    let mut r = Rig::new(waiting(5 * MS));
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(MS, &packet(b"S1", 3, 1));
    // The feed idles; its heartbeat says 4 comes next, which corroborates
    // the packet held.
    r.feed(2 * MS, &heartbeat(b"S1", 4));
    r.log.take();
    r.timer(4 * MS);
    assert_eq!(r.log.take(), vec![]);
    r.timer(6 * MS);
    assert_eq!(
        r.log.take(),
        vec![Rec::Lost(2, 3), Rec::Deliver(3), Rec::Fresh]
    );
    r.feed(7 * MS, &packet(b"S1", 2, 1));
    assert_eq!(r.log.take(), vec![], "too late: a duplicate now");
}

#[test]
fn without_servers_every_old_hole_is_settled_in_one_pass() {
    let mut r = Rig::new(waiting(5 * MS));
    // Holes at 2, 4..6 and 8, revealed at 1, 2 and 3 ms; one at 11 revealed
    // at 9 ms.
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(MS, &packet(b"S1", 3, 1));
    r.feed(2 * MS, &packet(b"S1", 6, 2));
    r.feed(3 * MS, &packet(b"S1", 9, 2));
    r.feed(9 * MS, &packet(b"S1", 12, 1));
    r.feed(9 * MS, &packet(b"S1", 13, 1));
    r.log.take();
    r.timer(8 * MS);
    assert_eq!(
        r.log.take(),
        vec![
            Rec::Lost(2, 3),
            Rec::Deliver(3),
            Rec::Lost(4, 6),
            Rec::Deliver(6),
            Rec::Deliver(7),
            Rec::Lost(8, 9),
            Rec::Deliver(9),
            Rec::Deliver(10),
        ],
        "the three holes older than the wait go at once; the younger one waits"
    );
    r.timer(13 * MS);
    assert_eq!(r.log.take(), vec![]);
    r.timer(14 * MS);
    assert_eq!(r.log.take()[..2], [Rec::Lost(11, 12), Rec::Deliver(12)]);
}

#[test]
fn without_servers_a_lone_packet_after_a_hole_is_not_trusted() {
    let mut r = Rig::new(waiting(5 * MS));
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(MS, &forged(b"S1", 3, 1));
    r.log.take();
    r.timer(6 * MS);
    r.timer(600 * MS);
    assert_eq!(
        r.log.take(),
        vec![Rec::Lost(2, 3)],
        "the hole goes; the packet waits for the feed to vouch for it, however long"
    );
    r.t.finish(601 * MS, &mut r.log);
    assert_eq!(
        r.log.take(),
        vec![Rec::Lost(3, 4), Rec::Fresh],
        "nothing vouched for it: its range is lost, its bytes never delivered"
    );
    assert_eq!(r.t.stats().unconfirmed_packets, 1);
}

#[test]
fn a_forged_packet_ahead_of_the_horizon_never_reaches_delivery() {
    // Genuine packets of 3 messages: 1..4, 4..7, ... The forgery claims
    // 1000 (where a genuine packet starts) and 2000 (where none does).
    for forged_at in [1000, 2000] {
        for servers in [0, 1] {
            let mut r = Rig::new(SessionConfig {
                max_in_flight: 64,
                ..with_servers(servers)
            });
            r.feed(0, &packet(b"S1", 1, 3));
            r.feed(MS, &forged(b"S1", forged_at, 1));
            // A server that holds the whole day answers every request at
            // once, in packets of up to 3 messages.
            let mut delivered = Vec::new();
            for round in 0..8 {
                for req in r.log.take() {
                    if let Rec::Deliver(seq) = req {
                        delivered.push(seq);
                    }
                    if let Rec::Request { from, count, .. } = req {
                        let end = from + u64::from(count);
                        for seq in (from..end).step_by(3) {
                            r.feed(2 * MS + round, &packet(b"S1", seq, (end - seq).min(3)));
                        }
                    }
                }
            }
            // The line goes on (the Log checks every delivered message's bytes).
            let mut seq = 4;
            while seq < 3000 {
                r.feed(4 * MS, &packet(b"S1", seq, 3));
                seq += 3;
            }
            delivered.extend(r.log.delivered());
            assert!(
                delivered == (1..seq).collect::<Vec<_>>(),
                "forged at {forged_at}, {servers} servers: {} delivered, first out of place: {:?}",
                delivered.len(),
                delivered.iter().zip(1..).find(|(d, k)| **d != *k)
            );
            assert!(!r.t.has_gap());
        }
    }
}

#[test]
fn a_forged_end_of_session_is_contradicted_by_the_feed_going_on() {
    let mut r = Rig::new(SessionConfig::default());
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(MS, &end_of_session(b"S1", 4));
    r.feed(2 * MS, &packet(b"S1", 4, 3));
    r.feed(3 * MS, &packet(b"S1", 7, 3));
    r.feed(4 * MS, &packet(b"S1", 10, 3));
    assert_eq!(r.log.delivered(), (1..13).collect::<Vec<_>>());
    assert!(!r.t.end_seen() && !r.t.is_finished());
    let s = r.t.stats();
    assert_eq!((s.suspect_packets, s.contradicted_ends), (1, 1));
    // After the real end, a lone packet beyond it changes nothing.
    r.feed(5 * MS, &end_of_session(b"S1", 13));
    r.feed(6 * MS, &forged(b"S1", 13, 1));
    assert_eq!(r.log.delivered().len(), 12);
    assert!(r.t.is_finished());
}

#[test]
fn a_full_window_drops_and_the_requests_cover_it() {
    let cfg = SessionConfig {
        window_packets: 2,
        max_in_flight: 8,
        ..with_servers(1)
    };
    let mut r = Rig::new(cfg);
    r.feed(0, &packet(b"S1", 1, 1));
    for seq in [3, 4, 5] {
        r.feed(0, &packet(b"S1", seq, 1));
    }
    assert_eq!(r.t.stats().window_overflow, 1);
    r.feed(MS, &packet(b"S1", 2, 1));
    r.log.take();
    r.timer(20 * MS); // the request for 5 (dropped) times out and is retried
    r.feed(21 * MS, &packet(b"S1", 5, 1));
    assert_eq!(r.log.delivered(), vec![5]);
    assert!(!r.t.has_gap());
}

#[test]
fn finish_reports_what_is_still_missing() {
    let mut r = Rig::new(SessionConfig::default());
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(0, &packet(b"S1", 4, 1));
    r.log.take();
    r.t.finish(0, &mut r.log);
    assert_eq!(
        r.log.take(),
        vec![Rec::Lost(2, 5), Rec::Fresh],
        "the packet held has nothing after it to vouch for it: lost with the hole"
    );
    assert_eq!(r.t.stats().unconfirmed_packets, 1);
}

#[test]
fn arbiter_merges_lines_first_copy_wins() {
    let mut a = Arbiter::new(SessionConfig::default(), 2, 100 * MS);
    let mut log = Log::default();
    let feed = |a: &mut Arbiter, log: &mut Log, line: usize, now: u64, bytes: Vec<u8>| {
        a.on_packet(
            line,
            now,
            &moldudp64::Packet::new_checked(&bytes[..]).unwrap(),
            log,
        );
    };
    feed(&mut a, &mut log, 0, 0, packet(b"S1", 1, 2));
    feed(&mut a, &mut log, 1, 1, packet(b"S1", 1, 2)); // B duplicates A
    feed(&mut a, &mut log, 1, 2, packet(b"S1", 3, 2)); // B leads; A lost 3..5
    feed(&mut a, &mut log, 0, 3, packet(b"S1", 5, 2)); // A resumes: its hole was filled by B
    feed(&mut a, &mut log, 1, 4, packet(b"S1", 5, 2));
    assert_eq!(log.delivered(), vec![1, 2, 3, 4, 5, 6]);
    let (la, lb) = (a.lines()[0], a.lines()[1]);
    assert_eq!(
        (la.packets, la.duplicates, la.gaps, la.gaps_covered_by_other),
        (2, 0, 1, 1)
    );
    assert_eq!((lb.packets, lb.duplicates, lb.lag_messages), (3, 2, 2));
    assert_eq!(a.stats().gaps, 0, "no gap ever showed on the merged feed");
}

#[test]
fn without_servers_a_line_lagging_by_40_ms_fills_what_the_other_lost() {
    // Both lines send packets 1..=200 (one message each), one per ms; B runs
    // 40 ms behind A. A loses 5, 50 and 120; B loses 120 and 150.
    let cfg = SessionConfig {
        reorder_wait_ns: 10 * MS,
        ..SessionConfig::default()
    };
    let mut a = Arbiter::new(cfg, 2, 100 * MS);
    let mut log = Log::default();
    let mut lost_at = None;
    for t in 0..260u64 {
        let now = t * MS;
        for (line, seq, lost) in [
            (0, t + 1, [5, 50, 120]),
            (1, t.wrapping_sub(39), [120, 150, 0]),
        ] {
            if (1..=200).contains(&seq) && !lost.contains(&seq) {
                a.on_packet(
                    line,
                    now,
                    &moldudp64::Packet::new_checked(&packet(b"S1", seq, 1)[..]).unwrap(),
                    &mut log,
                );
            }
        }
        a.on_timer(now, &mut log);
        if lost_at.is_none() && log.0.contains(&Rec::Lost(120, 121)) {
            lost_at = Some(t);
        }
    }
    let delivered = log.delivered();
    assert_eq!(delivered.len(), 199, "all but the one both lines lost");
    assert!(!delivered.contains(&120));
    assert_eq!(a.stats().unrecoverable_messages, 1);
    // A lost 120 at 119 ms; B passed it at 160 ms; then the reorder wait.
    let t = lost_at.expect("120 is reported lost");
    assert!((160..=175).contains(&t), "given up at {t} ms");
}

#[test]
fn arbiter_reports_a_dead_line_and_its_return() {
    let mut a = Arbiter::new(SessionConfig::default(), 2, 10 * MS);
    let mut log = Log::default();
    let p = |seq| packet(b"S1", seq, 1);
    a.on_packet(
        0,
        MS,
        &moldudp64::Packet::new_checked(&p(1)[..]).unwrap(),
        &mut log,
    );
    a.on_packet(
        1,
        MS,
        &moldudp64::Packet::new_checked(&p(1)[..]).unwrap(),
        &mut log,
    );
    a.on_packet(
        0,
        15 * MS,
        &moldudp64::Packet::new_checked(&p(2)[..]).unwrap(),
        &mut log,
    );
    log.take();
    a.on_timer(16 * MS, &mut log);
    assert_eq!(log.take(), vec![Rec::Down(1)]);
    a.on_timer(17 * MS, &mut log);
    assert_eq!(log.take(), vec![], "reported once");
    a.on_packet(
        1,
        18 * MS,
        &moldudp64::Packet::new_checked(&p(2)[..]).unwrap(),
        &mut log,
    );
    assert_eq!(log.take(), vec![Rec::Up(1)]);
    assert_eq!(a.lines()[1].downs, 1);
}

/// A clean feed of messages 1..=20 (packets of 2) and its end of session
/// at 21, with `forged` slipped in after message 10; time runs past the
/// reorder wait after the forgery. Checks the session was not disturbed.
fn clean_feed_with_forgery(cfg: SessionConfig, forged: &[u8]) -> Rig {
    let mut r = Rig::new(cfg);
    let mut now = 0;
    for seq in (1..21).step_by(2) {
        r.feed(now, &packet(b"S1", seq, 2));
        r.timer(now);
        now += MS;
        if seq == 9 {
            r.feed(now, forged);
            for _ in 0..30 {
                now += MS;
                r.timer(now);
            }
        }
    }
    assert!(!r.t.is_finished(), "only the real end of session ends it");
    r.feed(now, &moldudp64::header(session(b"S1"), 21, END_OF_SESSION));
    r.timer(now + 100 * MS);
    r.t.finish(now + 200 * MS, &mut r.log);
    let mut expected = vec![Rec::New(b"S1".to_vec())];
    expected.extend(deliveries(1..21));
    expected.push(Rec::End(21));
    assert_eq!(
        r.log.take(),
        expected,
        "everything delivered, nothing lost, requested or stale; the end at 21"
    );
    assert!(r.t.is_finished());
    let s = r.t.stats();
    assert_eq!((s.suspect_packets, s.confirmed_jumps), (1, 0));
    assert_eq!((s.unrecoverable_gaps, s.requests, s.gaps), (0, 0, 0));
    r
}

const FORGED: u64 = 1 << 63;

#[test]
fn a_forged_message_packet_far_ahead_is_ignored_without_servers() {
    let r = clean_feed_with_forgery(SessionConfig::default(), &packet(b"S1", FORGED, 1));
    assert_eq!(
        r.t.last_suspect(),
        Some((FORGED + 1, moldudp64::PacketKind::Messages))
    );
}

#[test]
fn a_forged_heartbeat_far_ahead_does_not_stall_the_session() {
    let forged = moldudp64::header(session(b"S1"), FORGED, 0);
    let r = clean_feed_with_forgery(SessionConfig::default(), &forged);
    assert_eq!(r.t.stats().heartbeats, 1, "counted as received");
    assert_eq!(
        r.t.last_suspect(),
        Some((FORGED, moldudp64::PacketKind::Heartbeat))
    );
}

#[test]
fn a_forged_end_of_session_far_ahead_does_not_end_the_session() {
    let forged = moldudp64::header(session(b"S1"), FORGED, END_OF_SESSION);
    clean_feed_with_forgery(SessionConfig::default(), &forged);
}

#[test]
fn forged_packets_far_ahead_request_nothing_with_servers() {
    for forged in [
        packet(b"S1", FORGED, 3),
        moldudp64::header(session(b"S1"), FORGED, 0).to_vec(),
        moldudp64::header(session(b"S1"), FORGED, END_OF_SESSION).to_vec(),
    ] {
        // Checks that no request (hence none beyond the feed) went out.
        clean_feed_with_forgery(with_servers(1), &forged);
    }
}

#[test]
fn a_second_packet_far_ahead_confirms_a_real_jump() {
    let mut r = Rig::new(with_servers(1));
    r.feed(0, &packet(b"S1", 1, 3));
    r.log.take();
    let far = 5_000_001;
    r.feed(MS, &packet(b"S1", far, 2));
    assert_eq!(r.log.take(), vec![], "suspect: ignored");
    assert!(!r.t.is_stale());
    r.feed(2 * MS, &packet(b"S1", far + 2, 2));
    let log = r.log.take();
    assert_eq!(
        log[..4],
        [
            Rec::Gap(4, far),
            Rec::Stale,
            req(0, 4, 1000),
            req(0, 1004, 1000),
        ],
        "the suspect, kept aside, is held with the packet that confirmed it; the hole before them is requested as usual"
    );
    let s = r.t.stats();
    assert_eq!(
        (s.suspect_packets, s.confirmed_jumps, s.held_packets),
        (1, 1, 2)
    );
    assert_eq!(r.t.last_suspect(), None);
}

#[test]
fn joining_late_the_first_packet_sets_the_horizon() {
    // Backfill from 1 while the feed is far ahead (a late join, a capture
    // that begins mid-day): the first packet is all the feed has said, so
    // it is taken where it lies, its messages held, and what came before
    // it is the gap to request.
    let mut a = Arbiter::new(with_servers(1), 2, 100 * MS);
    let mut log = Log::default();
    let late = 50_000_000;
    let p = packet(b"S1", late, 2);
    let p = moldudp64::Packet::new_checked(&p[..]).unwrap();
    a.on_packet(0, 0, &p, &mut log);
    assert_eq!(
        log.take()[..4],
        [
            Rec::New(b"S1".to_vec()),
            Rec::Gap(1, late),
            Rec::Stale,
            req(0, 1, 1000),
        ]
    );
    assert_eq!(a.stats().suspect_packets, 0);
    assert_eq!(a.stats().held_packets, 1, "its messages wait for the gap");
    // Once the horizon is the feed's word, a lone packet far beyond it is
    // suspect again.
    let forged = packet(b"S1", late + (1 << 40), 1);
    a.on_packet(
        1,
        1,
        &moldudp64::Packet::new_checked(&forged[..]).unwrap(),
        &mut log,
    );
    assert_eq!(a.stats().suspect_packets, 1);
}

#[test]
fn forged_packets_on_a_single_line_keep_being_suspect() {
    // Forgeries far from each other never confirm one another.
    let mut r = Rig::new(SessionConfig::default());
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(MS, &packet(b"S1", 1 << 40, 1));
    r.feed(MS, &moldudp64::header(session(b"S1"), 1 << 50, 0));
    r.feed(
        MS,
        &moldudp64::header(session(b"S1"), 1 << 60, END_OF_SESSION),
    );
    r.feed(MS, &packet(b"S1", 2, 1));
    r.timer(100 * MS);
    assert_eq!(r.log.delivered(), vec![1, 2]);
    assert!(!r.t.has_gap() && !r.t.is_stale());
    assert_eq!(
        (r.t.stats().suspect_packets, r.t.stats().confirmed_jumps),
        (3, 0)
    );
}

#[test]
fn sequence_numbers_near_u64_max_do_not_panic() {
    // Several messages from u64::MAX - 1 would overflow: the parser refuses
    // such a packet, so the tracker never sees it.
    let mut buf = vec![0u8; 256];
    let mut b = PacketBuilder::new(&mut buf, session(b"S1"), u64::MAX - 1).unwrap();
    for _ in 0..3 {
        b.push(&[1; 8]).unwrap();
    }
    assert!(moldudp64::Packet::new_checked(b.finish()).is_err());
    // The packets that end right at u64::MAX, with the check on and off,
    // with and without servers, first in the session or after a clean start.
    for max_jump in [1_000_000, u64::MAX] {
        for servers in [0, 1] {
            for clean_start in [false, true] {
                let mut r = Rig::new(SessionConfig {
                    max_jump,
                    max_in_flight: 2,
                    ..with_servers(servers)
                });
                if clean_start {
                    r.feed(0, &packet(b"S1", 1, 3));
                }
                r.feed(MS, &packet(b"S1", u64::MAX - 3, 3));
                r.feed(MS, &packet(b"S1", u64::MAX - 1, 1));
                r.feed(MS, &moldudp64::header(session(b"S1"), u64::MAX, 0));
                for t in 2..40 {
                    r.timer(t * 50 * MS);
                }
                r.feed(
                    MS,
                    &moldudp64::header(session(b"S1"), u64::MAX, END_OF_SESSION),
                );
                r.t.finish(u64::MAX, &mut r.log);
                r.timer(u64::MAX);
                assert!(r.t.is_finished(), "{max_jump} {servers} {clean_start}");
                assert_eq!(r.t.next_seq(), u64::MAX);
                assert_eq!(
                    r.log.delivered().last(),
                    Some(&(u64::MAX - 1)),
                    "the last message delivered"
                );
            }
        }
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of packets, heartbeats and ends of session, with
        /// sequence numbers anywhere up to u64::MAX, from two sessions, and
        /// timers at any time: no panic, and delivery stays strictly ordered.
        #[test]
        fn no_input_breaks_the_tracker(
            steps in proptest::collection::vec((0u8..4, any::<u64>(), 0u64..4, any::<bool>()), 1..60),
            servers in 0usize..3,
        ) {
            let cfg = SessionConfig { servers, window_packets: 4, max_in_flight: 2, ..SessionConfig::default() };
            let mut t = SessionTracker::new(cfg);
            let mut last = None;
            let mut sink = |a: Action<'_>| match a {
                Action::Deliver { seq, .. } => {
                    assert!(last.is_none_or(|l| seq > l), "delivered in order");
                    last = Some(seq);
                }
                // A new session restarts the numbering.
                Action::Event(SessionEvent::NewSession { .. }) => last = None,
                _ => {}
            };
            for (kind, seq, count, other) in steps {
                let name: &[u8] = if other { b"S2" } else { b"S1" };
                let seq = seq.min(u64::MAX - 8);
                let bytes = match kind {
                    0 => moldudp64::header(session(name), seq, 0),
                    1 => moldudp64::header(session(name), seq, END_OF_SESSION),
                    _ => {
                        let mut buf = vec![0u8; 256];
                        let mut b = PacketBuilder::new(&mut buf, session(name), seq).unwrap();
                        for k in 0..count {
                            b.push(&k.to_be_bytes()).unwrap();
                        }
                        let v = b.finish().to_vec();
                        let p = moldudp64::Packet::new_checked(&v[..]).unwrap();
                        t.on_packet(seq, &p, &mut sink);
                        t.on_timer(seq.wrapping_mul(3), &mut sink);
                        continue;
                    }
                };
                let p = moldudp64::Packet::new_checked(&bytes[..]).unwrap();
                t.on_packet(seq, &p, &mut sink);
            }
            t.finish(u64::MAX, &mut sink);
        }
    }
}

#[test]
fn a_jump_further_than_the_feed_could_have_sent_is_suspect() {
    // 500,000 messages ahead is within max_jump (1M), but not 1 ms after the
    // last packet at 10M messages/s: the forged heartbeat stalls nothing.
    let mut r = Rig::new(SessionConfig::default());
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(MS, &heartbeat(b"S1", 500_000));
    assert_eq!(r.t.stats().suspect_packets, 1);
    assert!(!r.t.is_stale());
    r.feed(2 * MS, &packet(b"S1", 4, 3));
    assert_eq!(r.log.delivered(), (1..7).collect::<Vec<_>>());
    // After 100 ms of silence the same jump is plausible: a real outage.
    r.feed(102 * MS, &heartbeat(b"S1", 500_000));
    assert_eq!(r.t.stats().suspect_packets, 1);
    assert!(r.t.is_stale(), "the hole it reveals is real");
}

#[test]
fn a_request_answered_in_part_asks_only_for_the_rest_and_keeps_trying() {
    let cfg = SessionConfig {
        max_attempts: 2,
        ..with_servers(1)
    };
    let mut r = Rig::new(cfg);
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(0, &packet(b"S1", 20, 1));
    r.feed(0, &packet(b"S1", 21, 1));
    assert!(r.log.take().contains(&req(0, 2, 18)));
    // The server answers a little at a time, each part after a timeout:
    // every retry asks only for what is still missing, and the budget of
    // attempts counts retries without progress only.
    let (mut now, mut delivered) = (0, Vec::new());
    for from in (2..20).step_by(3) {
        now += 40 * MS;
        r.timer(now);
        delivered.extend(r.log.delivered());
        let asked: Vec<Rec> = r.log.take();
        assert!(
            asked.contains(&Rec::Request {
                server: 0,
                from,
                count: u16::try_from(20 - from).unwrap()
            }),
            "from {from}: {asked:?}"
        );
        r.feed(now, &packet(b"S1", from, 3));
    }
    delivered.extend(r.log.delivered());
    // (21, the last packet held, waits for something to vouch for it.)
    assert_eq!(delivered, (2..21).collect::<Vec<_>>());
    assert_eq!(r.t.stats().unrecoverable_messages, 0);
}

#[test]
fn requests_are_retried_after_the_round_trip_the_server_showed() {
    // The first timeout is request_timeout_ns (10 ms here); once answers
    // came back in 1 ms, a lost request is asked again after ~2.5 ms.
    let mut r = Rig::new(with_servers(1));
    let answer = |r: &mut Rig, now: u64, seq: u64| {
        let p = packet(b"S1", seq, 1);
        let p = moldudp64::Packet::new_checked(&p[..]).unwrap();
        r.t.on_retransmission(now, &p, &mut r.log);
    };
    r.feed(0, &packet(b"S1", 1, 1));
    r.feed(0, &packet(b"S1", 3, 1));
    answer(&mut r, MS, 2);
    r.feed(2 * MS, &packet(b"S1", 5, 1));
    answer(&mut r, 3 * MS, 4);
    assert_eq!(r.t.round_trip(), Some(MS));
    r.feed(10 * MS, &packet(b"S1", 7, 1));
    r.log.take();
    r.timer(12 * MS);
    assert_eq!(r.log.take(), vec![], "not before the learnt timeout");
    r.timer(13 * MS);
    assert_eq!(
        r.log.take(),
        vec![req(0, 6, 1)],
        "retried 3 ms after the request, not 10"
    );
}

/// One server, with the default reorder delay.
fn delaying() -> SessionConfig {
    SessionConfig {
        servers: 1,
        ..SessionConfig::default()
    }
}

#[test]
fn an_adjacent_swap_is_not_asked_for() {
    let mut r = Rig::new(delaying());
    r.feed(0, &packet(b"S1", 1, 3));
    // 7..10 comes before 4..7, 10 µs apart (a feed at 100k packets/s).
    r.feed(10_000, &packet(b"S1", 7, 3));
    r.timer(15_000);
    r.feed(20_000, &packet(b"S1", 4, 3));
    r.feed(30_000, &packet(b"S1", 10, 3));
    r.timer(40 * MS);
    assert_eq!(r.log.delivered(), (1..13).collect::<Vec<_>>());
    assert_eq!(r.t.stats().requests, 0, "the swap cost no request");
    assert_eq!(r.t.stats().gaps_filled, 1);
}

#[test]
fn a_loss_is_asked_for_as_soon_as_the_feed_moves_past_it() {
    let mut r = Rig::new(delaying());
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(10_000, &packet(b"S1", 7, 3));
    assert!(
        !r.log
            .take()
            .iter()
            .any(|e| matches!(e, Rec::Request { .. }))
    );
    // The next packet beyond: 4..7 was no swap, it is asked for at once,
    // long before the delay is over.
    r.feed(20_000, &packet(b"S1", 10, 3));
    assert!(r.log.take().contains(&req(0, 4, 3)));
}

#[test]
fn a_loss_with_nothing_after_it_is_asked_for_after_the_delay() {
    let mut r = Rig::new(delaying());
    r.feed(0, &packet(b"S1", 1, 3));
    r.feed(10_000, &heartbeat(b"S1", 7));
    r.timer(10_000 + 499_000);
    assert!(
        !r.log
            .take()
            .iter()
            .any(|e| matches!(e, Rec::Request { .. }))
    );
    r.timer(10_000 + 500_000);
    assert!(r.log.take().contains(&req(0, 4, 3)));
}

#[test]
fn the_window_is_sized_in_time_at_the_peak_rate() {
    // 250 ms at 100,000 packets/s.
    assert_eq!(SessionConfig::window_for(250 * MS, 100_000), 25_000);
    assert_eq!(SessionConfig::window_for(0, 100_000), 1);
    assert_eq!(SessionConfig::window_for(u64::MAX, u64::MAX), usize::MAX);
}
