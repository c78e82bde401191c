//! What a running poller shows the rest of the process: a snapshot of every
//! counter, published now and then through a wait-free triple buffer
//! (`triple_buffer`). The poller never waits for a reader and never
//! allocates to publish; a reader on another thread always sees a whole,
//! consistent snapshot, the latest one.

use ticklane_protocols::moldudp64::Session;

use crate::bus::BusStats;
use crate::session::{LineStats, SessionStats};
use crate::source::{RxSource, SourceCounters};

/// Sessions a snapshot shows (and a poller sequences at once).
pub const MAX_SESSIONS: usize = 4;

/// Feed lines a poller arbitrates.
pub const MAX_LINES: usize = 8;

/// One session as the poller sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Its name.
    pub session: Session,
    /// Sequencing counters.
    pub stats: SessionStats,
    /// Next sequence number to deliver.
    pub next_seq: u64,
    /// A hole is open: books built from it may be wrong until it closes.
    pub stale: bool,
    /// The end of session was seen and everything before it settled.
    pub ended: bool,
    /// One past the highest sequence number known to exist (from packets,
    /// heartbeats and the end of session). Without the end of session,
    /// what comes after it is unknown: neither delivered nor counted lost.
    pub known_end: u64,
    /// Feed lines in use (the first entries of `lines`).
    pub line_count: usize,
    /// Per-line counters.
    pub lines: [LineStats; MAX_LINES],
}

impl SessionSnapshot {
    /// The lines in use.
    pub fn lines(&self) -> &[LineStats] {
        &self.lines[..self.line_count.min(MAX_LINES)]
    }
}

/// Octaves of a [`Histogram`]: 2^6 (64 ns) up to 2^33 (8.6 s).
const FIRST_OCTAVE: u32 = 6;
const OCTAVES: usize = 27;
/// Buckets per octave: each 1/8 of the octave's base wide (12.5%).
const PER_OCTAVE: usize = 8;
/// Buckets of a [`Histogram`]: one below 64 ns, eight per octave, and one
/// for everything above the last octave.
pub const HISTOGRAM_BUCKETS: usize = 1 + OCTAVES * PER_OCTAVE + 1;

/// A histogram of nanosecond durations in fixed log-linear buckets (eight
/// per power of two, so a bucket's bounds are within 12.5% of each other):
/// recording is a few integer operations, with no allocation, and the whole
/// of it is copied into each stats snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; HISTOGRAM_BUCKETS],
    count: u64,
    sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; HISTOGRAM_BUCKETS],
            count: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    /// The bucket of `ns`.
    #[inline]
    fn bucket(ns: u64) -> usize {
        if ns < 1 << FIRST_OCTAVE {
            return 0;
        }
        let octave = 63 - ns.leading_zeros();
        if octave >= FIRST_OCTAVE + OCTAVES as u32 {
            return HISTOGRAM_BUCKETS - 1;
        }
        let sub = (ns >> (octave - 3)) as usize & (PER_OCTAVE - 1);
        1 + (octave - FIRST_OCTAVE) as usize * PER_OCTAVE + sub
    }

    /// The upper bound of bucket `i` in nanoseconds (values in it are
    /// below it); `None` for the last, unbounded one.
    pub fn upper_bound(i: usize) -> Option<u64> {
        if i == 0 {
            return Some(1 << FIRST_OCTAVE);
        }
        if i >= HISTOGRAM_BUCKETS - 1 {
            return None;
        }
        let (octave, sub) = ((i - 1) / PER_OCTAVE, (i - 1) % PER_OCTAVE);
        Some(((PER_OCTAVE + sub + 1) as u64) << (FIRST_OCTAVE as usize + octave - 3))
    }

    /// Counts one duration.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
        self.count += 1;
        self.sum = self.sum.wrapping_add(ns);
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum, in nanoseconds.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Each bucket's upper bound (`None`: unbounded) with the count of the
    /// durations below it (cumulative, as Prometheus wants them).
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        self.counts.iter().enumerate().scan(0u64, |total, (i, n)| {
            *total += n;
            Some((Self::upper_bound(i), *total))
        })
    }

    /// The upper bound of the bucket holding the `q` quantile (0 < q ≤ 1):
    /// the true value is below it and within 12.5% of it; `None` when
    /// empty, or when the quantile is beyond the last bounded bucket.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        self.cumulative()
            .find(|(_, n)| *n >= rank)
            .and_then(|(bound, _)| bound)
    }

    /// What `self` counted since `earlier` (a snapshot of the same
    /// histogram taken before).
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = *self;
        for (o, e) in out.counts.iter_mut().zip(&earlier.counts) {
            *o = o.saturating_sub(*e);
        }
        out.count = self.count.saturating_sub(earlier.count);
        out.sum = self.sum.wrapping_sub(earlier.sum);
        out
    }
}

/// Every counter of a poller at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Nanoseconds since the poller started.
    pub uptime_ns: u64,
    /// MoldUDP64 packets taken into the session layer.
    pub packets: u64,
    /// Arrivals that were not valid MoldUDP64 packets.
    pub malformed_packets: u64,
    /// Packets of a session that found no free slot (all busy).
    pub foreign_session_packets: u64,
    /// Messages delivered to the pipeline.
    pub delivered: u64,
    /// Sequenced messages that were not valid ITCH.
    pub bad_messages: u64,
    /// Messages declared unrecoverable.
    pub lost_messages: u64,
    /// Ranges declared unrecoverable.
    pub lost_ranges: u64,
    /// Delivered messages the audit ring could not take (recorded by range).
    pub audit_missed: u64,
    /// Re-requests that could not be sent.
    pub failed_requests: u64,
    /// The source's own counters (as of the last poll).
    pub source: SourceCounters,
    /// The bus.
    pub bus: BusStats,
    /// Sessions in use (the first entries of `sessions`).
    pub session_count: usize,
    /// Per session.
    pub sessions: [SessionSnapshot; MAX_SESSIONS],
    /// Wire to handler: from each packet's receive time (see
    /// [`Self::rx_source`]) to the poller handing it to sequencing and the
    /// handlers, on the receive time's own clock.
    pub wire_to_handler: Histogram,
    /// Who took the receive times of the latest packets that had one.
    pub rx_source: Option<RxSource>,
    /// Poller loop time: from the first packet of a poll to the end of the
    /// iteration (handling, timers, requests served), per poll that
    /// brought packets.
    pub loop_time: Histogram,
}

impl Snapshot {
    /// The sessions in use.
    pub fn sessions(&self) -> &[SessionSnapshot] {
        &self.sessions[..self.session_count.min(MAX_SESSIONS)]
    }

    /// True while some session is stale.
    pub fn is_stale(&self) -> bool {
        self.sessions().iter().any(|s| s.stale)
    }
}

/// The reading side, for one other thread (a stats printer, the control
/// plane): each read returns the latest snapshot published.
pub struct StatsReader(triple_buffer::Output<Snapshot>);

impl std::fmt::Debug for StatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsReader")
    }
}

impl StatsReader {
    /// The latest snapshot.
    pub fn read(&mut self) -> Snapshot {
        *self.0.read()
    }
}

/// The publishing side, owned by the poller: one triple buffer per
/// reader, all made before the poller runs.
pub(crate) struct StatsWriter(Vec<triple_buffer::Input<Snapshot>>);

impl std::fmt::Debug for StatsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsWriter")
    }
}

impl StatsWriter {
    pub(crate) fn publish(&mut self, snapshot: &Snapshot) {
        for input in &mut self.0 {
            input.write(*snapshot);
        }
    }

    /// Another reader (each reader thread needs its own).
    pub(crate) fn reader(&mut self) -> StatsReader {
        let (input, output) = triple_buffer::triple_buffer(&Snapshot::default());
        self.0.push(input);
        StatsReader(output)
    }
}

pub(crate) fn channel() -> (StatsWriter, StatsReader) {
    let mut writer = StatsWriter(Vec::new());
    let reader = writer.reader();
    (writer, reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_lands_below_its_buckets_bound_and_within_an_eighth() {
        for ns in (0..20_000u64).chain([1 << 20, 123_456_789, 8_000_000_000, u64::MAX]) {
            let i = Histogram::bucket(ns);
            match Histogram::upper_bound(i) {
                Some(upper) => {
                    assert!(ns < upper, "{ns} in bucket {i} below {upper}");
                    let lower = if i == 0 {
                        0
                    } else {
                        Histogram::upper_bound(i - 1).unwrap()
                    };
                    assert!(ns >= lower, "{ns} in bucket {i} at or above {lower}");
                    assert!(
                        i == 0 || (upper - lower) * 8 <= lower,
                        "{i}: {lower}..{upper}"
                    );
                }
                None => assert!(ns >= 1 << 33, "{ns} unbounded"),
            }
        }
    }

    #[test]
    fn quantiles_and_cumulative_counts_follow_what_was_recorded() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ns in 1..=1000u64 {
            h.record(ns * 1000);
        }
        assert_eq!((h.count(), h.sum()), (1000, 500_500_000));
        let p50 = h.quantile(0.5).unwrap();
        assert!((500_000..=500_000 * 9 / 8 + 1).contains(&p50), "{p50}");
        let p999 = h.quantile(0.999).unwrap();
        assert!((999_000..=999_000 * 9 / 8 + 1).contains(&p999), "{p999}");
        let last = h.cumulative().last().unwrap();
        assert_eq!(last, (None, 1000));
        let before = h;
        h.record(70);
        let d = h.since(&before);
        assert_eq!((d.count(), d.sum(), d.quantile(1.0)), (1, 70, Some(72)));
    }
}
