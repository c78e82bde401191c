//! The audit writer: a thread of its own (never a poller core) that drains
//! the poller's audit ring into the journal, one batch per wake-up.
//!
//! Nothing is dropped silently: when the journal cannot be written (a full
//! disk, an I/O error) the writer raises its alarm, stops writing, keeps
//! draining the ring so that the poller sees no difference, and keeps the
//! exact ranges it could not journal; every [`RETRY`] it tries again with
//! what it drains, and once a batch is written the journal resumes (the
//! alarm drops) and the stopped window is filled at the stop like the
//! ring's misses. The ranges the ring itself missed
//! (handed over by the poller at the end) are asked for again from the
//! re-request servers ([`crate::fill`]), on this thread, and journaled; what
//! cannot be had is journaled as a gap with its exact bounds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtrb::{Consumer, RingBuffer};
use ticklane_appliance::bus::{AuditRecord, Subscribers};
use ticklane_appliance::delivery::SeqRange;
use ticklane_protocols::moldudp64::Session;

use crate::fill::{FillConfig, FillReport, fill};
use crate::journal::{Journal, JournalError};
use crate::record::Entry;

/// Takes the audit ring out of the bus's consumers (the other topics stay
/// with whoever drains them), leaving an empty one-slot ring in its place.
pub fn take_audit(subscribers: &mut Subscribers) -> Consumer<AuditRecord> {
    let (_, empty) = RingBuffer::new(1);
    std::mem::replace(&mut subscribers.audit, empty)
}

/// Live counters other threads read (metrics, the stats line).
#[derive(Debug, Default)]
pub struct WriterGauges {
    /// Messages journaled.
    pub journaled: AtomicU64,
    /// Bytes written to the journal.
    pub bytes: AtomicU64,
    /// Messages drained that could not be journaled.
    pub unjournaled: AtomicU64,
    /// Raised while the journal is stopped on an error (a full disk);
    /// dropped when it resumes.
    pub alarm: AtomicBool,
    /// Times the journal resumed after a stop.
    pub resumed: AtomicU64,
}

/// How long a stopped journal waits before it tries to write again.
pub const RETRY: Duration = Duration::from_secs(1);

/// What the writer did, at the end.
#[derive(Debug)]
pub struct WriterReport {
    /// Messages journaled.
    pub journaled: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Delivered messages that are not in the journal, exact ranges: the
    /// ring's misses that could not be filled and what the writer could
    /// not write.
    pub gaps: Vec<SeqRange>,
    /// How the ring's misses were filled from the re-request servers.
    pub fill: FillReport,
    /// Whether those gaps are journaled as gap records too (false when the
    /// journal had failed).
    pub gaps_journaled: bool,
    /// The error that stopped the journal, if it is still stopped.
    pub error: Option<JournalError>,
    /// The last error that stopped the journal, though it resumed since.
    pub recovered: Option<JournalError>,
}

/// The writer thread.
#[derive(Debug)]
pub struct AuditWriter {
    stop: Arc<AtomicBool>,
    /// The ring's misses, handed over at the stop.
    missed: Arc<Mutex<Vec<SeqRange>>>,
    gauges: Arc<WriterGauges>,
    handle: JoinHandle<(State, FillReport)>,
}

#[derive(Debug)]
struct State {
    journal: Journal,
    error: Option<JournalError>,
    /// When the journal last failed (it tries again [`RETRY`] later).
    failed_at: Instant,
    /// The error it resumed from.
    recovered: Option<JournalError>,
    /// Ranges drained but not journaled.
    unjournaled: Vec<SeqRange>,
    /// Ranges of the batch being built (moved to `unjournaled` if it fails).
    batch: Vec<SeqRange>,
}

impl State {
    /// Asks the servers for `missed` and journals what comes back (one
    /// commit); returns what was done, with what is still missing.
    fn fill(&mut self, missed: &[SeqRange], cfg: &FillConfig, gauges: &WriterGauges) -> FillReport {
        if self.error.is_some() || missed.is_empty() {
            return FillReport {
                unfilled: missed.to_vec(),
                ..FillReport::default()
            };
        }
        let ns = now_ns();
        let journal = &mut self.journal;
        let mut report = fill(missed, cfg, |session, seq, bytes| {
            journal.append(&Entry::Message {
                session,
                seq,
                journaled_ns: ns,
                bytes,
            });
        });
        let before = self.journal.bytes_written();
        match self.journal.commit() {
            Ok(()) => {
                gauges.journaled.fetch_add(report.filled, Ordering::Relaxed);
                gauges
                    .bytes
                    .fetch_add(self.journal.bytes_written() - before, Ordering::Relaxed);
            }
            Err(e) => {
                // Nothing of the batch is in the journal: all still missing.
                self.journal.discard();
                gauges.alarm.store(true, Ordering::Release);
                self.error = Some(e);
                report.filled = 0;
                report.unfilled = missed.to_vec();
            }
        }
        report
    }
}

fn extend(ranges: &mut Vec<SeqRange>, session: Session, from: u64, end: u64) {
    if let Some(last) = ranges.last_mut()
        && last.session == session
        && last.end == from
    {
        last.end = end;
    } else {
        ranges.push(SeqRange { session, from, end });
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl State {
    /// Journals what the ring holds now; true when it held anything.
    fn round(&mut self, ring: &mut Consumer<AuditRecord>, gauges: &WriterGauges) -> bool {
        let ns = now_ns();
        let mut got = 0u64;
        let journaling = self.error.is_none() || self.failed_at.elapsed() >= RETRY;
        while let Ok(r) = ring.pop() {
            got += 1;
            if !journaling {
                extend(&mut self.unjournaled, r.session, r.seq, r.seq + 1);
                gauges.unjournaled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            extend(&mut self.batch, r.session, r.seq, r.seq + 1);
            self.journal.append(&Entry::Message {
                session: r.session,
                seq: r.seq,
                journaled_ns: ns,
                bytes: r.message(),
            });
        }
        if journaling {
            self.commit(gauges);
        }
        got > 0
    }

    fn commit(&mut self, gauges: &WriterGauges) {
        if self.batch.is_empty() && self.journal.pending_bytes() == 0 {
            return;
        }
        let before = self.journal.bytes_written();
        match self.journal.commit() {
            Ok(()) => {
                let n: u64 = self.batch.iter().map(|r| r.end - r.from).sum();
                gauges.journaled.fetch_add(n, Ordering::Relaxed);
                gauges
                    .bytes
                    .fetch_add(self.journal.bytes_written() - before, Ordering::Relaxed);
                self.batch.clear();
                if let Some(e) = self.error.take() {
                    self.recovered = Some(e);
                    gauges.resumed.fetch_add(1, Ordering::Relaxed);
                    gauges.alarm.store(false, Ordering::Release);
                }
            }
            Err(e) => {
                self.journal.discard();
                let n: u64 = self.batch.iter().map(|r| r.end - r.from).sum();
                gauges.unjournaled.fetch_add(n, Ordering::Relaxed);
                for r in self.batch.drain(..) {
                    extend(&mut self.unjournaled, r.session, r.from, r.end);
                }
                gauges.alarm.store(true, Ordering::Release);
                self.failed_at = Instant::now();
                self.error = Some(e);
            }
        }
    }
}

impl AuditWriter {
    /// Starts the thread on `ring`, writing to `journal`; at the stop, the
    /// ring's misses are filled as `fill` says.
    pub fn spawn(
        mut ring: Consumer<AuditRecord>,
        journal: Journal,
        fill: FillConfig,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let gauges = Arc::new(WriterGauges::default());
        let missed = Arc::new(Mutex::new(Vec::new()));
        let (flag, g, m) = (stop.clone(), gauges.clone(), missed.clone());
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut state = State {
                    journal,
                    error: None,
                    failed_at: Instant::now(),
                    recovered: None,
                    unjournaled: Vec::new(),
                    batch: Vec::with_capacity(16),
                };
                loop {
                    let stopping = flag.load(Ordering::Acquire);
                    let got = state.round(&mut ring, &g);
                    if stopping && !got {
                        let mut missed =
                            std::mem::take(&mut *m.lock().unwrap_or_else(PoisonError::into_inner));
                        // The windows the journal was stopped in, once it resumed.
                        if state.error.is_none() {
                            missed.append(&mut state.unjournaled);
                        }
                        let filled = state.fill(&missed, &fill, &g);
                        return (state, filled);
                    }
                    // One batch per millisecond: the ring holds far more
                    // than a millisecond of messages, and a batch per wake-up
                    // is one write (and at most one fsync).
                    std::thread::sleep(Duration::from_millis(1));
                }
            })?;
        Ok(Self {
            stop,
            missed,
            gauges,
            handle,
        })
    }

    /// Its live counters.
    pub fn gauges(&self) -> Arc<WriterGauges> {
        self.gauges.clone()
    }

    /// Stops after draining the ring, fills `missed` (the ranges the ring
    /// could not take, from the poller) from the re-request servers on its
    /// thread, journals what is still missing as gaps, syncs, and reports.
    pub fn finish(self, missed: &[SeqRange]) -> WriterReport {
        self.missed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(missed);
        self.stop.store(true, Ordering::Release);
        let Ok((mut state, fill)) = self.handle.join() else {
            return WriterReport {
                journaled: self.gauges.journaled.load(Ordering::Relaxed),
                bytes: self.gauges.bytes.load(Ordering::Relaxed),
                gaps: missed.to_vec(),
                fill: FillReport::default(),
                gaps_journaled: false,
                error: None,
                recovered: None,
            };
        };
        let mut gaps = fill.unfilled.clone();
        gaps.append(&mut state.unjournaled);
        let mut gaps_journaled = false;
        if state.error.is_none() {
            let ns = now_ns();
            for g in &gaps {
                state.journal.append(&Entry::Gap {
                    session: g.session,
                    from: g.from,
                    end: g.end,
                    journaled_ns: ns,
                });
            }
            match state.journal.commit().and_then(|()| state.journal.sync()) {
                Ok(()) => gaps_journaled = true,
                Err(e) => state.error = Some(e),
            }
        }
        WriterReport {
            journaled: self.gauges.journaled.load(Ordering::Relaxed),
            bytes: state.journal.bytes_written(),
            gaps,
            fill,
            gaps_journaled,
            error: state.error,
            recovered: state.recovered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{JournalConfig, Position, Reader};
    use ticklane_appliance::bus::{BusConfig, bus};

    fn entries(dir: &std::path::Path) -> (Vec<u64>, Vec<(u64, u64)>) {
        let mut r = Reader::open(dir, Position::default());
        let (mut msgs, mut gaps) = (Vec::new(), Vec::new());
        while let Some((e, _)) = r.next(None).unwrap() {
            match e {
                Entry::Message { seq, bytes, .. } => {
                    assert_eq!(bytes, seq.to_be_bytes());
                    msgs.push(seq);
                }
                Entry::Gap { from, end, .. } => gaps.push((from, end)),
            }
        }
        (msgs, gaps)
    }

    #[test]
    fn every_record_published_on_another_thread_is_journaled_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut publisher, mut subs) = bus(BusConfig {
            events: 16,
            audit: 1 << 12,
        });
        let (journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        let writer =
            AuditWriter::spawn(take_audit(&mut subs), journal, FillConfig::default()).unwrap();
        let session = Session::from_name(b"W").unwrap();
        let mut missed = ticklane_appliance::delivery::RangeLog::with_capacity(100_000);
        for seq in 1..=100_000u64 {
            if !publisher.audit(session, seq, &seq.to_be_bytes()) {
                missed.record(session, seq, seq + 1);
            }
        }
        let report = writer.finish(missed.kept());
        let (msgs, gaps) = entries(dir.path());
        assert_eq!(report.journaled, msgs.len() as u64);
        assert!(report.gaps_journaled);
        // Every sequence number is either journaled or inside a gap, once.
        let mut all: Vec<u64> = msgs.clone();
        for (from, end) in &gaps {
            all.extend(*from..*end);
        }
        all.sort_unstable();
        assert!(!missed.is_cut());
        assert!(
            all.iter().copied().eq(1..=100_000),
            "{} entries cover 1..=100000",
            all.len()
        );
        assert!(msgs.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(
            gaps.iter().map(|(f, e)| e - f).sum::<u64>(),
            missed.messages(),
            "the ring's misses, exactly"
        );
    }

    /// A bus whose audit ring (64k records) a writer drains into a journal
    /// on `disk`.
    fn writer_on(disk: &Tmpfs) -> (ticklane_appliance::bus::Publisher, AuditWriter) {
        let (publisher, mut subs) = bus(BusConfig {
            events: 16,
            audit: 1 << 16,
        });
        let (journal, _) = Journal::open(disk.0.path(), JournalConfig::default()).unwrap();
        let writer =
            AuditWriter::spawn(take_audit(&mut subs), journal, FillConfig::default()).unwrap();
        (publisher, writer)
    }

    /// A real full disk: a 64 KiB tmpfs (needs root, as the whole suite does).
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "ticklane-audit-test"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mounting a tmpfs failed: run the tests as root");
            Self(dir)
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn a_full_disk_raises_the_alarm_and_keeps_exact_ranges_of_what_was_not_journaled() {
        let disk = Tmpfs::mount();
        let (mut publisher, writer) = writer_on(&disk);
        let gauges = writer.gauges();
        let session = Session::from_name(b"W").unwrap();
        // In small bursts, so that the writer's batches are small and the
        // disk fills in the middle of the feed.
        for seq in 10..20_010u64 {
            assert!(publisher.audit(session, seq, &seq.to_be_bytes()));
            if seq % 500 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        let report = writer.finish(&[]);
        assert!(gauges.alarm.load(Ordering::Acquire), "the alarm is raised");
        assert!(
            matches!(&report.error, Some(JournalError::Io { source, .. }) if source.raw_os_error() == Some(libc_enospc())),
            "{:?}",
            report.error
        );
        assert!(!report.gaps_journaled);
        let (msgs, gaps) = entries(disk.0.path());
        assert!(gaps.is_empty());
        assert_eq!(report.journaled, msgs.len() as u64);
        assert!(report.journaled > 0 && report.journaled < 20_000);
        assert!(msgs.iter().copied().eq(10..10 + report.journaled));
        assert_eq!(
            report.gaps,
            vec![SeqRange {
                session,
                from: 10 + report.journaled,
                end: 20_010
            }],
            "one exact range, nothing lost silently"
        );
    }

    /// The disk fills, then space is freed: the journal resumes by itself
    /// within [`RETRY`], the alarm drops, and the window it missed is one
    /// exact gap (with no re-request server to fill it from).
    #[test]
    fn a_journal_stopped_by_a_full_disk_resumes_when_space_is_freed() {
        let disk = Tmpfs::mount();
        let ballast = disk.0.path().join("ballast");
        std::fs::write(&ballast, vec![0u8; 32 << 10]).unwrap();
        let (mut publisher, writer) = writer_on(&disk);
        let gauges = writer.gauges();
        let session = Session::from_name(b"W").unwrap();
        let mut publish = |seqs: std::ops::Range<u64>| {
            for seq in seqs {
                assert!(publisher.audit(session, seq, &seq.to_be_bytes()));
                if seq % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
        };
        publish(1..3_001);
        std::thread::sleep(Duration::from_millis(20));
        assert!(gauges.alarm.load(Ordering::Acquire), "the disk filled");
        std::fs::remove_file(&ballast).unwrap();
        std::thread::sleep(RETRY + Duration::from_millis(100));
        publish(3_001..3_301);
        let report = writer.finish(&[]);
        assert!(report.error.is_none(), "{:?}", report.error);
        assert!(
            matches!(&report.recovered, Some(JournalError::Io { source, .. }) if source.raw_os_error() == Some(libc_enospc())),
            "{:?}",
            report.recovered
        );
        assert_eq!(gauges.resumed.load(Ordering::Relaxed), 1);
        assert!(!gauges.alarm.load(Ordering::Acquire), "the alarm dropped");
        assert!(report.gaps_journaled);
        let (msgs, gaps) = entries(disk.0.path());
        assert_eq!(report.journaled, msgs.len() as u64);
        assert_eq!(gaps.len(), 1, "one stopped window: {gaps:?}");
        let (from, end) = gaps[0];
        assert!(from > 1 && end > 3_000, "{gaps:?}");
        assert!(
            msgs.iter().copied().eq((1..from).chain(end..3_301)),
            "journaled before the stop and after the resume, nothing twice"
        );
        assert_eq!(
            report.gaps,
            vec![SeqRange { session, from, end }],
            "the window's exact bounds"
        );
    }

    fn libc_enospc() -> i32 {
        28
    }
}
