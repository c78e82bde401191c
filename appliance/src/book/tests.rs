//! ITCH book semantics, message by message.

use super::*;
use itch::Handler;
use ticklane_protocols::itch::{Char, Header, Message, U32, U64};

fn stock(s: &[u8]) -> Alpha<8> {
    Alpha::padded(s).unwrap()
}

fn add(b: &mut Books, reference: u64, side: u8, shares: u32, price: u32) {
    let m = itch::AddOrder {
        header: Header::new(itch::AddOrder::TYPE, 7, 0, 1),
        order_reference_number: U64::new(reference),
        buy_sell_indicator: Char(side),
        shares: U32::new(shares),
        stock: stock(b"AAPL"),
        price: U32::new(price),
    };
    b.on_add_order(&m);
}

type Levels = Vec<(u32, u64)>;

fn levels(side: impl Iterator<Item = Level>) -> Levels {
    side.map(|l| (l.price, l.shares)).collect()
}

fn book(b: &Books) -> (Levels, Levels) {
    let bk = b.book(7).unwrap();
    (levels(bk.bids()), levels(bk.asks()))
}

#[test]
fn adds_aggregate_by_price_best_first() {
    let mut b = Books::new(64);
    add(&mut b, 1, b'B', 100, 1000);
    add(&mut b, 2, b'B', 200, 1000);
    add(&mut b, 3, b'B', 50, 1100);
    add(&mut b, 4, b'S', 70, 1200);
    add(&mut b, 5, b'S', 30, 1300);
    assert_eq!(
        book(&b),
        (vec![(1100, 50), (1000, 300)], vec![(1200, 70), (1300, 30)])
    );
    assert_eq!(b.book(7).unwrap().stock().trimmed(), b"AAPL");
    let (bid, ask) = b.book(7).unwrap().bbo();
    assert_eq!((bid.unwrap().price, ask.unwrap().price), (1100, 1200));
}

#[test]
fn executions_take_shares_and_empty_orders_leave() {
    let mut b = Books::new(64);
    add(&mut b, 1, b'B', 100, 1000);
    let fill = b.execute(1, 40).unwrap();
    assert_eq!(
        fill,
        Fill {
            locate: 7,
            side: b'B',
            price: 1000,
            shares: 40
        }
    );
    assert_eq!(book(&b).0, vec![(1000, 60)]);
    b.on_order_executed_with_price(&itch::OrderExecutedWithPrice {
        header: Header::new(itch::OrderExecutedWithPrice::TYPE, 7, 0, 2),
        order_reference_number: U64::new(1),
        executed_shares: U32::new(60),
        match_number: U64::new(9),
        printable: Char(b'Y'),
        execution_price: U32::new(999_999),
    });
    assert_eq!(
        book(&b).0,
        vec![],
        "C at another price still takes from the order's level"
    );
    assert_eq!(b.live_orders(), 0);
    assert_eq!(b.execute(1, 1), None, "the order left the book");
    assert_eq!(b.stats().unknown_reference, 1);
}

#[test]
fn cancel_delete_and_replace() {
    let mut b = Books::new(64);
    add(&mut b, 1, b'S', 100, 2000);
    add(&mut b, 2, b'S', 100, 2000);
    b.cancel(1, 30);
    assert_eq!(book(&b).1, vec![(2000, 170)]);
    b.delete(2);
    assert_eq!(book(&b).1, vec![(2000, 70)]);
    let new = b.replace(1, 10, 500, 2100).unwrap();
    assert_eq!(
        (new.side, new.locate, new.shares, new.price),
        (b'S', 7, 500, 2100)
    );
    assert_eq!(
        book(&b).1,
        vec![(2100, 500)],
        "the original leaves, the new one rests"
    );
    assert!(b.delete(1).is_none());
    assert!(b.replace(99, 100, 1, 1).is_none());
    assert_eq!(b.stats().unknown_reference, 2);
}

#[test]
fn over_execution_is_clamped_and_counted() {
    let mut b = Books::new(64);
    add(&mut b, 1, b'B', 10, 1000);
    assert_eq!(b.execute(1, 25).unwrap().shares, 10);
    assert_eq!(b.stats().oversized, 1);
    assert!(b.book(7).unwrap().is_empty());
}

#[test]
fn trades_and_broken_trades_leave_the_book_alone() {
    let mut b = Books::new(64);
    add(&mut b, 1, b'B', 10, 1000);
    let before = book(&b);
    b.on_trade(&itch::Trade {
        header: Header::new(itch::Trade::TYPE, 7, 0, 3),
        order_reference_number: U64::new(1),
        buy_sell_indicator: Char(b'B'),
        shares: U32::new(10),
        stock: stock(b"AAPL"),
        price: U32::new(1000),
        match_number: U64::new(1),
    });
    b.on_broken_trade(&itch::BrokenTrade {
        header: Header::new(itch::BrokenTrade::TYPE, 7, 0, 4),
        match_number: U64::new(1),
    });
    assert_eq!(book(&b), before);
}

#[test]
fn duplicate_adds_are_ignored() {
    let mut b = Books::new(64);
    add(&mut b, 1, b'B', 10, 1000);
    add(&mut b, 1, b'B', 10, 1000);
    assert_eq!(book(&b).0, vec![(1000, 10)]);
    assert_eq!(b.stats().duplicate_reference, 1);
}

/// One operation of the differential test.
#[derive(Debug, Clone)]
enum Op {
    Add(u64, u16, bool, u32, u32),
    Execute(u64, u32),
    Cancel(u64, u32),
    Delete(u64),
    Replace(u64, u64, u32, u32),
}

/// References from a small domain, so that unknown references and duplicate
/// adds are common, with some far out of range: near `u64::MAX`, far
/// apart, and sharing window slots.
fn reference() -> impl proptest::strategy::Strategy<Value = u64> {
    use proptest::prelude::*;
    prop_oneof![
        6 => 0u64..48,
        1 => (0u64..8).prop_map(|k| u64::MAX - k),
        1 => (1u64..8).prop_map(|k| k << 40),
        1 => (0u64..8).prop_map(|k| 5 + k * 64),
    ]
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let price = 1u32..12;
    prop_oneof![
        4 => (reference(), 1u16..4, any::<bool>(), 0u32..300, price.clone())
            .prop_map(|(r, l, b, s, p)| Op::Add(r, l, b, s, p)),
        1 => (reference(), 0u32..400).prop_map(|(r, s)| Op::Execute(r, s)),
        1 => (reference(), 0u32..400).prop_map(|(r, s)| Op::Cancel(r, s)),
        2 => reference().prop_map(Op::Delete),
        2 => (reference(), reference(), 0u32..300, price)
            .prop_map(|(o, n, s, p)| Op::Replace(o, n, s, p)),
    ]
}

/// The model: orders in a HashMap (locate, bid, price, shares), levels
/// aggregated from them on demand.
type Model = std::collections::HashMap<u64, (u16, bool, u32, u32)>;

fn model_book(m: &Model, locate: u16) -> (Levels, Levels) {
    use std::collections::BTreeMap;
    let (mut bids, mut asks) = (BTreeMap::new(), BTreeMap::new());
    for &(l, bid, price, shares) in m.values() {
        if l == locate {
            let side = if bid { &mut bids } else { &mut asks };
            *side.entry(price).or_insert(0u64) += u64::from(shares);
        }
    }
    (bids.into_iter().rev().collect(), asks.into_iter().collect())
}

/// Best bid and best ask: (price, shares) each.
type Bbo = (Option<(u32, u64)>, Option<(u32, u64)>);

fn model_bbo(m: &Model, locate: u16) -> Bbo {
    let (bids, asks) = model_book(m, locate);
    (bids.first().copied(), asks.first().copied())
}

fn books_of(b: &Books, locate: u16) -> (Levels, Levels) {
    b.book(locate).map_or((vec![], vec![]), |bk| {
        (levels(bk.bids()), levels(bk.asks()))
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Every message kind against a HashMap model, hostile references
    /// included: the books, every counter, the orders, and the top-changed
    /// flag (set whenever the BBO moved, and only then but for a replace,
    /// which may touch the top twice and end where it started). Memory stays
    /// bounded: the pool never grows while no more orders rest than its
    /// overflow holds, whatever the references.
    #[test]
    fn behaves_like_a_map_of_orders(ops in proptest::collection::vec(op(), 1..400)) {
        use proptest::prop_assert_eq;
        let mut b = Books::new(64);
        let bytes = b.bytes_per_order();
        let mut m = Model::new();
        let mut want = BookStats::default();
        let mut most = 0;
        for op in ops {
            let locate = match op {
                Op::Add(_, l, ..) => Some(l),
                Op::Execute(r, _) | Op::Cancel(r, _) | Op::Delete(r) | Op::Replace(r, ..) => {
                    m.get(&r).map(|o| o.0)
                }
            };
            let before = locate.map(|l| model_bbo(&m, l));
            match op {
                Op::Add(r, l, bid, shares, price) => {
                    let order = Order { reference: r, price, shares, locate: l, side: if bid { b'B' } else { b'S' } };
                    let fresh = !m.contains_key(&r);
                    prop_assert_eq!(b.add(order, stock(b"T")), fresh);
                    if fresh {
                        m.insert(r, (l, bid, price, shares));
                    } else {
                        want.duplicate_reference += 1;
                    }
                }
                Op::Execute(r, shares) | Op::Cancel(r, shares) => {
                    let got = if matches!(op, Op::Execute(..)) { b.execute(r, shares) } else { b.cancel(r, shares) };
                    match m.get_mut(&r) {
                        Some(o) => {
                            let taken = shares.min(o.3);
                            if shares > o.3 {
                                want.oversized += 1;
                            }
                            prop_assert_eq!(got, Some(Fill { locate: o.0, side: if o.1 { b'B' } else { b'S' }, price: o.2, shares: taken }));
                            o.3 -= taken;
                            if o.3 == 0 {
                                m.remove(&r);
                            }
                        }
                        None => {
                            want.unknown_reference += 1;
                            prop_assert_eq!(got, None);
                        }
                    }
                }
                Op::Delete(r) => {
                    let got = b.delete(r).map(|o| (o.locate, o.side == b'B', o.price, o.shares));
                    let gone = m.remove(&r);
                    if gone.is_none() {
                        want.unknown_reference += 1;
                    }
                    prop_assert_eq!(got, gone);
                }
                Op::Replace(old, new, shares, price) => {
                    let got = b.replace(old, new, shares, price);
                    match m.remove(&old) {
                        Some((l, bid, ..)) => {
                            prop_assert_eq!(got.map(|o| (o.reference, o.locate, o.price, o.shares)), Some((new, l, price, shares)));
                            if let std::collections::hash_map::Entry::Vacant(e) = m.entry(new) {
                                e.insert((l, bid, price, shares));
                            } else {
                                want.duplicate_reference += 1;
                            }
                        }
                        None => {
                            want.unknown_reference += 1;
                            prop_assert_eq!(got, None);
                        }
                    }
                }
            }
            if let (Some(l), Some(before)) = (locate, before) {
                let moved = model_bbo(&m, l) != before;
                if moved {
                    proptest::prop_assert!(b.top_changed(), "the BBO moved unflagged: {:?}", op);
                } else if !matches!(op, Op::Replace(..)) {
                    proptest::prop_assert!(!b.top_changed(), "flagged without a move: {:?}", op);
                }
            }
            most = most.max(m.len());
            prop_assert_eq!(b.live_orders(), m.len());
            prop_assert_eq!(b.stats(), BookStats { pool_growths: b.stats().pool_growths, ..want });
            for l in 1..4 {
                prop_assert_eq!(books_of(&b, l), model_book(&m, l));
            }
            for (r, o) in &m {
                prop_assert_eq!(b.order(*r).map(|x| (x.locate, x.side == b'B', x.price, x.shares)), Some(*o));
            }
        }
        prop_assert_eq!(b.bytes_per_order(), bytes, "memory fixed");
        if most <= 56 {
            prop_assert_eq!(b.stats().pool_growths, 0, "no growth while the overflow has room");
        }
    }
}

/// Prefetching a packet changes nothing, whatever its messages: truncated
/// ones, unknown references and locates, orders that rest.
#[test]
fn prefetching_a_packet_changes_nothing() {
    use ticklane_protocols::moldudp64::{PacketBuilder, Session};
    use zerocopy::IntoBytes;
    let mut b = Books::new(64);
    add(&mut b, 1, b'B', 100, 1000);
    let before = (book(&b), b.stats(), b.order(1));
    let delete = itch::OrderDelete {
        header: Header::new(itch::OrderDelete::TYPE, 7, 0, 1),
        order_reference_number: U64::new(1),
    };
    let mut payload = [0u8; 512];
    let mut p = PacketBuilder::new(&mut payload, Session::from_name(b"T").unwrap(), 1).unwrap();
    for m in [
        delete.as_bytes(),
        &delete.as_bytes()[..12],
        b"A",
        b"Axx",
        &[b'A'; 36][..],
        &[b'U'; 35][..],
        &[b'E'; 5][..],
    ] {
        p.push(m).unwrap();
    }
    let bytes = p.finish().to_vec();
    b.prefetch(&Packet::new_checked(&bytes[..]).unwrap());
    assert_eq!((book(&b), b.stats(), b.order(1)), before);
}

/// Books big enough for the second, deeper hint (more than
/// [`DEEP_LEVELS`] levels) end exactly as without any hint, on a packet of
/// every kind of book message: orders resting, unknown, duplicated, adds
/// to new stocks, replaces and executions that empty levels.
#[test]
fn the_deep_look_ahead_changes_nothing() {
    use ticklane_protocols::moldudp64::{PacketBuilder, Session};
    use zerocopy::IntoBytes;
    let deep = || {
        let mut b = Books::new(1 << 16);
        for i in 0..(DEEP_LEVELS as u64 / 2 + 100) {
            add(&mut b, 2 * i + 1, b'B', 100, 1_000_000 + i as u32);
            add(&mut b, 2 * i + 2, b'S', 100, 900_000 - i as u32);
        }
        b
    };
    let (mut hinted, mut plain) = (deep(), deep());
    assert!(hinted.levels.live() >= DEEP_LEVELS);
    let header = |t, locate| Header::new(t, locate, 0, 1);
    let mut payload = [0u8; 1400];
    let mut p = PacketBuilder::new(&mut payload, Session::from_name(b"T").unwrap(), 1).unwrap();
    for (i, r) in [1u64, 2, 3, 999_999, 8, 10].into_iter().enumerate() {
        let shares = if i % 2 == 0 { 100 } else { 40 };
        let e = itch::OrderExecuted {
            header: header(itch::OrderExecuted::TYPE, 7),
            order_reference_number: U64::new(r),
            executed_shares: U32::new(shares),
            match_number: U64::new(i as u64),
        };
        p.push(e.as_bytes()).unwrap();
        let a = itch::AddOrder {
            header: header(itch::AddOrder::TYPE, 7 + i as u16 % 3),
            order_reference_number: U64::new(if i == 2 { 5 } else { 200_000 + i as u64 }),
            buy_sell_indicator: Char(if i % 2 == 0 { b'B' } else { b'S' }),
            shares: U32::new(10),
            stock: stock(b"MSFT"),
            price: U32::new(1_000_000 + 3 * i as u32),
        };
        p.push(a.as_bytes()).unwrap();
        let d = itch::OrderDelete {
            header: header(itch::OrderDelete::TYPE, 7),
            order_reference_number: U64::new(r + 20),
        };
        p.push(d.as_bytes()).unwrap();
        let u = itch::OrderReplace {
            header: header(itch::OrderReplace::TYPE, 7),
            original_order_reference_number: U64::new(r + 40),
            new_order_reference_number: U64::new(300_000 + i as u64),
            shares: U32::new(7),
            price: U32::new(950_000),
        };
        p.push(u.as_bytes()).unwrap();
    }
    let bytes = p.finish().to_vec();
    let packet = Packet::new_checked(&bytes[..]).unwrap();
    hinted.prefetch(&packet);
    for (_, m) in packet.messages() {
        itch::dispatch(m, &mut hinted).unwrap();
        itch::dispatch(m, &mut plain).unwrap();
        assert_eq!(hinted.top_changed(), plain.top_changed());
    }
    let canonical = |b: &Books| {
        let mut out = Vec::new();
        b.write_canonical(&mut out, None, None);
        out
    };
    assert_eq!(canonical(&hinted), canonical(&plain));
    assert_eq!(hinted.stats(), plain.stats());
    assert_eq!(hinted.live_orders(), plain.live_orders());
    assert!(plain.stats().unknown_reference > 0, "unknown references");
    assert!(plain.stats().duplicate_reference > 0, "a duplicate add");
}
