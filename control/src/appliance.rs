//! What the gRPC service, the line protocol and the metrics share: the
//! appliance as the control plane sees it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ticklane_appliance::bus::{Event, Topic};
use ticklane_appliance::request::{Answer, Ask, BookSnapshot, Stock};
use ticklane_appliance::stats::{Snapshot, StatsReader};
use tokio::sync::broadcast;

use crate::ControlError;
use crate::counters::{self, Counter};
use crate::feeds::Feeds;
use crate::link::Link;
use crate::settings::{Key, Settings};

/// Levels per side asked for first when the whole book is wanted; a deeper
/// book is asked for again with room for all of it.
const FIRST_DEPTH: usize = 256;

/// Deepest snapshot served (levels per side).
pub const MAX_DEPTH: usize = 1 << 16;

/// Events a stream client may fall behind by before it loses some.
pub const STREAM_BUFFER: usize = 4096;

/// How the appliance receives (fixed at start).
#[derive(Debug, Clone, Default)]
pub struct ApplianceInfo {
    /// `ticklane`'s version.
    pub version: String,
    /// The interface.
    pub interface: String,
    /// Its index.
    pub ifindex: u32,
    /// The NIC queue.
    pub queue: u32,
    /// `xdp` or `udp`.
    pub mode: String,
    /// `native` or `generic` (XDP path).
    pub xdp_mode: String,
    /// `zerocopy` or `copy` (XDP path).
    pub bind: String,
}

/// Counters from outside the poller (the audit trail's), taken at each read.
pub type CounterSource = Box<dyn Fn() -> Vec<Counter> + Send + Sync>;

struct Sources(Mutex<Vec<CounterSource>>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |s| s.len());
        write!(f, "{n} counter sources")
    }
}

/// The appliance, seen from the control plane.
#[derive(Debug)]
pub struct Appliance {
    /// How it receives.
    pub info: ApplianceInfo,
    stats: Mutex<StatsReader>,
    link: Link,
    feeds: tokio::sync::Mutex<Feeds>,
    events: [broadcast::Sender<Event>; 4],
    stream_dropped: [AtomicU64; 4],
    sources: Sources,
    open_streams: Arc<AtomicUsize>,
    /// The settings that change live.
    pub settings: Settings,
}

/// One open stream, counted against `max_streams` until dropped.
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Appliance {
    /// The control plane's view of a poller: its stats, its request ring
    /// (through `link`), its feeds.
    pub fn new(info: ApplianceInfo, stats: StatsReader, link: Link, feeds: Feeds) -> Self {
        Self {
            info,
            stats: Mutex::new(stats),
            link,
            feeds: tokio::sync::Mutex::new(feeds),
            events: std::array::from_fn(|_| broadcast::channel(STREAM_BUFFER).0),
            stream_dropped: std::array::from_fn(|_| AtomicU64::new(0)),
            sources: Sources(Mutex::new(Vec::new())),
            open_streams: Arc::new(AtomicUsize::new(0)),
            settings: Settings::default(),
        }
    }

    /// Sets `key` live, and records it in the state store if there is one
    /// (then returns true: it applies again after a restart).
    pub async fn set_config(&self, key: Key, value: u64) -> Result<bool, ControlError> {
        self.settings.set(key, value);
        let feeds = self.feeds.lock().await;
        match feeds.store() {
            Some(store) => {
                store.set_setting(key.name(), &key.format(value))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Applies the settings the state store kept; returns what was done,
    /// in words, one line per setting.
    pub async fn restore_settings(&self) -> Vec<String> {
        let feeds = self.feeds.lock().await;
        let Some(store) = feeds.store() else {
            return Vec::new();
        };
        let stored = match store.settings() {
            Ok(stored) => stored,
            Err(e) => return vec![format!("warning: {}", ControlError::from(e).full())],
        };
        stored
            .into_iter()
            .map(|(name, text)| {
                match Key::parse(&name).and_then(|k| Ok((k, k.parse_value(&text)?))) {
                    Ok((key, value)) => {
                        self.settings.set(key, value);
                        format!("setting {name} = {text} (as set before the restart)")
                    }
                    Err(e) => format!(
                        "warning: the stored setting {name} = {text} is ignored: {}",
                        e.full()
                    ),
                }
            })
            .collect()
    }

    /// A slot for one more stream, or RESOURCE_EXHAUSTED when
    /// `max_streams` are open.
    pub fn stream_slot(&self) -> Result<StreamSlot, ControlError> {
        let max = self.settings.get(Key::MaxStreams) as usize;
        self.open_streams
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| {
                ControlError::Exhausted(format!(
                    "{max} streams are open already (the limit, max_streams): close one,                      filter one stream by stock instead of opening many, or raise it                      (ticklane ctl config set max_streams N)"
                ))
            })?;
        Ok(StreamSlot(self.open_streams.clone()))
    }

    /// Adds counters from outside the poller to every read of them.
    pub fn add_counters(&self, source: CounterSource) {
        self.sources
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(source);
    }

    /// The poller's latest stats snapshot.
    pub fn snapshot(&self) -> Snapshot {
        // A poisoned lock only means a reader panicked mid-read; the
        // triple buffer behind it is still whole.
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .read()
    }

    /// Every counter, feeds named.
    pub async fn counters(&self) -> (Snapshot, Vec<Counter>) {
        // The snapshot is read after the lock is had, so that it is not
        // held across the await (the future stays small).
        let feeds = self.feeds.lock().await;
        let snap = self.snapshot();
        let mut list = counters::counters(&snap, |line| feeds.name_of_line(line));
        for source in self
            .sources
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            list.extend(source());
        }
        (snap, list)
    }

    /// The feeds, locked for reading or changing.
    pub async fn feeds(&self) -> tokio::sync::MutexGuard<'_, Feeds> {
        self.feeds.lock().await
    }

    /// The request link to the poller.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// A consistent snapshot of `stock`'s book: the best `depth` levels per
    /// side, or all of them.
    pub async fn book(
        &self,
        stock: Stock,
        depth: Option<usize>,
    ) -> Result<Box<BookSnapshot>, ControlError> {
        let mut room = depth.unwrap_or(FIRST_DEPTH).min(MAX_DEPTH);
        // A book that keeps growing past the room made for it is served
        // cut (its full depth told) after the third try.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let into = BookSnapshot::with_depth(room);
            let snap = match self.link.ask(Ask::Book { stock, into }).await? {
                Answer::Book(snap) => snap,
                _ => return Err(ControlError::Stopping),
            };
            if !snap.found {
                return Err(ControlError::UnknownStock(stock_text(stock)));
            }
            let all = snap.bid_depth.max(snap.ask_depth);
            if depth.is_some() || !snap.is_cut() || room >= MAX_DEPTH || attempt == 3 {
                return Ok(snap);
            }
            // Deeper than asked for: again with room for all of it (and a
            // margin for what arrives meanwhile).
            room = (all + all / 4 + 16).min(MAX_DEPTH);
        }
    }

    /// The locate code of a symbol (a snapshot of no depth).
    pub async fn locate(&self, symbol: &str) -> Result<u16, ControlError> {
        let stock = stock_of(symbol)?;
        Ok(self.book(stock, Some(0)).await?.locate)
    }

    /// Hands an event to the stream clients of its topic (on the bus
    /// drain's thread: never blocks, a lagging client loses the oldest).
    pub fn publish(&self, event: Event) {
        let _ = self.events[topic(&event) as usize].send(event);
    }

    /// A receiver of `topic`'s events, buffering [`STREAM_BUFFER`].
    pub fn subscribe_events(&self, topic: Topic) -> broadcast::Receiver<Event> {
        self.events[topic as usize].subscribe()
    }

    /// Counts events a stream client lost.
    pub fn count_stream_dropped(&self, topic: Topic, n: u64) {
        self.stream_dropped[topic as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Events stream clients lost, per topic.
    pub fn stream_dropped(&self) -> impl Iterator<Item = (Topic, u64)> + '_ {
        Topic::ALL
            .iter()
            .map(|t| (*t, self.stream_dropped[*t as usize].load(Ordering::Relaxed)))
    }
}

/// The topic an event goes out on.
pub fn topic(event: &Event) -> Topic {
    match event {
        Event::Bbo(_) => Topic::Bbo,
        Event::Trade(_) => Topic::Trades,
        Event::Vwap(_) => Topic::Vwap,
        Event::Session(_) => Topic::Session,
    }
}

/// A symbol as a stock, or an error that says what a symbol is.
pub fn stock_of(symbol: &str) -> Result<Stock, ControlError> {
    Stock::symbol(symbol).ok_or_else(|| {
        ControlError::InvalidArgument(format!(
            "'{symbol}' is not a stock symbol (1 to 8 printable ASCII characters, e.g. AAPL)"
        ))
    })
}

fn stock_text(stock: Stock) -> String {
    match stock {
        Stock::Locate(l) => format!("with locate {l}"),
        Stock::Symbol(s) => String::from_utf8_lossy(&s).trim_end().to_owned(),
    }
}
