//! A capture as a source: pcap, pcapng or BinaryFILE, read in one streaming
//! pass, as fast as possible or paced by its timestamps. Frames are walked
//! down to their UDP payload here; what is malformed is reported with its
//! location (record number, byte offset) and skipped.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ticklane_capture::feed::{FeedDecoder, FeedFilter, FeedSink, Location, Problem};
use ticklane_capture::pace::CaptureClock;
use ticklane_capture::{Record, read_until};
use ticklane_protocols::itch::MessageRef;
use ticklane_protocols::moldudp64::Session;

use super::{Arrival, Payload, Polled, Source, SourceCounters, SourceError, Verdict, Wait};

/// Most problems kept with their location (all are counted).
pub const MAX_PROBLEMS: usize = 20;

/// A malformed record and where it lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Where.
    pub location: Location,
    /// What.
    pub problem: Problem,
}

/// The first problems, located; the rest counted.
#[derive(Debug, Default)]
struct ProblemLog {
    kept: Vec<Located>,
    total: u64,
}

impl ProblemLog {
    fn push(&mut self, location: Location, problem: Problem) {
        self.total += 1;
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push(Located { location, problem });
        }
    }
}

impl FeedSink for ProblemLog {
    fn message(&mut self, _: &Session, _: u64, _: MessageRef<'_>) {}
    fn problem(&mut self, at: Location, problem: Problem) {
        self.push(at, problem);
    }
}

/// A capture file, read once.
#[derive(Debug)]
pub struct CaptureSource {
    path: PathBuf,
    filter: FeedFilter,
    decoder: FeedDecoder,
    clock: Option<CaptureClock>,
    problems: ProblemLog,
    progress: Arc<AtomicU64>,
    records: u64,
    done: bool,
}

impl CaptureSource {
    /// Reads `path`; `filter` names the feed lines (empty: every UDP frame,
    /// one line); `speed` paces by capture time (None: as fast as possible).
    pub fn new(path: impl Into<PathBuf>, filter: FeedFilter, speed: Option<f64>) -> Self {
        Self {
            path: path.into(),
            decoder: FeedDecoder::new(filter.clone()),
            filter,
            clock: speed.map(CaptureClock::new),
            problems: ProblemLog {
                kept: Vec::with_capacity(MAX_PROBLEMS),
                total: 0,
            },
            progress: Arc::new(AtomicU64::new(0)),
            records: 0,
            done: false,
        }
    }

    /// The byte offset reached, updated now and then, for a progress bar
    /// drawn by another thread.
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.progress.clone()
    }

    /// The first malformed records with their locations.
    pub fn problems(&self) -> &[Located] {
        &self.problems.kept
    }

    /// Every malformed record, counted.
    pub fn problems_total(&self) -> u64 {
        self.problems.total
    }
}

impl Source for CaptureSource {
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        _wait: Wait,
        mut f: F,
    ) -> Result<Polled, SourceError> {
        if self.done {
            return Ok(Polled::End);
        }
        self.done = true;
        let Self {
            path,
            filter,
            decoder,
            clock,
            problems,
            progress,
            records,
            ..
        } = self;
        read_until(path, |record| {
            *records += 1;
            let (location, arrival, offset) = match record {
                Record::Message {
                    number,
                    offset,
                    data,
                } => (
                    Location::message(number, offset),
                    Arrival {
                        line: 0,
                        payload: Payload::Message {
                            seq: number,
                            bytes: data,
                        },
                        captured_at: None,
                        received_at: None,
                    },
                    offset,
                ),
                Record::Frame(frame) => {
                    let Some(udp) = decoder.udp(&frame, problems) else {
                        return ControlFlow::Continue(());
                    };
                    if let Some(c) = clock {
                        c.wait(frame.ts_nanos);
                    }
                    (
                        Location::frame(&frame),
                        Arrival {
                            // Every frame left is one of the feeds (the
                            // decoder filtered), or, without feeds, of the
                            // only line.
                            line: filter.line(&udp).unwrap_or(0),
                            payload: Payload::Packet(udp.payload),
                            captured_at: Some(frame.ts_nanos),
                            received_at: None,
                        },
                        frame.offset,
                    )
                }
            };
            if records.is_multiple_of(4096) {
                progress.store(offset, Ordering::Relaxed);
            }
            match f(arrival) {
                Verdict::Taken => ControlFlow::Continue(()),
                Verdict::Rejected(problem) => {
                    problems.push(location, problem);
                    ControlFlow::Continue(())
                }
                Verdict::Stop => ControlFlow::Break(()),
            }
        })?;
        Ok(Polled::End)
    }

    fn counters(&self) -> SourceCounters {
        let c = self.decoder.counts();
        SourceCounters {
            received: self.records,
            foreign: c.foreign,
            malformed: c.bad_packets,
            ..SourceCounters::default()
        }
    }
}
