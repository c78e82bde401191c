//! Replaying a capture at its own timing: each record is due at its capture
//! time relative to the first record, scaled by a speed factor. Used by
//! `ticklane replay --speed` and by the lab's frame sender.

use std::time::{Duration, Instant};

/// Waits until `due` after `start`: sleeps while far, gives the core away
/// while near (so a lab's other processes on the same cores are not
/// starved), and spins only for the last 20 µs.
pub fn wait_until(start: Instant, due: Duration) {
    while let Some(left) = due.checked_sub(start.elapsed()).filter(|l| !l.is_zero()) {
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else if left > Duration::from_micros(20) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Paces records by their capture timestamps.
#[derive(Debug, Clone, Copy)]
pub struct CaptureClock {
    factor: f64,
    start: Instant,
    first: Option<u64>,
}

impl CaptureClock {
    /// Starts now; `factor` 1.0 is the capture's own pace, 10.0 ten times faster.
    pub fn new(factor: f64) -> Self {
        Self {
            factor: factor.max(1e-9),
            start: Instant::now(),
            first: None,
        }
    }

    /// When the record stamped `ts_nanos` is due, after the start.
    pub fn due(&mut self, ts_nanos: u64) -> Duration {
        let first = *self.first.get_or_insert(ts_nanos);
        Duration::from_secs_f64(ts_nanos.saturating_sub(first) as f64 / 1e9 / self.factor)
    }

    /// Waits until the record stamped `ts_nanos` is due.
    pub fn wait(&mut self, ts_nanos: u64) {
        let due = self.due(ts_nanos);
        wait_until(self.start, due);
    }
}
