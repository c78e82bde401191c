//! What the dashboard shows, computed from two successive samples of the
//! appliance (rates are their differences over the time between them):
//! pure data, no terminal and no network, so tests drive it exactly.

use std::collections::HashMap;
use std::time::Instant;

use ticklane_control::proto;

/// One look at the appliance.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When it was taken.
    pub(crate) at: Instant,
    /// GetStatus.
    pub(crate) status: proto::Status,
    /// GetStats.
    pub(crate) stats: proto::Stats,
    /// The stocks of the ladder, busiest first, with their BBO changes per
    /// second (as StreamBbo brought them).
    pub(crate) books: Vec<(proto::Book, f64)>,
    /// The stock filter the ladder was chosen with (empty: none).
    pub(crate) filter: String,
    /// What the ladder was asked to show and could not (an unknown stock).
    pub(crate) book_note: Option<String>,
}

/// A counter's key: name, session, feed.
type Key = (String, String, String);

/// The counters of a GetStats, by name and labels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters(HashMap<Key, u64>);

impl Counters {
    pub(crate) fn of(stats: &proto::Stats) -> Self {
        Self(
            stats
                .counters
                .iter()
                .map(|c| ((c.name.clone(), c.session.clone(), c.feed.clone()), c.value))
                .collect(),
        )
    }

    /// A counter of the whole appliance.
    pub(crate) fn get(&self, name: &str) -> Option<u64> {
        self.labelled(name, "", "")
    }

    /// A counter of `session` (and `feed`, for a line's).
    pub(crate) fn labelled(&self, name: &str, session: &str, feed: &str) -> Option<u64> {
        self.0
            .get(&(name.to_owned(), session.to_owned(), feed.to_owned()))
            .copied()
    }

    /// The lines (feeds) counted for `session`, by line number order of
    /// appearance in `feeds`.
    fn lines_of(&self, session: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .keys()
            .filter(|(n, s, f)| n == "line_packets" && s == session && !f.is_empty())
            .map(|(_, _, f)| f.clone())
            .collect();
        v.sort_unstable();
        v
    }
}

/// The columns the feed table sorts on (`s` cycles through them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortBy {
    Feed,
    Packets,
    Messages,
    Won,
    Duplicates,
    Gaps,
}

impl SortBy {
    pub(crate) const ALL: [Self; 6] = [
        Self::Feed,
        Self::Packets,
        Self::Messages,
        Self::Won,
        Self::Duplicates,
        Self::Gaps,
    ];

    /// The next column.
    pub(crate) fn next(self) -> Self {
        let i = Self::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Its header.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Feed => "feed",
            Self::Packets => "pkt/s",
            Self::Messages => "msg/s",
            Self::Won => "won",
            Self::Duplicates => "dups",
            Self::Gaps => "gaps",
        }
    }
}

/// A row of the feed table: a session (all its lines) or one of its lines.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The session's name, or the line's GROUP:PORT.
    pub(crate) label: String,
    /// A line's row (indented under its session).
    pub(crate) line: bool,
    /// Packets per second (None: no earlier sample to compare with).
    pub(crate) packets_per_s: Option<f64>,
    /// Messages delivered per second (sessions only).
    pub(crate) messages_per_s: Option<f64>,
    /// Share of the session's new packets this line brought first (lines
    /// only; over the last interval, or since the start when idle).
    pub(crate) won: Option<f64>,
    /// The line that won most of the arbitration.
    pub(crate) winner: bool,
    /// Duplicate packets.
    pub(crate) duplicates: u64,
    /// Sessions: holes pending, filled, lost; lines: holes in the line's
    /// own sequence (first number only).
    pub(crate) gaps: (u64, u64, u64),
    /// "fresh", "STALE", "ended"; "up", "DOWN".
    pub(crate) state: &'static str,
}

/// Rows of the feed table: each session, then its lines, sorted by `by`
/// (sessions among sessions, lines among the lines of their session).
pub(crate) fn rows(now: &Sample, before: Option<&Sample>, by: SortBy) -> Vec<Row> {
    let cur = Counters::of(&now.stats);
    let prev = before.map(|b| Counters::of(&b.stats));
    let secs = before
        .map(|b| now.at.duration_since(b.at).as_secs_f64())
        .filter(|s| *s > 0.0);
    let rate = |name: &str, session: &str, feed: &str| -> Option<f64> {
        let now = cur.labelled(name, session, feed)?;
        let then = prev.as_ref()?.labelled(name, session, feed)?;
        // A counter that went back: the appliance restarted.
        let secs = secs?;
        (now >= then).then(|| (now - then) as f64 / secs)
    };
    let delta = |name: &str, session: &str, feed: &str| -> u64 {
        let now = cur.labelled(name, session, feed).unwrap_or(0);
        let then = prev
            .as_ref()
            .and_then(|p| p.labelled(name, session, feed))
            .unwrap_or(now);
        now.saturating_sub(then)
    };
    let mut sessions: Vec<(Row, Vec<Row>)> = Vec::new();
    for s in &now.status.sessions {
        let name = s.session.as_str();
        let get = |n: &str| cur.labelled(n, name, "").unwrap_or(0);
        let (gaps, filled, lost) = (
            get("session_gaps"),
            get("session_gaps_filled"),
            get("session_unrecoverable_gaps"),
        );
        let pending = if s.stale {
            gaps.saturating_sub(filled + lost).max(1)
        } else {
            0
        };
        let session_row = Row {
            label: name.to_owned(),
            line: false,
            packets_per_s: rate("session_packets", name, ""),
            messages_per_s: rate("session_delivered", name, ""),
            won: None,
            winner: false,
            duplicates: get("session_duplicate_packets"),
            gaps: (pending, filled, lost),
            state: if s.ended {
                "ended"
            } else if s.stale {
                "STALE"
            } else {
                "fresh"
            },
        };
        let feeds = cur.lines_of(name);
        // New packets each line brought first: over the interval when
        // something arrived in it, else since the start.
        let first = |feed: &str, total: bool| {
            let (p, d) = if total {
                (
                    cur.labelled("line_packets", name, feed).unwrap_or(0),
                    cur.labelled("line_duplicates", name, feed).unwrap_or(0),
                )
            } else {
                (
                    delta("line_packets", name, feed),
                    delta("line_duplicates", name, feed),
                )
            };
            p.saturating_sub(d)
        };
        let interval: u64 = feeds.iter().map(|f| first(f, false)).sum();
        let total = interval == 0;
        let all: u64 = feeds.iter().map(|f| first(f, total)).sum();
        let mut lines: Vec<Row> = feeds
            .iter()
            .map(|f| {
                let lget = |n: &str| cur.labelled(n, name, f).unwrap_or(0);
                Row {
                    label: f.clone(),
                    line: true,
                    packets_per_s: rate("line_packets", name, f),
                    messages_per_s: None,
                    won: (all > 0).then(|| first(f, total) as f64 / all as f64),
                    winner: false,
                    duplicates: lget("line_duplicates"),
                    gaps: (lget("line_gaps"), 0, 0),
                    state: if lget("line_down") > 0 { "DOWN" } else { "up" },
                }
            })
            .collect();
        if lines.len() > 1
            && let Some(best) = lines
                .iter_mut()
                .filter(|l| l.won.is_some_and(|w| w > 0.0))
                .max_by(|a, b| {
                    a.won
                        .partial_cmp(&b.won)
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
        {
            best.winner = true;
        }
        sort(&mut lines, by);
        sessions.push((session_row, lines));
    }
    let mut heads: Vec<Row> = sessions.iter().map(|(s, _)| s.clone()).collect();
    sort(&mut heads, by);
    let mut out = Vec::new();
    for head in heads {
        if let Some(i) = sessions.iter().position(|(s, _)| s.label == head.label) {
            let (s, lines) = sessions.swap_remove(i);
            out.push(s);
            out.extend(lines);
        }
    }
    out
}

/// Sorts rows on a column: the feed by name, numbers largest first.
fn sort(rows: &mut [Row], by: SortBy) {
    let key = |r: &Row| -> f64 {
        match by {
            SortBy::Feed => 0.0,
            SortBy::Packets => r.packets_per_s.unwrap_or(-1.0),
            SortBy::Messages => r.messages_per_s.unwrap_or(-1.0),
            SortBy::Won => r.won.unwrap_or(-1.0),
            SortBy::Duplicates => r.duplicates as f64,
            SortBy::Gaps => (r.gaps.0 + r.gaps.1 + r.gaps.2) as f64,
        }
    };
    if by == SortBy::Feed {
        rows.sort_by(|a, b| a.label.cmp(&b.label));
    } else {
        rows.sort_by(|a, b| {
            key(b)
                .partial_cmp(&key(a))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.label.cmp(&b.label))
        });
    }
}

/// A histogram summed over its sessions (or feeds): the buckets of the
/// first one, every one with the same bounds added in.
pub(crate) fn histogram(
    stats: &proto::Stats,
    wanted: impl Fn(&str) -> bool,
) -> Option<(&proto::SessionHistogram, Vec<u64>)> {
    let mut of_name = stats.session_histograms.iter().filter(|h| wanted(&h.name));
    let first = of_name.next()?;
    let mut counts = first.counts.clone();
    for h in of_name.filter(|h| h.bounds == first.bounds && h.name == first.name) {
        for (to, n) in counts.iter_mut().zip(&h.counts) {
            *to = to.saturating_add(*n);
        }
    }
    Some((first, counts))
}

/// The poller's histogram `name` (e.g. "wire_to_handler") in octaves: for
/// each power of two of nanoseconds, its upper bound (None: the last, which
/// has none) and how many values fell in it. The appliance's buckets are
/// finer (eight an octave) and cumulative.
pub(crate) fn octaves(stats: &proto::Stats, name: &str) -> Option<Vec<(Option<u64>, u64)>> {
    let h = stats.histograms.iter().find(|h| h.name == name)?;
    let mut out = Vec::new();
    let mut below = 0;
    for b in &h.buckets {
        let last = b.le_ns == 0;
        if last || b.le_ns.is_power_of_two() {
            out.push(((!last).then_some(b.le_ns), b.count.saturating_sub(below)));
            below = b.count.max(below);
        }
    }
    Some(out)
}

/// The bound of the bucket holding quantile `q` (0..=1).
pub(crate) fn quantile(bounds: &[u64], counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (bound, n) in bounds.iter().zip(counts) {
        seen += n;
        if seen >= rank {
            return Some(*bound);
        }
    }
    bounds.last().copied()
}

/// A rate for a narrow column: 12, 3.4k, 1.2M.
pub(crate) fn human(v: f64) -> String {
    if v >= 9_999_500.0 {
        format!("{:.0}M", v / 1e6)
    } else if v >= 999_950.0 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 9_999.5 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 999.5 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A count for a narrow column: 12, 34k, 1.2M.
pub(crate) fn count(v: u64) -> String {
    if v < 100_000 {
        v.to_string()
    } else {
        human(v as f64)
    }
}

/// A duration in nanoseconds: 640ns, 2.0us, 12us, 4.1ms, 2.1s.
pub(crate) fn nanos(ns: u64) -> String {
    let (v, unit) = match ns {
        0..1_000 => return format!("{ns}ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "us"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    if v < 9.95 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// A duration in microseconds (as [`nanos`] writes it).
pub(crate) fn micros(us: u64) -> String {
    nanos(us.saturating_mul(1_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn counter(name: &str, session: &str, feed: &str, value: u64) -> proto::Counter {
        proto::Counter {
            name: name.into(),
            value,
            feed: feed.into(),
            session: session.into(),
            help: String::new(),
        }
    }

    /// A sample of session S on lines A and B: `a` and `b` are (packets,
    /// duplicates) of each line.
    fn sample(at: Instant, a: (u64, u64), b: (u64, u64), stale: bool) -> Sample {
        let mut counters = vec![
            counter("session_packets", "S", "", a.0 + b.0),
            counter("session_delivered", "S", "", 10 * (a.0 + b.0)),
            counter("session_gaps", "S", "", 5),
            counter("session_gaps_filled", "S", "", 3),
            counter("session_unrecoverable_gaps", "S", "", 1),
        ];
        for (feed, (p, d)) in [("239.1.1.1:1", a), ("239.1.1.2:1", b)] {
            counters.push(counter("line_packets", "S", feed, p));
            counters.push(counter("line_duplicates", "S", feed, d));
        }
        Sample {
            at,
            status: proto::Status {
                sessions: vec![proto::SessionState {
                    session: "S".into(),
                    stale,
                    ..Default::default()
                }],
                ..Default::default()
            },
            stats: proto::Stats {
                counters,
                ..Default::default()
            },
            books: Vec::new(),
            filter: String::new(),
            book_note: None,
        }
    }

    #[test]
    fn rates_and_the_winning_line_come_from_two_samples() {
        let t0 = Instant::now();
        let before = sample(t0, (100, 10), (100, 90), false);
        // Over 2 s, A brought 200 packets (20 duplicates), B 200 (180).
        let now = sample(t0 + Duration::from_secs(2), (300, 30), (300, 270), false);
        let rows = rows(&now, Some(&before), SortBy::Feed);
        assert_eq!(rows.len(), 3);
        let (s, a, b) = (&rows[0], &rows[1], &rows[2]);
        assert_eq!((s.label.as_str(), s.line), ("S", false));
        assert_eq!(s.packets_per_s, Some(200.0));
        assert_eq!(s.messages_per_s, Some(2000.0));
        assert_eq!(s.gaps, (0, 3, 1), "fresh: nothing pending");
        assert_eq!(a.packets_per_s, Some(100.0));
        assert_eq!(a.won, Some(0.9));
        assert!(a.winner && !b.winner);
        assert_eq!(b.duplicates, 270);
        // Sorted on who won: A first either way; on duplicates B first.
        let by_dups = super::rows(&now, Some(&before), SortBy::Duplicates);
        assert_eq!(by_dups[1].label, "239.1.1.2:1");
    }

    #[test]
    fn no_rates_without_an_earlier_sample_or_across_a_restart() {
        let t0 = Instant::now();
        let first = sample(t0, (300, 30), (300, 270), true);
        let rows1 = rows(&first, None, SortBy::Feed);
        assert_eq!(rows1[0].packets_per_s, None);
        assert_eq!(rows1[0].gaps.0, 1, "stale: a hole is pending");
        // Idle: the shares since the start.
        assert_eq!(rows1[1].won, Some(0.9));
        let restarted = sample(t0 + Duration::from_secs(1), (10, 0), (10, 10), false);
        let rows2 = rows(&restarted, Some(&first), SortBy::Feed);
        assert_eq!(rows2[0].packets_per_s, None);
    }

    #[test]
    fn quantiles_and_numbers_read_well() {
        let bounds = [2, 4, 8, 16];
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
        assert_eq!(quantile(&bounds, &[1, 1, 1, 1], 0.5), Some(4));
        assert_eq!(quantile(&bounds, &[1, 1, 1, 1], 0.99), Some(16));
        assert_eq!(human(12.4), "12");
        assert_eq!(human(3_400.0), "3.4k");
        assert_eq!(human(45_000.0), "45k");
        assert_eq!(human(1_200_000.0), "1.2M");
        assert_eq!(human(12_000_000.0), "12M");
        assert_eq!(count(99_999), "99999");
        assert_eq!(micros(512), "512us");
        assert_eq!(micros(4_096), "4.1ms");
        assert_eq!(micros(16_384), "16ms");
        assert_eq!(nanos(640), "640ns");
        assert_eq!(nanos(2_048), "2.0us");
        assert_eq!(nanos(65_536), "66us");
    }

    #[test]
    fn the_pollers_buckets_are_read_in_octaves() {
        // Cumulative, eight an octave: 64 (and below), 72 ... 128, 144 ... 256, none.
        let bounds = [64, 72, 80, 88, 96, 104, 112, 120, 128, 144, 256, 0];
        let cumulative = [0, 1, 1, 1, 1, 1, 1, 1, 3, 4, 9, 10];
        let stats = proto::Stats {
            histograms: vec![proto::Histogram {
                name: "wire_to_handler".into(),
                buckets: bounds
                    .iter()
                    .zip(cumulative)
                    .map(|(le_ns, count)| proto::Bucket {
                        le_ns: *le_ns,
                        count,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            octaves(&stats, "wire_to_handler"),
            Some(vec![
                (Some(64), 0),
                (Some(128), 3),
                (Some(256), 6),
                (None, 1)
            ])
        );
        assert_eq!(octaves(&stats, "poller_loop"), None);
    }

    #[test]
    fn sort_cycles_through_every_column() {
        let mut by = SortBy::Feed;
        for _ in 0..SortBy::ALL.len() {
            by = by.next();
        }
        assert_eq!(by, SortBy::Feed);
    }
}
