//! Resting orders, indexed directly by reference.
//!
//! NASDAQ assigns order references in increasing order through the day, so
//! the orders resting at any moment crowd the newest part of the reference
//! range. A window of `W` slots (a power of two) holds each order in the slot
//! `reference mod W`: no hashing and no probing, one 16-byte slot, four to a
//! cache line. Two live orders whose references are a multiple of `W` apart
//! cannot share a slot: the newer reference keeps it and the older moves to
//! an overflow table (Robin Hood, multiplicative hash, backward-shift
//! deletion), where the day's long-lived orders and any odd references end
//! up. A reference far out of range costs one slot like any other: memory
//! follows the number of resting orders, never the references' values.
//!
//! The window never grows; the overflow grows past its capacity only if it
//! must, counted ([`OrderPool::growths`]). Both are mapped anonymous memory
//! (zeroed memory is an empty pool), so the operating system hands zeroed
//! pages out on first touch, huge ones where it can, instead of the pool
//! writing every page up front.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::levels::LevelId;

/// A resting order as the pool keeps it: its reference, the shares still
/// resting and its price level (which knows the stock, side and price).
/// A slot whose `level` is [`LevelId::NONE`] is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(super) struct Slot {
    pub(super) reference: u64,
    pub(super) shares: u32,
    pub(super) level: LevelId,
}

const _: () = assert!(size_of::<Slot>() == 16);

impl Slot {
    #[inline]
    fn is_empty(&self) -> bool {
        self.level == LevelId::NONE
    }
}

/// Empty slots in memory mapped for them alone: the kernel hands out zeroed
/// pages on first touch (never a memset up front, whatever the allocator
/// would have reused), in huge pages where the host allows them (fewer
/// faults, and fewer TLB misses for a window read at random).
#[derive(Debug)]
struct Slots(memmap2::MmapMut);

impl Slots {
    fn new(n: usize) -> Self {
        let bytes = n.saturating_mul(size_of::<Slot>());
        let map = memmap2::MmapOptions::new()
            .len(bytes)
            .map_anon()
            .unwrap_or_else(|_| {
                std::alloc::handle_alloc_error(
                    std::alloc::Layout::from_size_align(bytes, 4096)
                        .unwrap_or(std::alloc::Layout::new::<Slot>()),
                )
            });
        // A hint: refused where transparent huge pages are off.
        let _ = map.advise(memmap2::Advice::HugePage);
        Self(map)
    }
}

impl std::ops::Deref for Slots {
    type Target = [Slot];
    #[inline]
    fn deref(&self) -> &[Slot] {
        // A page-aligned mapping of a whole number of slots: never fails.
        <[Slot]>::ref_from_bytes(&self.0).unwrap_or(&[])
    }
}

impl std::ops::DerefMut for Slots {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Slot] {
        <[Slot]>::mut_from_bytes(&mut self.0).unwrap_or(&mut [])
    }
}

/// The overflow: a Robin Hood table with the orders inline, at most 7/8 full.
#[derive(Debug)]
struct Overflow {
    slots: Slots,
    /// 64 − log2(slots.len()): the hash keeps the product's top bits.
    shift: u32,
    len: usize,
}

impl Overflow {
    fn new(slots: usize) -> Self {
        let slots = slots.next_power_of_two().max(16);
        Self {
            slots: Slots::new(slots),
            shift: 64 - slots.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Home slot of a reference (Fibonacci hashing: references in the
    /// overflow are the odd ones out, with no locality to keep).
    #[inline]
    fn home(&self, reference: u64) -> usize {
        (reference.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// How far the entry at `pos` sits from its home.
    #[inline]
    fn distance(&self, pos: usize, reference: u64) -> usize {
        pos.wrapping_sub(self.home(reference)) & self.mask()
    }

    fn find(&self, reference: u64) -> Option<usize> {
        let mut pos = self.home(reference);
        for dist in 0.. {
            let e = &self.slots[pos];
            if e.is_empty() || self.distance(pos, e.reference) < dist {
                return None;
            }
            if e.reference == reference {
                return Some(pos);
            }
            pos = (pos + 1) & self.mask();
        }
        None
    }

    /// Robin Hood insertion (the reference is not in the table); true when
    /// the table had to grow first.
    fn insert(&mut self, mut entry: Slot) -> bool {
        let grew = (self.len + 1) * 8 > self.slots.len() * 7;
        if grew {
            let old = std::mem::replace(self, Self::new(self.slots.len() * 2));
            for e in old.slots.iter().filter(|e| !e.is_empty()) {
                self.insert(*e);
            }
        }
        let mut pos = self.home(entry.reference);
        let mut dist = 0;
        loop {
            let e = self.slots[pos];
            if e.is_empty() {
                self.slots[pos] = entry;
                self.len += 1;
                return grew;
            }
            let d = self.distance(pos, e.reference);
            if d < dist {
                self.slots[pos] = entry;
                entry = e;
                dist = d;
            }
            pos = (pos + 1) & self.mask();
            dist += 1;
        }
    }

    /// Removes the entry at `pos`, pulling the entries after it one step
    /// home, up to an empty slot or an entry already at home.
    fn remove_at(&mut self, mut pos: usize) -> Slot {
        let removed = self.slots[pos];
        self.len -= 1;
        loop {
            let next = (pos + 1) & self.mask();
            let e = self.slots[next];
            if e.is_empty() || self.distance(next, e.reference) == 0 {
                break;
            }
            self.slots[pos] = e;
            pos = next;
        }
        self.slots[pos] = Slot::new_zeroed();
        removed
    }
}

/// Resting orders by reference: a direct window and an overflow.
#[derive(Debug)]
pub(super) struct OrderPool {
    window: Slots,
    overflow: Overflow,
    /// Greatest reference ever inserted: a reference beyond it (a new
    /// order's, in the feed's order) cannot be resting, and needs no probe.
    newest: Option<u64>,
    live: usize,
    growths: u64,
}

impl OrderPool {
    /// A pool for `capacity` resting orders: a window of `capacity` slots
    /// (rounded up to a power of two) and an overflow of as many, which
    /// holds 7/8 of them before it grows.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let window = capacity.next_power_of_two().max(16);
        Self {
            window: Slots::new(window),
            overflow: Overflow::new(window),
            newest: None,
            live: 0,
            growths: 0,
        }
    }

    /// Orders resting now.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Times the overflow had to grow past its capacity (each one an
    /// allocation on the hot path: size the pool for the feed).
    pub(super) fn growths(&self) -> u64 {
        self.growths
    }

    /// Bytes of memory per order the pool was sized for (window and
    /// overflow slots).
    pub(super) fn bytes_per_order(&self) -> usize {
        size_of::<Slot>() * (self.window.len() + self.overflow.slots.len()) / self.window.len()
    }

    #[inline]
    fn window_index(&self, reference: u64) -> usize {
        reference as usize & (self.window.len() - 1)
    }

    /// Starts loading the window slot of `reference` into the cache.
    #[inline]
    pub(super) fn prefetch(&self, reference: u64) {
        super::prefetch(&self.window[self.window_index(reference)]);
    }

    /// The level of the order with this reference if it sits in its
    /// window slot (the overflow is not probed: for hints).
    #[inline]
    pub(super) fn peek(&self, reference: u64) -> Option<LevelId> {
        let s = &self.window[self.window_index(reference)];
        (!s.is_empty() && s.reference == reference).then_some(s.level)
    }

    /// The order with this reference.
    #[inline]
    pub(super) fn get(&self, reference: u64) -> Option<&Slot> {
        let s = &self.window[self.window_index(reference)];
        if !s.is_empty() && s.reference == reference {
            return Some(s);
        }
        if self.overflow.len == 0 {
            return None;
        }
        self.overflow
            .find(reference)
            .map(|i| &self.overflow.slots[i])
    }

    /// The order with this reference, mutably.
    #[inline]
    pub(super) fn get_mut(&mut self, reference: u64) -> Option<&mut Slot> {
        let i = self.window_index(reference);
        let s = self.window[i];
        if !s.is_empty() && s.reference == reference {
            return Some(&mut self.window[i]);
        }
        if self.overflow.len == 0 {
            return None;
        }
        let i = self.overflow.find(reference)?;
        Some(&mut self.overflow.slots[i])
    }

    /// True when an order with this reference rests.
    #[inline]
    pub(super) fn contains(&self, reference: u64) -> bool {
        self.newest.is_some_and(|n| reference <= n) && self.get(reference).is_some()
    }

    /// Adds an order whose reference is not resting (see [`Self::contains`]);
    /// `order.level` must not be [`LevelId::NONE`].
    #[inline]
    pub(super) fn insert(&mut self, order: Slot) {
        debug_assert!(!order.is_empty() && !self.contains(order.reference));
        let i = self.window_index(order.reference);
        let resident = self.window[i];
        let to_overflow = if resident.is_empty() {
            self.window[i] = order;
            None
        } else if resident.reference < order.reference {
            self.window[i] = order;
            Some(resident)
        } else {
            Some(order)
        };
        if let Some(o) = to_overflow
            && self.overflow.insert(o)
        {
            self.growths += 1;
        }
        self.newest = self.newest.max(Some(order.reference));
        self.live += 1;
    }

    /// Removes and returns the order with this reference.
    #[inline]
    pub(super) fn remove(&mut self, reference: u64) -> Option<Slot> {
        let i = self.window_index(reference);
        let s = self.window[i];
        let removed = if !s.is_empty() && s.reference == reference {
            self.window[i] = Slot::new_zeroed();
            s
        } else if self.overflow.len == 0 {
            return None;
        } else {
            let pos = self.overflow.find(reference)?;
            self.overflow.remove_at(pos)
        };
        self.live -= 1;
        Some(removed)
    }

    /// Orders resting in the overflow (the rest are in the window).
    #[cfg(test)]
    fn in_overflow(&self) -> usize {
        self.overflow.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn order(reference: u64, shares: u32) -> Slot {
        Slot {
            reference,
            shares,
            level: LevelId::first(),
        }
    }

    #[test]
    fn insert_find_remove() {
        let mut p = OrderPool::with_capacity(16);
        p.insert(order(5, 10));
        assert!(p.contains(5));
        p.get_mut(5).unwrap().shares = 3;
        assert_eq!(p.remove(5).map(|o| o.shares), Some(3));
        assert!(p.get(5).is_none());
        assert!(p.remove(5).is_none());
        assert_eq!(p.len(), 0);
        assert_eq!(p.growths(), 0);
    }

    #[test]
    fn an_older_order_sharing_a_slot_moves_to_the_overflow() {
        let mut p = OrderPool::with_capacity(16);
        p.insert(order(3, 1));
        p.insert(order(3 + 16, 2));
        p.insert(order(3 + 64, 3));
        p.insert(order(3 + 32, 4)); // older than the resident: overflow
        assert_eq!(p.in_overflow(), 3);
        assert_eq!(p.get(3 + 64).map(|o| o.shares), Some(3));
        for (r, s) in [(3, 1), (19, 2), (35, 4)] {
            assert_eq!(p.get(r).map(|o| o.shares), Some(s));
        }
        assert_eq!(p.remove(19).map(|o| o.shares), Some(2));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn references_far_out_of_range_cost_one_slot_each() {
        let mut p = OrderPool::with_capacity(1 << 10);
        let before = p.bytes_per_order();
        // All share one window slot: all but one go to the overflow, which
        // holds 7/8 of the capacity.
        for i in 0..800u64 {
            p.insert(order(u64::MAX - i * (1 << 40), 1));
        }
        assert_eq!(p.len(), 800);
        assert_eq!(p.growths(), 0, "the overflow holds them without growing");
        assert_eq!(p.bytes_per_order(), before);
        assert!((0..800u64).all(|i| p.contains(u64::MAX - i * (1 << 40))));
    }

    #[test]
    fn growth_is_counted_and_keeps_every_order() {
        let mut p = OrderPool::with_capacity(16);
        // All share one window slot: all but one overflow.
        for r in 0..1000 {
            p.insert(order(r * 16, 1));
        }
        assert!(p.growths() > 0);
        assert!((0..1000).all(|r| p.contains(r * 16)));
    }

    proptest! {
        /// Against a HashMap, under any mix of inserts and removes, with
        /// references that share window slots and overflow homes.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..300, any::<bool>()), 1..2000)) {
            let mut p = OrderPool::with_capacity(64);
            let mut m: HashMap<u64, Slot> = HashMap::new();
            for (n, (insert, r, far)) in ops.into_iter().enumerate() {
                let r = if far { r << 40 } else { r * 16 };
                if insert {
                    if !p.contains(r) {
                        p.insert(order(r, n as u32 + 1));
                    }
                    m.entry(r).or_insert(order(r, n as u32 + 1));
                } else {
                    prop_assert_eq!(p.remove(r), m.remove(&r));
                }
                prop_assert_eq!(p.len(), m.len());
            }
            for (r, o) in &m {
                prop_assert_eq!(p.get(*r), Some(o));
            }
        }
    }
}
