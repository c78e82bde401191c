//! Full-depth order books for every stock, keyed by stock_locate, with exact
//! ITCH 5.0 semantics: A/F add; E and C execute part or all of an order (C's
//! price does not move the order); X cancels shares; D deletes; U replaces an
//! order by a new one on the same side and stock; an order at 0 shares leaves.
//! P, Q and B do not touch the book. An unknown order reference is counted,
//! never a panic.
//!
//! Orders live in a pool (`orders.rs`) indexed directly by reference (16 bytes
//! an order); each keeps the handle of its price level, so that everything
//! but an add goes from the order to its level without a search. Levels sit
//! in one pool, each book side a sorted array of handles, best last
//! (`levels.rs`). Every operation says whether its side's best level changed,
//! so that a caller publishing the BBO looks only then. Once every stock has
//! been seen, no message allocates unless the pool outgrows its capacity,
//! which is counted ([`BookStats::pool_growths`]), or a side holds more levels
//! than it ever did.

mod levels;
mod orders;

pub use levels::Level;

use levels::{LevelPool, Side};
use orders::{OrderPool, Slot};
use ticklane_protocols::itch::{self, Alpha};
use ticklane_protocols::moldudp64::Packet;

/// A resting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// Order reference number.
    pub reference: u64,
    /// Limit price, Price(4).
    pub price: u32,
    /// Shares still resting.
    pub shares: u32,
    /// Locate code of its stock.
    pub locate: u16,
    /// b'B' or b'S'.
    pub side: u8,
}

/// One stock's book: its name and the level handles of both sides.
#[derive(Debug, Clone)]
struct Book {
    stock: Alpha<8>,
    bids: Side,
    asks: Side,
}

impl Book {
    fn new() -> Self {
        Self {
            stock: Alpha([b' '; 8]),
            bids: Side::with_capacity(),
            asks: Side::with_capacity(),
        }
    }

    #[inline]
    fn side_mut(&mut self, bid: bool) -> &mut Side {
        if bid { &mut self.bids } else { &mut self.asks }
    }

    #[inline]
    fn side(&self, bid: bool) -> &Side {
        if bid { &self.bids } else { &self.asks }
    }
}

/// One stock's book, as read.
#[derive(Debug, Clone, Copy)]
pub struct BookView<'a> {
    book: &'a Book,
    levels: &'a LevelPool,
}

impl<'a> BookView<'a> {
    /// Symbol from the stock directory (or the first add).
    pub fn stock(&self) -> Alpha<8> {
        self.book.stock
    }

    fn levels(&self, side: &'a Side) -> impl Iterator<Item = Level> + 'a {
        let pool = self.levels;
        side.ids().map(move |id| pool.node(id).level)
    }

    /// Bids, best (highest) first.
    pub fn bids(&self) -> impl Iterator<Item = Level> + 'a {
        self.levels(&self.book.bids)
    }

    /// Asks, best (lowest) first.
    pub fn asks(&self) -> impl Iterator<Item = Level> + 'a {
        self.levels(&self.book.asks)
    }

    /// Number of bid and ask levels.
    pub fn depth(&self) -> (usize, usize) {
        (self.book.bids.len(), self.book.asks.len())
    }

    /// True when neither side has a level.
    pub fn is_empty(&self) -> bool {
        self.depth() == (0, 0)
    }

    /// Best bid and best ask.
    pub fn bbo(&self) -> (Option<Level>, Option<Level>) {
        (self.bids().next(), self.asks().next())
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

/// Where the (original) order reference sits in the messages that name a
/// resting order: right after the header.
const REFERENCE: std::ops::Range<usize> = 11..19;
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(itch::OrderExecuted, order_reference_number) == REFERENCE.start);
    assert!(offset_of!(itch::OrderExecutedWithPrice, order_reference_number) == REFERENCE.start);
    assert!(offset_of!(itch::OrderCancel, order_reference_number) == REFERENCE.start);
    assert!(offset_of!(itch::OrderDelete, order_reference_number) == REFERENCE.start);
    assert!(offset_of!(itch::OrderReplace, original_order_reference_number) == REFERENCE.start);
};

/// Where an add names its stock's locate code, and its side.
const ADD_LOCATE: std::ops::Range<usize> = 1..3;
const ADD_SIDE: usize = 19;
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(itch::AddOrder, buy_sell_indicator) == ADD_SIDE);
    assert!(offset_of!(itch::AddOrderMpid, buy_sell_indicator) == ADD_SIDE);
};

/// Book messages of a packet noted by [`Books::prefetch`] for the second
/// hint, taken [`AHEAD`] messages before each is applied.
const AHEAD_MAX: usize = 64;
/// How many book messages ahead of the one applied the second hint looks.
const AHEAD: usize = 4;
/// Price levels (40 bytes each with the sides' entries: 1.3 MB, more than
/// a core's L2 here) from which the second hint pays.
const DEEP_LEVELS: usize = 1 << 15;

/// What a noted message will touch: the order it names, or the side of
/// the book an add goes to.
#[derive(Debug, Clone, Copy)]
enum Upcoming {
    Order(u64),
    Add { locate: u16, bid: bool },
}

/// The book messages of the packet being applied, in order.
#[derive(Debug)]
struct Ahead {
    noted: [Upcoming; AHEAD_MAX],
    len: usize,
    applied: usize,
}

/// Asks the CPU to start loading the cache line of `value` (a hint: no
/// effect on what the program computes).
#[inline]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p: *const T = value;
        // SAFETY: a prefetch never faults and changes nothing the program
        // can observe; the pointer comes from a live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The book of `locate`, created on first sight.
#[inline]
fn book_mut(books: &mut Vec<Option<Book>>, locate: u16) -> &mut Book {
    let i = usize::from(locate);
    if !matches!(books.get(i), Some(Some(_))) {
        new_book(books, i);
    }
    books[i].get_or_insert_with(Book::new)
}

/// Room for a stock seen for the first time, out of the hot path.
#[cold]
#[inline(never)]
fn new_book(books: &mut Vec<Option<Book>>, i: usize) {
    if i >= books.len() {
        books.resize_with(i + 1, || None);
    }
    books[i].get_or_insert_with(Book::new);
}

/// Every stock's book.
#[derive(Debug)]
pub struct Books {
    books: Vec<Option<Book>>,
    levels: LevelPool,
    orders: OrderPool,
    stats: BookStats,
    top_changed: bool,
    ahead: Ahead,
}

#[inline]
fn side_code(bid: bool) -> u8 {
    if bid { b'B' } else { b'S' }
}

impl Books {
    /// Books with room for `max_orders` resting orders (and as many levels).
    pub fn new(max_orders: usize) -> Self {
        Self {
            books: Vec::new(),
            levels: LevelPool::with_capacity(max_orders),
            orders: OrderPool::with_capacity(max_orders),
            stats: BookStats::default(),
            top_changed: false,
            ahead: Ahead {
                noted: [Upcoming::Order(0); AHEAD_MAX],
                len: 0,
                applied: 0,
            },
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

    /// Bytes of the order pool per order it was sized for.
    pub fn bytes_per_order(&self) -> usize {
        self.orders.bytes_per_order()
    }

    /// Bytes per price level: its node in the pool and its entry in its
    /// side's sorted array.
    pub fn bytes_per_level(&self) -> usize {
        levels::BYTES_PER_LEVEL
    }

    /// True when the last add, execution, cancel, delete or replace changed
    /// its book's best bid or best ask (price, or shares at the best price).
    pub fn top_changed(&self) -> bool {
        self.top_changed
    }

    /// Starts loading the orders that a packet's executions, cancels,
    /// deletes and replaces name, before its messages are applied one by
    /// one, so that their cache misses overlap instead of following one
    /// another. When the books outgrow the caches (at least 32,768 price
    /// levels, as on a full day's 8,000 stocks), it also notes the book
    /// messages (up to 64) for a second hint as they are applied, 4
    /// messages before each one's turn: an order's price
    /// level (its slot has arrived by then), an add's book and side. With
    /// fewer levels, all in cache, that second hint cost more than it saved
    /// (measured). Only hints: changes nothing the books report.
    #[inline]
    pub fn prefetch(&mut self, packet: &Packet<&[u8]>) {
        let deep = self.levels.live() >= DEEP_LEVELS;
        let ahead = &mut self.ahead;
        ahead.len = 0;
        ahead.applied = 0;
        for (_, m) in packet.messages() {
            let upcoming = match (m.first(), m.get(REFERENCE)) {
                (Some(b'E' | b'C' | b'X' | b'D' | b'U'), Some(r)) => {
                    let reference = u64::from_be_bytes(r.try_into().unwrap_or_default());
                    self.orders.prefetch(reference);
                    Upcoming::Order(reference)
                }
                (Some(b'A' | b'F'), _) if deep => match (m.get(ADD_LOCATE), m.get(ADD_SIDE)) {
                    (Some(l), Some(&side)) => {
                        let locate = u16::from_be_bytes(l.try_into().unwrap_or_default());
                        if let Some(Some(book)) = self.books.get(usize::from(locate)) {
                            prefetch(book);
                        }
                        Upcoming::Add {
                            locate,
                            bid: side == b'B',
                        }
                    }
                    _ => continue,
                },
                _ => continue,
            };
            if deep && let Some(slot) = ahead.noted.get_mut(ahead.len) {
                *slot = upcoming;
                ahead.len += 1;
            }
        }
    }

    /// The second hint, for the book message [`AHEAD`] after the one
    /// being applied.
    #[inline]
    fn look_ahead(&mut self) {
        let ahead = &mut self.ahead;
        let i = ahead.applied + AHEAD;
        ahead.applied += 1;
        if i >= ahead.len {
            return;
        }
        match ahead.noted[i] {
            Upcoming::Order(reference) => {
                if let Some(level) = self.orders.peek(reference) {
                    self.levels.prefetch(level);
                }
            }
            Upcoming::Add { locate, bid } => {
                if let Some(Some(book)) = self.books.get(usize::from(locate)) {
                    book.side(bid).prefetch_top();
                }
            }
        }
    }

    /// The resting order with this reference.
    pub fn order(&self, reference: u64) -> Option<Order> {
        let o = self.orders.get(reference)?;
        let node = self.levels.node(o.level);
        Some(Order {
            reference,
            price: node.level.price,
            shares: o.shares,
            locate: node.locate,
            side: side_code(node.bid),
        })
    }

    /// The book of a locate code, if it was ever seen.
    pub fn book(&self, locate: u16) -> Option<BookView<'_>> {
        let book = self.books.get(usize::from(locate))?.as_ref()?;
        Some(BookView {
            book,
            levels: &self.levels,
        })
    }

    /// Books by locate code, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u16, BookView<'_>)> {
        self.books.iter().enumerate().filter_map(|(i, b)| {
            let view = BookView {
                book: b.as_ref()?,
                levels: &self.levels,
            };
            Some((i as u16, view))
        })
    }

    /// Names a stock (stock directory).
    pub fn name(&mut self, locate: u16, stock: Alpha<8>) {
        book_mut(&mut self.books, locate).stock = stock;
    }

    /// Adds a resting order; false (counted) when its reference rests already.
    pub fn add(&mut self, order: Order, stock: Alpha<8>) -> bool {
        self.look_ahead();
        self.top_changed = false;
        if self.orders.contains(order.reference) {
            self.stats.duplicate_reference += 1;
            return false;
        }
        let bid = order.side == b'B';
        let book = book_mut(&mut self.books, order.locate);
        if book.stock.0 == [b' '; 8] {
            book.stock = stock;
        }
        let (level, top) = self.levels.add(
            book.side_mut(bid),
            order.locate,
            bid,
            order.price,
            order.shares,
        );
        self.orders.insert(Slot {
            reference: order.reference,
            shares: order.shares,
            level,
        });
        self.top_changed = top;
        true
    }

    /// Takes `shares` off an order (all of them for `None`); the order leaves
    /// at 0 shares. Returns its level as it was and the shares taken.
    #[inline]
    fn reduce(&mut self, reference: u64, shares: Option<u32>) -> Option<(levels::Node, u32)> {
        self.look_ahead();
        self.top_changed = false;
        let Some(order) = self.orders.get_mut(reference) else {
            self.stats.unknown_reference += 1;
            return None;
        };
        let taken = match shares {
            Some(s) if s > order.shares => {
                self.stats.oversized += 1;
                order.shares
            }
            Some(s) => s,
            None => order.shares,
        };
        order.shares -= taken;
        let (level, gone) = (order.level, order.shares == 0);
        if gone {
            self.orders.remove(reference);
        }
        let node = *self.levels.node(level);
        self.top_changed = self.levels.take(
            || book_mut(&mut self.books, node.locate).side_mut(node.bid),
            level,
            taken,
            gone,
        );
        Some((node, taken))
    }

    fn fill(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        let (node, shares) = self.reduce(reference, Some(shares))?;
        Some(Fill {
            locate: node.locate,
            side: side_code(node.bid),
            price: node.level.price,
            shares,
        })
    }

    /// Executes shares of a resting order (E, C).
    pub fn execute(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        self.fill(reference, shares)
    }

    /// Cancels shares of a resting order (X).
    pub fn cancel(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        self.fill(reference, shares)
    }

    /// Removes a resting order (D).
    pub fn delete(&mut self, reference: u64) -> Option<Order> {
        let (node, shares) = self.reduce(reference, None)?;
        Some(Order {
            reference,
            price: node.level.price,
            shares,
            locate: node.locate,
            side: side_code(node.bid),
        })
    }

    /// Replaces a resting order by a new one, same stock and side (U), and
    /// returns the new one; `None` when the original is not resting. A new
    /// reference that rests already is counted as a duplicate and does not
    /// rest, and the original is gone all the same.
    pub fn replace(&mut self, original: u64, new: u64, shares: u32, price: u32) -> Option<Order> {
        let old = self.delete(original)?;
        let top = self.top_changed;
        let order = Order {
            reference: new,
            price,
            shares,
            ..old
        };
        let stock = book_mut(&mut self.books, old.locate).stock;
        self.add(order, stock);
        self.top_changed |= top;
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
            let symbol = book.stock();
            if book.is_empty() || stock.is_some_and(|s| s != symbol.trimmed()) {
                continue;
            }
            ticklane_capture::canonical::write_book(
                out,
                symbol.trimmed(),
                book.bids().take(depth).map(|l| (l.price, l.shares)),
                book.asks().take(depth).map(|l| (l.price, l.shares)),
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
