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

/// The levels of one side.
#[derive(Debug, Clone)]
pub struct Side {
    /// Sorted so that the best price is last.
    levels: Vec<Level>,
    bid: bool,
}

impl Side {
    /// A bid side (best = highest) or an ask side (best = lowest), with room
    /// for `capacity` levels before it allocates.
    pub fn new(bid: bool, capacity: usize) -> Self {
        Self {
            levels: Vec::with_capacity(capacity),
            bid,
        }
    }

    /// Position of `price` in `levels`, or where it would be inserted.
    ///
    /// A linear scan from the best end: almost every add, execution and
    /// cancel lands within a few levels of the top, where a scan is a handful
    /// of predictable compares and a binary search a chain of mispredicted
    /// branches.
    #[inline]
    fn search(&self, price: u32) -> Result<usize, usize> {
        let mut i = self.levels.len();
        if self.bid {
            // Ascending: walk down while the level is above `price`.
            while i > 0 && self.levels[i - 1].price > price {
                i -= 1;
            }
        } else {
            // Descending: walk down while the level is below `price`.
            while i > 0 && self.levels[i - 1].price < price {
                i -= 1;
            }
        }
        match i.checked_sub(1) {
            Some(j) if self.levels[j].price == price => Ok(j),
            _ => Err(i),
        }
    }

    /// Adds an order's shares at `price`.
    pub fn add(&mut self, price: u32, shares: u32) {
        match self.search(price) {
            Ok(i) => {
                let l = &mut self.levels[i];
                l.shares += u64::from(shares);
                l.orders += 1;
            }
            Err(i) => self.levels.insert(
                i,
                Level {
                    price,
                    shares: u64::from(shares),
                    orders: 1,
                },
            ),
        }
    }

    /// Takes `shares` from the level at `price`; `order_gone` when the order
    /// leaves the book. Returns false when no such level exists.
    pub fn remove(&mut self, price: u32, shares: u32, order_gone: bool) -> bool {
        let Ok(i) = self.search(price) else {
            return false;
        };
        let l = &mut self.levels[i];
        l.shares = l.shares.saturating_sub(u64::from(shares));
        if order_gone {
            l.orders = l.orders.saturating_sub(1);
        }
        if l.orders == 0 {
            self.levels.remove(i);
        }
        true
    }

    /// The best level.
    pub fn best(&self) -> Option<Level> {
        self.levels.last().copied()
    }

    /// Levels from the best down.
    pub fn iter(&self) -> impl Iterator<Item = &Level> {
        self.levels.iter().rev()
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// True without levels.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bids_best_is_highest_asks_best_is_lowest() {
        let mut bids = Side::new(true, 4);
        let mut asks = Side::new(false, 4);
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
}
