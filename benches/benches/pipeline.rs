//! Parse + MoldUDP64 session + full-depth order books, against a simple
//! baseline book (BTreeMap price levels and a HashMap of orders) run through
//! the very same parse and session path, plus the whole pipeline through the
//! production poller and delivery path (sessions, books, VWAP, tape, bus,
//! audit ring) — all in one run, on three workloads:
//!
//! - **default**: the generator's own mix (4 in 5 cancels, executions,
//!   deletes and replaces name one of the 1,024 newest orders), 1 M
//!   messages, 500 stocks, full packets;
//! - **uniform**: any live order equally likely, references stepping by 1–4,
//!   2 M messages, 50 stocks, about 6–7 messages a packet (the shape of the
//!   independently generated feed of issue 10);
//! - **full day**: 8,000 stocks, 1.05 M orders resting before the mix
//!   starts, 20 M messages (`TICKLANE_BENCH_FULL_DAY_MESSAGES` scales it;
//!   `0` skips it).
//!
//! Reports ns/message, messages/s, the baseline ratio and bytes per order
//! (targets: ≥ 3× the baseline on every workload; ≤ 25 ns/message on the
//! default mix, ≤ 40 ns/message on the uniform mix).

use criterion::{Criterion, Throughput, criterion_group};

use ticklane_benches::suite::Scale;
use ticklane_benches::suite::books::{
    Workload, baseline_books, session_only, ticklane_books, workload,
};
use ticklane_benches::whole_pipeline;

/// Messages of the default mix (the uniform mix has twice as many).
const SCALE: Scale = Scale::FULL;

/// Messages of the full-day workload (`TICKLANE_BENCH_FULL_DAY_MESSAGES`,
/// default 20 M; 0 skips it).
fn full_day_messages() -> u64 {
    std::env::var("TICKLANE_BENCH_FULL_DAY_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000)
}

fn bench(c: &mut Criterion) {
    let w = Workload::default_mix(SCALE);
    let source = w.stream.source();
    let mut g = c.benchmark_group("session_books");
    g.throughput(Throughput::Elements(w.stream.messages));
    g.sample_size(10);
    g.bench_function("ticklane_books", |b| {
        b.iter(|| ticklane_books(&w.stream, w.max_orders).0)
    });
    g.bench_function("baseline_btreemap_hashmap", |b| {
        b.iter(|| baseline_books(&w.stream).0)
    });
    g.bench_function("whole_pipeline", |b| {
        b.iter(|| whole_pipeline(&source, w.max_orders, None))
    });
    g.bench_function("parse_session_no_book", |b| {
        b.iter(|| session_only(&w.stream))
    });
    g.finish();
}

/// The same-run report of one workload (the suite `ticklane bench` runs
/// too).
fn report(w: &Workload) {
    match workload(w) {
        Ok(s) => print!("{}", s.text()),
        Err(e) => panic!("{}: {e}", w.name),
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(which) = std::env::var("TICKLANE_PROFILE_ONLY") {
        // For profilers: run one contender (books, baseline or none) on one
        // workload (TICKLANE_PROFILE_WORKLOAD: default, uniform or full-day)
        // repeatedly, nothing else.
        let w = match std::env::var("TICKLANE_PROFILE_WORKLOAD").as_deref() {
            Ok("uniform") => Workload::uniform_mix(SCALE),
            Ok("full-day") => Workload::full_day(full_day_messages()),
            _ => Workload::default_mix(SCALE),
        };
        for _ in 0..w.rounds {
            std::hint::black_box(match which.as_str() {
                "books" => ticklane_books(&w.stream, w.max_orders).0,
                "baseline" => baseline_books(&w.stream).0,
                _ => session_only(&w.stream),
            });
        }
        return;
    }
    if std::env::var_os("TICKLANE_BENCH_REPORT_ONLY").is_none() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    report(&Workload::default_mix(SCALE));
    report(&Workload::uniform_mix(SCALE));
    match full_day_messages() {
        0 => println!("\nfull day: skipped (TICKLANE_BENCH_FULL_DAY_MESSAGES=0)"),
        n => report(&Workload::full_day(n)),
    }
}
