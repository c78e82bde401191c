//! The hot path allocates nothing: a counting global allocator watches this
//! thread while generated MoldUDP64 frames go through Ethernet/IPv4/UDP →
//! MoldUDP64 → ITCH → a handler (the poller's path), and through the
//! capture decoder's per-packet path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ticklane::book::Books;
use ticklane::bus::{self, BusConfig};
use ticklane::feed::{FeedDecoder, FeedFilter, FeedSink, Location, Problem, Unit};
use ticklane::market::{MAX_MESSAGE_LEN, Market, MarketConfig};
use ticklane::pipeline::Pipeline;
use ticklane::session::{Action, ActionSink, SessionConfig, SessionEvent, SessionTracker};
use ticklane::vwap::Vwap;
use ticklane_protocols::itch::{self, Handler, MessageRef};
use ticklane_protocols::moldudp64::{Packet, PacketBuilder, Session};
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

    let before = allocations();
    for frame in &frames {
        let udp = wire::parse_ethernet_udp(frame).expect("valid frame");
        let packet = Packet::new_checked(udp.payload).expect("valid packet");
        for (_, message) in packet.messages() {
            itch::dispatch(message, &mut tally).expect("valid message");
            dispatched += 1;
        }
        let at = Location {
            unit: Unit::Packet,
            number: 0,
            offset: 0,
        };
        decoder.payload(at, udp.payload, &mut sink);
    }
    let during = allocations() - before;

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

struct Deliver<'a> {
    pipeline: &'a mut Pipeline,
    session: Session,
    delivered: u64,
}

impl ActionSink for Deliver<'_> {
    fn action(&mut self, a: Action<'_>) {
        match a {
            Action::Deliver { seq, message } => {
                if let Ok(m) = itch::parse(message) {
                    self.delivered += 1;
                    self.pipeline.deliver(self.session, seq, m);
                }
            }
            Action::Event(SessionEvent::NewSession { session }) => self.session = session,
            _ => {}
        }
    }
}

/// Session layer (with reordering to undo), books, VWAP, tape and bus: once
/// warm, not one allocation per packet.
#[test]
fn the_whole_pipeline_allocates_nothing_once_warm() {
    let (frames, total) = frames();
    let (publisher, _subscribers) = bus::bus(BusConfig {
        events: 1 << 12,
        audit: 1 << 12,
    });
    let mut pipeline = Pipeline::new(
        Books::new(1 << 16),
        Vwap::new(1_000_000_000, 100_000_000),
        publisher,
    );
    let mut tracker = SessionTracker::new(SessionConfig::default());
    let mut sink = Deliver {
        pipeline: &mut pipeline,
        session: Session::default(),
        delivered: 0,
    };
    let payloads: Vec<&[u8]> = frames
        .iter()
        .map(|f| wire::parse_ethernet_udp(f).unwrap().payload)
        .collect();
    // Every tenth pair of packets arrives swapped.
    let mut order: Vec<usize> = (0..payloads.len()).collect();
    for i in (1..order.len()).step_by(10) {
        order.swap(i - 1, i);
    }
    let (warm, measured) = order.split_at(order.len() / 2);
    for (now, &i) in warm.iter().enumerate() {
        tracker.on_packet(
            now as u64,
            &Packet::new_checked(payloads[i]).unwrap(),
            &mut sink,
        );
    }
    let before = allocations();
    for (now, &i) in measured.iter().enumerate() {
        tracker.on_packet(
            (warm.len() + now) as u64,
            &Packet::new_checked(payloads[i]).unwrap(),
            &mut sink,
        );
    }
    let during = allocations() - before;
    assert_eq!(
        sink.delivered, total,
        "everything delivered, reordering undone"
    );
    assert!(tracker.stats().held_packets > 0, "the hold path ran");
    let stats = pipeline.books.stats();
    assert_eq!((stats.unknown_reference, stats.pool_growths), (0, 0));
    assert_eq!(
        during,
        0,
        "{during} allocations over {} packets",
        measured.len()
    );
}
