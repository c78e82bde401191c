//! The hot path allocates nothing: a counting global allocator watches this
//! thread while generated MoldUDP64 frames go through the AF_XDP source's
//! checks (Ethernet/IPv4/UDP, feed and source, both checksums, refusals
//! counted) → MoldUDP64 → ITCH → a handler, through the capture decoder's per-packet
//! path, and, above all, through the production poller and delivery path
//! (A/B arbitration, session trackers, books, VWAP, tape, bus, audit ring)
//! with loss, duplicates, reordering and an unrecoverable gap, while another
//! thread asks the poller for book snapshots and feed changes through the
//! control plane's request ring.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::sync::atomic::AtomicBool;

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::BusConfig;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Ending, Poller, PollerConfig, TimeBase};
use ticklane_appliance::request::{self, Answer, Ask, BookSnapshot, Stock};
use ticklane_appliance::session::SessionConfig;
use ticklane_appliance::source::admission::{Admission, Checksums};
use ticklane_appliance::source::memory::MemorySource;
use ticklane_appliance::source::udp::FeedSocket;
use ticklane_appliance::source::{
    Arrival, FeedChangeError, Polled, RxClock, RxSource, RxTime, Source, SourceCounters,
    SourceError, Verdict, Wait,
};
use ticklane_appliance::sys;
use ticklane_capture::feed::{Feed, FeedDecoder, FeedFilter, FeedSink, Location, Problem, Unit};
use ticklane_lab::market::{MAX_MESSAGE_LEN, Market, MarketConfig};
use ticklane_protocols::itch::{self, Handler, MessageRef};
use ticklane_protocols::moldudp64::{self, Packet, PacketBuilder, Session};
use ticklane_protocols::wire::{self, UdpFrameSpec};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the only
// addition is a thread-local counter update, which neither allocates nor
// touches the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: `ptr` came from `System` with `layout`; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[derive(Default)]
struct Tally {
    adds: u64,
    shares: u64,
    deletes: u64,
    executions: u64,
}

impl Handler for Tally {
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.adds += 1;
        self.shares += u64::from(m.shares());
    }
    fn on_order_delete(&mut self, _: &itch::OrderDelete) {
        self.deletes += 1;
    }
    fn on_order_executed(&mut self, m: &itch::OrderExecuted) {
        self.executions += u64::from(m.executed_shares());
    }
}

#[derive(Default)]
struct CountingSink {
    messages: u64,
    problems: u64,
}

impl FeedSink for CountingSink {
    fn message(&mut self, _: &Session, _: u64, _: MessageRef<'_>) {
        self.messages += 1;
    }
    fn problem(&mut self, _: Location, _: Problem) {
        self.problems += 1;
    }
}

/// Generated frames, built before the measurement starts.
fn frames() -> (Vec<Vec<u8>>, u64) {
    let mut market = Market::new(MarketConfig {
        seed: 5,
        stocks: 50,
        messages: 100_000,
        max_live_orders: 10_000,
        mix: ticklane_lab::market::Mix::Recent,
        resting: 0,
    });
    let spec = UdpFrameSpec::multicast([2, 0, 0, 0, 0, 1], [198, 18, 0, 1], [239, 1, 1, 1], 26477);
    let session = Session::from_name(b"NOALLOC").unwrap();
    let mut msg = [0u8; MAX_MESSAGE_LEN];
    let mut payload = [0u8; 1400];
    let mut frame = [0u8; 1500];
    let (mut frames, mut seq, mut total) = (Vec::new(), 1, 0);
    let mut pending = market.next_message(&mut msg);
    while pending.is_some() {
        let mut b = PacketBuilder::new(&mut payload, session, seq).unwrap();
        while let Some(n) = pending {
            if b.push(&msg[..n]).is_err() {
                break;
            }
            pending = market.next_message(&mut msg);
        }
        seq += u64::from(b.count());
        total += u64::from(b.count());
        let n = wire::write_udp_frame(&mut frame, &spec, b.finish()).unwrap();
        frames.push(frame[..n].to_vec());
    }
    (frames, total)
}

#[test]
fn parsing_and_dispatch_allocate_nothing_per_packet() {
    let (frames, total) = frames();
    let mut tally = Tally::default();
    let mut decoder = FeedDecoder::new(FeedFilter::default());
    let mut sink = CountingSink::default();
    let mut dispatched = 0u64;
    let feed = Feed {
        group: [239, 1, 1, 1].into(),
        port: 26477,
        source: Some([198, 18, 0, 1].into()),
    };
    let mut admission = Admission::new(FeedFilter { feeds: vec![feed] }, Checksums::Verify);
    // Refused frames are counted without allocating too: one with a
    // damaged payload after every good one.
    let damaged: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut d = f.clone();
            *d.last_mut().unwrap() ^= 1;
            d
        })
        .collect();

    let before = allocations();
    for (frame, damaged) in frames.iter().zip(&damaged) {
        let (_, payload) = admission.admit(frame).expect("a valid frame of the feed");
        assert!(admission.admit(damaged).is_none());
        let packet = Packet::new_checked(payload).expect("valid packet");
        for (_, message) in packet.messages() {
            itch::dispatch(message, &mut tally).expect("valid message");
            dispatched += 1;
        }
        let at = Location {
            unit: Unit::Packet,
            number: 0,
            offset: 0,
        };
        decoder.payload(at, payload, &mut sink);
    }
    let during = allocations() - before;

    assert_eq!(admission.counters().bad_udp_checksum, frames.len() as u64);
    assert_eq!(dispatched, total);
    assert_eq!(sink.messages, total);
    assert_eq!(sink.problems, 0);
    assert!(tally.adds > 0 && tally.deletes > 0 && tally.executions > 0 && tally.shares > 0);
    assert_eq!(
        during,
        0,
        "{during} allocations while parsing {} packets",
        frames.len()
    );
}

/// The production source for in-memory packets, noting the allocation
/// count when half of them were handed over (the warm-up), with the AF_XDP
/// source's feed table for the feeds the control plane adds and removes.
struct Measured {
    inner: MemorySource,
    half: usize,
    at_half: Option<u64>,
    feeds: Admission,
}

impl Source for Measured {
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        wait: Wait,
        f: F,
    ) -> Result<Polled, SourceError> {
        if self.at_half.is_none() && self.inner.position() >= self.half {
            self.at_half = Some(allocations());
        }
        // Stamped with a receive time as the live sources do, so that the
        // wire-to-handler histogram is kept too.
        let mut f = f;
        self.inner.poll(wait, |a| {
            f(Arrival {
                received_at: Some(RxTime {
                    ns: sys::clock_ns(RxClock::Monotonic),
                    source: RxSource::XdpSoftware,
                }),
                ..a
            })
        })
    }

    fn counters(&self) -> SourceCounters {
        self.inner.counters()
    }

    fn add_feed(
        &mut self,
        feed: Feed,
        _socket: &mut Option<FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        self.feeds.add_feed(feed)
    }

    fn remove_feed(
        &mut self,
        group: std::net::Ipv4Addr,
        port: u16,
        _socket: &mut Option<FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        self.feeds.remove_feed(group, port)
    }
}

/// What the control plane's thread got while the poller ran.
#[derive(Debug, Default)]
struct Asked {
    books_found: u64,
    levels: u64,
    feeds_added: u64,
    feeds_removed: u64,
}

/// A control-plane thread: book snapshots by symbol and by locate, and a
/// feed added and removed, over and over, until the poller is gone.
fn ask_until_done(mut requester: request::Requester) -> Asked {
    let mut asked = Asked::default();
    let feed = Feed {
        group: [239, 9, 9, 9].into(),
        port: 9,
        source: None,
    };
    let mut round = 0u64;
    while !requester.is_abandoned() {
        let ask = match round % 4 {
            0 => Ask::AddFeed { feed, socket: None },
            1 => Ask::RemoveFeed {
                group: feed.group,
                port: feed.port,
            },
            2 => Ask::Book {
                stock: Stock::Locate((round / 4 % 50) as u16 + 1),
                into: BookSnapshot::with_depth(10),
            },
            _ => Ask::Book {
                stock: Stock::Locate(60_000),
                into: BookSnapshot::with_depth(10),
            },
        };
        if requester.send(ask).is_ok() {
            round += 1;
        }
        while let Some((_, answer)) = requester.receive() {
            match answer {
                Answer::Book(b) if b.found => {
                    asked.books_found += 1;
                    asked.levels += (b.bids.len() + b.asks.len()) as u64;
                }
                Answer::Book(_) => {}
                Answer::FeedAdded { line, .. } => asked.feeds_added += u64::from(line.is_ok()),
                Answer::FeedRemoved { line, .. } => asked.feeds_removed += u64::from(line.is_ok()),
            }
        }
        std::thread::yield_now();
    }
    asked
}

/// Two lines of the feed, each with its own losses, duplicates on one,
/// reordering on the other, and packets both lose (an unrecoverable gap
/// without a server) through the production poller: once warm, not one
/// allocation per packet.
#[test]
fn the_production_poller_allocates_nothing_once_warm() {
    let (frames, total) = frames();
    let payloads: Vec<&[u8]> = frames
        .iter()
        .map(|f| wire::parse_ethernet_udp(f).unwrap().payload)
        .collect();
    let mut arrivals: Vec<(usize, usize)> = Vec::new();
    for i in 0..payloads.len() {
        if i % 7 != 3 {
            arrivals.push((0, i));
        }
        if i % 11 != 3 {
            arrivals.push((1, i));
            if i % 5 == 0 {
                arrivals.push((1, i));
            }
        }
    }
    // Every tenth pair of arrivals is swapped.
    for i in (1..arrivals.len()).step_by(10) {
        arrivals.swap(i - 1, i);
    }
    let mut source = MemorySource::new(32);
    for (n, &(line, i)) in arrivals.iter().enumerate() {
        source.push_at(line, payloads[i], Some(n as u64 * 1_000));
    }
    // The feed ends as a feed does, with its end of session on both lines:
    // it vouches for the last packet held after the last hole.
    let last = Packet::new_checked(payloads[payloads.len() - 1]).unwrap();
    let eos = moldudp64::header(
        last.session(),
        last.next_sequence_number(),
        moldudp64::END_OF_SESSION,
    );
    for line in [0, 1] {
        source.push_at(line, &eos, Some(arrivals.len() as u64 * 1_000));
    }
    let both_lost: u64 = (0..payloads.len())
        .filter(|i| i % 77 == 3)
        .map(|i| u64::from(Packet::new_checked(payloads[i]).unwrap().messages_len()))
        .sum();
    assert!(both_lost > 0);

    // A small audit ring nobody drains: it fills, and its misses are
    // recorded, also without allocating.
    let (pipeline, _subscribers) = Pipeline::with_bus(
        Books::new(1 << 16),
        Vwap::default(),
        BusConfig {
            events: 1 << 12,
            audit: 1 << 12,
        },
    );
    let cfg = PollerConfig {
        session: SessionConfig {
            reorder_wait_ns: 200_000,
            ..SessionConfig::default()
        },
        lines: 2,
        time: TimeBase::Capture,
        ..PollerConfig::default()
    };
    let half = arrivals.len() / 2;
    let stop = AtomicBool::new(false);
    let measured = Measured {
        inner: source,
        half,
        at_half: None,
        feeds: Admission::new(FeedFilter::default(), Checksums::Verify),
    };
    let (mut poller, _stats) = Poller::new(measured, pipeline, None, cfg, &stop).unwrap();
    let (requester, server) = request::ring();
    poller.serve(server);
    let control = std::thread::spawn(move || ask_until_done(requester));
    let ending = poller.run().unwrap();
    let after = allocations();
    assert_eq!(ending, Ending::EndOfInput);
    let finished = poller.finish(ending);
    let during = after - finished.source.at_half.expect("the warm-up ended");
    let asked = control.join().unwrap();
    assert!(
        asked.books_found > 10 && asked.levels > 0 && asked.feeds_added > 10,
        "the poller served the control plane while it ran: {asked:?}"
    );
    assert!(asked.feeds_removed + 1 >= asked.feeds_added, "{asked:?}");

    let snap = finished.snapshot;
    let session = snap.sessions()[0].stats;
    assert_eq!(
        snap.delivered + snap.lost_messages,
        total,
        "every message delivered once or reported lost"
    );
    assert_eq!(
        snap.lost_messages, both_lost,
        "exactly what both lines lost"
    );
    assert!(session.held_packets > 0, "the hold path ran");
    assert!(session.duplicate_packets > 0, "the duplicate path ran");
    assert_eq!(
        finished.audit_missed.messages(),
        snap.delivered - (1 << 12),
        "every delivery the full audit ring refused is recorded, none other"
    );
    assert_eq!(
        snap.wire_to_handler.count(),
        snap.packets,
        "a latency for every packet"
    );
    assert_eq!(snap.rx_source, Some(RxSource::XdpSoftware));
    assert!(
        snap.wire_to_handler
            .quantile(0.5)
            .is_some_and(|p50| p50 < 1_000_000_000),
        "{:?}",
        snap.wire_to_handler.quantile(0.5)
    );
    assert!(snap.loop_time.count() > 0, "loop times kept");
    let stats = finished.pipeline.books.stats();
    assert_eq!(stats.pool_growths, 0);
    assert_eq!(
        during,
        0,
        "{during} allocations over the last {} arrivals",
        arrivals.len() - half
    );
}
