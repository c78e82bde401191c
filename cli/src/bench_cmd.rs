//! `ticklane bench`: the benchmark suites of `benches/` run from the
//! installed binary, written as a report directory (Markdown, SVG plots,
//! JSON) that records the machine, so that two hosts' reports compare.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use ticklane_benches::suite::{self, Scale, Suite, SuiteError};

use super::bench_report;

/// Benchmark ticklane on this machine and write a report.
///
/// Runs the benchmark suites (every contender interleaved with a baseline
/// measured in the same run) and writes into --out: report.md (every
/// figure beside its baseline and the ratio), SVG plots (throughput bars,
/// latency CDFs) and report.json, with the machine (CPU, cores, kernel,
/// rustc, git commit) so that reports of two hosts compare. --capture FILE
/// replays your own capture through the whole pipeline and reports
/// messages/s and ns/message. Run it on a quiet machine: other load shows
/// in the figures (the ratios suffer less).
///
/// Example: ticklane bench --suite parse,books --quick --out bench-report
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Suites to run, comma-separated [default: all (net when root; send
    /// only says how to run it); with --capture: replay].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SUITE,...")]
    suite: Vec<SuiteArg>,
    /// A short run (seconds, not minutes): smaller workloads, fewer rounds,
    /// noisier figures.
    #[arg(long)]
    quick: bool,
    /// Replay this capture (pcap, pcapng or BinaryFILE) through the whole
    /// pipeline instead of a generated one.
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    /// The report directory (created; files in it are replaced).
    #[arg(long, default_value = "ticklane-bench")]
    out: PathBuf,
    /// Print report.json on stdout instead of the text summary.
    #[arg(long)]
    json: bool,
}

/// A suite on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SuiteArg {
    /// Parse + dispatch against itch5, itchy and memcpy.
    Parse,
    /// Sessions + order books against a BTreeMap/HashMap book, and the
    /// whole pipeline.
    Books,
    /// A capture through the whole pipeline against reading the file.
    Replay,
    /// The audit journal against writing the bare bytes.
    Audit,
    /// The poller with and without a flood of control-plane requests.
    Control,
    /// AF_XDP against kernel UDP on a veth pair it builds (needs root).
    Net,
    /// `ticklane send` against tcpreplay (not from the binary).
    Send,
}

impl SuiteArg {
    fn name(self) -> &'static str {
        match self {
            Self::Parse => "parse",
            Self::Books => "books",
            Self::Replay => "replay",
            Self::Audit => "audit",
            Self::Control => "control",
            Self::Net => "net",
            Self::Send => "send",
        }
    }

    /// Why the installed binary does not run it, if it does not.
    fn not_here(self) -> Option<&'static str> {
        match self {
            Self::Send => Some(
                "compares against tcpreplay on a veth lab it builds with a release build of the \
                 tree: run `cargo bench -p ticklane-benches --bench send` in the source tree",
            ),
            _ => None,
        }
    }
}

/// Every suite: those the binary cannot run are listed in the report
/// with why.
const DEFAULT: [SuiteArg; 7] = [
    SuiteArg::Parse,
    SuiteArg::Books,
    SuiteArg::Replay,
    SuiteArg::Audit,
    SuiteArg::Control,
    SuiteArg::Net,
    SuiteArg::Send,
];

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut wanted: Vec<SuiteArg> = match (&args.suite[..], &args.capture) {
        ([], Some(_)) => vec![SuiteArg::Replay],
        ([], None) => DEFAULT.to_vec(),
        (some, _) => some.to_vec(),
    };
    wanted.dedup();
    if let Some(c) = &args.capture {
        if !wanted.contains(&SuiteArg::Replay) {
            anyhow::bail!("--capture is replayed by the replay suite: add replay to --suite");
        }
        std::fs::File::open(c).with_context(|| format!("opening the capture {}", c.display()))?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the report directory {}", args.out.display()))?;
    let scale = if args.quick {
        Scale::QUICK
    } else {
        Scale::FULL
    };
    let mut machine = bench_report::machine();
    let bar = super::progress_bar(wanted.len() as u64, "benchmarking");
    let mut suites: Vec<Suite> = Vec::new();
    let mut skipped: Vec<(&'static str, String)> = Vec::new();
    for s in &wanted {
        bar.set_message(s.name());
        bar.println(format!("ticklane bench: running {}", s.name()));
        if let Some(why) = s.not_here() {
            skipped.push((s.name(), why.to_owned()));
        } else {
            match run_suite(*s, scale, args, &bar) {
                Ok(got) => suites.extend(got),
                Err(SuiteError::Unavailable(why)) => skipped.push((s.name(), why)),
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(format!("the {} suite", s.name())));
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if suites.iter().any(|s| s.name == "net") {
        let (name, driver) = suite::net::INTERFACE;
        machine["interface"] = json!({
            "name": name, "driver": driver,
            "where": "the net suite's own veth pair, in network namespaces it built",
        });
    }
    let report = bench_report::Report {
        machine,
        scale,
        suites,
        skipped,
    };
    let written = bench_report::write(&report, &args.out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        for s in &report.suites {
            print!("{}", s.text());
        }
        for (name, why) in &report.skipped {
            println!("\n{name}: skipped: {why}");
        }
        println!(
            "\nreport: {} ({} files)",
            args.out.join("report.md").display(),
            written
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_suite(
    s: SuiteArg,
    scale: Scale,
    args: &BenchArgs,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Suite>, SuiteError> {
    let scratch = || tempfile_dir(&args.out);
    Ok(match s {
        SuiteArg::Parse => vec![suite::parse::run(scale)?],
        SuiteArg::Books => suite::books::run(scale)?,
        SuiteArg::Replay => match &args.capture {
            Some(file) => vec![suite::replay::run(file, scale, false)?],
            None => {
                let dir = scratch()?;
                let file = dir.path().join("generated.pcap");
                // Four times the other suites' feed: the file's start-up
                // costs stay small beside the messages.
                suite::replay::generate_capture(&file, 4 * scale.messages)?;
                vec![suite::replay::run(&file, scale, true)?]
            }
        },
        SuiteArg::Audit => vec![suite::audit::run(scale, scratch()?.path())?],
        SuiteArg::Control => vec![suite::control::run(scale)?],
        SuiteArg::Net => {
            let size = if args.quick {
                suite::net::NetScale::QUICK
            } else {
                suite::net::NetScale::FULL
            };
            vec![suite::net::run(size, &mut |line| bar.println(line))?]
        }
        SuiteArg::Send => Vec::new(),
    })
}

/// A scratch directory beside the report (the audit suite measures the
/// file system the report is on), removed when dropped.
fn tempfile_dir(out: &Path) -> Result<tempfile::TempDir, SuiteError> {
    tempfile::Builder::new()
        .prefix(".scratch")
        .tempdir_in(out)
        .map_err(|source| SuiteError::Io {
            what: format!("creating a scratch directory in {}", out.display()),
            source,
        })
}

/// The scale as JSON.
pub(crate) fn scale_json(scale: Scale) -> Value {
    json!({"messages": scale.messages, "rounds": scale.rounds})
}
