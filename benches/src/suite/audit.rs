//! The audit journal's append rate on one core and its bytes per message,
//! over the generated message mix, against the same message bytes written
//! to a file with no framing and no CRC (what an append-only file costs at
//! the least). Target: ≥ 5 M messages/s journaled on one core.

use std::io::Write;
use std::path::Path;

use ticklane_appliance::bus::AuditRecord;
use ticklane_audit::journal::{FsyncPolicy, Journal, JournalConfig, disk_bytes};
use ticklane_audit::record::Entry;
use ticklane_protocols::moldudp64::Packet;

use super::{Check, Scale, Suite, SuiteError, Target, Timing};
use crate::MoldStream;

/// Messages per batch: what the audit writer drains per millisecond at 4 M
/// messages/s.
pub const BATCH: usize = 4096;

/// The feed's messages as the audit ring carries them.
pub fn records(stream: &MoldStream) -> Vec<AuditRecord> {
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
            let n = m.len().min(r.bytes.len());
            r.bytes[..n].copy_from_slice(&m[..n]);
            out.push(r);
        }
    }
    out
}

fn io(what: &str, dir: &Path) -> impl FnOnce(std::io::Error) -> SuiteError {
    let what = format!("{what} in {}", dir.display());
    move |source| SuiteError::Io { what, source }
}

/// Journals every record in batches into a new directory under `scratch`;
/// returns the bytes on disk.
pub fn journal(
    records: &[AuditRecord],
    fsync: FsyncPolicy,
    scratch: &Path,
) -> Result<u64, SuiteError> {
    let dir = tempfile::tempdir_in(scratch).map_err(io("making a directory", scratch))?;
    let (mut j, _) = Journal::open(
        dir.path(),
        JournalConfig {
            segment_bytes: 64 << 20,
            fsync,
        },
    )?;
    for batch in records.chunks(BATCH) {
        for r in batch {
            j.append(&Entry::Message {
                session: r.session,
                seq: r.seq,
                journaled_ns: 1,
                bytes: r.message(),
            });
        }
        j.commit()?;
    }
    j.sync()?;
    Ok(disk_bytes(dir.path())?)
}

/// The baseline: the bare message bytes, same batches, same file system.
pub fn raw(records: &[AuditRecord], scratch: &Path) -> Result<u64, SuiteError> {
    let dir = tempfile::tempdir_in(scratch).map_err(io("making a directory", scratch))?;
    let path = dir.path().join("raw");
    let mut f = std::fs::File::create(&path).map_err(io("creating raw", scratch))?;
    let mut buf = Vec::with_capacity(BATCH * 64);
    for batch in records.chunks(BATCH) {
        buf.clear();
        for r in batch {
            buf.extend_from_slice(r.message());
        }
        f.write_all(&buf).map_err(io("writing raw", scratch))?;
    }
    f.sync_data().map_err(io("syncing raw", scratch))?;
    Ok(f.metadata().map(|m| m.len()).unwrap_or(0))
}

/// The suite: `scale.messages` messages journaled under `scratch`, best
/// of `scale.rounds` interleaved runs.
pub fn run(scale: Scale, scratch: &Path) -> Result<Suite, SuiteError> {
    let stream = MoldStream::generate(scale.messages, 500, 1400);
    let recs = records(&stream);
    let msgs = recs.len() as u64;
    type Run<'a> = Box<dyn Fn() -> Result<u64, SuiteError> + 'a>;
    let contenders: [(&str, Run<'_>); 3] = [
        (
            "journal, fsync off",
            Box::new(|| journal(&recs, FsyncPolicy::Off, scratch)),
        ),
        (
            "journal, fsync per batch",
            Box::new(|| journal(&recs, FsyncPolicy::Batch, scratch)),
        ),
        ("raw bytes, no CRC", Box::new(|| raw(&recs, scratch))),
    ];
    let mut best = [f64::INFINITY; 3];
    let mut bytes = [0u64; 3];
    for _ in 0..scale.rounds.max(1) {
        for (i, (_, run)) in contenders.iter().enumerate() {
            let t = std::time::Instant::now();
            bytes[i] = run()?;
            best[i] = best[i].min(t.elapsed().as_secs_f64());
        }
    }
    let timings: Vec<Timing> = contenders
        .iter()
        .zip(best)
        .map(|((name, _), secs)| Timing {
            name: (*name).to_owned(),
            seconds: secs,
            messages: msgs,
            baseline: name
                .starts_with("journal")
                .then(|| "raw bytes, no CRC".to_owned()),
        })
        .collect();
    let per_msg = |i: usize| bytes[i] as f64 / msgs.max(1) as f64;
    Ok(Suite {
        name: "audit",
        title: format!(
            "audit journal append, {msgs} messages in batches of {BATCH}, best of {} interleaved \
             runs (final fsync included), in {}",
            scale.rounds.max(1),
            scratch.display()
        ),
        checks: vec![
            Check::new(
                "journal (fsync off) / raw bytes (time)",
                best[0] / best[2],
                "x",
                None,
            ),
            Check::new(
                "journaled on one core, fsync off",
                timings[0].messages_per_second() / 1e6,
                "M msg/s",
                Some(Target::AtLeast(5.0)),
            ),
            Check::new("journal bytes per message", per_msg(0), "bytes", None),
            Check::new("raw bytes per message", per_msg(2), "bytes", None),
        ],
        timings,
        distributions: Vec::new(),
        notes: Vec::new(),
    })
}
