//! The poller end to end over packets in memory: one tracker per MoldUDP64
//! session (several sessions on one queue are sequenced apart), a bounded
//! session table that counts what it cannot take, and the stats snapshot
//! another thread reads.

use std::sync::atomic::AtomicBool;

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::BusConfig;
use ticklane_appliance::delivery::SeqRange;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Ending, Finished, Poller, PollerConfig, TimeBase};
use ticklane_appliance::session::SessionConfig;
use ticklane_appliance::source::memory::MemorySource;
use ticklane_appliance::stats::{MAX_SESSIONS, Snapshot};
use ticklane_protocols::moldudp64::{self, END_OF_SESSION, PacketBuilder, Session};

const MS: u64 = 1_000_000;

fn session(name: &[u8]) -> Session {
    Session::from_name(name).unwrap()
}

/// A packet of one system event ('S', 12 bytes) numbered `seq`.
fn packet(name: &[u8], seq: u64) -> Vec<u8> {
    let mut event = [0u8; 12];
    event[0] = b'S';
    event[11] = b'O';
    let mut buf = [0u8; 64];
    let mut b = PacketBuilder::new(&mut buf, session(name), seq).unwrap();
    b.push(&event).unwrap();
    b.finish().to_vec()
}

fn end_of_session(name: &[u8], next: u64) -> Vec<u8> {
    moldudp64::header(session(name), next, END_OF_SESSION).to_vec()
}

fn run(source: MemorySource) -> (Finished<MemorySource>, Snapshot) {
    let (pipeline, _subscribers) = Pipeline::with_bus(
        Books::new(1 << 10),
        Vwap::default(),
        BusConfig {
            events: 1 << 10,
            audit: 1 << 10,
        },
    );
    let cfg = PollerConfig {
        session: SessionConfig {
            window_packets: 64,
            reorder_wait_ns: MS,
            ..SessionConfig::default()
        },
        time: TimeBase::Capture,
        ..PollerConfig::default()
    };
    let stop = AtomicBool::new(false);
    let (mut poller, mut reader) = Poller::new(source, pipeline, None, cfg, &stop).unwrap();
    let ending = poller.run().unwrap();
    assert_eq!(ending, Ending::EndOfInput);
    let finished = poller.finish(ending);
    (finished, reader.read())
}

#[test]
fn sessions_on_one_queue_are_sequenced_apart() {
    // Two sessions interleaved packet by packet; B loses its fifth message.
    // One tracker for both would restart at every switch.
    let mut source = MemorySource::new(4);
    let mut t = 0;
    for seq in 1..=10 {
        for name in [&b"DAYA"[..], b"DAYB"] {
            if name == b"DAYB" && seq == 5 {
                continue;
            }
            t += MS / 10;
            source.push_at(0, &packet(name, seq), Some(t));
        }
    }
    for name in [&b"DAYA"[..], b"DAYB"] {
        t += 10 * MS;
        source.push_at(0, &end_of_session(name, 11), Some(t));
    }
    let (finished, read) = run(source);
    let snap = finished.snapshot;
    assert_eq!(read, snap, "the reader sees the last snapshot published");
    let sessions = snap.sessions();
    assert_eq!(sessions.len(), 2);
    let by_name = |name: &[u8]| {
        sessions
            .iter()
            .find(|s| s.session == session(name))
            .copied()
            .unwrap()
    };
    let (a, b) = (by_name(b"DAYA"), by_name(b"DAYB"));
    assert_eq!(
        (
            a.stats.delivered,
            a.stats.unrecoverable_messages,
            a.stats.session_changes
        ),
        (10, 0, 0)
    );
    assert_eq!(
        (
            b.stats.delivered,
            b.stats.unrecoverable_messages,
            b.stats.session_changes
        ),
        (9, 1, 0)
    );
    assert!(a.ended && b.ended && !a.stale && !b.stale);
    assert_eq!(
        finished.lost.kept(),
        [SeqRange {
            session: session(b"DAYB"),
            from: 5,
            end: 6
        }]
    );
    assert_eq!(snap.delivered, 19);
    assert_eq!(snap.foreign_session_packets, 0);
}

#[test]
fn a_full_session_table_counts_what_it_drops_and_frees_ended_slots() {
    let names: Vec<Vec<u8>> = (0..=MAX_SESSIONS)
        .map(|i| format!("S{i}").into_bytes())
        .collect();
    let mut source = MemorySource::new(1);
    let mut t = 0;
    let mut at = |source: &mut MemorySource, bytes: &[u8]| {
        t += MS / 10;
        source.push_at(0, bytes, Some(t));
    };
    // MAX_SESSIONS live sessions fill the table: one more is dropped.
    for name in &names {
        at(&mut source, &packet(name, 1));
    }
    // The first one ends: its slot takes the next newcomer.
    at(&mut source, &end_of_session(&names[0], 2));
    at(&mut source, &packet(&names[MAX_SESSIONS], 1));
    let (finished, _) = run(source);
    let snap = finished.snapshot;
    assert_eq!(snap.foreign_session_packets, 1, "one packet found no slot");
    assert_eq!(snap.sessions().len(), MAX_SESSIONS);
    assert!(
        snap.sessions()
            .iter()
            .any(|s| s.session == session(&names[MAX_SESSIONS])),
        "the ended session's slot was reused"
    );
    assert_eq!(snap.delivered, MAX_SESSIONS as u64 + 1);
}
