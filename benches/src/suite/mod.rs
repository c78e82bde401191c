//! The measurement suites, shared by the `cargo bench` targets (which print
//! them) and by `ticklane bench` (which writes them as a report): each runs
//! its contenders in the same process, interleaved, and returns every
//! figure beside the baseline measured in the same run.

pub mod audit;
pub mod books;
pub mod control;
pub mod net;
pub mod parse;
pub mod replay;

use std::time::Duration;

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Messages of the main workload.
    pub messages: u64,
    /// Interleaved rounds of every contender (the best one counts).
    pub rounds: usize,
}

impl Scale {
    /// The size the `cargo bench` targets have always used.
    pub const FULL: Self = Self {
        messages: 1_000_000,
        rounds: 7,
    };
    /// A run of a few seconds, for a first look (and the tests).
    pub const QUICK: Self = Self {
        messages: 60_000,
        rounds: 3,
    };
}

/// One contender's best time.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// What ran.
    pub name: String,
    /// Its best time over the rounds.
    pub seconds: f64,
    /// Messages it went through.
    pub messages: u64,
    /// The contender of the same run it is compared to, if any.
    pub baseline: Option<String>,
}

impl Timing {
    /// A timing compared to `baseline` (`None`: it is a baseline).
    pub fn new(name: &str, time: Duration, messages: u64, baseline: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            seconds: time.as_secs_f64(),
            messages,
            baseline: baseline.map(str::to_owned),
        }
    }

    /// Nanoseconds per message.
    pub fn ns_per_message(&self) -> f64 {
        self.seconds * 1e9 / self.messages.max(1) as f64
    }

    /// Messages per second.
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-12)
    }
}

/// What a check must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At least this much.
    AtLeast(f64),
    /// At most this much.
    AtMost(f64),
}

/// A derived figure (a ratio, a cost), with the target it has, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What it says.
    pub what: String,
    /// Its value.
    pub value: f64,
    /// Its unit ("x" for a ratio).
    pub unit: &'static str,
    /// The target the issue set.
    pub target: Option<Target>,
}

impl Check {
    /// A check.
    pub fn new(what: &str, value: f64, unit: &'static str, target: Option<Target>) -> Self {
        Self {
            what: what.to_owned(),
            value,
            unit,
            target,
        }
    }

    /// Whether it met its target (`None` without one).
    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| match t {
            Target::AtLeast(x) => self.value >= x,
            Target::AtMost(x) => self.value <= x,
        })
    }
}

/// Samples of one contender (e.g. the time of every packet), sorted, for
/// a distribution (CDF).
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Whose samples.
    pub name: String,
    /// What one sample is, e.g. "ns per packet".
    pub unit: &'static str,
    /// The samples, ascending.
    pub sorted: Vec<f64>,
}

impl Distribution {
    /// Sorts `samples` (NaNs last).
    pub fn new(name: &str, unit: &'static str, mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        Self {
            name: name.to_owned(),
            unit,
            sorted: samples,
        }
    }

    /// The quantiles reports show, by name.
    pub const SHOWN: [(&'static str, f64); 5] = [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("max", 1.0),
    ];

    /// The `q` quantile (0 to 1), NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        match self.sorted.len() {
            0 => f64::NAN,
            n => self.sorted[((q.clamp(0.0, 1.0) * (n - 1) as f64).round()) as usize],
        }
    }
}

/// What a suite measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// Its short name (`parse`, `books`, …).
    pub name: &'static str,
    /// What was measured, on what.
    pub title: String,
    /// Every contender's best time.
    pub timings: Vec<Timing>,
    /// Ratios and costs derived from them.
    pub checks: Vec<Check>,
    /// Distributions (latency CDFs).
    pub distributions: Vec<Distribution>,
    /// Anything else the reader must know.
    pub notes: Vec<String>,
}

impl Suite {
    /// The timing named `name`.
    pub fn timing(&self, name: &str) -> Option<&Timing> {
        self.timings.iter().find(|t| t.name == name)
    }

    /// `timing`'s speed against its baseline: the baseline's time over its
    /// own (above 1: faster than the baseline).
    pub fn speedup(&self, timing: &Timing) -> Option<f64> {
        let base = self.timing(timing.baseline.as_deref()?)?;
        Some(base.ns_per_message() / timing.ns_per_message())
    }

    /// The suite as text, as the `cargo bench` targets print it.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("\n{}:\n", self.title);
        for t in &self.timings {
            let _ = write!(
                s,
                "  {:<28} {:>9.2} ms  {:>7.1} ns/msg  {:>7.2} M msg/s",
                t.name,
                t.seconds * 1e3,
                t.ns_per_message(),
                t.messages_per_second() / 1e6
            );
            match (self.speedup(t), &t.baseline) {
                (Some(x), Some(b)) => {
                    let _ = writeln!(s, "  {x:>6.2}x the speed of {b}");
                }
                _ => s.push('\n'),
            }
        }
        if !self.checks.is_empty() {
            s.push_str("ratios (same run):\n");
        }
        for c in &self.checks {
            let _ = write!(s, "  {}: {:.2}{}", c.what, c.value, unit_suffix(c.unit));
            match (c.target, c.met()) {
                (Some(t), Some(met)) => {
                    let _ = writeln!(
                        s,
                        " (target {}: {})",
                        target_text(t, c.unit),
                        if met { "met" } else { "NOT met" }
                    );
                }
                _ => s.push('\n'),
            }
        }
        for d in &self.distributions {
            let shown: Vec<String> = Distribution::SHOWN
                .iter()
                .map(|(name, q)| format!("{name} {:.0}", d.quantile(*q)))
                .collect();
            let _ = writeln!(s, "  {} ({}): {}", d.name, d.unit, shown.join(", "));
        }
        for n in &self.notes {
            let _ = writeln!(s, "  {n}");
        }
        s
    }
}

/// How a value in `unit` is written after the number.
pub fn unit_suffix(unit: &str) -> String {
    if unit == "x" {
        "x".to_owned()
    } else {
        format!(" {unit}")
    }
}

/// A target as text, e.g. ">= 3x".
pub fn target_text(t: Target, unit: &str) -> String {
    match t {
        Target::AtLeast(x) => format!(">= {x}{}", unit_suffix(unit)),
        Target::AtMost(x) => format!("<= {x}{}", unit_suffix(unit)),
    }
}

/// Why a suite could not run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A file of the suite.
    #[error("{what}")]
    Io {
        /// Which file, doing what.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The audit journal.
    #[error("the audit journal")]
    Journal(#[from] ticklane_audit::journal::JournalError),
    /// The pipeline over a capture.
    #[error("the pipeline")]
    Poller(#[from] ticklane_appliance::poller::PollerError),
    /// Generating the capture.
    #[error("generating the capture")]
    Generate(#[from] ticklane_lab::generate::GenError),
    /// The suite cannot run on this host (and why).
    #[error("{0}")]
    Unavailable(String),
    /// A contender disagreed with the others: the figures would compare
    /// different work.
    #[error("{0}")]
    Disagree(String),
}

/// Timings from [`crate::interleaved_best`]'s results: `messages` gives a
/// contender's messages from its name and the value it returned,
/// `baseline` the contender it is compared to.
pub(crate) fn timings(
    results: &[(String, Duration, u64)],
    messages: impl Fn(&str, u64) -> u64,
    baseline: impl Fn(&str) -> Option<&'static str>,
) -> Vec<Timing> {
    results
        .iter()
        .map(|(name, d, check)| Timing::new(name, *d, messages(name, *check), baseline(name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speedups_and_checks() {
        let suite = Suite {
            name: "t",
            title: "t".into(),
            timings: vec![
                Timing::new("fast", Duration::from_millis(10), 1000, Some("slow")),
                Timing::new("slow", Duration::from_millis(40), 1000, None),
            ],
            checks: vec![Check::new("r", 4.0, "x", Some(Target::AtLeast(3.0)))],
            distributions: vec![Distribution::new("d", "ns", vec![3.0, 1.0, 2.0])],
            notes: vec![],
        };
        assert_eq!(suite.speedup(&suite.timings[0]), Some(4.0));
        assert_eq!(suite.speedup(&suite.timings[1]), None);
        assert_eq!(suite.timings[0].ns_per_message(), 10_000.0);
        assert_eq!(suite.checks[0].met(), Some(true));
        assert_eq!(suite.distributions[0].quantile(0.5), 2.0);
        assert_eq!(suite.distributions[0].quantile(1.0), 3.0);
        let text = suite.text();
        assert!(text.contains("4.00x the speed of slow"), "{text}");
        assert!(text.contains("(target >= 3x: met)"), "{text}");
    }
}
