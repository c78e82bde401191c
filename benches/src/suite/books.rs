//! Parse + MoldUDP64 session + full-depth order books, against a simple
//! baseline book (BTreeMap price levels and a HashMap of orders) run
//! through the very same parse and session path, plus the whole pipeline
//! through the production poller and delivery path (sessions, books, VWAP,
//! tape, bus, audit ring), on the workloads of [`Workload`]. Targets: ≥ 3×
//! the baseline on every workload; ≤ 25 ns/message on the default mix,
//! ≤ 40 ns/message on the uniform mix.

use std::time::Instant;

use ticklane_appliance::book::Books;
use ticklane_appliance::session::{Action, ActionSink, SessionConfig, SessionTracker};
use ticklane_lab::market::{MarketConfig, Mix};
use ticklane_protocols::itch::{self, Handler};
use ticklane_protocols::moldudp64::Packet;

use super::{Check, Distribution, Scale, Suite, SuiteError, Target, timings};
use crate::baseline::{BaselineBooks, BookLevels};
use crate::{MoldStream, interleaved_best, whole_pipeline};

/// One workload: a feed, and the order capacity the books get for it.
pub struct Workload {
    /// Its name.
    pub name: &'static str,
    /// The feed.
    pub stream: MoldStream,
    /// The books' order capacity (the default mix keeps the 2^18 it always
    /// had; the uniform mix gets the CLI's default, 2^20; the full day room
    /// for its 1.05 M resting orders).
    pub max_orders: usize,
    /// Interleaved rounds.
    pub rounds: usize,
    /// The ns/message target, if any.
    pub target_ns: Option<f64>,
}

impl Workload {
    /// The generator's own mix (4 in 5 cancels, executions, deletes and
    /// replaces name one of the 1,024 newest orders), 500 stocks, full
    /// packets.
    pub fn default_mix(scale: Scale) -> Self {
        Self {
            name: "default mix",
            stream: MoldStream::generate(scale.messages, 500, 1400),
            max_orders: 1 << 18,
            rounds: scale.rounds,
            target_ns: Some(25.0),
        }
    }

    /// Any live order equally likely, references stepping by 1–4, twice
    /// `scale.messages`, 50 stocks, about 6–7 messages a packet (the shape
    /// of the independently generated feed of issue 10).
    pub fn uniform_mix(scale: Scale) -> Self {
        let market = MarketConfig {
            seed: 42,
            stocks: 50,
            messages: 2 * scale.messages,
            max_live_orders: 1 << 20,
            mix: Mix::Uniform,
            resting: 0,
        };
        Self {
            name: "uniform mix",
            // 220-byte payloads: 6 to 7 messages a packet.
            stream: MoldStream::market(market, 220),
            max_orders: 1 << 20,
            rounds: scale.rounds,
            target_ns: Some(40.0),
        }
    }

    /// 8,000 stocks, 1.05 M orders resting before the mix starts,
    /// `messages` messages.
    pub fn full_day(messages: u64) -> Self {
        let market = MarketConfig {
            seed: 42,
            stocks: 8_000,
            messages,
            max_live_orders: 1_200_000,
            mix: Mix::Recent,
            resting: 1_050_000,
        };
        Self {
            name: "full day",
            stream: MoldStream::market(market, 1400),
            max_orders: 1 << 21,
            rounds: 3,
            target_ns: None,
        }
    }
}

/// Every non-empty book, by locate code, best levels first.
pub fn canonical(books: &Books) -> Vec<BookLevels> {
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

/// Every packet of `stream` through a session tracker into `sink`; with
/// `times`, the time of each packet is pushed there (ns).
fn session_run(stream: &MoldStream, sink: &mut impl ActionSink, mut times: Option<&mut Vec<f64>>) {
    let mut tracker = SessionTracker::new(SessionConfig {
        window_packets: 64,
        ..SessionConfig::default()
    });
    for (now, bytes) in stream.iter().enumerate() {
        let Ok(p) = Packet::new_checked(bytes) else {
            continue;
        };
        match times.as_deref_mut() {
            Some(times) => {
                let t = Instant::now();
                tracker.on_packet(now as u64, &p, sink);
                times.push(t.elapsed().as_nanos() as f64);
            }
            None => tracker.on_packet(now as u64, &p, sink),
        }
    }
}

/// Parse and session only: what the books add is the difference.
pub struct Nothing;

impl Handler for Nothing {}

/// Parse + session with no handler; returns the messages delivered.
pub fn session_only(stream: &MoldStream) -> u64 {
    let mut sink = ToHandler {
        handler: &mut Nothing,
        delivered: 0,
    };
    session_run(stream, &mut sink, None);
    sink.delivered
}

/// Parse + session + ticklane's books; returns the messages delivered and
/// the books.
pub fn ticklane_books(stream: &MoldStream, max_orders: usize) -> (u64, Books) {
    let mut books = Books::new(max_orders);
    let mut sink = ToHandler {
        handler: &mut books,
        delivered: 0,
    };
    session_run(stream, &mut sink, None);
    (sink.delivered, books)
}

/// Parse + session + the baseline book.
pub fn baseline_books(stream: &MoldStream) -> (u64, BaselineBooks) {
    let mut books = BaselineBooks::default();
    let mut sink = ToHandler {
        handler: &mut books,
        delivered: 0,
    };
    session_run(stream, &mut sink, None);
    (sink.delivered, books)
}

/// The time of every packet of `w` through parse + session into
/// `handler`, in one pass (not the timed runs: the clock reads would weigh
/// on them).
fn packet_times<H: Handler + Upcoming>(w: &Workload, handler: &mut H, who: &str) -> Distribution {
    let mut times = Vec::with_capacity(w.stream.packets.len());
    let mut sink = ToHandler {
        handler,
        delivered: 0,
    };
    session_run(&w.stream, &mut sink, Some(&mut times));
    Distribution::new(&format!("{}: {who}", w.name), "ns per packet", times)
}

/// One workload measured: the books of both end identical, every message
/// is delivered, then the interleaved runs.
pub fn workload(w: &Workload) -> Result<Suite, SuiteError> {
    let stream = &w.stream;
    let (n, books) = ticklane_books(stream, w.max_orders);
    let (m, baseline) = baseline_books(stream);
    let source = stream.source();
    let whole = whole_pipeline(&source, w.max_orders, None);
    if (n, m, whole) != (stream.messages, stream.messages, stream.messages) {
        return Err(SuiteError::Disagree(format!(
            "{}: {} messages, delivered {n} (books), {m} (baseline), {whole} (pipeline)",
            w.name, stream.messages
        )));
    }
    if canonical(&books) != baseline.canonical() {
        return Err(SuiteError::Disagree(format!(
            "{}: ticklane's books and the baseline's differ at the end",
            w.name
        )));
    }
    let (peak, level_bytes, per_order) = (
        books.live_orders(),
        books.bytes_per_level(),
        books.bytes_per_order(),
    );
    drop((books, baseline));
    let mut t = || ticklane_books(stream, w.max_orders).0;
    let mut b = || baseline_books(stream).0;
    let mut p = || whole_pipeline(&source, w.max_orders, None);
    let mut z = || session_only(stream);
    let results = interleaved_best(
        w.rounds.max(1),
        &mut [
            ("ticklane books", &mut t),
            ("baseline book", &mut b),
            ("whole pipeline", &mut p),
            ("no book", &mut z),
        ],
    );
    let timings = timings(
        &results,
        |_, _| stream.messages,
        |name| matches!(name, "ticklane books" | "whole pipeline").then_some("baseline book"),
    );
    let msgs = stream.messages as f64;
    let secs = |i: usize| timings[i].seconds;
    let (tl, base, none) = (secs(0), secs(1), secs(3));
    let mut checks = vec![Check::new(
        "baseline / ticklane books (time)",
        base / tl,
        "x",
        Some(Target::AtLeast(3.0)),
    )];
    if let Some(t) = w.target_ns {
        checks.push(Check::new(
            "ticklane books",
            tl / msgs * 1e9,
            "ns/msg",
            Some(Target::AtMost(t)),
        ));
    }
    checks.push(Check::new(
        "whole pipeline through the poller / baseline book alone (time; the baseline does \
         less: no VWAP, tape, bus or audit copy)",
        secs(2) / base,
        "x",
        None,
    ));
    checks.push(Check::new(
        "the books' own cost, baseline / ticklane",
        (base - none) / (tl - none),
        "x",
        None,
    ));
    Ok(Suite {
        name: "books",
        title: format!(
            "{}: parse + session + full-depth books, {} messages in {} packets ({:.1} a packet), \
             best of {} interleaved runs",
            w.name,
            stream.messages,
            stream.packets.len(),
            msgs / stream.packets.len().max(1) as f64,
            w.rounds.max(1)
        ),
        timings,
        checks,
        distributions: vec![
            packet_times(w, &mut Books::new(w.max_orders), "ticklane books"),
            packet_times(w, &mut BaselineBooks::default(), "baseline book"),
        ],
        notes: vec![format!(
            "memory: {per_order} bytes per order the pool is sized for ({} orders), \
             {level_bytes} bytes per price level; {peak} orders resting at the end",
            w.max_orders
        )],
    })
}

/// The suite: the default and the uniform mix at `scale`.
pub fn run(scale: Scale) -> Result<Vec<Suite>, SuiteError> {
    Ok(vec![
        workload(&Workload::default_mix(scale))?,
        workload(&Workload::uniform_mix(scale))?,
    ])
}
