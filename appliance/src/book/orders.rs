//! Resting orders: a pre-sized pool and an open-addressing index from order
//! reference to pool slot. The index is Robin Hood hashed with backward-shift
//! deletion: no tombstones, lookups stop early, and a removal shifts only the
//! entries that sit away from their home slot. Each index entry carries the
//! reference's hash, so probing reads the pool only on a real match. Nothing
//! allocates while the pool and the index have room; growth past the
//! configured capacity is counted.

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

/// One index entry: the reference's hash and the pool slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: u32,
    slot: u32,
}

const EMPTY: Entry = Entry {
    hash: 0,
    slot: u32::MAX,
};

/// Pool of orders with an index by reference.
#[derive(Debug)]
pub struct OrderPool {
    orders: Vec<Order>,
    free: Vec<u32>,
    index: Vec<Entry>,
    mask: usize,
    live: usize,
    growths: u64,
}

/// Hash of a reference. ITCH order references grow by one per new order
/// through the day, and the orders resting at once mostly have recent,
/// nearby references: keeping the low bits puts them in neighbouring slots,
/// each at its home (no collisions among consecutive references), where a
/// scrambling hash would scatter every lookup across the index. The high
/// half is folded in so that references far apart still spread.
#[inline]
fn hash(reference: u64) -> u32 {
    (reference ^ (reference >> 32)) as u32
}

impl OrderPool {
    /// A pool for `capacity` live orders, index at most half full.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(16);
        let slots = (capacity * 2).next_power_of_two();
        Self {
            orders: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            index: vec![EMPTY; slots],
            mask: slots - 1,
            live: 0,
            growths: 0,
        }
    }

    /// Orders resting now.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no order rests.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Times the pool or index had to grow past its capacity (each one an
    /// allocation on the hot path: size the pool for the feed).
    pub fn growths(&self) -> u64 {
        self.growths
    }

    /// Bytes of memory per order slot (pool entry plus index share).
    pub fn bytes_per_order(&self) -> usize {
        size_of::<Order>() + size_of::<Entry>() * self.index.len() / self.orders.capacity().max(1)
    }

    /// How far the entry at `pos` sits from its home slot.
    #[inline]
    fn distance(&self, pos: usize, e: Entry) -> usize {
        pos.wrapping_sub(e.hash as usize) & self.mask
    }

    /// Index position of `reference`.
    #[inline]
    fn find(&self, reference: u64) -> Option<usize> {
        let h = hash(reference);
        let mut pos = h as usize & self.mask;
        let mut dist = 0;
        loop {
            let e = self.index[pos];
            if e.slot == u32::MAX || self.distance(pos, e) < dist {
                return None;
            }
            if e.hash == h && self.orders[e.slot as usize].reference == reference {
                return Some(pos);
            }
            pos = (pos + 1) & self.mask;
            dist += 1;
        }
    }

    /// The order with this reference.
    pub fn get(&self, reference: u64) -> Option<&Order> {
        self.find(reference)
            .map(|i| &self.orders[self.index[i].slot as usize])
    }

    /// The order with this reference, mutably.
    pub fn get_mut(&mut self, reference: u64) -> Option<&mut Order> {
        let i = self.find(reference)?;
        Some(&mut self.orders[self.index[i].slot as usize])
    }

    /// Adds an order; false (and nothing changes) when its reference is
    /// already resting.
    pub fn insert(&mut self, order: Order) -> bool {
        if self.find(order.reference).is_some() {
            return false;
        }
        if (self.live + 1) * 2 > self.index.len() {
            self.grow_index();
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.orders[s as usize] = order;
                s
            }
            None => {
                if self.orders.len() == self.orders.capacity() {
                    self.growths += 1;
                }
                self.orders.push(order);
                (self.orders.len() - 1) as u32
            }
        };
        self.place(Entry {
            hash: hash(order.reference),
            slot,
        });
        self.live += 1;
        true
    }

    /// Robin Hood insertion: an entry closer to its home gives way.
    fn place(&mut self, mut entry: Entry) {
        let mut pos = entry.hash as usize & self.mask;
        let mut dist = 0;
        loop {
            let e = self.index[pos];
            if e.slot == u32::MAX {
                self.index[pos] = entry;
                return;
            }
            let d = self.distance(pos, e);
            if d < dist {
                self.index[pos] = entry;
                entry = e;
                dist = d;
            }
            pos = (pos + 1) & self.mask;
            dist += 1;
        }
    }

    /// Removes and returns the order with this reference.
    pub fn remove(&mut self, reference: u64) -> Option<Order> {
        let mut pos = self.find(reference)?;
        let slot = self.index[pos].slot;
        self.free.push(slot);
        self.live -= 1;
        // Backward shift: pull the following entries one step home, up to an
        // empty slot or an entry already at home.
        loop {
            let next = (pos + 1) & self.mask;
            let e = self.index[next];
            if e.slot == u32::MAX || self.distance(next, e) == 0 {
                break;
            }
            self.index[pos] = e;
            pos = next;
        }
        self.index[pos] = EMPTY;
        Some(self.orders[slot as usize])
    }

    fn grow_index(&mut self) {
        self.growths += 1;
        let slots = self.index.len() * 2;
        let old = std::mem::replace(&mut self.index, vec![EMPTY; slots]);
        self.mask = slots - 1;
        for e in old.into_iter().filter(|e| e.slot != u32::MAX) {
            self.place(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn order(reference: u64) -> Order {
        Order {
            reference,
            price: 100,
            shares: 10,
            locate: 1,
            side: b'B',
        }
    }

    #[test]
    fn insert_find_remove() {
        let mut p = OrderPool::with_capacity(16);
        assert!(p.insert(order(5)));
        assert!(!p.insert(order(5)), "duplicate reference refused");
        assert_eq!(p.get(5).map(|o| o.reference), Some(5));
        p.get_mut(5).unwrap().shares = 3;
        assert_eq!(p.remove(5).map(|o| o.shares), Some(3));
        assert!(p.get(5).is_none());
        assert!(p.is_empty());
        assert_eq!(p.growths(), 0);
    }

    #[test]
    fn growth_is_counted_and_keeps_every_order() {
        let mut p = OrderPool::with_capacity(16);
        for r in 0..1000 {
            assert!(p.insert(order(r)));
        }
        assert!(p.growths() > 0);
        assert!((0..1000).all(|r| p.get(r).is_some()));
    }

    proptest! {
        /// Against a HashMap, under any mix of inserts and removes, including
        /// references that collide in the index.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..300), 1..2000)) {
            let mut p = OrderPool::with_capacity(64);
            let mut m: HashMap<u64, Order> = HashMap::new();
            for (insert, r) in ops {
                let r = r * 1024; // many share a home slot
                if insert {
                    prop_assert_eq!(p.insert(order(r)), !m.contains_key(&r));
                    m.entry(r).or_insert(order(r));
                } else {
                    prop_assert_eq!(p.remove(r), m.remove(&r));
                }
                prop_assert_eq!(p.len(), m.len());
            }
            for r in m.keys() {
                prop_assert!(p.get(*r).is_some());
            }
        }
    }
}
