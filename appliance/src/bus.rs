//! The event bus: lock-free single-producer single-consumer rings (`rtrb`)
//! from a poller to its consumers, one ring per topic. Publishing never
//! blocks the poller: a full best-effort ring drops the event and counts it;
//! the audit ring, which must lose nothing, is sized for the worst burst and
//! raises an alarm counter if it ever overflows.

use rtrb::{Consumer, Producer, RingBuffer};
use ticklane_protocols::moldudp64::Session;

pub use crate::analytics::tape::{TradeEvent, TradeKind};
pub use crate::analytics::vwap::VwapEvent;
pub use crate::session::SessionEvent;

/// Best bid and offer of a stock changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BboEvent {
    /// The stock.
    pub locate: u16,
    /// Session of the message that moved it.
    pub session: Session,
    /// Sequence number of that message: a book snapshot taken at a lower
    /// one is joined to the stream from this event on.
    pub seq: u64,
    /// Feed time.
    pub timestamp: u64,
    /// Best bid price and shares (0, 0 when the side is empty).
    pub bid: (u32, u64),
    /// Best ask price and shares (0, 0 when the side is empty).
    pub ask: (u32, u64),
}

/// One message as delivered, copied for the audit trail: the one deliberate
/// copy of the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its session.
    pub session: Session,
    /// Its sequence number.
    pub seq: u64,
    /// Its length.
    pub len: u8,
    /// Its bytes (ITCH messages are at most 50 bytes).
    pub bytes: [u8; 64],
}

impl AuditRecord {
    /// The message bytes.
    pub fn message(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(self.bytes.len())]
    }
}

/// Ring sizes. A size of 0 turns the rings off, for runs where nothing
/// consumes them (`ticklane book`): nothing is copied, nothing counted as
/// dropped or missed, and the pipeline does not compute what only they
/// would carry (the BBO after a change).
#[derive(Debug, Clone, Copy)]
pub struct BusConfig {
    /// Slots of each best-effort ring (0: no best-effort topics).
    pub events: usize,
    /// Slots of the audit ring (0: no audit trail is kept).
    pub audit: usize,
}

impl BusConfig {
    /// Every ring off: nothing consumes the bus.
    pub const OFF: Self = Self {
        events: 0,
        audit: 0,
    };
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            events: 1 << 16,
            audit: 1 << 20,
        }
    }
}

/// The best-effort topics of the bus (the audit ring is not one: it loses
/// nothing, see [`Publisher::audit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Best bid and offer changes.
    Bbo,
    /// Prints for the tape.
    Trades,
    /// VWAP emissions.
    Vwap,
    /// Session news.
    Session,
}

impl Topic {
    /// Every topic, in counter order.
    pub const ALL: [Topic; 4] = [Topic::Bbo, Topic::Trades, Topic::Vwap, Topic::Session];

    /// Its name in summaries and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Bbo => "bbo",
            Topic::Trades => "trades",
            Topic::Vwap => "vwap",
            Topic::Session => "session",
        }
    }
}

/// One counter per topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerTopic([u64; Topic::ALL.len()]);

impl PerTopic {
    /// The count of one topic.
    pub fn get(&self, topic: Topic) -> u64 {
        self.0[topic as usize]
    }

    /// Every topic with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Topic, u64)> + '_ {
        Topic::ALL.iter().map(|t| (*t, self.get(*t)))
    }

    /// The sum over all topics.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn bump(&mut self, topic: Topic) {
        let c = &mut self.0[topic as usize];
        *c = c.saturating_add(1);
    }
}

/// What publishing did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Events published, all topics and the audit ring.
    pub published: u64,
    /// Best-effort events dropped on a full ring, per topic.
    pub dropped: PerTopic,
    /// Audit records that found the audit ring full. None is silently lost:
    /// the delivery sink records their exact ranges for the auditor.
    pub audit_overflow: u64,
}

/// The poller's side.
#[derive(Debug)]
pub struct Publisher {
    bbo: Producer<BboEvent>,
    trades: Producer<TradeEvent>,
    vwap: Producer<VwapEvent>,
    session: Producer<SessionEvent>,
    audit: Producer<AuditRecord>,
    /// The best-effort rings have slots (someone may consume them).
    events_on: bool,
    /// The audit ring has slots (an audit trail is kept).
    audit_on: bool,
    stats: BusStats,
}

/// The consumers' side (each ring may go to its own thread).
#[derive(Debug)]
pub struct Subscribers {
    /// BBO changes.
    pub bbo: Consumer<BboEvent>,
    /// The trade tape.
    pub trades: Consumer<TradeEvent>,
    /// VWAP emissions.
    pub vwap: Consumer<VwapEvent>,
    /// Session news.
    pub session: Consumer<SessionEvent>,
    /// The audit trail.
    pub audit: Consumer<AuditRecord>,
}

/// Creates the rings.
pub fn bus(cfg: BusConfig) -> (Publisher, Subscribers) {
    let (bbo, bbo_rx) = RingBuffer::new(cfg.events);
    let (trades, trades_rx) = RingBuffer::new(cfg.events);
    let (vwap, vwap_rx) = RingBuffer::new(cfg.events);
    let (session, session_rx) = RingBuffer::new(cfg.events);
    let (audit, audit_rx) = RingBuffer::new(cfg.audit);
    (
        Publisher {
            bbo,
            trades,
            vwap,
            session,
            audit,
            events_on: cfg.events > 0,
            audit_on: cfg.audit > 0,
            stats: BusStats::default(),
        },
        Subscribers {
            bbo: bbo_rx,
            trades: trades_rx,
            vwap: vwap_rx,
            session: session_rx,
            audit: audit_rx,
        },
    )
}

impl Publisher {
    /// Counters.
    pub fn stats(&self) -> BusStats {
        self.stats
    }

    /// True when the best-effort topics are on (their rings have slots):
    /// when not, an event need not even be computed.
    #[inline]
    pub fn events_on(&self) -> bool {
        self.events_on
    }

    fn publish<T>(
        &mut self,
        topic: Topic,
        event: T,
        ring: impl FnOnce(&mut Self) -> &mut Producer<T>,
    ) {
        if !self.events_on {
            return;
        }
        match ring(self).push(event) {
            Ok(()) => self.stats.published += 1,
            Err(_) => self.stats.dropped.bump(topic),
        }
    }

    /// A BBO change.
    pub fn bbo(&mut self, e: BboEvent) {
        self.publish(Topic::Bbo, e, |p| &mut p.bbo);
    }

    /// A print.
    pub fn trade(&mut self, e: TradeEvent) {
        self.publish(Topic::Trades, e, |p| &mut p.trades);
    }

    /// A VWAP emission.
    pub fn vwap(&mut self, e: VwapEvent) {
        self.publish(Topic::Vwap, e, |p| &mut p.vwap);
    }

    /// Session news.
    pub fn session(&mut self, e: SessionEvent) {
        self.publish(Topic::Session, e, |p| &mut p.session);
    }

    /// A delivered message for the audit trail. False when the audit ring
    /// was full: the caller must record the miss (see
    /// [`crate::delivery::Delivery::audit_missed`]), never drop it silently. True, and
    /// nothing copied, when the audit ring is off (no trail is kept).
    #[must_use = "a record the audit ring refused must be recorded as missed"]
    #[inline]
    pub fn audit(&mut self, session: Session, seq: u64, message: &[u8]) -> bool {
        if !self.audit_on {
            return true;
        }
        let mut record = AuditRecord {
            session,
            seq,
            len: 0,
            bytes: [0; 64],
        };
        let n = message.len().min(record.bytes.len());
        record.bytes[..n].copy_from_slice(&message[..n]);
        record.len = n as u8;
        if self.audit.push(record).is_ok() {
            self.stats.published += 1;
            true
        } else {
            self.stats.audit_overflow += 1;
            false
        }
    }
}

/// One best-effort event, whichever its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A BBO change.
    Bbo(BboEvent),
    /// A print.
    Trade(TradeEvent),
    /// A VWAP emission.
    Vwap(VwapEvent),
    /// Session news.
    Session(SessionEvent),
}

/// What a [`Drain`] consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// BBO changes.
    pub bbo: u64,
    /// Prints.
    pub trades: u64,
    /// VWAP emissions.
    pub vwap: u64,
    /// Session events.
    pub session: u64,
    /// Audit records.
    pub audit: u64,
    /// Audit records whose sequence number did not follow the previous one
    /// of the same session (lost or duplicated messages would show here;
    /// gaps the session declared lost also do).
    pub audit_out_of_order: u64,
}

/// A consumer thread that empties every ring until stopped (for replays and
/// commands that need no real consumer; the audit writer replaces it).
#[derive(Debug)]
pub struct Drain {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<DrainStats>,
}

impl Drain {
    /// Starts the thread.
    pub fn spawn(subs: Subscribers) -> Self {
        Self::spawn_forwarding(subs, |_| {})
    }

    /// Starts the thread, which hands every best-effort event to `forward`
    /// (the control plane's streams) as it empties the rings. `forward`
    /// runs on the drain's thread, never on the poller's.
    pub fn spawn_forwarding(
        mut subs: Subscribers,
        mut forward: impl FnMut(Event) + Send + 'static,
    ) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut st = DrainStats::default();
            let mut last: Option<(Session, u64)> = None;
            loop {
                let stopping = flag.load(Ordering::Acquire);
                let mut got = 0;
                while let Ok(e) = subs.bbo.pop() {
                    forward(Event::Bbo(e));
                    st.bbo += 1;
                    got += 1;
                }
                while let Ok(e) = subs.trades.pop() {
                    forward(Event::Trade(e));
                    st.trades += 1;
                    got += 1;
                }
                while let Ok(e) = subs.vwap.pop() {
                    forward(Event::Vwap(e));
                    st.vwap += 1;
                    got += 1;
                }
                while let Ok(e) = subs.session.pop() {
                    forward(Event::Session(e));
                    st.session += 1;
                    got += 1;
                }
                while let Ok(r) = subs.audit.pop() {
                    st.audit += 1;
                    got += 1;
                    if let Some((s, seq)) = last
                        && s == r.session
                        && r.seq != seq + 1
                    {
                        st.audit_out_of_order += 1;
                    }
                    last = Some((r.session, r.seq));
                }
                if stopping && got == 0 {
                    return st;
                }
                // Batch the work: wake up every millisecond rather than spin,
                // so that this consumer takes a sliver of a core, not a core
                // (the rings hold far more than a millisecond of events).
                let _ = got;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        Self { stop, handle }
    }

    /// Stops after emptying the rings; returns what was consumed.
    pub fn finish(self) -> DrainStats {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_ring_drops_and_counts_never_blocks() {
        let (mut p, mut s) = bus(BusConfig {
            events: 2,
            audit: 2,
        });
        for i in 0..5 {
            p.trade(TradeEvent {
                locate: 1,
                session: Session::default(),
                seq: i,
                timestamp: i,
                price: 1,
                shares: 1,
                match_number: i,
                kind: TradeKind::Hidden,
            });
        }
        assert_eq!(p.stats().dropped.get(Topic::Trades), 3);
        assert_eq!(p.stats().dropped.total(), 3);
        assert_eq!(s.trades.pop().map(|t| t.match_number), Ok(0));
        assert_eq!(s.trades.pop().map(|t| t.match_number), Ok(1));
        assert!(s.trades.pop().is_err());
        let accepted: Vec<bool> = (0..3)
            .map(|seq| p.audit(Session::default(), seq, b"D123"))
            .collect();
        assert_eq!(
            accepted,
            [true, true, false],
            "the full ring refuses, and says so"
        );
        assert_eq!(p.stats().audit_overflow, 1, "the alarm counter");
        assert_eq!(s.audit.pop().unwrap().message(), b"D123");
    }

    #[test]
    fn a_bus_turned_off_copies_nothing_and_misses_nothing() {
        let (mut p, mut s) = bus(BusConfig::OFF);
        assert!(!p.events_on());
        p.bbo(BboEvent {
            locate: 1,
            session: Session::default(),
            seq: 1,
            timestamp: 1,
            bid: (1, 1),
            ask: (2, 1),
        });
        assert!(
            p.audit(Session::default(), 1, b"D123"),
            "no audit trail: nothing to miss"
        );
        assert_eq!(
            p.stats(),
            BusStats::default(),
            "nothing published or dropped"
        );
        assert!(s.bbo.pop().is_err() && s.audit.pop().is_err());
        let (on, _) = bus(BusConfig {
            events: 1,
            audit: 1,
        });
        assert!(on.events_on());
    }

    /// The drain consumer, on its own thread, empties every ring published
    /// to from this one, and notices a hole in the audited sequence.
    #[test]
    fn the_drain_consumes_every_topic_across_threads() {
        let (mut p, s) = bus(BusConfig {
            events: 1 << 14,
            audit: 1 << 14,
        });
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = forwarded.clone();
        let drain = Drain::spawn_forwarding(s, move |e| {
            if !matches!(e, Event::Bbo(_)) {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let session = Session::from_name(b"DRAIN").unwrap();
        for i in 0..10_000u64 {
            p.bbo(BboEvent {
                locate: 1,
                session,
                seq: i,
                timestamp: i,
                bid: (1, 1),
                ask: (2, 1),
            });
            p.trade(TradeEvent {
                locate: 1,
                session,
                seq: i,
                timestamp: i,
                price: 1,
                shares: 1,
                match_number: i,
                kind: TradeKind::Cross,
            });
            // Sequence 5000 is never audited: one hole.
            if i != 5000 {
                assert!(p.audit(session, i, b"A"));
            }
        }
        p.vwap(VwapEvent {
            locate: 1,
            timestamp: 0,
            vwap: 1,
            shares: 1,
            trades: 1,
        });
        p.session(SessionEvent::Stale);
        let got = drain.finish();
        assert_eq!(p.stats().dropped.total(), 0);
        assert_eq!(
            (got.bbo, got.trades, got.vwap, got.session, got.audit),
            (10_000, 10_000, 1, 1, 9_999)
        );
        assert_eq!(
            forwarded.load(std::sync::atomic::Ordering::Relaxed),
            10_002,
            "every trade, VWAP and session event forwarded"
        );
        assert_eq!(
            got.audit_out_of_order, 1,
            "the missing sequence number shows"
        );
    }
}
