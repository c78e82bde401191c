//! Resting orders: a pre-sized pool and an open-addressing index from order
//! reference to pool slot (linear probing, backward-shift deletion, so no
//! tombstones ever slow lookups down). Nothing allocates while the pool and
//! the index have room; growth past the configured capacity is counted.

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

const EMPTY: u32 = u32::MAX;

/// Pool of orders with an index by reference.
#[derive(Debug)]
pub struct OrderPool {
    orders: Vec<Order>,
    free: Vec<u32>,
    /// Slot numbers into `orders`, `EMPTY` where free.
    index: Vec<u32>,
    mask: usize,
    live: usize,
    growths: u64,
}

fn home(reference: u64, mask: usize) -> usize {
    // Fibonacci hashing: references are mostly consecutive integers.
    (reference.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask
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
        size_of::<Order>() + size_of::<u32>() * self.index.len() / self.orders.capacity().max(1)
    }

    fn find(&self, reference: u64) -> Option<usize> {
        let mut i = home(reference, self.mask);
        loop {
            let slot = self.index[i];
            if slot == EMPTY {
                return None;
            }
            if self.orders[slot as usize].reference == reference {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The order with this reference.
    pub fn get(&self, reference: u64) -> Option<&Order> {
        self.find(reference)
            .map(|i| &self.orders[self.index[i] as usize])
    }

    /// The order with this reference, mutably.
    pub fn get_mut(&mut self, reference: u64) -> Option<&mut Order> {
        let i = self.find(reference)?;
        Some(&mut self.orders[self.index[i] as usize])
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
        let mut i = home(order.reference, self.mask);
        while self.index[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.index[i] = slot;
        self.live += 1;
        true
    }

    /// Removes and returns the order with this reference.
    pub fn remove(&mut self, reference: u64) -> Option<Order> {
        let mut hole = self.find(reference)?;
        let slot = self.index[hole];
        let order = self.orders[slot as usize];
        self.free.push(slot);
        self.live -= 1;
        // Backward shift: pull later entries of the probe run into the hole
        // when the hole lies between their home and their position.
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.index[j];
            if s == EMPTY {
                break;
            }
            let k = home(self.orders[s as usize].reference, self.mask);
            let movable = if hole <= j {
                k <= hole || k > j
            } else {
                k <= hole && k > j
            };
            if movable {
                self.index[hole] = s;
                hole = j;
            }
        }
        self.index[hole] = EMPTY;
        Some(order)
    }

    fn grow_index(&mut self) {
        self.growths += 1;
        let slots = self.index.len() * 2;
        let old = std::mem::replace(&mut self.index, vec![EMPTY; slots]);
        self.mask = slots - 1;
        for slot in old.into_iter().filter(|&s| s != EMPTY) {
            let mut i = home(self.orders[slot as usize].reference, self.mask);
            while self.index[i] != EMPTY {
                i = (i + 1) & self.mask;
            }
            self.index[i] = slot;
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
