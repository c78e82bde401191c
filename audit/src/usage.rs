//! The journal's disk usage and the shipping backlog, sampled on demand
//! (a look at the segments' sizes, nothing on the writer's path): for the
//! run summary, `/metrics`, `GetStats` and the `STATS` line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::journal::{JournalError, Position, segment_path, segments};
use crate::shipper::ShipGauges;
use crate::writer::WriterGauges;

/// One sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the journal's segments on disk.
    pub disk_bytes: u64,
    /// Messages journaled by this run.
    pub journaled: u64,
    /// Delivered messages this run could not journal (kept as gap ranges).
    pub unjournaled: u64,
    /// Whether the journal stopped on an error (a full disk).
    pub alarm: bool,
    /// With a store: the journal's bytes after the shipped position.
    pub unshipped_bytes: Option<u64>,
    /// With a store: journaled messages not acknowledged by it yet.
    pub unshipped_messages: Option<u64>,
    /// With a store: the acknowledged (shipped) position.
    pub shipped: Option<Position>,
}

/// What a sample is taken from.
#[derive(Debug, Clone)]
pub struct UsageSource {
    dir: PathBuf,
    writer: Arc<WriterGauges>,
    shipper: Option<Arc<ShipGauges>>,
    /// Messages unacknowledged when the shipper started.
    backlog: u64,
}

/// Bytes of the segments of `dir` (a segment reclaimed meanwhile counts
/// 0), and of those after `from`.
fn sizes(dir: &Path, from: Position) -> Result<(u64, u64), JournalError> {
    let (mut all, mut after) = (0, 0);
    for i in segments(dir)? {
        let len = match std::fs::metadata(segment_path(dir, i)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(JournalError::Io {
                    what: "reading the size of",
                    path: segment_path(dir, i),
                    source,
                });
            }
        };
        all += len;
        if i > from.segment {
            after += len;
        } else if i == from.segment {
            after += len.saturating_sub(from.offset);
        }
    }
    Ok((all, after))
}

impl UsageSource {
    /// Samples the journal in `dir`, written by `writer`, shipped by
    /// `shipper` (which found `backlog` messages unacknowledged at start).
    pub fn new(
        dir: &Path,
        writer: Arc<WriterGauges>,
        shipper: Option<(Arc<ShipGauges>, u64)>,
    ) -> Self {
        let (shipper, backlog) = shipper.map_or((None, 0), |(g, b)| (Some(g), b));
        Self {
            dir: dir.to_owned(),
            writer,
            shipper,
            backlog,
        }
    }

    /// A sample now.
    pub fn sample(&self) -> Result<Usage, JournalError> {
        let shipped = self.shipper.as_ref().map(|g| g.acked());
        let (disk_bytes, after) = sizes(&self.dir, shipped.unwrap_or_default())?;
        let journaled = self.writer.journaled.load(Ordering::Relaxed);
        Ok(Usage {
            disk_bytes,
            journaled,
            unjournaled: self.writer.unjournaled.load(Ordering::Relaxed),
            alarm: self.writer.alarm.load(Ordering::Acquire),
            unshipped_bytes: shipped.map(|_| after),
            unshipped_messages: self
                .shipper
                .as_ref()
                .map(|g| (self.backlog + journaled).saturating_sub(g.rows.load(Ordering::Relaxed))),
            shipped,
        })
    }
}

impl Usage {
    /// As named gauges: (name, help, value); the store's only with one.
    pub fn gauges(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = vec![
            (
                "audit_journal_disk_bytes",
                "bytes of the audit journal's segments on disk",
                self.disk_bytes,
            ),
            (
                "audit_journaled_messages",
                "messages journaled by the audit writer",
                self.journaled,
            ),
            (
                "audit_unjournaled_messages",
                "delivered messages the journal could not take (kept as gap ranges)",
                self.unjournaled,
            ),
            (
                "audit_journal_alarm",
                "1 when the journal stopped on an error (a full disk)",
                u64::from(self.alarm),
            ),
        ];
        if let (Some(b), Some(m), Some(p)) =
            (self.unshipped_bytes, self.unshipped_messages, self.shipped)
        {
            out.extend([
                (
                    "audit_unshipped_bytes",
                    "journal bytes after the position ClickHouse acknowledged",
                    b,
                ),
                (
                    "audit_unshipped_messages",
                    "journaled messages ClickHouse has not acknowledged yet",
                    m,
                ),
                (
                    "audit_shipped_segment",
                    "segment of the position ClickHouse acknowledged",
                    p.segment,
                ),
                ("audit_shipped_offset", "offset in that segment", p.offset),
            ]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, JournalConfig};
    use crate::record::Entry;
    use ticklane_protocols::moldudp64::Session;

    /// Disk bytes are the segments' sizes; unshipped bytes those after the
    /// acknowledged position, across a rotation.
    #[test]
    fn bytes_on_disk_and_after_the_shipped_position() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(
            dir.path(),
            JournalConfig {
                segment_bytes: 1000,
                ..JournalConfig::default()
            },
        )
        .unwrap();
        let session = Session::from_name(b"U").unwrap();
        for seq in 0..100 {
            j.append(&Entry::Message {
                session,
                seq,
                journaled_ns: 1,
                bytes: &[b'S'; 18],
            });
            j.commit().unwrap();
        }
        let segs = segments(dir.path()).unwrap();
        assert!(segs.len() > 2, "rotated: {segs:?}");
        let total = crate::journal::disk_bytes(dir.path()).unwrap();
        assert_eq!(total, 100 * 50);
        let writer = Arc::new(WriterGauges::default());
        writer.journaled.store(100, Ordering::Relaxed);
        let ship = Arc::new(ShipGauges::default());
        let at = Position {
            segment: segs[1],
            offset: 100,
        };
        ship.set_acked(at);
        ship.rows.store(30, Ordering::Relaxed);
        let u = UsageSource::new(dir.path(), writer.clone(), Some((ship, 0)))
            .sample()
            .unwrap();
        let first = std::fs::metadata(segment_path(dir.path(), segs[0]))
            .unwrap()
            .len();
        assert_eq!(u.disk_bytes, total);
        assert_eq!(u.unshipped_bytes, Some(total - first - 100));
        assert_eq!((u.unshipped_messages, u.shipped), (Some(70), Some(at)));
        let alone = UsageSource::new(dir.path(), writer, None).sample().unwrap();
        assert_eq!((alone.unshipped_bytes, alone.journaled), (None, 100));
        assert_eq!(alone.gauges().len(), 4);
        assert_eq!(u.gauges().len(), 8);
    }
}
