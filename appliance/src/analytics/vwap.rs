//! VWAP per stock over a sliding window, emitted periodically (every 100 ms
//! of feed time by default), from executions: E (at the resting order's
//! price), printable C, P and Q.
//!
//! Each stock keeps a ring of buckets, one per emission interval, so that the
//! window slides by whole intervals with fixed memory; stocks with volume in
//! the window are tracked in a list so that an emission visits only them.

/// VWAP of one stock at one emission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VwapEvent {
    /// The stock.
    pub locate: u16,
    /// Feed time of the emission (nanoseconds since midnight).
    pub timestamp: u64,
    /// Volume-weighted average price over the window, Price(4), rounded.
    pub vwap: u32,
    /// Shares traded in the window.
    pub shares: u64,
    /// Trades in the window.
    pub trades: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Emission interval number this bucket holds.
    epoch: u64,
    notional: u128,
    shares: u64,
    trades: u32,
}

/// Sliding-window VWAP of every stock.
#[derive(Debug)]
pub struct Vwap {
    interval_ns: u64,
    buckets_per_window: usize,
    /// `buckets_per_window` buckets per locate code, allocated on first use.
    buckets: Vec<Bucket>,
    active: Vec<u16>,
    is_active: Vec<bool>,
    next_emit: u64,
}

impl Default for Vwap {
    /// A one-second window emitted every 100 ms of feed time.
    fn default() -> Self {
        Self::new(1_000_000_000, 100_000_000)
    }
}

impl Vwap {
    /// A window of `window_ns`, emitted every `interval_ns` (the window is
    /// rounded up to whole intervals).
    pub fn new(window_ns: u64, interval_ns: u64) -> Self {
        let interval_ns = interval_ns.max(1);
        Self {
            interval_ns,
            buckets_per_window: window_ns.div_ceil(interval_ns).max(1) as usize,
            buckets: Vec::new(),
            active: Vec::new(),
            is_active: Vec::new(),
            next_emit: 0,
        }
    }

    /// Makes room for locate codes up to `locate` (start of day, stock directory).
    pub fn reserve(&mut self, locate: u16) {
        let n = usize::from(locate) + 1;
        if self.is_active.len() < n {
            self.is_active.resize(n, false);
            self.buckets
                .resize(n * self.buckets_per_window, Bucket::default());
        }
    }

    /// Records a trade at feed time `timestamp`.
    pub fn trade(&mut self, locate: u16, timestamp: u64, price: u32, shares: u64) {
        self.reserve(locate);
        let epoch = timestamp / self.interval_ns;
        let i = self.bucket_index(locate, epoch);
        let b = &mut self.buckets[i];
        if b.epoch != epoch {
            *b = Bucket {
                epoch,
                ..Bucket::default()
            };
        }
        b.notional += u128::from(price) * u128::from(shares);
        b.shares += shares;
        b.trades += 1;
        if !self.is_active[usize::from(locate)] {
            self.is_active[usize::from(locate)] = true;
            self.active.push(locate);
        }
    }

    fn bucket_index(&self, locate: u16, epoch: u64) -> usize {
        usize::from(locate) * self.buckets_per_window
            + (epoch % self.buckets_per_window as u64) as usize
    }

    /// Advances feed time; at every interval boundary crossed, calls `emit`
    /// for each stock with volume in the window ending there.
    pub fn advance(&mut self, timestamp: u64, mut emit: impl FnMut(VwapEvent)) {
        if self.next_emit == 0 {
            self.next_emit = (timestamp / self.interval_ns + 1) * self.interval_ns;
            return;
        }
        if timestamp < self.next_emit {
            return;
        }
        // Emit once for the latest boundary crossed (a quiet feed skips the
        // boundaries in between, as their windows would repeat).
        let boundary = timestamp / self.interval_ns * self.interval_ns;
        self.emit_at(boundary, &mut emit);
        self.next_emit = boundary + self.interval_ns;
    }

    fn emit_at(&mut self, boundary: u64, emit: &mut impl FnMut(VwapEvent)) {
        let last_epoch = boundary / self.interval_ns; // exclusive
        let first_epoch = last_epoch.saturating_sub(self.buckets_per_window as u64);
        let mut i = 0;
        while i < self.active.len() {
            let locate = self.active[i];
            let start = usize::from(locate) * self.buckets_per_window;
            let (mut notional, mut shares, mut trades) = (0u128, 0u64, 0u32);
            for b in &self.buckets[start..start + self.buckets_per_window] {
                if (first_epoch..last_epoch).contains(&b.epoch) {
                    notional += b.notional;
                    shares += b.shares;
                    trades += b.trades;
                }
            }
            if shares == 0 {
                self.is_active[usize::from(locate)] = false;
                self.active.swap_remove(i);
                continue;
            }
            let vwap = (notional + u128::from(shares / 2)) / u128::from(shares);
            emit(VwapEvent {
                locate,
                timestamp: boundary,
                vwap: u32::try_from(vwap).unwrap_or(u32::MAX),
                shares,
                trades,
            });
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn run(v: &mut Vwap, t: u64) -> Vec<VwapEvent> {
        let mut out = Vec::new();
        v.advance(t, |e| out.push(e));
        out
    }

    #[test]
    fn weights_by_volume_and_slides() {
        let mut v = Vwap::new(200 * MS, 100 * MS);
        assert!(run(&mut v, 10 * MS).is_empty());
        v.trade(3, 20 * MS, 100_0000, 100);
        v.trade(3, 30 * MS, 102_0000, 300);
        let e = run(&mut v, 100 * MS);
        assert_eq!(
            e,
            vec![VwapEvent {
                locate: 3,
                timestamp: 100 * MS,
                vwap: 101_5000,
                shares: 400,
                trades: 2
            }]
        );
        v.trade(3, 150 * MS, 110_0000, 400);
        let e = run(&mut v, 205 * MS);
        assert_eq!(
            (e[0].vwap, e[0].shares),
            (105_7500, 800),
            "both intervals are in the 200 ms window"
        );
        let e = run(&mut v, 300 * MS);
        assert_eq!(
            (e[0].vwap, e[0].shares),
            (110_0000, 400),
            "the first interval slid out"
        );
        assert!(
            run(&mut v, 400 * MS).is_empty(),
            "nothing left in the window"
        );
        assert!(v.active.is_empty());
    }

    #[test]
    fn stocks_are_independent() {
        let mut v = Vwap::new(100 * MS, 100 * MS);
        run(&mut v, 0);
        v.trade(1, 5, 10, 1);
        v.trade(2, 6, 20, 1);
        let mut e = run(&mut v, 100 * MS);
        e.sort_by_key(|e| e.locate);
        assert_eq!(
            e.iter().map(|e| (e.locate, e.vwap)).collect::<Vec<_>>(),
            [(1, 10), (2, 20)]
        );
    }
}
