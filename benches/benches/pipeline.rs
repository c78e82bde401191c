//! Parse + MoldUDP64 session + full-depth order books over the generated
//! realistic mix, against a simple baseline book (BTreeMap price levels and a
//! HashMap of orders) run through the very same parse and session path, plus
//! the whole pipeline through the production poller and delivery path
//! (sessions, books, VWAP, tape, bus, audit ring) — all in one run.
//!
//! Reports ns/message, messages/s, the baseline ratio and bytes per live
//! order (targets: ≤ 25 ns/message, ≥ 40 M messages/s on one core).

use std::collections::{BTreeMap, HashMap};

use criterion::{Criterion, Throughput, criterion_group};

use ticklane_appliance::book::Books;
use ticklane_appliance::session::{Action, ActionSink, SessionConfig, SessionTracker};
use ticklane_benches::{MoldStream, interleaved_best, whole_pipeline};
use ticklane_protocols::itch::{self, Handler};
use ticklane_protocols::moldudp64::Packet;

const MESSAGES: u64 = 1_000_000;
const STOCKS: u16 = 500;

/// A stock's levels (locate, bids best first, asks best first), to compare books.
type BookLevels = (u16, Vec<(u32, u64)>, Vec<(u32, u64)>);

/// The baseline: what a first implementation would write.
#[derive(Default)]
struct BaselineBooks {
    orders: HashMap<u64, (u16, u8, u32, u32)>,
    levels: Vec<(BTreeMap<u32, u64>, BTreeMap<u32, u64>)>,
}

impl BaselineBooks {
    fn side(&mut self, locate: u16, side: u8) -> &mut BTreeMap<u32, u64> {
        let i = usize::from(locate);
        if i >= self.levels.len() {
            self.levels.resize_with(i + 1, Default::default);
        }
        let (bids, asks) = &mut self.levels[i];
        if side == b'B' { bids } else { asks }
    }

    fn add(&mut self, reference: u64, locate: u16, side: u8, shares: u32, price: u32) {
        self.orders.insert(reference, (locate, side, price, shares));
        *self.side(locate, side).entry(price).or_default() += u64::from(shares);
    }

    fn take(&mut self, reference: u64, shares: Option<u32>) -> Option<(u16, u8)> {
        let o = self.orders.get_mut(&reference)?;
        let (locate, side, price) = (o.0, o.1, o.2);
        let taken = shares.unwrap_or(o.3).min(o.3);
        o.3 -= taken;
        if o.3 == 0 {
            self.orders.remove(&reference);
        }
        let level = self.side(locate, side);
        if let Some(l) = level.get_mut(&price) {
            *l -= u64::from(taken);
            if *l == 0 {
                level.remove(&price);
            }
        }
        Some((locate, side))
    }

    fn canonical(&self) -> Vec<BookLevels> {
        self.levels
            .iter()
            .enumerate()
            .filter(|(_, (b, a))| !b.is_empty() || !a.is_empty())
            .map(|(i, (b, a))| {
                (
                    i as u16,
                    b.iter().rev().map(|(p, s)| (*p, *s)).collect(),
                    a.iter().map(|(p, s)| (*p, *s)).collect(),
                )
            })
            .collect()
    }
}

impl Handler for BaselineBooks {
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.add(
            m.order_reference_number(),
            m.header.stock_locate(),
            m.buy_sell_indicator(),
            m.shares(),
            m.price(),
        );
    }
    fn on_add_order_mpid(&mut self, m: &itch::AddOrderMpid) {
        self.add(
            m.order_reference_number(),
            m.header.stock_locate(),
            m.buy_sell_indicator(),
            m.shares(),
            m.price(),
        );
    }
    fn on_order_executed(&mut self, m: &itch::OrderExecuted) {
        self.take(m.order_reference_number(), Some(m.executed_shares()));
    }
    fn on_order_executed_with_price(&mut self, m: &itch::OrderExecutedWithPrice) {
        self.take(m.order_reference_number(), Some(m.executed_shares()));
    }
    fn on_order_cancel(&mut self, m: &itch::OrderCancel) {
        self.take(m.order_reference_number(), Some(m.cancelled_shares()));
    }
    fn on_order_delete(&mut self, m: &itch::OrderDelete) {
        self.take(m.order_reference_number(), None);
    }
    fn on_order_replace(&mut self, m: &itch::OrderReplace) {
        if let Some((locate, side)) = self.take(m.original_order_reference_number(), None) {
            self.add(
                m.new_order_reference_number(),
                locate,
                side,
                m.shares(),
                m.price(),
            );
        }
    }
}

fn canonical(books: &Books) -> Vec<BookLevels> {
    books
        .iter()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| {
            (
                i,
                b.bids.iter().map(|l| (l.price, l.shares)).collect(),
                b.asks.iter().map(|l| (l.price, l.shares)).collect(),
            )
        })
        .collect()
}

/// Session deliveries parsed and dispatched to a handler.
struct ToHandler<'a, H: Handler> {
    handler: &'a mut H,
    delivered: u64,
}

impl<H: Handler> ActionSink for ToHandler<'_, H> {
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

fn ticklane_books(stream: &MoldStream) -> (u64, Books) {
    let mut books = Books::new(1 << 18);
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
    let stream = MoldStream::generate(MESSAGES, STOCKS, 1400);
    let source = stream.source();
    let mut g = c.benchmark_group("session_books");
    g.throughput(Throughput::Elements(stream.messages));
    g.sample_size(10);
    g.bench_function("ticklane_books", |b| b.iter(|| ticklane_books(&stream).0));
    g.bench_function("baseline_btreemap_hashmap", |b| {
        b.iter(|| baseline_books(&stream).0)
    });
    g.bench_function("whole_pipeline", |b| {
        b.iter(|| whole_pipeline(&source, None))
    });
    g.bench_function("parse_session_no_book", |b| {
        b.iter(|| session_only(&stream))
    });
    g.finish();
}

fn report() {
    let stream = MoldStream::generate(MESSAGES, STOCKS, 1400);
    let (n, books) = ticklane_books(&stream);
    let (m, baseline) = baseline_books(&stream);
    let source = stream.source();
    assert_eq!((n, m), (stream.messages, stream.messages));
    assert_eq!(whole_pipeline(&source, None), stream.messages);
    assert_eq!(
        canonical(&books),
        baseline.canonical(),
        "both books end identical"
    );
    let mut t = || ticklane_books(&stream).0;
    let mut b = || baseline_books(&stream).0;
    let mut w = || whole_pipeline(&source, None);
    let mut n = || session_only(&stream);
    let results = interleaved_best(
        7,
        &mut [
            ("ticklane books", &mut t),
            ("baseline book", &mut b),
            ("whole pipeline", &mut w),
            ("no book", &mut n),
        ],
    );
    let msgs = stream.messages as f64;
    println!(
        "\nparse + session + full-depth books, {} messages, {STOCKS} stocks, best of 7 interleaved runs:",
        stream.messages
    );
    for (name, d, _) in &results {
        let s = d.as_secs_f64();
        println!(
            "  {name:<15} {:>8.2} ms  {:>6.1} ns/msg  {:>6.1} M msg/s",
            s * 1e3,
            s / msgs * 1e9,
            msgs / s / 1e6
        );
    }
    let (tl, base) = (results[0].1.as_secs_f64(), results[1].1.as_secs_f64());
    println!("ratios (same run):");
    println!("  baseline / ticklane books: {:.2}x", base / tl);
    println!(
        "  whole pipeline through the poller / baseline book alone (which does less: no VWAP, \
         tape, bus or audit copy): {:.2}x the time",
        results[2].1.as_secs_f64() / base
    );
    let none = results[3].1.as_secs_f64();
    println!(
        "  the books' own cost: ticklane {:.1} ns/msg, baseline {:.1} ns/msg ({:.2}x)",
        (tl - none) / msgs * 1e9,
        (base - none) / msgs * 1e9,
        (base - none) / (tl - none)
    );
    println!("  targets: <= 25 ns/msg, >= 40 M msg/s");
    let level_bytes = size_of::<ticklane_appliance::book::Level>();
    println!(
        "memory: {} bytes per order slot (pool entry + index), {level_bytes} bytes per price level; {} orders live at the end",
        books.bytes_per_order(),
        books.live_orders()
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(which) = std::env::var("TICKLANE_PROFILE_ONLY") {
        // For profilers: run one contender repeatedly, nothing else.
        let stream = MoldStream::generate(MESSAGES, STOCKS, 1400);
        for _ in 0..20 {
            std::hint::black_box(if which == "books" {
                ticklane_books(&stream).0
            } else {
                session_only(&stream)
            });
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}
