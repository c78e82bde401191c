//! `ticklane replay`, and the pipeline options it shares with `book`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ticklane::book::Books;
use ticklane::bus::{self, BusConfig, Drain, DrainStats};
use ticklane::pipeline::{self, Pipeline, ReplayOptions, ReplayOutcome, Speed};
use ticklane::session::SessionConfig;
use ticklane::vwap::Vwap;
use ticklane_protocols::itch::MESSAGE_TYPES;

use super::GroupPort;

/// Options of the pipeline behind `replay` and `book`.
#[derive(Debug, clap::Args)]
pub(crate) struct PipelineArgs {
    /// Feed lines GROUP:PORT (repeatable). Frames of the same session on
    /// several lines are A/B arbitrated: first copy wins. Default: every UDP
    /// frame of the capture, as one line.
    #[arg(long = "feed", value_name = "GROUP:PORT")]
    feeds: Vec<GroupPort>,
    /// MoldUDP64 re-request server HOST:PORT (repeatable, fail-over in order).
    /// Gaps are requested from it over UDP and filled.
    #[arg(long = "retrans", value_name = "HOST:PORT")]
    retrans: Vec<SocketAddr>,
    /// Most messages per re-request.
    #[arg(long, default_value_t = 1000)]
    max_request: u16,
    /// Request timeout in milliseconds (doubles with each retry).
    #[arg(long, default_value_t = 50)]
    request_timeout_ms: u64,
    /// Seconds to keep recovering gaps after the end of the capture.
    #[arg(long, default_value_t = 30)]
    recovery_secs: u64,
    /// Start at the first packet seen instead of treating the messages before
    /// it as a gap (a capture that begins mid-session has no earlier
    /// messages to build books from; by default they count as lost).
    #[arg(long)]
    join_live: bool,
    /// Capacity of the order pool (resting orders) before it must grow.
    #[arg(long, default_value_t = 1 << 20)]
    max_orders: usize,
    /// VWAP window in milliseconds.
    #[arg(long, default_value_t = 1000)]
    vwap_window_ms: u64,
    /// VWAP emission interval in milliseconds (feed time).
    #[arg(long, default_value_t = 100)]
    vwap_interval_ms: u64,
}

/// A finished run of the pipeline.
pub(crate) struct PipelineRun {
    pub(crate) pipeline: Pipeline,
    pub(crate) outcome: ReplayOutcome,
    pub(crate) drained: DrainStats,
}

pub(crate) fn run_pipeline(
    file: &Path,
    args: &PipelineArgs,
    show_progress: bool,
) -> anyhow::Result<PipelineRun> {
    run_pipeline_at(file, args, Speed::Max, show_progress)
}

fn run_pipeline_at(
    file: &Path,
    args: &PipelineArgs,
    speed: Speed,
    show_progress: bool,
) -> anyhow::Result<PipelineRun> {
    let (publisher, subscribers) = bus::bus(BusConfig::default());
    let drain = Drain::spawn(subscribers);
    let mut pipeline = Pipeline::new(
        Books::new(args.max_orders),
        Vwap::new(
            args.vwap_window_ms * 1_000_000,
            args.vwap_interval_ms * 1_000_000,
        ),
        publisher,
    );
    let options = ReplayOptions {
        feeds: args
            .feeds
            .iter()
            .map(|f| (f.group.octets(), f.port))
            .collect(),
        session: SessionConfig {
            max_request: args.max_request.max(1),
            request_timeout_ns: args.request_timeout_ms.max(1) * 1_000_000,
            backfill_from: if args.join_live { None } else { Some(1) },
            ..SessionConfig::default()
        },
        retrans: args.retrans.clone(),
        speed,
        recovery_deadline: Duration::from_secs(args.recovery_secs),
    };
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let bar = if show_progress {
        super::progress_bar(size, "replaying")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let outcome = pipeline::replay(file, &options, &mut pipeline, &mut |offset| {
        bar.set_position(offset)
    });
    bar.finish_and_clear();
    let drained = drain.finish();
    let outcome = outcome.with_context(|| format!("replaying {}", file.display()))?;
    Ok(PipelineRun {
        pipeline,
        outcome,
        drained,
    })
}

fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    let factor: f64 = s
        .strip_suffix('x')
        .ok_or_else(|| format!("'{s}' is not max, 1x or Nx"))?
        .parse()
        .map_err(|_| format!("'{s}' is not max, 1x or Nx"))?;
    if factor > 0.0 {
        Ok(Speed::Factor(factor))
    } else {
        Err("the speed factor must be above 0".into())
    }
}

/// Replay a capture through the whole pipeline and summarise it.
///
/// The same code as the live path: MoldUDP64 sequencing with gap detection
/// (and recovery with --retrans), A/B arbitration (--feed repeated), order
/// books, VWAP, trade tape, bus and audit ring. Prints messages/s, gaps,
/// books and VWAPs; --json prints the summary as one JSON object.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Capture file (pcap, pcapng or BinaryFILE).
    file: PathBuf,
    /// max (as fast as possible), 1x (capture timing), or Nx (N times faster).
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    speed: Speed,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub(crate) fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let run = run_pipeline_at(&args.file, &args.pipeline, args.speed, true)?;
    let summary = summary(&run);
    run.outcome.warn("ticklane replay");
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(run: &PipelineRun) -> serde_json::Value {
    let o = &run.outcome;
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let books = run
        .pipeline
        .books
        .iter()
        .filter(|(_, b)| !b.is_empty())
        .count();
    let by_type: serde_json::Map<String, serde_json::Value> = MESSAGE_TYPES
        .iter()
        .zip(run.pipeline.by_type())
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (char::from(t.tag).to_string(), (*n).into()))
        .collect();
    let s = &o.session;
    let bs = run.pipeline.books.stats();
    let bus = run.pipeline.bus().stats();
    serde_json::json!({
        "messages": o.delivered,
        "seconds": secs,
        "messages_per_second": o.delivered as f64 / secs,
        "packets": o.decode.packets,
        "malformed": {"packets": o.decode.bad_packets, "messages": o.decode.bad_messages},
        "by_type": by_type,
        "session": {
            "gaps": s.gaps, "gaps_filled": s.gaps_filled, "duplicate_packets": s.duplicate_packets,
            "reordered_packets": s.held_packets, "requests": s.requests, "retries": s.retries,
            "unrecoverable_gaps": s.unrecoverable_gaps, "lost_messages": s.unrecoverable_messages,
            "lost_ranges": o.lost.iter().map(|(a, b)| [*a, *b]).collect::<Vec<_>>(),
        },
        "lines": o.lines.iter().map(|l| serde_json::json!({
            "packets": l.packets, "duplicates": l.duplicates, "gaps": l.gaps,
            "gaps_covered_by_other": l.gaps_covered_by_other, "lag_messages": l.lag_messages, "downs": l.downs,
        })).collect::<Vec<_>>(),
        "books": {"stocks": books, "live_orders": run.pipeline.books.live_orders(),
                  "unknown_reference": bs.unknown_reference, "pool_growths": bs.pool_growths,
                  "stale": run.pipeline.is_stale()},
        "bus": {"published": bus.published, "dropped": bus.dropped, "audit_overflow": bus.audit_overflow},
        "consumed": {"bbo": run.drained.bbo, "trades": run.drained.trades, "vwap": run.drained.vwap,
                     "session": run.drained.session, "audit": run.drained.audit},
    })
}

fn print_summary(v: &serde_json::Value) {
    println!(
        "replayed {} messages in {:.3} s: {:.2} M messages/s ({} packets)",
        v["messages"],
        v["seconds"].as_f64().unwrap_or(0.0),
        v["messages_per_second"].as_f64().unwrap_or(0.0) / 1e6,
        v["packets"]
    );
    let s = &v["session"];
    println!(
        "session: {} gaps ({} filled, {} unrecoverable, {} messages lost), {} duplicate and {} reordered packets, {} requests",
        s["gaps"],
        s["gaps_filled"],
        s["unrecoverable_gaps"],
        s["lost_messages"],
        s["duplicate_packets"],
        s["reordered_packets"],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!(parse_speed("max"), Ok(Speed::Max));
        assert_eq!(parse_speed("1x"), Ok(Speed::Factor(1.0)));
        assert_eq!(parse_speed("2.5x"), Ok(Speed::Factor(2.5)));
        assert!(parse_speed("0x").is_err());
        assert!(parse_speed("fast").unwrap_err().contains("max, 1x or Nx"));
        assert!(parse_speed("3").is_err());
    }
}
