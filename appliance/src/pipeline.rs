//! The handler every sequenced message reaches, for live feeds, replays and
//! backtests alike: order books, VWAP and the tape by static dispatch, with
//! what changed published on the bus. It knows nothing of sessions or
//! sources: the [`crate::delivery`] sink hands it messages in order.

use ticklane_protocols::itch::{self, Handler, MESSAGE_TYPES, MessageRef};
use ticklane_protocols::moldudp64::Session;

use crate::analytics::tape::{TradeEvent, TradeKind};
use crate::analytics::vwap::Vwap;
use crate::book::{Books, Fill, Order};
use crate::bus::{BboEvent, BusConfig, Publisher, Subscribers};
use crate::session::SessionEvent;

/// Books, VWAP and tape behind one statically dispatched handler.
#[derive(Debug)]
pub struct Pipeline {
    /// Every stock's book.
    pub books: Books,
    /// Sliding-window VWAP.
    pub vwap: Vwap,
    bus: Publisher,
    by_type: [u64; MESSAGE_TYPES.len()],
    timestamp: u64,
    /// The message being applied: its events carry it.
    at: (Session, u64),
}

fn level(l: Option<crate::book::Level>) -> (u32, u64) {
    l.map_or((0, 0), |l| (l.price, l.shares))
}

impl Pipeline {
    /// A pipeline with a bus of its own sized by `bus`; the consumers'
    /// ends of the rings come back beside it.
    pub fn with_bus(books: Books, vwap: Vwap, bus: BusConfig) -> (Self, Subscribers) {
        let (publisher, subscribers) = crate::bus::bus(bus);
        let pipeline = Self {
            books,
            vwap,
            bus: publisher,
            by_type: [0; MESSAGE_TYPES.len()],
            timestamp: 0,
            at: (Session::default(), 0),
        };
        (pipeline, subscribers)
    }

    /// The bus publisher (for its counters).
    pub fn bus(&self) -> &Publisher {
        &self.bus
    }

    /// Messages handled, by type.
    pub fn by_type(&self) -> &[u64; MESSAGE_TYPES.len()] {
        &self.by_type
    }

    /// One sequenced message: offered to the audit ring (false when the
    /// ring was full: the caller records the miss), then applied.
    #[inline]
    #[must_use = "a message the audit ring refused must be recorded as missed"]
    pub fn deliver(&mut self, session: Session, seq: u64, message: MessageRef<'_>) -> bool {
        let audited = self.bus.audit(session, seq, message.as_bytes());
        let header = message.header();
        if let Some(i) = itch::type_index(header.message_type) {
            self.by_type[i] += 1;
        }
        self.timestamp = header.timestamp();
        self.at = (session, seq);
        let bus = &mut self.bus;
        self.vwap.advance(self.timestamp, |e| bus.vwap(e));
        message.dispatch(self);
        audited
    }

    /// Session news, published as it is (whether the books are stale is the
    /// session layer's to say, not a flag kept here).
    pub fn session_event(&mut self, e: SessionEvent) {
        self.bus.session(e);
    }

    fn bbo(&self, locate: u16) -> ((u32, u64), (u32, u64)) {
        self.books.book(locate).map_or(((0, 0), (0, 0)), |b| {
            let (bid, ask) = b.bbo();
            (level(bid), level(ask))
        })
    }

    fn publish_bbo(&mut self, locate: u16) {
        let (bid, ask) = self.bbo(locate);
        self.bus.bbo(BboEvent {
            locate,
            session: self.at.0,
            seq: self.at.1,
            timestamp: self.timestamp,
            bid,
            ask,
        });
    }

    /// Publishes the BBO of the stock a book change touched, if the change
    /// moved its best bid or ask (the books say so: no BBO is read when a
    /// level below the top changed).
    fn changed(&mut self, locate: Option<u16>) {
        if let Some(locate) = locate
            && self.books.top_changed()
            && self.bus.events_on()
        {
            self.publish_bbo(locate);
        }
    }

    fn print(&mut self, locate: u16, price: u32, shares: u64, match_number: u64, kind: TradeKind) {
        let timestamp = self.timestamp;
        self.bus.trade(TradeEvent {
            locate,
            session: self.at.0,
            seq: self.at.1,
            timestamp,
            price,
            shares,
            match_number,
            kind,
        });
        self.vwap.trade(locate, timestamp, price, shares);
    }

    fn execution(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        let fill = self.books.execute(reference, shares);
        self.changed(fill.map(|f| f.locate));
        fill
    }

    fn add(&mut self, order: Order, stock: itch::Alpha<8>) {
        let added = self.books.add(order, stock);
        self.changed(added.then_some(order.locate));
    }
}

impl Handler for Pipeline {
    fn on_stock_directory(&mut self, m: &itch::StockDirectory) {
        self.books.name(m.header.stock_locate(), m.stock);
        self.vwap.reserve(m.header.stock_locate());
    }
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.add(m.into(), m.stock);
    }
    fn on_add_order_mpid(&mut self, m: &itch::AddOrderMpid) {
        self.add(m.into(), m.stock);
    }
    fn on_order_executed(&mut self, m: &itch::OrderExecuted) {
        if let Some(f) = self.execution(m.order_reference_number(), m.executed_shares()) {
            self.print(
                f.locate,
                f.price,
                u64::from(f.shares),
                m.match_number(),
                TradeKind::Executed,
            );
        }
    }
    fn on_order_executed_with_price(&mut self, m: &itch::OrderExecutedWithPrice) {
        let fill = self.execution(m.order_reference_number(), m.executed_shares());
        if let Some(f) = fill
            && m.printable() == b'Y'
        {
            let price = m.execution_price();
            self.print(
                f.locate,
                price,
                u64::from(f.shares),
                m.match_number(),
                TradeKind::ExecutedWithPrice,
            );
        }
    }
    fn on_order_cancel(&mut self, m: &itch::OrderCancel) {
        let fill = self
            .books
            .cancel(m.order_reference_number(), m.cancelled_shares());
        self.changed(fill.map(|f| f.locate));
    }
    fn on_order_delete(&mut self, m: &itch::OrderDelete) {
        let gone = self.books.delete(m.order_reference_number());
        self.changed(gone.map(|o| o.locate));
    }
    fn on_order_replace(&mut self, m: &itch::OrderReplace) {
        // A replace at the best price with the same shares leaves the BBO as
        // it was, though its level changed twice: compare before and after
        // (when anyone listens).
        let locate = self
            .bus
            .events_on()
            .then(|| self.books.order(m.original_order_reference_number()))
            .flatten()
            .map(|o| o.locate);
        let before = locate.map(|l| self.bbo(l));
        self.books.replace(
            m.original_order_reference_number(),
            m.new_order_reference_number(),
            m.shares(),
            m.price(),
        );
        if let Some(l) = locate
            && before != Some(self.bbo(l))
        {
            self.publish_bbo(l);
        }
    }
    fn on_trade(&mut self, m: &itch::Trade) {
        self.print(
            m.header.stock_locate(),
            m.price(),
            u64::from(m.shares()),
            m.match_number(),
            TradeKind::Hidden,
        );
    }
    fn on_cross_trade(&mut self, m: &itch::CrossTrade) {
        if m.shares() > 0 {
            self.print(
                m.header.stock_locate(),
                m.cross_price(),
                m.shares(),
                m.match_number(),
                TradeKind::Cross,
            );
        }
    }
}
