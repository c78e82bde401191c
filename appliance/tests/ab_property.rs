//! A/B lines with random loss, duplication and reordering: the merged feed
//! must build exactly the clean feed's books, unless both lines lost the same
//! packet and no server could fill it, in which case exactly those messages
//! are reported lost. With a re-request server, nothing is ever lost.

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::BusConfig;
use ticklane_appliance::delivery::Delivery;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::session::{Action, ActionSink, Arbiter, SessionConfig};
use ticklane_lab::market::{MAX_MESSAGE_LEN, Market, MarketConfig};
use ticklane_protocols::moldudp64::{self, Packet, PacketBuilder, Request, Session};

/// The clean feed: packets of at most 12 messages.
fn packets(seed: u64, messages: u64) -> Vec<Vec<u8>> {
    let mut market = Market::new(MarketConfig {
        seed,
        stocks: 8,
        messages,
        max_live_orders: 400,
        mix: ticklane_lab::market::Mix::Recent,
        resting: 0,
    });
    let session = Session::from_name(SESSION).unwrap();
    let mut msg = [0u8; MAX_MESSAGE_LEN];
    let mut buf = [0u8; 1400];
    let mut out = Vec::new();
    let mut seq = 1;
    let mut pending = market.next_message(&mut msg);
    while pending.is_some() {
        let mut b = PacketBuilder::new(&mut buf, session, seq).unwrap();
        while let Some(n) = pending {
            if b.count() == 12 || b.push(&msg[..n]).is_err() {
                break;
            }
            pending = market.next_message(&mut msg);
        }
        seq += u64::from(b.count());
        out.push(b.finish().to_vec());
    }
    out
}

const SESSION: &[u8] = b"PROP";

/// The production delivery path, with the requests taken aside so that the
/// test can play the re-request server.
struct Intercept {
    delivery: Delivery,
    requests: Vec<Request>,
}

impl Intercept {
    fn new() -> Self {
        let mut delivery = Delivery::new(pipeline(), None, None);
        delivery.set_session(Session::from_name(SESSION).unwrap());
        Self {
            delivery,
            requests: Vec::new(),
        }
    }

    fn lost(&self) -> Vec<(u64, u64)> {
        let log = self.delivery.lost();
        assert!(!log.is_cut());
        log.kept().iter().map(|r| (r.from, r.end)).collect()
    }
}

impl ActionSink for Intercept {
    fn action(&mut self, a: Action<'_>) {
        match a {
            Action::Request { request, .. } => self.requests.push(request),
            other => self.delivery.action(other),
        }
    }
}

fn pipeline() -> Pipeline {
    Pipeline::with_bus(
        Books::new(4096),
        Vwap::default(),
        BusConfig {
            events: 16,
            audit: 16,
        },
    )
    .0
}

fn books_of(p: &Pipeline) -> Vec<u8> {
    let mut out = Vec::new();
    p.books.write_canonical(&mut out, None, None);
    out
}

/// A damaged copy of the packet indices: drops, duplicates, adjacent swaps.
fn damage(
    rng: &mut Pcg64Mcg,
    n: usize,
    drop: f64,
    dup: f64,
    reorder: f64,
) -> (Vec<usize>, Vec<bool>) {
    let mut order = Vec::new();
    let mut dropped = vec![false; n];
    for (i, d) in dropped.iter_mut().enumerate() {
        if rng.random_bool(drop) {
            *d = true;
            continue;
        }
        order.push(i);
        if rng.random_bool(dup) {
            order.push(i);
        }
    }
    for i in 1..order.len() {
        if rng.random_bool(reorder) {
            order.swap(i - 1, i);
        }
    }
    (order, dropped)
}

/// Merged ranges of sequence numbers of the packets lost on both lines.
fn both_lost(clean: &[Vec<u8>], a: &[bool], b: &[bool]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (i, p) in clean.iter().enumerate() {
        if a[i] && b[i] {
            let p = Packet::new_checked(&p[..]).unwrap();
            let (from, end) = (p.sequence_number(), p.next_sequence_number());
            match ranges.last_mut() {
                Some(last) if last.1 == from => last.1 = end,
                _ => ranges.push((from, end)),
            }
        }
    }
    ranges
}

/// What a re-request server would send back, from the clean feed.
fn answer(clean: &[Vec<u8>], r: &Request) -> Vec<u8> {
    let mut buf = [0u8; 65_000];
    let mut b = PacketBuilder::new(&mut buf, r.session, r.sequence_number).unwrap();
    let wanted = r.sequence_number..r.sequence_number + u64::from(r.message_count);
    for p in clean {
        for (seq, m) in Packet::new_checked(&p[..]).unwrap().messages() {
            if wanted.contains(&seq) {
                b.push(m).unwrap();
            }
        }
    }
    b.finish().to_vec()
}

fn run(
    seed: u64,
    drop: f64,
    dup: f64,
    reorder: f64,
    with_server: bool,
) -> Result<(), TestCaseError> {
    let clean = packets(seed, 3000);
    let total: u64 = clean
        .iter()
        .map(|p| u64::from(Packet::new_checked(&p[..]).unwrap().messages_len()))
        .sum();

    let mut reference = Intercept::new();
    {
        let mut arb = Arbiter::new(SessionConfig::default(), 1, u64::MAX);
        for p in &clean {
            arb.on_packet(0, 0, &Packet::new_checked(&p[..]).unwrap(), &mut reference);
        }
        prop_assert_eq!(reference.delivery.delivered(), total);
    }

    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xab);
    let (line_a, lost_a) = damage(&mut rng, clean.len(), drop, dup, reorder);
    let (line_b, lost_b) = damage(&mut rng, clean.len(), drop, dup, reorder);
    let cfg = SessionConfig {
        servers: usize::from(with_server),
        ..SessionConfig::default()
    };
    let mut arb = Arbiter::new(cfg, 2, u64::MAX);
    let mut sink = Intercept::new();
    let (mut ia, mut ib, mut now) = (0, 0, 0u64);
    while ia < line_a.len() || ib < line_b.len() {
        // The lines interleave at random, either may run ahead.
        let take_a = ib >= line_b.len() || (ia < line_a.len() && rng.random_bool(0.5));
        let (line, index) = if take_a {
            ia += 1;
            (0, line_a[ia - 1])
        } else {
            ib += 1;
            (1, line_b[ib - 1])
        };
        now += 1_000;
        arb.on_packet(
            line,
            now,
            &Packet::new_checked(&clean[index][..]).unwrap(),
            &mut sink,
        );
        // The "server" answers every request from the clean feed.
        while let Some(r) = sink.requests.pop() {
            let reply = answer(&clean, &r);
            arb.on_retransmission(now, &Packet::new_checked(&reply[..]).unwrap(), &mut sink);
        }
    }
    // The feed's end of session (a real feed's heartbeats do the same): it
    // reveals a tail that both lines lost.
    let last = Packet::new_checked(&clean[clean.len() - 1][..]).unwrap();
    let eos = moldudp64::header(
        last.session(),
        last.next_sequence_number(),
        moldudp64::END_OF_SESSION,
    );
    for line in [0, 1] {
        arb.on_packet(
            line,
            now,
            &Packet::new_checked(&eos[..]).unwrap(),
            &mut sink,
        );
    }
    // The poller's timer: a hole the end revealed, with nothing after it,
    // is asked for once the reorder delay is over.
    for _ in 0..3 {
        while let Some(r) = sink.requests.pop() {
            let reply = answer(&clean, &r);
            arb.on_retransmission(now, &Packet::new_checked(&reply[..]).unwrap(), &mut sink);
        }
        now += 1_000_000;
        arb.on_timer(now, &mut sink);
    }
    arb.finish(now, &mut sink);
    let expected_lost = if with_server {
        vec![]
    } else {
        both_lost(&clean, &lost_a, &lost_b)
    };
    prop_assert_eq!(
        &sink.lost(),
        &expected_lost,
        "exactly the packets both lines lost"
    );
    let lost_messages: u64 = expected_lost.iter().map(|(a, b)| b - a).sum();
    prop_assert_eq!(
        sink.delivery.delivered() + lost_messages,
        total,
        "every message delivered once or reported lost"
    );
    if expected_lost.is_empty() {
        prop_assert_eq!(
            books_of(sink.delivery.pipeline()),
            books_of(reference.delivery.pipeline())
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn ab_lines_without_a_server(seed in 0u64..1_000_000, drop in 0.0..0.3f64, dup in 0.0..0.3f64, reorder in 0.0..0.3f64) {
        run(seed, drop, dup, reorder, false)?;
    }

    #[test]
    fn ab_lines_with_a_server_lose_nothing(seed in 0u64..1_000_000, drop in 0.0..0.5f64, dup in 0.0..0.3f64, reorder in 0.0..0.3f64) {
        run(seed, drop, dup, reorder, true)?;
    }
}
