//! Logging that samples instead of falling silent: at most `lines` refusals
//! are logged per interval; the rest are counted by reason and summed up in
//! one line when the interval ends. Time is passed in, so tests drive it
//! exactly.

use std::fmt;
use std::net::SocketAddr;

use super::{Reason, ReasonCounts};

/// Decides which refusals get a log line of their own.
#[derive(Debug, Clone)]
pub struct LogSampler {
    lines: u32,
    interval_ns: u64,
    /// Start of the current interval (`None` before the first refusal of it).
    start: Option<u64>,
    logged: u32,
    held_back: ReasonCounts,
    last_held_back: Option<SocketAddr>,
}

/// Refusals not logged in one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    /// How many, by reason.
    pub counts: ReasonCounts,
    /// The last one came from here.
    pub last_from: SocketAddr,
    /// Length of the interval they fell in.
    pub interval_ns: u64,
}

impl LogSampler {
    /// Logs at most `lines` refusals per `interval_ns`.
    pub fn new(lines: u32, interval_ns: u64) -> Self {
        Self {
            lines,
            interval_ns,
            start: None,
            logged: 0,
            held_back: ReasonCounts::default(),
            last_held_back: None,
        }
    }

    /// Ends the interval if it is over at `now`, returning what it held
    /// back. Call it regularly (the server does on every wake-up), so that
    /// counts come out even when refusals stop.
    pub fn roll(&mut self, now: u64) -> Option<HeldBack> {
        let start = self.start?;
        if now.saturating_sub(start) < self.interval_ns {
            return None;
        }
        self.start = None;
        self.logged = 0;
        self.take()
    }

    /// Whether the refusal of a request from `peer` at `now` gets its own
    /// line; if not, it is counted for the interval's summary.
    pub fn admit(&mut self, now: u64, peer: SocketAddr, reason: Reason) -> bool {
        self.start.get_or_insert(now);
        if self.logged < self.lines {
            self.logged += 1;
            return true;
        }
        self.held_back.add(reason, 1);
        self.last_held_back = Some(peer);
        false
    }

    /// What is held back so far (at exit), whether or not the interval is over.
    pub fn take(&mut self) -> Option<HeldBack> {
        let counts = std::mem::take(&mut self.held_back);
        Some(HeldBack {
            counts,
            last_from: self.last_held_back.take()?,
            interval_ns: self.interval_ns,
        })
    }
}

impl fmt::Display for HeldBack {
    /// `... and 412 more refusals within 1 s (unlisted 400, rate_limited 12; the last from 198.18.3.3:5000)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "... and {} more refusals within {} s ({}; the last from {})",
            self.counts.total(),
            self.interval_ns as f64 / 1e9,
            self.counts,
            self.last_from
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn peer(last: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 3, last], 5000))
    }

    #[test]
    fn logs_the_first_lines_of_each_interval_and_counts_the_rest() {
        let mut s = LogSampler::new(2, S);
        assert_eq!(s.roll(0), None, "nothing yet");
        let admitted: Vec<bool> = (0..5)
            .map(|i| {
                let reason = if i < 4 {
                    Reason::Unlisted
                } else {
                    Reason::RateLimited
                };
                s.admit(i * 1000, peer(i as u8), reason)
            })
            .collect();
        assert_eq!(admitted, [true, true, false, false, false]);
        assert_eq!(s.roll(S - 1), None, "the interval is not over");
        let held = s.roll(S).expect("three held back");
        assert_eq!(held.counts.total(), 3);
        assert_eq!(held.counts.get(Reason::Unlisted), 2);
        assert_eq!(held.counts.get(Reason::RateLimited), 1);
        assert_eq!(
            held.to_string(),
            "... and 3 more refusals within 1 s (unlisted 2, rate_limited 1; the last from 198.18.3.4:5000)"
        );
        assert!(
            s.admit(5 * S, peer(9), Reason::Malformed),
            "a new interval logs again"
        );
        assert_eq!(s.roll(7 * S), None, "nothing held back in it");
    }

    #[test]
    fn an_interval_without_overflow_says_nothing() {
        let mut s = LogSampler::new(3, S);
        assert!(s.admit(0, peer(1), Reason::Unlisted));
        assert_eq!(s.roll(2 * S), None);
        assert_eq!(s.take(), None);
    }

    #[test]
    fn what_is_held_back_at_exit_is_not_lost() {
        let mut s = LogSampler::new(0, S);
        for i in 0..1000 {
            assert!(!s.admit(i, peer(1), Reason::OutOfRange));
        }
        let held = s.take().unwrap();
        assert_eq!(held.counts.get(Reason::OutOfRange), 1000);
        assert_eq!(s.take(), None, "taken once");
    }

    #[test]
    fn a_flood_costs_constant_memory_and_is_counted_in_full() {
        let mut s = LogSampler::new(10, S);
        let (mut lines, mut counted) = (0u64, 0u64);
        for i in 0..100_000u64 {
            let now = i * 100_000; // 10 s at 10,000 refusals per second
            if let Some(h) = s.roll(now) {
                counted += h.counts.total();
            }
            if s.admit(now, peer(1), Reason::Unlisted) {
                lines += 1;
            }
        }
        counted += s.take().map_or(0, |h| h.counts.total());
        assert_eq!(lines, 100, "10 lines in each of 10 intervals");
        assert_eq!(
            lines + counted,
            100_000,
            "every refusal is logged or counted"
        );
    }
}
