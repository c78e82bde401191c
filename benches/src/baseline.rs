//! The baseline book of the benchmarks: what a first implementation would
//! write (a `HashMap` of orders, `BTreeMap` price levels), driven by
//! ticklane's parser in the pipeline bench and by `itchy` in the plain
//! program the whole-process bench runs.

use std::collections::{BTreeMap, HashMap};

use ticklane_appliance::book::Order;
use ticklane_protocols::itch::{self, Handler};

/// A stock's levels (locate, bids best first, asks best first), to compare books.
pub type BookLevels = (u16, Vec<(u32, u64)>, Vec<(u32, u64)>);

/// The baseline: what a first implementation would write.
#[derive(Debug, Default)]
pub struct BaselineBooks {
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

    /// Adds an order.
    pub fn add(&mut self, reference: u64, locate: u16, side: u8, shares: u32, price: u32) {
        self.orders.insert(reference, (locate, side, price, shares));
        *self.side(locate, side).entry(price).or_default() += u64::from(shares);
    }

    /// Takes shares (all of them for `None`) from an order; returns its
    /// stock and side when it rests.
    pub fn take(&mut self, reference: u64, shares: Option<u32>) -> Option<(u16, u8)> {
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

    /// Every non-empty book, by locate code, best levels first.
    pub fn canonical(&self) -> Vec<BookLevels> {
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

impl BaselineBooks {
    fn add_order(&mut self, o: Order) {
        self.add(o.reference, o.locate, o.side, o.shares, o.price);
    }

    /// One message as `itchy` parsed it.
    pub fn apply_itchy(&mut self, m: &itchy::Message) {
        let side = |s: &itchy::Side| match s {
            itchy::Side::Buy => b'B',
            itchy::Side::Sell => b'S',
        };
        match &m.body {
            itchy::Body::AddOrder(a) => self.add(
                a.reference,
                m.stock_locate,
                side(&a.side),
                a.shares,
                a.price.raw(),
            ),
            itchy::Body::OrderExecuted {
                reference,
                executed,
                ..
            }
            | itchy::Body::OrderExecutedWithPrice {
                reference,
                executed,
                ..
            } => {
                self.take(*reference, Some(*executed));
            }
            itchy::Body::OrderCancelled {
                reference,
                cancelled,
            } => {
                self.take(*reference, Some(*cancelled));
            }
            itchy::Body::DeleteOrder { reference } => {
                self.take(*reference, None);
            }
            itchy::Body::ReplaceOrder(r) => {
                if let Some((locate, s)) = self.take(r.old_reference, None) {
                    self.add(r.new_reference, locate, s, r.shares, r.price.raw());
                }
            }
            _ => {}
        }
    }
}

impl Handler for BaselineBooks {
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.add_order(m.into());
    }
    fn on_add_order_mpid(&mut self, m: &itch::AddOrderMpid) {
        self.add_order(m.into());
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
