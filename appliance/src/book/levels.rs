//! Price levels: aggregates in one pool for every book, each with a stable
//! handle ([`LevelId`]) that its orders keep, so that an execution, cancel or
//! delete goes straight from the order to its level and never searches. Each
//! side of a book is a sorted array of (price key, handle), best last, where
//! almost all activity happens: an add finds its level by a binary search
//! (the best level is checked first), and inserting or removing near the top
//! shifts little. A side is searched only when a level appears or leaves.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

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

/// Handle of a level in the [`LevelPool`]; [`LevelId::NONE`] (zero) names
/// no level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(transparent)]
pub(super) struct LevelId(u32);

impl LevelId {
    /// No level (an empty order slot).
    pub(super) const NONE: Self = Self(0);

    /// The first handle the pool hands out.
    #[cfg(test)]
    pub(super) fn first() -> Self {
        Self(1)
    }
}

/// A level in the pool, with the book side it belongs to and whether it is
/// that side's best (so that an order leaving a level below the top never
/// reads the side). Aligned so that no node straddles two cache lines.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
pub(super) struct Node {
    pub(super) level: Level,
    pub(super) locate: u16,
    pub(super) bid: bool,
    best: bool,
}

const _: () = assert!(size_of::<Node>() == 32);

/// Bytes per level: its node and its entry in the side.
pub(super) const BYTES_PER_LEVEL: usize = size_of::<Node>() + size_of::<(u32, LevelId)>();

/// One side of a book: (price key, level) sorted by key, best last. The key
/// is the price on the bid side and its complement on the ask side, so that
/// the best level is the greatest key on both.
#[derive(Debug, Clone)]
pub(super) struct Side {
    levels: Vec<(u32, LevelId)>,
}

#[inline]
fn key(bid: bool, price: u32) -> u32 {
    if bid { price } else { !price }
}

/// Levels a side has room for before it allocates: a book rarely holds more
/// at once (a side that does grows, by doubling, and keeps the room).
const SIDE_LEVELS: usize = 64;

impl Side {
    /// An empty side with room for [`SIDE_LEVELS`] levels.
    pub(super) fn with_capacity() -> Self {
        Self {
            levels: Vec::with_capacity(SIDE_LEVELS),
        }
    }

    /// Index of the level with this key, or where it would go: among the
    /// 16 best levels (two cache lines), where adds land, by counting the
    /// keys below it (no branch to mispredict), else by a binary search of
    /// the rest.
    #[inline]
    fn find(&self, key: u32) -> Result<usize, usize> {
        const SCANNED: usize = 16;
        let near = self.levels.len().saturating_sub(SCANNED);
        let (far, top) = self.levels.split_at(near);
        if top.first().is_some_and(|&(k, _)| k <= key) || far.is_empty() {
            let i = near + top.iter().filter(|&&(k, _)| k < key).count();
            return match self.levels.get(i) {
                Some(&(k, _)) if k == key => Ok(i),
                _ => Err(i),
            };
        }
        far.binary_search_by_key(&key, |&(k, _)| k)
    }

    /// Starts loading the best levels' keys, which an add scans.
    #[inline]
    pub(super) fn prefetch_top(&self) {
        for below in [1, 9, 16] {
            if let Some(k) = self.levels.len().checked_sub(below) {
                super::prefetch(&self.levels[k]);
            }
        }
    }

    /// Number of levels.
    pub(super) fn len(&self) -> usize {
        self.levels.len()
    }

    /// Level handles from the best down.
    pub(super) fn ids(&self) -> impl DoubleEndedIterator<Item = LevelId> + '_ {
        self.levels.iter().rev().map(|&(_, id)| id)
    }
}

/// Every level of every book.
#[derive(Debug)]
pub(super) struct LevelPool {
    /// Slot 0 stands for [`LevelId::NONE`] and is never handed out.
    nodes: Vec<Node>,
    free: Vec<LevelId>,
}

impl LevelPool {
    /// A pool with room for `capacity` levels before it allocates.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let mut nodes = Vec::with_capacity(capacity.saturating_add(1));
        nodes.push(Node {
            level: Level {
                price: 0,
                shares: 0,
                orders: 0,
            },
            locate: 0,
            bid: false,
            best: false,
        });
        Self {
            nodes,
            free: Vec::with_capacity(capacity),
        }
    }

    /// Levels in use.
    #[inline]
    pub(super) fn live(&self) -> usize {
        self.nodes.len() - 1 - self.free.len()
    }

    /// Starts loading a level's node.
    #[inline]
    pub(super) fn prefetch(&self, id: LevelId) {
        if let Some(node) = self.nodes.get(id.0 as usize) {
            super::prefetch(node);
        }
    }

    /// The level behind a handle taken from a live order.
    #[inline]
    pub(super) fn node(&self, id: LevelId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// Adds an order of `shares` at `price` to a side of stock `locate`.
    /// Returns its level and whether the side's best level changed.
    #[inline]
    pub(super) fn add(
        &mut self,
        side: &mut Side,
        locate: u16,
        bid: bool,
        price: u32,
        shares: u32,
    ) -> (LevelId, bool) {
        let k = key(bid, price);
        match side.find(k) {
            Ok(i) => {
                let id = side.levels[i].1;
                let l = &mut self.nodes[id.0 as usize].level;
                l.shares += u64::from(shares);
                l.orders += 1;
                (id, i + 1 == side.levels.len() && shares > 0)
            }
            Err(i) => {
                let node = Node {
                    level: Level {
                        price,
                        shares: u64::from(shares),
                        orders: 1,
                    },
                    locate,
                    bid,
                    best: false,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.nodes[id.0 as usize] = node;
                        id
                    }
                    None => {
                        self.nodes.push(node);
                        LevelId((self.nodes.len() - 1) as u32)
                    }
                };
                side.levels.insert(i, (k, id));
                let top = i + 1 == side.levels.len();
                if top {
                    if let Some(&(_, was)) = i.checked_sub(1).and_then(|j| side.levels.get(j)) {
                        self.nodes[was.0 as usize].best = false;
                    }
                    self.nodes[id.0 as usize].best = true;
                }
                (id, top)
            }
        }
    }

    /// Takes `shares` (and the order itself when `order_gone`) from level
    /// `id`; the level leaves its side (which `side` finds, only then) when
    /// its last order did. Returns whether the side's best level changed.
    #[inline]
    pub(super) fn take<'s>(
        &mut self,
        side: impl FnOnce() -> &'s mut Side,
        id: LevelId,
        shares: u32,
        order_gone: bool,
    ) -> bool {
        let node = &mut self.nodes[id.0 as usize];
        let l = &mut node.level;
        l.shares = l.shares.saturating_sub(u64::from(shares));
        if order_gone {
            l.orders = l.orders.saturating_sub(1);
        }
        let (empty, top) = (l.orders == 0, node.best);
        if empty {
            let side = side();
            if let Ok(i) = side.find(key(node.bid, l.price)) {
                side.levels.remove(i);
            }
            if let Some(&(_, next)) = side.levels.last().filter(|_| top) {
                self.nodes[next.0 as usize].best = true;
            }
            self.free.push(id);
        }
        top && (empty || shares > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A side and a pool, driven by price.
    struct OneSide {
        pool: LevelPool,
        side: Side,
        bid: bool,
    }

    impl OneSide {
        fn new(bid: bool) -> Self {
            Self {
                pool: LevelPool::with_capacity(4),
                side: Side::with_capacity(),
                bid,
            }
        }
        fn add(&mut self, price: u32, shares: u32) -> bool {
            self.pool.add(&mut self.side, 1, self.bid, price, shares).1
        }
        fn id(&self, price: u32) -> LevelId {
            self.side
                .ids()
                .find(|id| self.pool.node(*id).level.price == price)
                .expect("a level at this price")
        }
        fn remove_order(&mut self, price: u32, shares: u32) -> bool {
            let id = self.id(price);
            self.pool.take(|| &mut self.side, id, shares, true)
        }
        fn levels(&self) -> Vec<(u32, u64, u32)> {
            self.side
                .ids()
                .map(|id| {
                    let l = self.pool.node(id).level;
                    (l.price, l.shares, l.orders)
                })
                .collect()
        }
    }

    #[test]
    fn bids_best_is_highest_asks_best_is_lowest() {
        let mut bids = OneSide::new(true);
        let mut asks = OneSide::new(false);
        for p in [100, 300, 200, 300] {
            bids.add(p, 10);
            asks.add(p, 10);
        }
        assert_eq!(bids.levels(), [(300, 20, 2), (200, 10, 1), (100, 10, 1)]);
        assert_eq!(asks.levels(), [(100, 10, 1), (200, 10, 1), (300, 20, 2)]);
        assert!(bids.remove_order(300, 10), "the best level shrank");
        assert!(!bids.remove_order(200, 10), "a level below the best left");
        assert!(bids.remove_order(300, 10), "the best level left");
        assert_eq!(bids.levels(), [(100, 10, 1)]);
    }

    #[test]
    fn the_top_changes_only_when_the_best_level_does() {
        let mut asks = OneSide::new(false);
        assert!(asks.add(200, 10), "first level");
        assert!(!asks.add(300, 10), "worse level");
        assert!(asks.add(200, 5), "more at the best");
        assert!(!asks.add(200, 0), "nothing at the best");
        assert!(asks.add(100, 1), "a better level");
        assert!(!asks.remove_order(300, 10));
        assert!(asks.remove_order(100, 1));
    }

    #[test]
    fn handles_of_levels_that_left_are_reused() {
        let mut bids = OneSide::new(true);
        bids.add(100, 1);
        let first = bids.id(100);
        bids.remove_order(100, 1);
        bids.add(500, 1);
        assert_eq!(bids.id(500), first);
        assert_eq!(bids.levels(), [(500, 1, 1)]);
    }

    proptest::proptest! {
        /// Against a BTreeMap, both sides, with the top-changed flag checked
        /// against the model's best level before and after.
        #[test]
        fn behaves_like_sorted_levels(bid: bool, ops in proptest::collection::vec((0u32..60, 0u32..5, proptest::bool::ANY), 1..400)) {
            use std::collections::BTreeMap;
            let mut side = OneSide::new(bid);
            let mut model: BTreeMap<u32, (u64, u32)> = BTreeMap::new();
            let best = |m: &BTreeMap<u32, (u64, u32)>| {
                let b = if bid { m.iter().next_back() } else { m.iter().next() };
                b.map(|(p, (s, _))| (*p, *s))
            };
            for (price, shares, add) in ops {
                let before = best(&model);
                let changed = if add || !model.contains_key(&price) {
                    let e = model.entry(price).or_default();
                    e.0 += u64::from(shares);
                    e.1 += 1;
                    side.add(price, shares)
                } else {
                    let e = model.get_mut(&price).unwrap();
                    let taken = shares.min(e.0 as u32);
                    e.0 -= u64::from(taken);
                    e.1 -= 1;
                    if e.1 == 0 {
                        model.remove(&price);
                    }
                    side.remove_order(price, taken)
                };
                proptest::prop_assert_eq!(changed, best(&model) != before);
                let mut want: Vec<(u32, u64, u32)> = model.iter().map(|(p, (s, o))| (*p, *s, *o)).collect();
                if bid {
                    want.reverse();
                }
                proptest::prop_assert_eq!(side.levels(), want);
                proptest::prop_assert_eq!(side.side.len(), model.len());
            }
        }
    }
}
