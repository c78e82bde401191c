//! The trade tape: every print, as the pipeline publishes it on the bus.

/// What kind of print a trade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeKind {
    /// E: a resting order executed at its price.
    Executed,
    /// C: executed at another price (printable only).
    ExecutedWithPrice,
    /// P: against a non-displayed order.
    Hidden,
    /// Q: a cross.
    Cross,
}

/// A print for the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeEvent {
    /// The stock.
    pub locate: u16,
    /// Session of the message that printed it.
    pub session: ticklane_protocols::moldudp64::Session,
    /// Sequence number of that message.
    pub seq: u64,
    /// Feed time.
    pub timestamp: u64,
    /// Price, Price(4).
    pub price: u32,
    /// Shares.
    pub shares: u64,
    /// Match number.
    pub match_number: u64,
    /// Kind of print.
    pub kind: TradeKind,
}
