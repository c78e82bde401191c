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
