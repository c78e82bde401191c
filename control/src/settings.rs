//! The settings an operator may change while the appliance runs
//! (`ticklane ctl config`, `SetConfig`): each applies at once, and is kept
//! in the state store (`--state`) to apply again after a restart. Only what
//! can truly change live is here: the poller's own tuning (session timers,
//! rings) is fixed when it starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ControlError;

/// A setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// How often `ticklane run` prints its stats line.
    LogInterval,
    /// gRPC streams open at once, over all clients.
    MaxStreams,
    /// `/readyz` fails when the wire-to-handler p99 since the last check
    /// is above this.
    ReadyMaxP99,
}

/// Whether a value is a duration or a count.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A duration from `min` to `max` milliseconds, or 0 (off).
    Millis { min: u64, max: u64 },
    /// A whole number.
    Count { min: u64, max: u64 },
}

impl Key {
    /// Every setting, in the order they are listed.
    pub const ALL: [Key; 3] = [Key::LogInterval, Key::MaxStreams, Key::ReadyMaxP99];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Key::LogInterval => "log_interval",
            Key::MaxStreams => "max_streams",
            Key::ReadyMaxP99 => "ready_max_p99",
        }
    }

    /// What it does, its values, when a change applies.
    pub fn help(self) -> &'static str {
        match self {
            Key::LogInterval => {
                "how often `ticklane run` prints its stats line to stderr: a duration (500ms, \
                 1s, 1m; 100ms to 1h) or 0 for never; applies from the next line"
            }
            Key::MaxStreams => {
                "gRPC streams open at once over all clients (1 to 4096); a stream opened \
                 beyond it gets RESOURCE_EXHAUSTED; applies to streams opened from now on \
                 (open ones are not closed)"
            }
            Key::ReadyMaxP99 => {
                "/readyz answers 503 when the wire-to-handler p99 since the previous check \
                 is above this duration (1us to 10s, e.g. 50us), or never for 0; applies \
                 from the next check"
            }
        }
    }

    fn kind(self) -> Kind {
        match self {
            Key::LogInterval => Kind::Millis {
                min: 100,
                max: 3_600_000,
            },
            Key::MaxStreams => Kind::Count { min: 1, max: 4096 },
            // Stored in nanoseconds, written in any unit.
            Key::ReadyMaxP99 => Kind::Millis {
                min: 0,
                max: 10_000,
            },
        }
    }

    /// The value it has until set.
    pub fn default_value(self) -> u64 {
        match self {
            Key::LogInterval => 1000,
            Key::MaxStreams => 64,
            Key::ReadyMaxP99 => 0,
        }
    }

    /// The key named `name`, or an error that lists the keys.
    pub fn parse(name: &str) -> Result<Key, ControlError> {
        Key::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| {
                ControlError::InvalidArgument(format!(
                    "'{name}' is not a setting: the settings are {} (ticklane ctl config \
                     list shows them with their values)",
                    Key::ALL.map(Key::name).join(", ")
                ))
            })
    }

    /// A value as text for this key, checked; in the key's unit
    /// (milliseconds, nanoseconds for `ready_max_p99`, or a count).
    pub fn parse_value(self, text: &str) -> Result<u64, ControlError> {
        let t = text.trim();
        let bad =
            |why: String| ControlError::InvalidArgument(format!("{}: '{text}' {why}", self.name()));
        match self.kind() {
            Kind::Count { min, max } => {
                let n: u64 = t
                    .parse()
                    .map_err(|_| bad(format!("is not a whole number from {min} to {max}")))?;
                if !(min..=max).contains(&n) {
                    return Err(bad(format!("is out of range: give {min} to {max}")));
                }
                Ok(n)
            }
            Kind::Millis { min, max } => {
                let d = duration(t).ok_or_else(|| {
                    bad(
                        "is not a duration: give a number and a unit (us, ms, s, m), e.g. \
                         500ms, or 0"
                            .into(),
                    )
                })?;
                let (lo, hi) = (Duration::from_millis(min), Duration::from_millis(max));
                if !d.is_zero() && (d < lo.max(Duration::from_micros(1)) || d > hi) {
                    return Err(bad(format!(
                        "is out of range: give {} to {}, or 0",
                        show(lo.max(Duration::from_micros(1))),
                        show(hi)
                    )));
                }
                Ok(match self {
                    Key::ReadyMaxP99 => d.as_nanos() as u64,
                    _ => d.as_millis() as u64,
                })
            }
        }
    }

    /// A value in this key's unit as text.
    pub fn format(self, value: u64) -> String {
        match self {
            Key::MaxStreams => value.to_string(),
            Key::LogInterval => show(Duration::from_millis(value)),
            Key::ReadyMaxP99 => show(Duration::from_nanos(value)),
        }
    }
}

/// `0`, or a number and a unit: `us`, `ms`, `s`, `m`.
fn duration(t: &str) -> Option<Duration> {
    if t == "0" {
        return Some(Duration::ZERO);
    }
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    })
}

/// A duration in its largest whole unit.
fn show(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, per) in [
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns >= per && ns.is_multiple_of(per) {
            return format!("{}{unit}", ns / per);
        }
    }
    if ns == 0 {
        "0".into()
    } else {
        format!("{ns}ns")
    }
}

/// The live values, read by whoever applies them (lock-free).
#[derive(Debug)]
pub struct Settings {
    values: [AtomicU64; Key::ALL.len()],
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            values: Key::ALL.map(|k| AtomicU64::new(k.default_value())),
        }
    }
}

impl Settings {
    /// The value of `key`, in its unit.
    pub fn get(&self, key: Key) -> u64 {
        self.values[key as usize].load(Ordering::Relaxed)
    }

    /// Sets `key` (a value checked by [`Key::parse_value`]).
    pub fn set(&self, key: Key, value: u64) {
        self.values[key as usize].store(value, Ordering::Relaxed);
    }

    /// How often the stats line is printed (`None`: never).
    pub fn log_interval(&self) -> Option<Duration> {
        let ms = self.get(Key::LogInterval);
        (ms > 0).then(|| Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_shown_in_their_units() {
        let k = Key::LogInterval;
        assert_eq!(k.parse_value("500ms").unwrap(), 500);
        assert_eq!(k.parse_value("2s").unwrap(), 2000);
        assert_eq!(k.parse_value("0").unwrap(), 0);
        assert_eq!(k.format(2000), "2s");
        for bad in ["50ms", "2h", "fast", "-1s", ""] {
            let e = k.parse_value(bad).unwrap_err();
            assert!(matches!(e, ControlError::InvalidArgument(_)), "{bad}");
            assert!(e.to_string().starts_with("log_interval: "), "{e}");
        }
        assert_eq!(Key::MaxStreams.parse_value("128").unwrap(), 128);
        let e = Key::MaxStreams.parse_value("0").unwrap_err().to_string();
        assert!(e.contains("give 1 to 4096"), "{e}");
        assert_eq!(Key::ReadyMaxP99.parse_value("50us").unwrap(), 50_000);
        assert_eq!(Key::ReadyMaxP99.format(50_000), "50us");
        let e = Key::parse("nosuch").unwrap_err().to_string();
        assert!(
            e.contains("log_interval, max_streams, ready_max_p99"),
            "{e}"
        );
        let s = Settings::default();
        assert_eq!(s.log_interval(), Some(Duration::from_secs(1)));
        s.set(Key::LogInterval, 0);
        assert_eq!(s.log_interval(), None);
    }
}
