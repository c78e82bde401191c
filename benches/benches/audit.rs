//! The audit journal's append rate on one core and its bytes per message,
//! over the generated realistic message mix, against a baseline measured in
//! the same run: the same message bytes written to a file with no framing
//! and no CRC (what an append-only file costs at the least).
//!
//! Target: ≥ 5 M messages/s journaled on one core.

use std::io::Write;

use ticklane_appliance::bus::AuditRecord;
use ticklane_audit::journal::{FsyncPolicy, Journal, JournalConfig, disk_bytes};
use ticklane_audit::record::Entry;
use ticklane_benches::{MoldStream, interleaved_best};
use ticklane_protocols::moldudp64::Packet;

const MESSAGES: u64 = 1_000_000;
/// Messages per batch: what the audit writer drains per millisecond at 4 M messages/s.
const BATCH: usize = 4096;

/// The feed's messages as the audit ring carries them.
fn records(stream: &MoldStream) -> Vec<AuditRecord> {
    let mut out = Vec::with_capacity(stream.messages as usize);
    for p in stream.iter() {
        let Ok(packet) = Packet::new_checked(p) else {
            continue;
        };
        let session = packet.session();
        for (seq, m) in packet.messages() {
            let mut r = AuditRecord {
                session,
                seq,
                len: m.len() as u8,
                bytes: [0; 64],
            };
            r.bytes[..m.len()].copy_from_slice(m);
            out.push(r);
        }
    }
    out
}

/// Journals every record in batches; returns the bytes on disk.
fn journal(records: &[AuditRecord], fsync: FsyncPolicy) -> u64 {
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");
    let (mut j, _) = Journal::open(
        dir.path(),
        JournalConfig {
            segment_bytes: 64 << 20,
            fsync,
        },
    )
    .expect("opening the journal");
    for batch in records.chunks(BATCH) {
        for r in batch {
            j.append(&Entry::Message {
                session: r.session,
                seq: r.seq,
                journaled_ns: 1,
                bytes: r.message(),
            });
        }
        j.commit().expect("writing the journal");
    }
    j.sync().expect("fsync");
    disk_bytes(dir.path()).expect("journal size")
}

/// The baseline: the bare message bytes, same batches, same file system.
fn raw(records: &[AuditRecord]) -> u64 {
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");
    let mut f = std::fs::File::create(dir.path().join("raw")).expect("creating");
    let mut buf = Vec::with_capacity(BATCH * 64);
    for batch in records.chunks(BATCH) {
        buf.clear();
        for r in batch {
            buf.extend_from_slice(r.message());
        }
        f.write_all(&buf).expect("writing");
    }
    f.sync_data().expect("fsync");
    f.metadata().map(|m| m.len()).unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let stream = MoldStream::generate(MESSAGES, 500, 1400);
    let recs = records(&stream);
    assert_eq!(recs.len() as u64, stream.messages);
    let mut off = || journal(&recs, FsyncPolicy::Off);
    let mut batch = || journal(&recs, FsyncPolicy::Batch);
    let mut base = || raw(&recs);
    let results = interleaved_best(
        5,
        &mut [
            ("journal, fsync off", &mut off),
            ("journal, fsync/batch", &mut batch),
            ("raw bytes, no CRC", &mut base),
        ],
    );
    let msgs = recs.len() as f64;
    println!(
        "\naudit journal append, {} messages in batches of {BATCH}, best of 5 interleaved runs (final fsync included):",
        recs.len()
    );
    for (name, d, bytes) in &results {
        let s = d.as_secs_f64();
        println!(
            "  {name:<22} {:>8.2} ms  {:>6.1} ns/msg  {:>6.2} M msg/s  {:>5.1} bytes/msg",
            s * 1e3,
            s / msgs * 1e9,
            msgs / s / 1e6,
            *bytes as f64 / msgs
        );
    }
    let (j, b) = (results[0].1.as_secs_f64(), results[2].1.as_secs_f64());
    println!(
        "ratio (same run): journal / raw bytes: {:.2}x the time; target >= 5 M msg/s on one core: {}",
        j / b,
        if msgs / j >= 5e6 { "met" } else { "NOT met" }
    );
}
