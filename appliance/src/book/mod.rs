//! Full-depth order books for every stock, keyed by stock_locate, with exact
//! ITCH 5.0 semantics: A/F add; E and C execute part or all of an order (C's
//! price does not move the order); X cancels shares; D deletes; U replaces an
//! order by a new one on the same side and stock; an order at 0 shares leaves.
//! P, Q and B do not touch the book. An unknown order reference is counted,
//! never a panic.
//!
//! Orders live in a pre-sized [`OrderPool`]; each side keeps aggregated
//! [`Level`]s. Once every stock has been seen, no message allocates unless the
//! pool outgrows its capacity, which is counted ([`BookStats::pool_growths`]).

mod levels;
mod orders;

pub use levels::{Level, Side};
pub use orders::{Order, OrderPool};

use ticklane_protocols::itch::{self, Alpha};

/// One stock's book.
#[derive(Debug, Clone)]
pub struct Book {
    /// Symbol from the stock directory (or the first add).
    pub stock: Alpha<8>,
    /// Bids, best (highest) first when iterated.
    pub bids: Side,
    /// Asks, best (lowest) first when iterated.
    pub asks: Side,
}

impl Book {
    fn new() -> Self {
        Self {
            stock: Alpha([b' '; 8]),
            bids: Side::new(true),
            asks: Side::new(false),
        }
    }

    fn side_mut(&mut self, side: u8) -> &mut Side {
        if side == b'B' {
            &mut self.bids
        } else {
            &mut self.asks
        }
    }

    /// True when neither side has a level.
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// Best bid and best ask.
    pub fn bbo(&self) -> (Option<Level>, Option<Level>) {
        (self.bids.best(), self.asks.best())
    }
}

/// What the books counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Messages that named an order that is not resting.
    pub unknown_reference: u64,
    /// Adds whose reference was already resting (ignored).
    pub duplicate_reference: u64,
    /// Executions or cancels of more shares than rested (clamped).
    pub oversized: u64,
    /// Times the order pool had to grow past its capacity.
    pub pool_growths: u64,
}

/// An execution against a resting order, as the book saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// The stock.
    pub locate: u16,
    /// Side of the resting order.
    pub side: u8,
    /// The resting order's price.
    pub price: u32,
    /// Shares executed.
    pub shares: u32,
}

/// Every stock's book.
#[derive(Debug)]
pub struct Books {
    books: Vec<Option<Book>>,
    orders: OrderPool,
    stats: BookStats,
}

impl Books {
    /// Books with room for `max_orders` resting orders.
    pub fn new(max_orders: usize) -> Self {
        Self {
            books: Vec::new(),
            orders: OrderPool::with_capacity(max_orders),
            stats: BookStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> BookStats {
        BookStats {
            pool_growths: self.orders.growths(),
            ..self.stats
        }
    }

    /// Orders resting now.
    pub fn live_orders(&self) -> usize {
        self.orders.len()
    }

    /// Bytes per order slot of the pool.
    pub fn bytes_per_order(&self) -> usize {
        self.orders.bytes_per_order()
    }

    /// The resting order with this reference.
    pub fn order(&self, reference: u64) -> Option<&Order> {
        self.orders.get(reference)
    }

    /// Counts a message that named an order that is not resting (for callers
    /// that look the order up themselves).
    pub fn count_unknown(&mut self) {
        self.stats.unknown_reference += 1;
    }

    /// The book of a locate code, if it was ever seen.
    pub fn book(&self, locate: u16) -> Option<&Book> {
        self.books.get(usize::from(locate))?.as_ref()
    }

    /// Books by locate code, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Book)> {
        self.books
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((i as u16, b.as_ref()?)))
    }

    fn book_mut(&mut self, locate: u16) -> &mut Book {
        let i = usize::from(locate);
        if i >= self.books.len() {
            self.books.resize_with(i + 1, || None);
        }
        self.books[i].get_or_insert_with(Book::new)
    }

    /// Names a stock (stock directory).
    pub fn name(&mut self, locate: u16, stock: Alpha<8>) {
        self.book_mut(locate).stock = stock;
    }

    /// Adds a resting order.
    pub fn add(&mut self, order: Order, stock: Alpha<8>) {
        if !self.orders.insert(order) {
            self.stats.duplicate_reference += 1;
            return;
        }
        let book = self.book_mut(order.locate);
        if book.stock.0 == [b' '; 8] {
            book.stock = stock;
        }
        book.side_mut(order.side).add(order.price, order.shares);
    }

    /// Takes `shares` off an order (execution or cancel); the order leaves at
    /// 0 shares. Returns the order as it was, with the shares taken.
    fn reduce(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        let Some(order) = self.orders.get_mut(reference) else {
            self.stats.unknown_reference += 1;
            return None;
        };
        let taken = if shares > order.shares {
            self.stats.oversized += 1;
            order.shares
        } else {
            shares
        };
        order.shares -= taken;
        let o = *order;
        if o.shares == 0 {
            self.orders.remove(reference);
        }
        let (locate, side, price) = (o.locate, o.side, o.price);
        self.book_mut(locate)
            .side_mut(side)
            .remove(price, taken, o.shares == 0);
        Some(Fill {
            locate,
            side,
            price,
            shares: taken,
        })
    }

    /// Executes shares of a resting order (E, C).
    pub fn execute(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        self.reduce(reference, shares)
    }

    /// Cancels shares of a resting order (X).
    pub fn cancel(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        self.reduce(reference, shares)
    }

    /// Removes a resting order (D).
    pub fn delete(&mut self, reference: u64) -> Option<Order> {
        let Some(o) = self.orders.remove(reference) else {
            self.stats.unknown_reference += 1;
            return None;
        };
        self.book_mut(o.locate)
            .side_mut(o.side)
            .remove(o.price, o.shares, true);
        Some(o)
    }

    /// Replaces a resting order by a new one, same stock and side (U).
    pub fn replace(&mut self, original: u64, new: u64, shares: u32, price: u32) -> Option<Order> {
        let old = self.delete(original)?;
        let order = Order {
            reference: new,
            price,
            shares,
            ..old
        };
        if !self.orders.insert(order) {
            self.stats.duplicate_reference += 1;
            return None;
        }
        self.book_mut(old.locate)
            .side_mut(old.side)
            .add(price, shares);
        Some(order)
    }
}

/// Books as an ITCH handler (no events: for `ticklane book` and tests; the
/// pipeline wraps the same methods and publishes what changed).
impl itch::Handler for Books {
    fn on_stock_directory(&mut self, m: &itch::StockDirectory) {
        self.name(m.header.stock_locate(), m.stock);
    }
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.add(m.into(), m.stock);
    }
    fn on_add_order_mpid(&mut self, m: &itch::AddOrderMpid) {
        self.add(m.into(), m.stock);
    }
    fn on_order_executed(&mut self, m: &itch::OrderExecuted) {
        self.execute(m.order_reference_number(), m.executed_shares());
    }
    fn on_order_executed_with_price(&mut self, m: &itch::OrderExecutedWithPrice) {
        self.execute(m.order_reference_number(), m.executed_shares());
    }
    fn on_order_cancel(&mut self, m: &itch::OrderCancel) {
        self.cancel(m.order_reference_number(), m.cancelled_shares());
    }
    fn on_order_delete(&mut self, m: &itch::OrderDelete) {
        self.delete(m.order_reference_number());
    }
    fn on_order_replace(&mut self, m: &itch::OrderReplace) {
        self.replace(
            m.original_order_reference_number(),
            m.new_order_reference_number(),
            m.shares(),
            m.price(),
        );
    }
}

impl Books {
    /// Appends the canonical book lines (`docs/formats.md`) of every stock
    /// whose book is not empty, by locate code; `depth` keeps the best N
    /// levels per side, `stock` selects one symbol.
    pub fn write_canonical(&self, out: &mut Vec<u8>, depth: Option<usize>, stock: Option<&[u8]>) {
        let depth = depth.unwrap_or(usize::MAX);
        for (_, book) in self.iter() {
            if book.is_empty() || stock.is_some_and(|s| s != book.stock.trimmed()) {
                continue;
            }
            ticklane_capture::canonical::write_book(
                out,
                book.stock.trimmed(),
                book.bids.iter().take(depth).map(|l| (l.price, l.shares)),
                book.asks.iter().take(depth).map(|l| (l.price, l.shares)),
            );
        }
    }
}

/// The resting order an add message creates (both add types carry the same
/// order fields; F adds an attribution).
macro_rules! order_from_add {
    ($($add:ty),*) => {$(
        impl From<&$add> for Order {
            fn from(m: &$add) -> Self {
                Order {
                    reference: m.order_reference_number(),
                    price: m.price(),
                    shares: m.shares(),
                    locate: m.header.stock_locate(),
                    side: m.buy_sell_indicator(),
                }
            }
        }
    )*};
}
order_from_add!(itch::AddOrder, itch::AddOrderMpid);

#[cfg(test)]
mod tests;
