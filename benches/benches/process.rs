//! Whole processes, as a user runs them: the release `ticklane` binary's
//! `book FILE`, `decode --summary FILE` and `replay --speed max FILE` on a
//! 2 M-message capture of the uniform mix (50 stocks, references stepping by
//! 1–4, 6–7 messages a packet: the shape of issue 10's independent feed),
//! against the plain baseline program `plain-itch` (itchy, a `HashMap` of
//! orders and `BTreeMap` levels over a whole-file read) in the same run,
//! interleaved, 5 runs each; the books both print must be identical.
//!
//! Reports best and median wall times, the ratios and messages/s (targets:
//! book ≥ 4× the baseline, decode --summary ≥ 5×, replay ≥ 40 M messages/s).
//! `TICKLANE_BENCH_PROCESS_MESSAGES` changes the capture's size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn binary(package: &str, bin: &str) -> PathBuf {
    escargot::CargoBuild::new()
        .package(package)
        .bin(bin)
        .release()
        .run()
        .unwrap_or_else(|e| panic!("building {bin}: {e}"))
        .path()
        .to_owned()
}

/// Runs a command to its end, stdout kept; panics unless it succeeds.
fn run(program: &Path, args: &[&str]) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        out.status
    );
    (took, out.stdout)
}

struct Timed {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    times: Vec<Duration>,
}

impl Timed {
    fn best(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort_unstable();
        t.get(t.len() / 2).copied().unwrap_or_default()
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // nothing for `cargo bench -- --list`
    }
    let messages: u64 = std::env::var("TICKLANE_BENCH_PROCESS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let ticklane = binary("ticklane", "ticklane");
    let plain = binary("ticklane-benches", "plain-itch");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let capture = dir.path().join("uniform.pcap");
    let capture_arg = capture.to_str().expect("a UTF-8 path").to_owned();
    run(
        &ticklane,
        &[
            "gen",
            "--mix",
            "uniform",
            "--stocks",
            "50",
            "--messages",
            &messages.to_string(),
            "--max-payload",
            "220",
            "--seed",
            "7",
            "-o",
            &capture_arg,
        ],
    );
    let size = std::fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);

    let (_, ours) = run(&ticklane, &["book", &capture_arg]);
    let (_, theirs) = run(&plain, &["book", &capture_arg]);
    assert!(!ours.is_empty());
    assert!(
        ours == theirs,
        "ticklane book and the baseline print the same books"
    );

    let timed = |name, program: &Path, args: &[&str]| Timed {
        name,
        program: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        times: Vec::new(),
    };
    let mut contenders = [
        timed("ticklane book", &ticklane, &["book", &capture_arg]),
        timed("baseline book", &plain, &["book", &capture_arg]),
        timed(
            "ticklane decode --summary",
            &ticklane,
            &["decode", "--summary", &capture_arg],
        ),
        timed("baseline summary", &plain, &["summary", &capture_arg]),
        timed(
            "ticklane replay --speed max",
            &ticklane,
            &["replay", "--speed", "max", &capture_arg],
        ),
    ];
    let load_before = load();
    for _ in 0..RUNS {
        for c in &mut contenders {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            let (took, _) = run(&c.program, &args);
            c.times.push(took);
        }
    }
    println!(
        "\nwhole processes on {messages} messages ({:.1} MB uniform-mix pcap), {RUNS} interleaved runs each \
         (load average before {load_before}, after {}):",
        size as f64 / 1e6,
        load()
    );
    for c in &contenders {
        println!(
            "  {:<28} best {:>7.1} ms  median {:>7.1} ms  {:>6.1} M msg/s (best)",
            c.name,
            c.best().as_secs_f64() * 1e3,
            c.median().as_secs_f64() * 1e3,
            messages as f64 / c.best().as_secs_f64() / 1e6
        );
    }
    let ratio = |a: usize, b: usize| {
        let (x, y) = (&contenders[a], &contenders[b]);
        (
            y.best().as_secs_f64() / x.best().as_secs_f64(),
            y.median().as_secs_f64() / x.median().as_secs_f64(),
        )
    };
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let (book, book_med) = ratio(0, 1);
    let (summary, summary_med) = ratio(2, 3);
    let replay = messages as f64 / contenders[4].best().as_secs_f64() / 1e6;
    println!("ratios (same run; best, median):");
    println!(
        "  book: baseline / ticklane {book:.2}x, {book_med:.2}x (target >= 4x: {})",
        met(book >= 4.0)
    );
    println!(
        "  decode --summary: baseline / ticklane {summary:.2}x, {summary_med:.2}x (target >= 5x: {})",
        met(summary >= 5.0)
    );
    println!(
        "  replay --speed max: {replay:.1} M messages/s through the whole pipeline (target >= 40: {})",
        met(replay >= 40.0)
    );
}
