//! Every counter of a stats snapshot as one flat list of named, labelled
//! values, and its histograms: the one place that names them, for
//! `GetStats`, the `STATS` line and `/metrics` alike.

use ticklane_appliance::source::RxSource;
use ticklane_appliance::stats::{HISTOGRAM_BUCKETS, Histogram, Snapshot};

/// One counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Its name (`snake_case`, no prefix).
    pub name: String,
    /// What it counts.
    pub help: &'static str,
    /// Its value.
    pub value: u64,
    /// The feed (GROUP:PORT) it counts for, or empty.
    pub feed: String,
    /// The session it counts for, or empty.
    pub session: String,
}

impl Counter {
    /// A counter of the whole appliance (no feed, no session).
    pub fn of(name: impl Into<String>, help: &'static str, value: u64) -> Self {
        Self {
            name: name.into(),
            help,
            value,
            feed: String::new(),
            session: String::new(),
        }
    }
}

/// A session's name as text (trailing spaces cut).
pub fn session_name(s: &ticklane_protocols::moldudp64::Session) -> String {
    String::from_utf8_lossy(&s.0).trim_end().to_owned()
}

/// One histogram of a session's: `counts[i]` values at most `bounds[i]`
/// (the last bucket also holds everything above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHistogram {
    /// Its name (`snake_case`, no prefix).
    pub name: &'static str,
    /// The unit of the bounds.
    pub unit: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// The session it is for, or empty.
    pub session: String,
    /// Upper bounds of the buckets, ascending.
    pub bounds: Vec<u64>,
    /// Values per bucket.
    pub counts: Vec<u64>,
}

/// The histograms of each session in `snap`: its gap recovery times.
pub fn session_histograms(snap: &Snapshot) -> Vec<SessionHistogram> {
    snap.sessions()
        .iter()
        .map(|s| {
            let buckets = s.stats.recovery.buckets;
            SessionHistogram {
                name: "recovery_us",
                unit: "us",
                help: "how long gap episodes that ended with everything recovered lasted",
                session: session_name(&s.session),
                // Bucket i holds durations under 2^(i+1) µs.
                bounds: (0..buckets.len()).map(|i| 2u64 << i).collect(),
                counts: buckets.to_vec(),
            }
        })
        .collect()
}

/// Every counter of `snap`; `feed_of(line)` names a feed line (GROUP:PORT).
pub fn counters(snap: &Snapshot, feed_of: impl Fn(usize) -> String) -> Vec<Counter> {
    let mut out = vec![
        Counter::of(
            "packets",
            "MoldUDP64 packets taken into the session layer",
            snap.packets,
        ),
        Counter::of(
            "malformed_packets",
            "arrivals that were not valid MoldUDP64 packets",
            snap.malformed_packets,
        ),
        Counter::of(
            "foreign_session_packets",
            "packets of a session that found no slot or was never confirmed",
            snap.foreign_session_packets,
        ),
        Counter::of(
            "delivered_messages",
            "messages delivered to the books",
            snap.delivered,
        ),
        Counter::of(
            "bad_messages",
            "sequenced messages that were not valid ITCH",
            snap.bad_messages,
        ),
        Counter::of(
            "lost_messages",
            "messages declared unrecoverable",
            snap.lost_messages,
        ),
        Counter::of(
            "lost_ranges",
            "ranges declared unrecoverable",
            snap.lost_ranges,
        ),
        Counter::of(
            "audit_missed",
            "delivered messages the audit ring could not take",
            snap.audit_missed,
        ),
        Counter::of(
            "failed_requests",
            "re-requests that could not be sent",
            snap.failed_requests,
        ),
        Counter::of(
            "source_received",
            "frames or datagrams received",
            snap.source.received,
        ),
        Counter::of(
            "bus_published",
            "events published on the bus",
            snap.bus.published,
        ),
        Counter::of(
            "bus_audit_overflow",
            "audit records that found the ring full",
            snap.bus.audit_overflow,
        ),
    ];
    for (topic, n) in snap.bus.dropped.iter() {
        out.push(Counter::of(
            format!("bus_dropped_{}", topic.name()),
            "bus events dropped on a full ring",
            n,
        ));
    }
    for (kind, n) in snap.source.rejected().kinds() {
        out.push(Counter::of(
            format!("rejected_{kind}"),
            "frames refused before the feed handler",
            n,
        ));
    }
    if let Some(x) = snap.source.xsk {
        out.extend([
            Counter::of(
                "xsk_rx_dropped",
                "AF_XDP: frames dropped by the kernel",
                x.rx_dropped,
            ),
            Counter::of("xsk_rx_ring_full", "AF_XDP: rx ring full", x.rx_ring_full),
            Counter::of(
                "xsk_rx_fill_ring_empty",
                "AF_XDP: fill ring empty",
                x.rx_fill_ring_empty,
            ),
            Counter::of(
                "xsk_rx_invalid_descs",
                "AF_XDP: invalid rx descriptors",
                x.rx_invalid_descs,
            ),
        ]);
    }
    if let Some(x) = snap.source.xdp {
        for (c, n) in x.iter() {
            out.push(Counter::of(
                format!("xdp_{}", c.name()),
                "XDP program outcomes",
                n,
            ));
        }
    }
    for s in snap.sessions() {
        let session = session_name(&s.session);
        let st = s.stats;
        let per_session = [
            (
                "session_next_seq",
                "next sequence number to deliver",
                s.next_seq,
            ),
            (
                "session_stale",
                "1 while a hole is open",
                u64::from(s.stale),
            ),
            (
                "session_ended",
                "1 once the end of session was seen and settled",
                u64::from(s.ended),
            ),
            ("session_packets", "packets of the session", st.packets),
            ("session_heartbeats", "heartbeats", st.heartbeats),
            ("session_delivered", "messages delivered", st.delivered),
            (
                "session_duplicate_packets",
                "packets that brought nothing new",
                st.duplicate_packets,
            ),
            (
                "session_partial_packets",
                "packets partly new",
                st.partial_packets,
            ),
            (
                "session_held_packets",
                "packets held for reordering",
                st.held_packets,
            ),
            (
                "session_window_overflow",
                "packets beyond the reorder window",
                st.window_overflow,
            ),
            (
                "session_rejected_packets",
                "packets refused by the sanity checks",
                st.rejected_packets,
            ),
            ("session_gaps", "holes opened", st.gaps),
            ("session_gaps_filled", "holes filled", st.gaps_filled),
            ("session_requests", "re-requests sent", st.requests),
            ("session_retries", "re-requests retried", st.retries),
            (
                "session_failovers",
                "re-request server failovers",
                st.failovers,
            ),
            (
                "session_requested_messages",
                "messages re-requested",
                st.requested_messages,
            ),
            (
                "session_unrecoverable_gaps",
                "ranges declared unrecoverable",
                st.unrecoverable_gaps,
            ),
            (
                "session_unrecoverable_messages",
                "messages in those ranges",
                st.unrecoverable_messages,
            ),
        ];
        for (name, help, value) in per_session {
            out.push(Counter {
                session: session.clone(),
                ..Counter::of(name, help, value)
            });
        }
        for (line, l) in s.lines().iter().enumerate() {
            if l.packets == 0 && l.last_seen == 0 {
                continue;
            }
            let feed = feed_of(line);
            let per_line = [
                (
                    "line_packets",
                    "packets received on the feed line",
                    l.packets,
                ),
                (
                    "line_duplicates",
                    "packets the other line had brought first",
                    l.duplicates,
                ),
                ("line_gaps", "holes in the line's own sequence", l.gaps),
                ("line_downs", "times the line was declared down", l.downs),
                ("line_down", "1 while the line is down", u64::from(l.down)),
            ];
            for (name, help, value) in per_line {
                out.push(Counter {
                    session: session.clone(),
                    feed: feed.clone(),
                    ..Counter::of(name, help, value)
                });
            }
        }
    }
    out
}

/// A histogram of the poller's, named.
#[derive(Debug, Clone, Copy)]
pub struct NamedHistogram {
    /// Its name (`snake_case`, no prefix, no unit).
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// The counts.
    pub histogram: Histogram,
}

/// The poller's histograms in `snap`.
pub fn histograms(snap: &Snapshot) -> [NamedHistogram; 2] {
    [
        NamedHistogram {
            name: "wire_to_handler",
            help: "from a packet's receive time (see rx_timestamps) to the poller handing it to \
                   sequencing and the handlers",
            histogram: snap.wire_to_handler,
        },
        NamedHistogram {
            name: "poller_loop",
            help: "poller loop time: from the first packet of a poll to the end of the \
                   iteration, per poll that brought packets",
            histogram: snap.loop_time,
        },
    ]
}

/// Who took the receive times, as status and metrics name it ("" before
/// the first stamped packet).
pub fn rx_timestamps(snap: &Snapshot) -> &'static str {
    snap.rx_source.map_or("", RxSource::name)
}

/// The poller's buckets merged by four (bounds 1, 1.5, 2, 3, 4, 6 … × 64
/// ns, fine enough for a dashboard, few enough for a scrape): each upper
/// bound in nanoseconds (`None`: unbounded) with the count in that bucket
/// alone.
pub fn coarse_buckets(h: &Histogram) -> Vec<(Option<u64>, u64)> {
    let mut out = Vec::with_capacity(HISTOGRAM_BUCKETS / 4 + 2);
    let mut below = 0;
    for (i, (bound, cumulative)) in h.cumulative().enumerate() {
        // The first bucket alone, then four at a time, and the unbounded one.
        if i == 0 || i % 4 == 0 || bound.is_none() {
            out.push((bound, cumulative - below));
            below = cumulative;
        }
    }
    out
}
