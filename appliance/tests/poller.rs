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
    run_with(source, 1, None)
}

/// Runs the poller over `source` with `lines` lines and, if given, the
/// session expected.
fn run_with(
    source: MemorySource,
    lines: usize,
    expected: Option<&[u8]>,
) -> (Finished<MemorySource>, Snapshot) {
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
            session: expected.map(session),
            ..SessionConfig::default()
        },
        lines,
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
    // MAX_SESSIONS sessions, three packets each (confirmed), fill the table:
    // the three packets of one more are dropped.
    for name in &names {
        for seq in 1..=3 {
            at(&mut source, &packet(name, seq));
        }
    }
    // The first one ends: the next newcomer takes its slot at once.
    at(&mut source, &end_of_session(&names[0], 4));
    at(&mut source, &packet(&names[MAX_SESSIONS], 1));
    let (finished, _) = run(source);
    let snap = finished.snapshot;
    assert_eq!(snap.foreign_session_packets, 3, "one session found no slot");
    assert_eq!(snap.sessions().len(), MAX_SESSIONS);
    assert!(
        snap.sessions()
            .iter()
            .any(|s| s.session == session(&names[MAX_SESSIONS])),
        "the ended session's slot was reused"
    );
    assert_eq!(snap.delivered, 3 * MAX_SESSIONS as u64 + 1);
}

/// The day's feed, `DAY` 1..=`n`, one message per packet, 0.1 ms apart,
/// with `stray` (a packet of another session) after the fifth.
fn day_with_a_stray(n: u64, stray: &[u8]) -> MemorySource {
    let mut source = MemorySource::new(1);
    for seq in 1..=n {
        source.push_at(0, &packet(b"DAY", seq), Some(seq * MS / 10));
        if seq == 5 {
            source.push_at(0, stray, Some(seq * MS / 10));
        }
    }
    source.push_at(0, &end_of_session(b"DAY", n + 1), Some((n + 1) * MS / 10));
    source
}

#[test]
fn a_stray_packet_of_another_session_changes_nothing() {
    for stray in [
        packet(b"FORGED", 1),
        packet(b"FORGED", 6),
        end_of_session(b"FORGED", 1),
    ] {
        let (finished, _) = run(day_with_a_stray(20, &stray));
        let snap = finished.snapshot;
        assert_eq!(snap.sessions().len(), 1, "no slot for the stray session");
        let day = snap.sessions()[0];
        assert_eq!(day.session, session(b"DAY"));
        assert_eq!(
            (
                day.stats.delivered,
                day.stats.unrecoverable_messages,
                day.stats.session_changes
            ),
            (20, 0, 0)
        );
        assert!(day.ended);
        assert_eq!(snap.delivered, 20, "the stray message reached no book");
        assert_eq!(snap.foreign_session_packets, 1);
    }
}

#[test]
fn a_new_session_waits_for_confirmation_and_loses_nothing_to_it() {
    // Alone, a short feed is taken at the end of input.
    let mut source = MemorySource::new(1);
    source.push_at(0, &packet(b"DAY", 1), Some(MS));
    source.push_at(0, &packet(b"DAY", 2), Some(2 * MS));
    let (finished, _) = run(source);
    assert_eq!(finished.snapshot.delivered, 2);
    assert_eq!(finished.snapshot.foreign_session_packets, 0);

    // The configured session is taken at its first packet: a forgery before
    // it does not take its place.
    let mut source = MemorySource::new(1);
    source.push_at(0, &packet(b"FORGED", 1), Some(MS));
    for seq in 1..=4 {
        source.push_at(0, &packet(b"DAY", seq), Some((seq + 1) * MS));
    }
    source.push_at(0, &end_of_session(b"DAY", 5), Some(9 * MS));
    let (finished, _) = run_with(source, 1, Some(b"DAY"));
    let snap = finished.snapshot;
    assert_eq!(snap.sessions().len(), 1);
    assert_eq!(snap.sessions()[0].session, session(b"DAY"));
    assert_eq!(snap.delivered, 4);
    assert_eq!(snap.foreign_session_packets, 1);

    // Seen on both lines, a session is confirmed at its second packet.
    let mut source = MemorySource::new(1);
    source.push_at(0, &packet(b"DAY", 1), Some(MS));
    source.push_at(1, &packet(b"DAY", 1), Some(2 * MS));
    source.push_at(0, &packet(b"FORGED", 1), Some(3 * MS));
    source.push_at(0, &packet(b"DAY", 2), Some(4 * MS));
    let (finished, _) = run_with(source, 2, None);
    let snap = finished.snapshot;
    assert_eq!(snap.sessions().len(), 1);
    assert_eq!(snap.delivered, 2);
    assert_eq!(snap.foreign_session_packets, 1);
}
