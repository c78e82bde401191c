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

use ticklane_appliance::book::Books;
use ticklane_appliance::session::{Action, ActionSink, SessionConfig, SessionTracker};
use ticklane_benches::baseline::{BaselineBooks, BookLevels};
use ticklane_benches::{MoldStream, interleaved_best, whole_pipeline};
use ticklane_lab::market::{MarketConfig, Mix};
use ticklane_protocols::itch::{self, Handler};
use ticklane_protocols::moldudp64::Packet;

const MESSAGES: u64 = 1_000_000;
const STOCKS: u16 = 500;

/// One workload: a feed, and the order capacity the books get for it (the
/// default mix keeps the 2^18 it always had; the uniform mix gets the CLI's
/// default, 2^20; the full day room for its 1.05 M resting orders).
struct Workload {
    name: &'static str,
    stream: MoldStream,
    max_orders: usize,
    rounds: usize,
    target_ns: Option<f64>,
}

fn default_mix() -> Workload {
    Workload {
        name: "default mix",
        stream: MoldStream::generate(MESSAGES, STOCKS, 1400),
        max_orders: 1 << 18,
        rounds: 7,
        target_ns: Some(25.0),
    }
}

fn uniform_mix() -> Workload {
    let market = MarketConfig {
        seed: 42,
        stocks: 50,
        messages: 2_000_000,
        max_live_orders: 1 << 20,
        mix: Mix::Uniform,
        resting: 0,
    };
    Workload {
        name: "uniform mix",
        // 220-byte payloads: 6 to 7 messages a packet.
        stream: MoldStream::market(market, 220),
        max_orders: 1 << 20,
        rounds: 7,
        target_ns: Some(40.0),
    }
}

fn full_day(messages: u64) -> Workload {
    let market = MarketConfig {
        seed: 42,
        stocks: 8_000,
        messages,
        max_live_orders: 1_200_000,
        mix: Mix::Recent,
        resting: 1_050_000,
    };
    Workload {
        name: "full day",
        stream: MoldStream::market(market, 1400),
        max_orders: 1 << 21,
        rounds: 3,
        target_ns: None,
    }
}

/// Messages of the full-day workload (`TICKLANE_BENCH_FULL_DAY_MESSAGES`,
/// default 20 M; 0 skips it).
fn full_day_messages() -> u64 {
    std::env::var("TICKLANE_BENCH_FULL_DAY_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000)
}

fn canonical(books: &Books) -> Vec<BookLevels> {
    books
        .iter()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| {
            (
                i,
                b.bids().map(|l| (l.price, l.shares)).collect(),
                b.asks().map(|l| (l.price, l.shares)).collect(),
            )
        })
        .collect()
}

/// What a handler does with a packet before its messages arrive: the
/// ticklane books prefetch the orders it names, as in production (the
/// delivery sink does the same); the baseline does nothing.
trait Upcoming {
    fn upcoming(&mut self, _packet: &Packet<&[u8]>) {}
}

impl Upcoming for Books {
    fn upcoming(&mut self, packet: &Packet<&[u8]>) {
        self.prefetch(packet);
    }
}

impl Upcoming for BaselineBooks {}

impl Upcoming for Nothing {}

/// Session deliveries parsed and dispatched to a handler.
struct ToHandler<'a, H: Handler> {
    handler: &'a mut H,
    delivered: u64,
}

impl<H: Handler + Upcoming> ActionSink for ToHandler<'_, H> {
    #[inline]
    fn upcoming(&mut self, packet: &Packet<&[u8]>) {
        self.handler.upcoming(packet);
    }

    #[inline]
    fn action(&mut self, a: Action<'_>) {
        if let Action::Deliver { message, .. } = a
            && itch::dispatch(message, self.handler).is_ok()
        {
            self.delivered += 1;
        }
    }
}

fn session_run(stream: &MoldStream, sink: &mut impl ActionSink) {
    let mut tracker = SessionTracker::new(SessionConfig {
        window_packets: 64,
        ..SessionConfig::default()
    });
    for (now, bytes) in stream.iter().enumerate() {
        if let Ok(p) = Packet::new_checked(bytes) {
            tracker.on_packet(now as u64, &p, sink);
        }
    }
}

/// Parse and session only: what the books add is the difference.
struct Nothing;

impl Handler for Nothing {}

fn session_only(stream: &MoldStream) -> u64 {
    let mut sink = ToHandler {
        handler: &mut Nothing,
        delivered: 0,
    };
    session_run(stream, &mut sink);
    sink.delivered
}

fn ticklane_books(stream: &MoldStream, max_orders: usize) -> (u64, Books) {
    let mut books = Books::new(max_orders);
    let mut sink = ToHandler {
        handler: &mut books,
        delivered: 0,
    };
    session_run(stream, &mut sink);
    (sink.delivered, books)
}

fn baseline_books(stream: &MoldStream) -> (u64, BaselineBooks) {
    let mut books = BaselineBooks::default();
    let mut sink = ToHandler {
        handler: &mut books,
        delivered: 0,
    };
    session_run(stream, &mut sink);
    (sink.delivered, books)
}

fn bench(c: &mut Criterion) {
    let w = default_mix();
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

/// The same-run report of one workload.
fn report(w: &Workload) {
    let stream = &w.stream;
    let (n, books) = ticklane_books(stream, w.max_orders);
    let (m, baseline) = baseline_books(stream);
    let source = stream.source();
    assert_eq!((n, m), (stream.messages, stream.messages));
    assert_eq!(whole_pipeline(&source, w.max_orders, None), stream.messages);
    assert_eq!(
        canonical(&books),
        baseline.canonical(),
        "both books end identical"
    );
    let (peak, level_bytes) = (books.live_orders(), books.bytes_per_level());
    drop((books, baseline));
    let mut t = || ticklane_books(stream, w.max_orders).0;
    let mut b = || baseline_books(stream).0;
    let mut p = || whole_pipeline(&source, w.max_orders, None);
    let mut n = || session_only(stream);
    let results = interleaved_best(
        w.rounds,
        &mut [
            ("ticklane books", &mut t),
            ("baseline book", &mut b),
            ("whole pipeline", &mut p),
            ("no book", &mut n),
        ],
    );
    let msgs = stream.messages as f64;
    println!(
        "\n{}: parse + session + full-depth books, {} messages in {} packets ({:.1} a packet), best of {} interleaved runs:",
        w.name,
        stream.messages,
        stream.packets.len(),
        msgs / stream.packets.len() as f64,
        w.rounds
    );
    for (name, d, _) in &results {
        let s = d.as_secs_f64();
        println!(
            "  {name:<15} {:>9.2} ms  {:>6.1} ns/msg  {:>6.1} M msg/s",
            s * 1e3,
            s / msgs * 1e9,
            msgs / s / 1e6
        );
    }
    let (tl, base) = (results[0].1.as_secs_f64(), results[1].1.as_secs_f64());
    let none = results[3].1.as_secs_f64();
    let ns = tl / msgs * 1e9;
    let target = w.target_ns.map_or(String::new(), |t| {
        format!(", target <= {t} ns/msg: {}", met(ns <= t))
    });
    println!("ratios (same run):");
    println!(
        "  baseline / ticklane books: {:.2}x (target >= 3x: {}){target}",
        base / tl,
        met(base / tl >= 3.0)
    );
    println!(
        "  whole pipeline through the poller / baseline book alone (which does less: no VWAP, \
         tape, bus or audit copy): {:.2}x the time",
        results[2].1.as_secs_f64() / base
    );
    println!(
        "  the books' own cost: ticklane {:.1} ns/msg, baseline {:.1} ns/msg ({:.2}x)",
        (tl - none) / msgs * 1e9,
        (base - none) / msgs * 1e9,
        (base - none) / (tl - none)
    );
    println!(
        "memory: {} bytes per order the pool is sized for ({} orders), {level_bytes} bytes per price level; \
         {peak} orders resting at the end, {:.0} bytes of pool each",
        books_bytes_per_order(w.max_orders),
        w.max_orders,
        (books_bytes_per_order(w.max_orders) * w.max_orders.next_power_of_two()) as f64
            / peak.max(1) as f64,
    );
}

fn books_bytes_per_order(max_orders: usize) -> usize {
    Books::new(max_orders).bytes_per_order()
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(which) = std::env::var("TICKLANE_PROFILE_ONLY") {
        // For profilers: run one contender (books, baseline or none) on one
        // workload (TICKLANE_PROFILE_WORKLOAD: default, uniform or full-day)
        // repeatedly, nothing else.
        let w = match std::env::var("TICKLANE_PROFILE_WORKLOAD").as_deref() {
            Ok("uniform") => uniform_mix(),
            Ok("full-day") => full_day(full_day_messages()),
            _ => default_mix(),
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
    report(&default_mix());
    report(&uniform_mix());
    match full_day_messages() {
        0 => println!("\nfull day: skipped (TICKLANE_BENCH_FULL_DAY_MESSAGES=0)"),
        n => report(&full_day(n)),
    }
}
