//! How much each client may receive: a token bucket of answer bytes per
//! client, in a table of fixed size. Time is passed in (nanoseconds from any
//! origin), so tests drive it exactly.

use std::net::IpAddr;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A token bucket of bytes: holds up to `burst` bytes, refills at `rate`
/// bytes per second, starts full.
///
/// The level is kept in byte-nanoseconds so refilling is exact integer
/// arithmetic with no drift; every operation saturates (a burst above about
/// 18 GB acts as 18 GB; a clock that steps back refills nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u64,
    cap: u64,
    level: u64,
    at: u64,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(rate: u64, burst: u64, now: u64) -> Self {
        let cap = burst.saturating_mul(NANOS_PER_SEC);
        Self {
            rate,
            cap,
            level: cap,
            at: now,
        }
    }

    fn level_at(&self, now: u64) -> u64 {
        let elapsed = now.saturating_sub(self.at);
        self.level
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.cap)
    }

    /// Bytes that may be sent at `now`.
    pub fn available(&mut self, now: u64) -> u64 {
        self.level = self.level_at(now);
        self.at = self.at.max(now);
        self.level / NANOS_PER_SEC
    }

    /// Spends `bytes` (after [`available`](Self::available) said how many
    /// there are).
    pub fn spend(&mut self, bytes: u64) {
        self.level = self
            .level
            .saturating_sub(bytes.saturating_mul(NANOS_PER_SEC));
    }

    /// True when the bucket has refilled by `now`: it then carries no
    /// state, and forgetting it costs nothing.
    pub fn is_full(&self, now: u64) -> bool {
        self.level_at(now) >= self.cap
    }
}

/// One bucket per client address, at most `capacity` of them, in memory
/// allocated once.
///
/// A new client takes a free slot, or the slot of the longest-idle client
/// whose bucket has refilled (forgetting it loses nothing). When every
/// tracked client still has a partly spent bucket, a new one is turned
/// away: evicting a partly spent bucket would hand its client a fresh burst
/// on its next request, so a flood from rotating (spoofed) allowed sources
/// could take unlimited bytes. With this rule, what all clients together
/// receive stays within `capacity × (burst + rate × time)`.
///
/// Clients are found by a linear scan: the table is small (tens to a few
/// thousand entries) and this is a lab server, not the hot path.
#[derive(Debug)]
pub struct ClientTable {
    clients: Vec<Client>,
    capacity: usize,
    rate: u64,
    burst: u64,
}

#[derive(Debug)]
struct Client {
    addr: IpAddr,
    bucket: TokenBucket,
    seen: u64,
}

impl ClientTable {
    /// Room for `capacity` clients, each with a bucket of `burst` bytes
    /// refilled at `rate` bytes per second.
    pub fn new(capacity: usize, rate: u64, burst: u64) -> Self {
        Self {
            clients: Vec::with_capacity(capacity),
            capacity,
            rate,
            burst,
        }
    }

    /// The bucket of `addr` at `now`, or `None` when the table is full of
    /// clients whose buckets have not refilled yet.
    pub fn bucket(&mut self, addr: IpAddr, now: u64) -> Option<&mut TokenBucket> {
        let i = match self.clients.iter().position(|c| c.addr == addr) {
            Some(i) => i,
            None => self.admit(addr, now)?,
        };
        let client = &mut self.clients[i];
        client.seen = client.seen.max(now);
        Some(&mut client.bucket)
    }

    fn admit(&mut self, addr: IpAddr, now: u64) -> Option<usize> {
        let client = Client {
            addr,
            bucket: TokenBucket::new(self.rate, self.burst, now),
            seen: now,
        };
        if self.clients.len() < self.capacity {
            self.clients.push(client);
            return Some(self.clients.len() - 1);
        }
        let (i, _) = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.bucket.is_full(now))
            .min_by_key(|(_, c)| c.seen)?;
        self.clients[i] = client;
        Some(i)
    }

    /// Clients tracked now.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_bucket_holds_its_burst_and_refills_at_its_rate() {
        let mut b = TokenBucket::new(1000, 500, 0);
        assert_eq!(b.available(0), 500, "starts full");
        b.spend(500);
        assert_eq!(b.available(0), 0);
        assert_eq!(b.available(100 * MS), 100, "1000 B/s for 100 ms");
        assert!(!b.is_full(100 * MS));
        assert_eq!(
            b.available(50 * MS),
            100,
            "a clock stepping back refills nothing"
        );
        assert_eq!(b.available(10_000 * MS), 500, "never beyond the burst");
        assert!(b.is_full(10_000 * MS));
        b.spend(u64::MAX);
        assert_eq!(b.available(10_000 * MS), 0, "spending saturates");
    }

    #[test]
    fn a_bucket_refills_exactly_in_small_steps() {
        let mut b = TokenBucket::new(3, 10, 0);
        b.spend(10);
        for t in 1..=1000 {
            b.available(t * MS);
        }
        assert_eq!(
            b.available(1000 * MS),
            3,
            "1000 steps of 1 ms give 3 bytes at 3 B/s"
        );
    }

    #[test]
    fn extreme_settings_saturate_instead_of_overflowing() {
        let mut b = TokenBucket::new(u64::MAX, u64::MAX, 0);
        assert_eq!(b.available(u64::MAX), u64::MAX / NANOS_PER_SEC);
        let mut none = TokenBucket::new(0, 0, 0);
        assert_eq!(none.available(u64::MAX), 0);
        assert!(none.is_full(0));
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 3, last])
    }

    #[test]
    fn each_client_has_its_own_bucket() {
        let mut t = ClientTable::new(4, 1000, 100);
        t.bucket(ip(1), 0).unwrap().spend(100);
        assert_eq!(t.bucket(ip(1), 0).unwrap().available(0), 0);
        assert_eq!(t.bucket(ip(2), 0).unwrap().available(0), 100);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_full_table_reuses_only_refilled_slots() {
        let mut t = ClientTable::new(2, 1000, 100);
        t.bucket(ip(1), 0).unwrap().spend(100);
        t.bucket(ip(2), 10 * MS).unwrap().spend(100);
        assert!(
            t.bucket(ip(3), 20 * MS).is_none(),
            "both buckets partly spent"
        );
        assert_eq!(t.len(), 2, "the table does not grow");
        // ip(1) has refilled at 100 ms, ip(2) only at 110 ms.
        let b = t
            .bucket(ip(3), 105 * MS)
            .expect("ip(1)'s slot is free again");
        assert_eq!(b.available(105 * MS), 100, "a newcomer starts full");
        b.spend(1);
        assert!(
            t.bucket(ip(4), 105 * MS).is_none(),
            "neither ip(2) nor ip(3) refilled"
        );
        assert_eq!(
            t.bucket(ip(2), 105 * MS).unwrap().available(105 * MS),
            95,
            "ip(2) kept its state"
        );
    }

    #[test]
    fn the_longest_idle_refilled_client_goes_first() {
        let mut t = ClientTable::new(2, 1000, 100);
        t.bucket(ip(1), 0);
        t.bucket(ip(2), 0);
        t.bucket(ip(1), 5 * MS);
        t.bucket(ip(3), 6 * MS).expect("ip(2) is idle longest");
        assert_eq!(
            t.bucket(ip(1), 7 * MS).unwrap().available(7 * MS),
            100,
            "ip(1) is still tracked"
        );
        assert!(t.clients.iter().all(|c| c.addr != ip(2)));
    }

    #[test]
    fn a_table_of_no_clients_turns_everyone_away() {
        let mut t = ClientTable::new(0, 1000, 100);
        assert!(t.bucket(ip(1), 0).is_none());
        assert!(t.is_empty());
    }
}
