//! `ticklane replay`, and the pipeline options it shares with `book`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::{BusConfig, Drain};
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Finished, Poller, PollerConfig, TimeBase};
use ticklane_appliance::session::SessionConfig;
use ticklane_appliance::source::capture::CaptureSource;

use super::args::SequencingArgs;
use super::report::{self, PathInfo};
use super::{GroupPort, args};

/// Options of the pipeline behind `replay` and `book`.
#[derive(Debug, clap::Args)]
pub(crate) struct PipelineArgs {
    /// Feed lines GROUP:PORT, from SOURCE only when given (repeatable).
    /// Frames of the same session on several lines are A/B arbitrated: first
    /// copy wins. Default: every UDP frame of the capture, as one line.
    #[arg(long = "feed", value_name = "GROUP:PORT[@SOURCE]")]
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
    #[command(flatten)]
    sequencing: SequencingArgs,
    /// Capacity of the order pool (resting orders) before it must grow.
    #[arg(long, default_value_t = 1 << 20, value_parser = args::max_orders())]
    max_orders: usize,
    /// VWAP window in milliseconds (at most a day).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=DAY_MS))]
    vwap_window_ms: u64,
    /// VWAP emission interval in milliseconds (feed time; at most a day).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=DAY_MS))]
    vwap_interval_ms: u64,
}

const DAY_MS: u64 = 86_400_000;

/// Most emission intervals in a VWAP window: each is a bucket per stock.
const MAX_VWAP_INTERVALS: u64 = 1000;

/// How fast a replay runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Speed {
    /// As fast as possible.
    Max,
    /// Paced by the capture's timestamps, sped up by this factor.
    Factor(f64),
}

/// A finished run of the pipeline over a capture.
pub(crate) struct PipelineRun {
    pub(crate) finished: Finished<CaptureSource>,
    pub(crate) summary: serde_json::Value,
}

/// Runs a capture through the pipeline; `bus` sizes its rings
/// ([`BusConfig::OFF`] when nothing but the books is wanted).
pub(crate) fn run_pipeline(
    file: &Path,
    args: &PipelineArgs,
    speed: Speed,
    show_progress: bool,
    bus: BusConfig,
) -> anyhow::Result<PipelineRun> {
    let intervals = args.vwap_window_ms.div_ceil(args.vwap_interval_ms);
    if intervals > MAX_VWAP_INTERVALS {
        bail!(
            "a --vwap-window-ms of {} holds {intervals} emission intervals of {} ms; at most \
             {MAX_VWAP_INTERVALS} (each costs memory per stock): use a longer \
             --vwap-interval-ms or a shorter window",
            args.vwap_window_ms,
            args.vwap_interval_ms
        );
    }
    let (pipeline, subscribers) = Pipeline::with_bus(
        Books::new(args.max_orders),
        Vwap::new(
            args.vwap_window_ms * 1_000_000,
            args.vwap_interval_ms * 1_000_000,
        ),
        bus,
    );
    let drain = Drain::spawn(subscribers);
    let filter = super::feed_filter(&args.feeds)?;
    let cfg = PollerConfig {
        session: SessionConfig {
            max_request: args.max_request.max(1),
            request_timeout_ns: args.request_timeout_ms.max(1).saturating_mul(1_000_000),
            ..args.sequencing.config()?
        },
        lines: filter.feeds.len().max(1),
        retrans: args.retrans.clone(),
        // Without a server, the capture's own clock: the outcome does not
        // depend on the machine's speed.
        time: if args.retrans.is_empty() {
            TimeBase::Capture
        } else {
            TimeBase::Monotonic
        },
        recovery_deadline: Duration::from_secs(args.recovery_secs),
        ..PollerConfig::default()
    };
    let source = CaptureSource::new(
        file,
        filter,
        match speed {
            Speed::Max => None,
            Speed::Factor(f) => Some(f),
        },
    );
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let bar = if show_progress {
        super::progress_bar(size, "replaying")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let progress = source.progress();
    let stop = super::stop_flag()?;
    let (mut poller, _stats) = Poller::new(source, pipeline, None, cfg, &stop)?;
    let done = AtomicBool::new(false);
    let finished = std::thread::scope(|scope| {
        let ticker = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                bar.set_position(progress.load(Ordering::Relaxed));
                std::thread::park_timeout(Duration::from_millis(100));
            }
        });
        let ending = poller.run();
        done.store(true, Ordering::Relaxed);
        // Woken now: a sleeping ticker would hold the end of the process
        // up to 100 ms.
        ticker.thread().unpark();
        ending.map(|e| poller.finish(e))
    });
    bar.finish_and_clear();
    let drained = drain.finish();
    let finished = finished.with_context(|| format!("replaying {}", file.display()))?;
    let summary = report::summary(
        &finished,
        &PathInfo {
            mode: "capture",
            ..PathInfo::default()
        },
        &drained,
    );
    for p in finished.source.problems() {
        eprintln!(
            "{}: {} {} (byte offset {}): {}; skipped",
            file.display(),
            p.location.unit,
            p.location.number,
            p.location.offset,
            p.problem
        );
    }
    let more = finished
        .source
        .problems_total()
        .saturating_sub(finished.source.problems().len() as u64);
    if more > 0 {
        eprintln!("{}: {more} more malformed records skipped", file.display());
    }
    Ok(PipelineRun { finished, summary })
}

fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    let factor = s
        .strip_suffix('x')
        .ok_or_else(|| format!("'{s}' is not max, 1x or Nx"))?;
    args::positive(factor)
        .map(Speed::Factor)
        .map_err(|e| format!("'{s}' is not max, 1x or Nx: {e}"))
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
    let run = run_pipeline(
        &args.file,
        &args.pipeline,
        args.speed,
        true,
        BusConfig::default(),
    )?;
    report::warn("ticklane replay", &run.summary);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run.summary)?);
    } else {
        report::print(&run.summary);
    }
    Ok(ExitCode::SUCCESS)
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
