//! One side of a book: price levels aggregated, kept sorted with the best
//! price last, where almost all activity happens, so that inserting or
//! removing a level near the top shifts little.

/// An aggregated price level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Price, Price(4).
    pub price: u32,
    /// Total shares resting at this price.
    pub shares: u64,
    /// Number of orders at this price.
    pub orders: u32,
}

/// How many of the best levels a side keeps inline, in the book itself.
pub const INLINE_LEVELS: usize = 16;

/// Where a price is, or would go.
enum Slot {
    Top(usize),
    Deep(usize),
}

/// The levels of one side. The best [`INLINE_LEVELS`] live inline, in the
/// book record itself, so that the top of the book costs no pointer chase
/// and no extra cache miss; deeper levels spill to a vector. Both are sorted
/// with the best price last, where almost all activity happens, so that
/// inserting or removing near the top shifts little. Invariant: `deep` only
/// holds levels when `top` is full, and every deep level is worse than every
/// top level.
#[derive(Debug, Clone)]
pub struct Side {
    top: [Level; INLINE_LEVELS],
    top_len: usize,
    deep: Vec<Level>,
    bid: bool,
}

const EMPTY_LEVEL: Level = Level {
    price: 0,
    shares: 0,
    orders: 0,
};

impl Side {
    /// A bid side (best = highest) or an ask side (best = lowest).
    pub fn new(bid: bool) -> Self {
        Self {
            top: [EMPTY_LEVEL; INLINE_LEVELS],
            top_len: 0,
            deep: Vec::new(),
            bid,
        }
    }

    /// True when a level at price `a` is better than one at `b`.
    #[inline]
    fn better(&self, a: u32, b: u32) -> bool {
        if self.bid { a > b } else { a < b }
    }

    /// Index of `price` in `levels` (sorted best last), or where it would go:
    /// a linear scan from the best end, where almost everything lands.
    #[inline]
    fn scan(&self, levels: &[Level], price: u32) -> Result<usize, usize> {
        let mut i = levels.len();
        while i > 0 && self.better(levels[i - 1].price, price) {
            i -= 1;
        }
        match i.checked_sub(1) {
            Some(j) if levels[j].price == price => Ok(j),
            _ => Err(i),
        }
    }

    #[inline]
    fn search(&self, price: u32) -> Result<Slot, Slot> {
        match self.scan(&self.top[..self.top_len], price) {
            Ok(i) => Ok(Slot::Top(i)),
            Err(0) if self.top_len == INLINE_LEVELS => match self.scan(&self.deep, price) {
                Ok(j) => Ok(Slot::Deep(j)),
                Err(j) => Err(Slot::Deep(j)),
            },
            Err(i) => Err(Slot::Top(i)),
        }
    }

    /// Adds an order's shares at `price`.
    pub fn add(&mut self, price: u32, shares: u32) {
        let new = Level {
            price,
            shares: u64::from(shares),
            orders: 1,
        };
        match self.search(price) {
            Ok(Slot::Top(i)) => add_to(&mut self.top[i], shares),
            Ok(Slot::Deep(j)) => add_to(&mut self.deep[j], shares),
            Err(Slot::Deep(j)) => self.deep.insert(j, new),
            Err(Slot::Top(i)) if self.top_len < INLINE_LEVELS => {
                self.top.copy_within(i..self.top_len, i + 1);
                self.top[i] = new;
                self.top_len += 1;
            }
            Err(Slot::Top(i)) => {
                // Full: the worst inline level moves down to the best end of
                // `deep`, making room below position i.
                self.deep.push(self.top[0]);
                self.top.copy_within(1..i, 0);
                self.top[i - 1] = new;
            }
        }
    }

    /// Takes `shares` from the level at `price`; `order_gone` when the order
    /// leaves the book. Returns false when no such level exists.
    pub fn remove(&mut self, price: u32, shares: u32, order_gone: bool) -> bool {
        match self.search(price) {
            Ok(Slot::Top(i)) => {
                if take_from(&mut self.top[i], shares, order_gone) {
                    self.top.copy_within(i + 1..self.top_len, i);
                    self.top_len -= 1;
                    if let Some(next) = self.deep.pop() {
                        // Refill from the best deep level, the new worst top.
                        self.top.copy_within(0..self.top_len, 1);
                        self.top[0] = next;
                        self.top_len += 1;
                    }
                }
                true
            }
            Ok(Slot::Deep(j)) => {
                if take_from(&mut self.deep[j], shares, order_gone) {
                    self.deep.remove(j);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The best level.
    pub fn best(&self) -> Option<Level> {
        self.top_len.checked_sub(1).map(|i| self.top[i])
    }

    /// Levels from the best down.
    pub fn iter(&self) -> impl Iterator<Item = &Level> {
        self.top[..self.top_len]
            .iter()
            .rev()
            .chain(self.deep.iter().rev())
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.top_len + self.deep.len()
    }

    /// True without levels.
    pub fn is_empty(&self) -> bool {
        self.top_len == 0
    }
}

fn add_to(level: &mut Level, shares: u32) {
    level.shares += u64::from(shares);
    level.orders += 1;
}

/// Takes shares (and, when it left, the order) from a level; true when the
/// level is now empty.
fn take_from(level: &mut Level, shares: u32, order_gone: bool) -> bool {
    level.shares = level.shares.saturating_sub(u64::from(shares));
    if order_gone {
        level.orders = level.orders.saturating_sub(1);
    }
    level.orders == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bids_best_is_highest_asks_best_is_lowest() {
        let mut bids = Side::new(true);
        let mut asks = Side::new(false);
        for p in [100, 300, 200, 300] {
            bids.add(p, 10);
            asks.add(p, 10);
        }
        let b: Vec<(u32, u64)> = bids.iter().map(|l| (l.price, l.shares)).collect();
        let a: Vec<(u32, u64)> = asks.iter().map(|l| (l.price, l.shares)).collect();
        assert_eq!(b, [(300, 20), (200, 10), (100, 10)]);
        assert_eq!(a, [(100, 10), (200, 10), (300, 20)]);
        assert!(bids.remove(300, 10, true));
        assert_eq!(
            bids.best().map(|l| (l.price, l.shares, l.orders)),
            Some((300, 10, 1))
        );
        assert!(bids.remove(300, 10, true));
        assert_eq!(bids.best().map(|l| l.price), Some(200));
        assert!(!bids.remove(999, 1, true));
    }

    proptest::proptest! {
        /// Against a BTreeMap, through spills to and refills from the deep
        /// levels, both sides.
        #[test]
        fn behaves_like_sorted_levels(bid: bool, ops in proptest::collection::vec((0u32..60, 1u32..5, proptest::bool::ANY), 1..400)) {
            use std::collections::BTreeMap;
            let mut side = Side::new(bid);
            let mut model: BTreeMap<u32, (u64, u32)> = BTreeMap::new();
            for (price, shares, add) in ops {
                if add || !model.contains_key(&price) {
                    side.add(price, shares);
                    let e = model.entry(price).or_default();
                    e.0 += u64::from(shares);
                    e.1 += 1;
                } else {
                    let gone = model[&price].1 == 1;
                    assert!(side.remove(price, 0, true));
                    let e = model.get_mut(&price).unwrap();
                    e.1 -= 1;
                    if gone {
                        model.remove(&price);
                    }
                }
                let got: Vec<(u32, u64, u32)> = side.iter().map(|l| (l.price, l.shares, l.orders)).collect();
                let mut want: Vec<(u32, u64, u32)> = model.iter().map(|(p, (s, o))| (*p, *s, *o)).collect();
                if bid {
                    want.reverse();
                }
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(side.len(), model.len());
            }
        }
    }
}
