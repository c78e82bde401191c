//! What `run`, `replay` and `book` report: one summary shape, built from
//! the poller's last snapshot, printed as text or JSON.

use serde_json::{Value, json};
use ticklane_appliance::bus::DrainStats;
use ticklane_appliance::delivery::RangeLog;
use ticklane_appliance::poller::{Ending, Finished};
use ticklane_appliance::session::SessionStats;
use ticklane_appliance::source::SourceCounters;
use ticklane_appliance::stats::Snapshot;
use ticklane_protocols::itch::MESSAGE_TYPES;

/// How the packets were received (for `run`).
#[derive(Debug, Default, Clone)]
pub(crate) struct PathInfo {
    pub(crate) mode: &'static str,
    pub(crate) fallback_reason: Option<String>,
    pub(crate) xdp_mode: Option<&'static str>,
    pub(crate) bind: Option<&'static str>,
    pub(crate) huge_pages: Option<bool>,
    /// "verified", "trusted_nic" (XDP path), "kernel" (UDP path).
    pub(crate) checksums: Option<&'static str>,
}

fn ending(e: Ending) -> &'static str {
    match e {
        Ending::Stopped => "stopped",
        Ending::Duration => "duration",
        Ending::EndOfInput => "end_of_input",
    }
}

fn session_json(s: &SessionStats) -> serde_json::Map<String, Value> {
    let v = json!({
        "packets": s.packets, "heartbeats": s.heartbeats, "delivered": s.delivered,
        "gaps": s.gaps, "gaps_filled": s.gaps_filled,
        "duplicate_packets": s.duplicate_packets, "partial_packets": s.partial_packets,
        "held_packets": s.held_packets, "window_overflow": s.window_overflow,
        "rejected_packets": s.rejected_packets, "requests": s.requests, "retries": s.retries,
        "failovers": s.failovers, "requested_messages": s.requested_messages,
        "unrecoverable_gaps": s.unrecoverable_gaps, "lost_messages": s.unrecoverable_messages,
        "session_changes": s.session_changes,
        "suspect_packets": s.suspect_packets, "confirmed_jumps": s.confirmed_jumps,
        "contradicted_ends": s.contradicted_ends, "unconfirmed_packets": s.unconfirmed_packets,
        "recovery_us": {
            "gaps": s.recovery.count(),
            "p50_at_most": s.recovery.quantile_us(0.5),
            "p99_at_most": s.recovery.quantile_us(0.99),
            "max": (s.recovery.count() > 0).then_some(s.recovery.max_ns / 1_000),
        },
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn ranges(log: &RangeLog) -> Value {
    json!({
        "ranges": log.ranges(),
        "messages": log.messages(),
        "listed": log.kept().iter().map(|r| json!({
            "session": String::from_utf8_lossy(r.session.trimmed()), "from": r.from, "end": r.end,
        })).collect::<Vec<_>>(),
        "cut": log.is_cut(),
    })
}

/// The summary of a finished poller as JSON.
pub(crate) fn summary<S>(f: &Finished<S>, path: &PathInfo, drained: &DrainStats) -> Value {
    let snap: &Snapshot = &f.snapshot;
    let secs = f.elapsed.as_secs_f64().max(1e-9);
    let by_type: serde_json::Map<String, Value> = MESSAGE_TYPES
        .iter()
        .zip(f.pipeline.by_type())
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (char::from(t.tag).to_string(), (*n).into()))
        .collect();
    let mut total = SessionStats::default();
    for s in snap.sessions() {
        total += s.stats;
    }
    let mut session = session_json(&total);
    session.insert("lost_ranges".into(), ranges(&f.lost));
    // Complete only when every session was seen to its end: otherwise
    // what came after the last known message is unknown, not "0 lost".
    let complete = !snap.sessions().is_empty() && snap.sessions().iter().all(|s| s.ended);
    session.insert("complete".into(), complete.into());
    let books = &f.pipeline.books;
    let bs = books.stats();
    let bus = snap.bus;
    json!({
        "ending": ending(f.ending),
        "mode": path.mode,
        "fallback_reason": path.fallback_reason,
        "xdp_mode": path.xdp_mode,
        "bind": path.bind,
        "huge_pages": path.huge_pages,
        "seconds": secs,
        "packets": snap.source.received,
        "moldudp64_packets": snap.packets,
        "messages": snap.delivered,
        "messages_per_second": snap.delivered as f64 / secs,
        "by_type": by_type,
        "malformed": {
            "frames": snap.source.malformed,
            "packets": snap.malformed_packets,
            "messages": snap.bad_messages,
        },
        "foreign_frames": snap.source.foreign,
        "checksums": path.checksums,
        "rejected": rejected_json(&snap.source),
        "udp_checksum_absent": snap.source.udp_checksum_absent,
        "foreign_session_packets": snap.foreign_session_packets,
        "session": session,
        "sessions": snap.sessions().iter().map(|s| {
            let mut m = session_json(&s.stats);
            m.insert("name".into(), String::from_utf8_lossy(s.session.trimmed()).into());
            m.insert("next_seq".into(), s.next_seq.into());
            m.insert("stale".into(), s.stale.into());
            m.insert("ended".into(), s.ended.into());
            m.insert("end_of_session_seen".into(), s.ended.into());
            m.insert("highest_known_seq".into(), s.known_end.saturating_sub(1).into());
            m.insert("tail".into(), if s.ended {
                "complete".into()
            } else {
                format!("unknown after sequence number {}", s.known_end.saturating_sub(1)).into()
            });
            m.insert("lines".into(), s.lines().iter().map(|l| json!({
                "packets": l.packets, "duplicates": l.duplicates, "gaps": l.gaps,
                "gaps_covered_by_other": l.gaps_covered_by_other, "lag_messages": l.lag_messages,
                "downs": l.downs, "down": l.down,
            })).collect::<Vec<_>>().into());
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "xdp_counters": snap.source.xdp.map(|c| c.iter()
            .map(|(k, v)| (k.name().to_string(), Value::from(v)))
            .collect::<serde_json::Map<_, _>>()),
        "socket": snap.source.xsk.map(|x| json!({
            "rx_dropped": x.rx_dropped, "rx_ring_full": x.rx_ring_full,
            "rx_fill_ring_empty_descs": x.rx_fill_ring_empty, "rx_invalid_descs": x.rx_invalid_descs,
        })),
        "books": {
            "stocks": books.iter().filter(|(_, b)| !b.is_empty()).count(),
            "live_orders": books.live_orders(),
            "unknown_reference": bs.unknown_reference,
            "pool_growths": bs.pool_growths,
            "stale": snap.is_stale(),
        },
        "bus": {
            "published": bus.published,
            "dropped": bus.dropped.iter().map(|(t, n)| (t.name().to_string(), Value::from(n)))
                .collect::<serde_json::Map<_, _>>(),
            "audit_overflow": bus.audit_overflow,
        },
        "audit": {"missed": ranges(&f.audit_missed)},
        "consumed": {"bbo": drained.bbo, "trades": drained.trades, "vwap": drained.vwap,
                     "session": drained.session, "audit": drained.audit},
        "failed_requests": snap.failed_requests,
        "tap_failures": f.tap.0,
    })
}

/// Every kind of rejected frame.
fn rejected_json(source: &SourceCounters) -> Value {
    source
        .rejected()
        .kinds()
        .iter()
        .map(|(k, n)| ((*k).to_string(), Value::from(*n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The warning of a live run for rejected frames, if any were (a capture's
/// other traffic is no news).
pub(crate) fn warn_rejected(who: &str, v: &Value) {
    let Some(r) = v["rejected"].as_object() else {
        return;
    };
    let kinds: Vec<String> = r
        .iter()
        .filter(|(_, n)| n.as_u64() > Some(0))
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !kinds.is_empty() {
        eprintln!(
            "{who}: warning: frames rejected ({}): damaged, forged or misrouted traffic \
             (see \"rejected\" in the summary)",
            kinds.join(", ")
        );
    }
}

/// Warnings the operator must see on stderr: malformed input, losses, a
/// stale end.
pub(crate) fn warn(who: &str, v: &Value) {
    let lost = v["session"]["lost_messages"].as_u64().unwrap_or(0);
    if lost > 0 {
        let r = &v["session"]["lost_ranges"];
        eprintln!(
            "{who}: warning: {lost} messages lost in {} gaps (first: {}){}; books may be wrong",
            r["ranges"],
            r["listed"]
                .get(0)
                .map_or_else(String::new, |x| format!("{}..{}", x["from"], x["end"])),
            if r["cut"].as_bool() == Some(true) {
                " (the list of ranges was cut; the totals are exact)"
            } else {
                ""
            }
        );
    }
    let missed = v["audit"]["missed"]["messages"].as_u64().unwrap_or(0);
    if missed > 0 {
        eprintln!(
            "{who}: warning: the audit ring was full for {missed} delivered messages (recorded by range for the auditor)"
        );
    }
    if v["books"]["stale"].as_bool() == Some(true) {
        eprintln!("{who}: warning: a session is stale (a gap is open): the books may be wrong");
    }
    for s in v["sessions"].as_array().into_iter().flatten() {
        if s["ended"].as_bool() != Some(true) {
            eprintln!(
                "{who}: warning: session \"{}\": no end of session was seen; what came after \
                 sequence number {} is unknown (not counted as lost)",
                s["name"].as_str().unwrap_or(""),
                s["highest_known_seq"]
            );
        }
    }
    let ring_full = v["socket"]["rx_ring_full"].as_u64().unwrap_or(0);
    if ring_full > 0 {
        eprintln!(
            "{who}: warning: the AF_XDP receive ring was full {ring_full} times (socket.rx_ring_full): \
             frames were dropped before ticklane saw them; give the poller a core of its own \
             (--core, --busy-poll) or deeper rings (--rx-ring, --fill-ring)"
        );
    }
    let overflow = v["session"]["window_overflow"].as_u64().unwrap_or(0);
    if overflow > 0 {
        eprintln!(
            "{who}: warning: {overflow} packets came while the reorder window was full and had \
             to be asked for again: recovery fell behind the feed; a larger window \
             (--reorder-window-ms, --peak-pps) rides it out"
        );
    }
    let suspect = v["session"]["suspect_packets"].as_u64().unwrap_or(0);
    if suspect > 0 {
        eprintln!(
            "{who}: warning: {suspect} packets numbered implausibly far ahead were ignored \
             ({} confirmed as real jumps)",
            v["session"]["confirmed_jumps"]
        );
    }
    let foreign = v["foreign_session_packets"].as_u64().unwrap_or(0);
    if foreign > 0 {
        eprintln!(
            "{who}: warning: {foreign} packets of other sessions were dropped: sessions never \
             confirmed (fewer than 3 packets, e.g. stray or forged ones) or with every session \
             slot held by a live session (--session NAME names the expected one)"
        );
    }
    let unvouched = v["session"]["unconfirmed_packets"].as_u64().unwrap_or(0);
    if unvouched > 0 {
        eprintln!(
            "{who}: warning: {unvouched} packets held after a gap were not applied: nothing the \
             feed sent afterwards vouched for them (their messages came from another copy, a \
             server, or are counted lost)"
        );
    }
    let contradicted = v["session"]["contradicted_ends"].as_u64().unwrap_or(0);
    if contradicted > 0 {
        eprintln!(
            "{who}: warning: {contradicted} ends of session were contradicted by the feed going \
             on past them (forged or misordered) and taken back"
        );
    }
}

/// The messages lost, and whether that is the whole story: without the end
/// of session, the tail is unknown and the count only a lower bound.
pub(crate) fn lost_text(v: &Value) -> String {
    let s = &v["session"];
    if s["complete"].as_bool() == Some(true) {
        format!("{} messages lost", s["lost_messages"])
    } else {
        format!(
            "{} messages lost so far; INCOMPLETE: no end of session was seen, the tail is unknown",
            s["lost_messages"]
        )
    }
}

/// The summary as text lines.
pub(crate) fn print(v: &Value) {
    println!(
        "{} messages in {:.3} s: {:.2} M messages/s ({} packets)",
        v["messages"],
        v["seconds"].as_f64().unwrap_or(0.0),
        v["messages_per_second"].as_f64().unwrap_or(0.0) / 1e6,
        v["packets"]
    );
    let s = &v["session"];
    println!(
        "session: {} gaps ({} filled, {} unrecoverable, {}), {} duplicate and {} held packets, {} requests",
        s["gaps"],
        s["gaps_filled"],
        s["unrecoverable_gaps"],
        lost_text(v),
        s["duplicate_packets"],
        s["held_packets"],
        s["requests"]
    );
    let b = &v["books"];
    println!(
        "books: {} stocks with resting orders, {} orders live, {} unknown references{}",
        b["stocks"],
        b["live_orders"],
        b["unknown_reference"],
        if b["stale"].as_bool() == Some(true) {
            " (STALE: a gap is open)"
        } else {
            ""
        }
    );
    let c = &v["consumed"];
    println!(
        "bus: {} BBO changes, {} trades, {} VWAP emissions, {} session events, {} audit records",
        c["bbo"], c["trades"], c["vwap"], c["session"], c["audit"]
    );
}
