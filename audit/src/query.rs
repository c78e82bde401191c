//! Typed queries over the audit: the models of what is read back, and a
//! fluent builder that renders injection-safe SQL for ClickHouse and runs
//! the same query over the local journal, with the same answers.
//!
//! ```
//! use ticklane_audit::query::{Direction, OrderBy, Query};
//! let q = Query::messages()
//!     .session(b"TICKLANE01")
//!     .seq(Some(100), Some(200))
//!     .stock(b"AAPL")
//!     .types(b"EC")
//!     .order_by(OrderBy::ExchangeTime, Direction::Desc)
//!     .limit(10);
//! let sql = q.sql();
//! assert!(!sql.text.contains("AAPL"));
//! let vwap = q.aggregate(ticklane_audit::query::Aggregate::ByStock);
//! assert!(vwap.sql().text.contains("GROUP BY session, stock_locate"));
//! ```
//!
//! Values reach the SQL only as bound parameters: integers as numbers,
//! strings as `unhex(?)` of their hex digits (18.16 has no server-side
//! parameters and reads no `x'…'` literals; hex also carries any byte,
//! `\0` included), never spliced into the text. ClickHouse reads with
//! `FINAL`, the journal keeps the last record of a (session, seq): both see
//! each message once.
//!
//! `stock` selects the messages of a stock by its locate code in their
//! session (the locate codes whose messages carry that symbol), so that
//! executions and cancels, which carry no symbol, are included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::journal::{JournalError, Position, Reader, Recovery};
use crate::record::Entry;
use crate::store::{GapRow, MessageRow, Store, StoreError, hex};

/// What to select; `None` or empty: no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Session (trimmed), exactly.
    pub session: Option<Vec<u8>>,
    /// Lowest sequence number.
    pub from_seq: Option<u64>,
    /// Highest sequence number (inclusive).
    pub to_seq: Option<u64>,
    /// Received (journaled) at or after, ns since the Unix epoch.
    pub from_received_ns: Option<u64>,
    /// Received before (exclusive).
    pub to_received_ns: Option<u64>,
    /// Exchange timestamp at or after, ns since midnight.
    pub from_timestamp: Option<u64>,
    /// Exchange timestamp before (exclusive).
    pub to_timestamp: Option<u64>,
    /// Stock symbol (trimmed): the messages of its locate code.
    pub stock: Option<Vec<u8>>,
    /// Message types.
    pub types: Vec<u8>,
    /// Order reference number (the original one of a U).
    pub order_reference: Option<u64>,
}

/// The key messages are ordered by (then by session and seq).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderBy {
    /// Session and sequence number.
    #[default]
    Seq,
    /// Receive (journal) time.
    Received,
    /// Exchange timestamp.
    ExchangeTime,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Direction {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// What an aggregate query computes over the selected messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// How many.
    Count,
    /// How many of each type.
    CountByType,
    /// Per session and stock locate: executions (E, C, P, Q), executed
    /// shares, and for the prints that carry their price (C, P, Q) the
    /// shares and notional that make the VWAP.
    ByStock,
}

/// A message as read back.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct Stored {
    /// Session, trimmed.
    #[serde(with = "serde_bytes")]
    pub session: Vec<u8>,
    /// Sequence number.
    pub seq: u64,
    /// When it was received (journaled), ns since the Unix epoch.
    pub journaled_ns: u64,
    /// The ITCH bytes.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

/// Messages of one type.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct TypeCount {
    /// The type byte.
    #[serde(with = "serde_bytes")]
    pub r#type: Vec<u8>,
    /// How many.
    pub messages: u64,
}

/// The executions of one stock in one session.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct StockTotals {
    /// Session.
    #[serde(with = "serde_bytes")]
    pub session: Vec<u8>,
    /// Stock locate.
    pub stock_locate: u16,
    /// Its symbol (the smallest one its messages carry; "" when none does).
    #[serde(with = "serde_bytes")]
    pub stock: Vec<u8>,
    /// Execution messages (E, C, P, Q).
    pub trades: u64,
    /// Shares executed.
    pub volume: u64,
    /// Shares of the prints that carry their price (C, P, Q).
    pub priced_volume: u64,
    /// Sum of price × shares of those prints (price in 1/10,000 dollars).
    pub notional: u64,
}

impl StockTotals {
    /// Volume-weighted average price in dollars of the priced prints (None
    /// without any).
    pub fn vwap(&self) -> Option<f64> {
        (self.priced_volume > 0)
            .then(|| self.notional as f64 / self.priced_volume as f64 / 10_000.0)
    }
}

/// An aggregate's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregated {
    /// [`Aggregate::Count`].
    Count(u64),
    /// [`Aggregate::CountByType`], ordered by type.
    ByType(Vec<TypeCount>),
    /// [`Aggregate::ByStock`], ordered by session and locate.
    ByStock(Vec<StockTotals>),
}

/// A bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// An integer.
    Int(u64),
    /// Hex digits (read by `unhex(?)`).
    Hex(String),
}

/// SQL text with `?` for each value, and the values in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    /// The text: constants and placeholders only.
    pub text: String,
    /// The values.
    pub params: Vec<Param>,
}

impl Sql {
    fn push_text(&mut self, bytes: &[u8]) {
        self.text.push_str("unhex(?)");
        self.params.push(Param::Hex(hex(bytes)));
    }

    fn push_int(&mut self, v: u64) {
        self.text.push('?');
        self.params.push(Param::Int(v));
    }

    /// The statement as the client sends it (each `?` replaced by its
    /// value: a number, or quoted hex digits, which need no escaping).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 16 * self.params.len());
        let mut params = self.params.iter();
        for c in self.text.chars() {
            match (c, c == '?') {
                (_, true) => match params.next() {
                    Some(Param::Int(v)) => out.push_str(&v.to_string()),
                    Some(Param::Hex(h)) => {
                        out.push('\'');
                        out.push_str(h);
                        out.push('\'');
                    }
                    None => out.push('?'),
                },
                (c, false) => out.push(c),
            }
        }
        out
    }

    /// The query for `store`, values bound.
    fn bind(&self, store: &Store) -> clickhouse::query::Query {
        // A long value makes a long query: let the server parse it.
        let mut q = store
            .query(&self.text)
            .with_setting("max_query_size", (self.render().len() + 4096).to_string());
        for p in &self.params {
            q = match p {
                Param::Int(v) => q.bind(*v),
                Param::Hex(h) => q.bind(h.as_str()),
            };
        }
        q
    }
}

/// The types whose rows are executions, and those that carry their price.
const TRADES: &[u8] = b"ECPQ";
const PRICED: &[u8] = b"CPQ";

/// A message query: a filter, an order and a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The selection.
    pub filter: Filter,
    /// Ordered by.
    pub order: (OrderBy, Direction),
    /// At most this many.
    pub limit: Option<u64>,
}

/// An aggregate over a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateQuery {
    /// The selection.
    pub filter: Filter,
    /// What is computed.
    pub aggregate: Aggregate,
}

impl Query {
    /// Every message, by session and seq.
    pub fn messages() -> Self {
        Self::default()
    }

    /// Only session `s` (trailing spaces ignored).
    #[must_use]
    pub fn session(mut self, s: &[u8]) -> Self {
        self.filter.session = Some(s.trim_ascii_end().to_vec());
        self
    }

    /// Sequence numbers `from..=to` (either end open when None).
    #[must_use]
    pub fn seq(mut self, from: Option<u64>, to: Option<u64>) -> Self {
        (self.filter.from_seq, self.filter.to_seq) = (from, to);
        self
    }

    /// Received (journaled) in `from..to`, ns since the Unix epoch.
    #[must_use]
    pub fn received(mut self, from: Option<u64>, to: Option<u64>) -> Self {
        (self.filter.from_received_ns, self.filter.to_received_ns) = (from, to);
        self
    }

    /// Exchange timestamps in `from..to`, ns since midnight.
    #[must_use]
    pub fn exchange_time(mut self, from: Option<u64>, to: Option<u64>) -> Self {
        (self.filter.from_timestamp, self.filter.to_timestamp) = (from, to);
        self
    }

    /// Only the messages of stock `s` (by its locate code).
    #[must_use]
    pub fn stock(mut self, s: &[u8]) -> Self {
        self.filter.stock = Some(s.trim_ascii_end().to_vec());
        self
    }

    /// Only these message types.
    #[must_use]
    pub fn types(mut self, types: &[u8]) -> Self {
        self.filter.types = types.to_vec();
        self
    }

    /// Only messages about order `reference`.
    #[must_use]
    pub fn order_reference(mut self, reference: u64) -> Self {
        self.filter.order_reference = Some(reference);
        self
    }

    /// Ordered by `key` (ties by session and seq, the same way).
    #[must_use]
    pub fn order_by(mut self, key: OrderBy, direction: Direction) -> Self {
        self.order = (key, direction);
        self
    }

    /// At most `n` messages.
    #[must_use]
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// `aggregate` over the selection (order and limit do not apply).
    pub fn aggregate(self, aggregate: Aggregate) -> AggregateQuery {
        AggregateQuery {
            filter: self.filter,
            aggregate,
        }
    }

    /// The SQL.
    pub fn sql(&self) -> Sql {
        let mut sql = Sql {
            text: String::from(
                "SELECT session, seq, journaled_ns, raw FROM ticklane.messages FINAL",
            ),
            params: Vec::new(),
        };
        self.filter.render(&mut sql);
        let (key, dir) = self.order;
        let dir = match dir {
            Direction::Asc => "",
            Direction::Desc => " DESC",
        };
        let keys: &[&str] = match key {
            OrderBy::Seq => &["session", "seq"],
            OrderBy::Received => &["journaled_ns", "session", "seq"],
            OrderBy::ExchangeTime => &["timestamp", "session", "seq"],
        };
        let keys: Vec<String> = keys.iter().map(|k| format!("{k}{dir}")).collect();
        sql.text.push_str(" ORDER BY ");
        sql.text.push_str(&keys.join(", "));
        if let Some(l) = self.limit {
            sql.text.push_str(" LIMIT ");
            sql.push_int(l);
        }
        sql
    }

    /// The same query over the journal's messages.
    pub fn run_journal(&self, view: &JournalView) -> Vec<Stored> {
        let mut rows: Vec<(MessageRow, Stored)> = view
            .selected(&self.filter)
            .map(|(row, journaled_ns, raw)| {
                let stored = Stored {
                    session: row.session.clone(),
                    seq: row.seq,
                    journaled_ns,
                    raw: raw.to_vec(),
                };
                (row, stored)
            })
            .collect();
        let (key, dir) = self.order;
        rows.sort_by(|(a, _), (b, _)| {
            let k = |r: &MessageRow| match key {
                OrderBy::Seq => 0,
                OrderBy::Received => r.journaled_ns,
                OrderBy::ExchangeTime => r.timestamp,
            };
            let o = (k(a), &a.session, a.seq).cmp(&(k(b), &b.session, b.seq));
            match dir {
                Direction::Asc => o,
                Direction::Desc => o.reverse(),
            }
        });
        let limit = self
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        rows.into_iter().take(limit).map(|(_, s)| s).collect()
    }

    /// Streams the messages from ClickHouse, in order.
    pub async fn run_store(
        &self,
        store: &Store,
        mut each: impl FnMut(Stored),
    ) -> Result<(), StoreError> {
        let what = "querying messages";
        let mut cursor =
            self.sql()
                .bind(store)
                .fetch::<Stored>()
                .map_err(|source| StoreError::Server {
                    url: store.url().to_owned(),
                    what,
                    source,
                })?;
        while let Some(row) = store.bounded(what, cursor.next()).await? {
            each(row);
        }
        Ok(())
    }
}

impl AggregateQuery {
    /// The SQL.
    pub fn sql(&self) -> Sql {
        let mut sql = Sql {
            text: String::new(),
            params: Vec::new(),
        };
        match self.aggregate {
            Aggregate::Count => {
                sql.text
                    .push_str("SELECT count() AS messages FROM ticklane.messages FINAL");
                self.filter.render(&mut sql);
            }
            Aggregate::CountByType => {
                sql.text
                    .push_str("SELECT type, count() AS messages FROM ticklane.messages FINAL");
                self.filter.render(&mut sql);
                sql.text.push_str(" GROUP BY type ORDER BY type");
            }
            Aggregate::ByStock => {
                let set = |types: &[u8]| {
                    let quoted: Vec<String> = types
                        .iter()
                        .map(|t| format!("'{}'", char::from(*t)))
                        .collect();
                    quoted.join(", ")
                };
                let priced = set(PRICED);
                sql.text.push_str(&format!(
                    "SELECT session, stock_locate, stock, trades, volume, priced_volume, notional FROM \
                     (SELECT session, stock_locate, count() AS trades, sum(shares) AS volume, \
                     sumIf(shares, type IN ({priced})) AS priced_volume, \
                     sumIf(price * shares, type IN ({priced})) AS notional \
                     FROM ticklane.messages FINAL"
                ));
                self.filter.render(&mut sql);
                sql.text.push_str(&format!(
                    " AND type IN ({}) GROUP BY session, stock_locate) \
                     ANY LEFT JOIN (SELECT session, stock_locate, min(stock) AS stock \
                     FROM ticklane.messages FINAL WHERE stock != '' GROUP BY session, stock_locate) \
                     USING (session, stock_locate) ORDER BY session, stock_locate",
                    set(TRADES)
                ));
            }
        }
        sql
    }

    /// The same aggregate over the journal.
    pub fn run_journal(&self, view: &JournalView) -> Aggregated {
        let rows = view.selected(&self.filter).map(|(row, _, _)| row);
        match self.aggregate {
            Aggregate::Count => Aggregated::Count(rows.count() as u64),
            Aggregate::CountByType => {
                let mut by: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
                for r in rows {
                    *by.entry(r.r#type).or_default() += 1;
                }
                Aggregated::ByType(
                    by.into_iter()
                        .map(|(t, n)| TypeCount {
                            r#type: t,
                            messages: n,
                        })
                        .collect(),
                )
            }
            Aggregate::ByStock => {
                let mut by: BTreeMap<(Vec<u8>, u16), StockTotals> = BTreeMap::new();
                for r in rows.filter(|r| r.r#type.len() == 1 && TRADES.contains(&r.r#type[0])) {
                    let key = (r.session.clone(), r.stock_locate);
                    let stock = view.symbols.get(&key).cloned().unwrap_or_default();
                    let t = by.entry(key).or_insert_with(|| StockTotals {
                        session: r.session.clone(),
                        stock_locate: r.stock_locate,
                        stock,
                        trades: 0,
                        volume: 0,
                        priced_volume: 0,
                        notional: 0,
                    });
                    t.trades += 1;
                    t.volume = t.volume.wrapping_add(r.shares);
                    if PRICED.contains(&r.r#type[0]) {
                        t.priced_volume = t.priced_volume.wrapping_add(r.shares);
                        t.notional = t.notional.wrapping_add(r.price.wrapping_mul(r.shares));
                    }
                }
                Aggregated::ByStock(by.into_values().collect())
            }
        }
    }

    /// The same aggregate from ClickHouse.
    pub async fn run_store(&self, store: &Store) -> Result<Aggregated, StoreError> {
        let q = self.sql().bind(store);
        let what = "querying an aggregate";
        Ok(match self.aggregate {
            Aggregate::Count => Aggregated::Count(store.bounded(what, q.fetch_one::<u64>()).await?),
            Aggregate::CountByType => {
                Aggregated::ByType(store.bounded(what, q.fetch_all::<TypeCount>()).await?)
            }
            Aggregate::ByStock => {
                Aggregated::ByStock(store.bounded(what, q.fetch_all::<StockTotals>()).await?)
            }
        })
    }
}

impl Filter {
    /// Appends ` WHERE 1 AND …` with a placeholder for every value.
    fn render(&self, sql: &mut Sql) {
        sql.text.push_str(" WHERE 1");
        if let Some(s) = &self.session {
            sql.text.push_str(" AND session = ");
            sql.push_text(s);
        }
        let ranges: [(&str, &str, Option<u64>); 6] = [
            ("seq", ">=", self.from_seq),
            ("seq", "<=", self.to_seq),
            ("journaled_ns", ">=", self.from_received_ns),
            ("journaled_ns", "<", self.to_received_ns),
            ("timestamp", ">=", self.from_timestamp),
            ("timestamp", "<", self.to_timestamp),
        ];
        for (column, op, value) in ranges {
            if let Some(v) = value {
                sql.text.push_str(&format!(" AND {column} {op} "));
                sql.push_int(v);
            }
        }
        if let Some(r) = self.order_reference {
            sql.text.push_str(" AND order_reference = ");
            sql.push_int(r);
        }
        if !self.types.is_empty() {
            sql.text.push_str(" AND type IN (");
            for (i, t) in self.types.iter().enumerate() {
                if i > 0 {
                    sql.text.push_str(", ");
                }
                sql.push_text(&[*t]);
            }
            sql.text.push(')');
        }
        if let Some(s) = &self.stock {
            sql.text.push_str(
                " AND (session, stock_locate) IN (SELECT session, stock_locate \
                 FROM ticklane.messages FINAL WHERE stock = ",
            );
            sql.push_text(s);
            sql.text.push(')');
        }
    }

    /// Whether a row passes (the journal side), given the (session,
    /// locate) pairs of the stock asked for.
    fn matches(&self, r: &MessageRow, stock_locates: &BTreeSet<(Vec<u8>, u16)>) -> bool {
        let within = |v: u64, from: Option<u64>, to: Option<u64>| {
            from.is_none_or(|f| v >= f) && to.is_none_or(|t| v < t)
        };
        self.session.as_deref().is_none_or(|s| s == r.session)
            && self.from_seq.is_none_or(|f| r.seq >= f)
            && self.to_seq.is_none_or(|t| r.seq <= t)
            && within(r.journaled_ns, self.from_received_ns, self.to_received_ns)
            && within(r.timestamp, self.from_timestamp, self.to_timestamp)
            && self.order_reference.is_none_or(|o| r.order_reference == o)
            && (self.types.is_empty() || (r.r#type.len() == 1 && self.types.contains(&r.r#type[0])))
            && (self.stock.is_none()
                || stock_locates.contains(&(r.session.clone(), r.stock_locate)))
    }
}

/// One journaled message: receive time and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournaledMessage {
    /// When it was journaled, ns since the Unix epoch.
    pub journaled_ns: u64,
    /// The ITCH bytes.
    pub raw: Vec<u8>,
}

/// What the journal holds, read without changing it.
#[derive(Debug, Default)]
pub struct JournalView {
    /// Messages by (session, seq), once each (the last one journaled).
    pub messages: BTreeMap<(Vec<u8>, u64), JournaledMessage>,
    /// Messages journaled more than once (same session and seq).
    pub duplicates: u64,
    /// Gap records.
    pub gaps: Vec<GapRow>,
    /// Torn segments skipped while reading.
    pub recovery: Recovery,
    /// Bytes after the last whole record of the last segment (a torn tail
    /// that the next open of the journal will cut).
    pub torn_tail: u64,
    /// The symbol of each (session, locate): the smallest its messages carry.
    symbols: BTreeMap<(Vec<u8>, u16), Vec<u8>>,
}

impl JournalView {
    /// The rows passing `filter`, in (session, seq) order.
    fn selected<'a>(
        &'a self,
        filter: &'a Filter,
    ) -> impl Iterator<Item = (MessageRow, u64, &'a [u8])> + 'a {
        // A locate whose messages carry several symbols (a forged feed)
        // matches each of them, as the SQL's IN does.
        let locates = filter
            .stock
            .as_deref()
            .map(|s| self.locates_carrying(s))
            .unwrap_or_default();
        self.messages
            .iter()
            .map(|((s, seq), m)| {
                (
                    MessageRow::new(s, *seq, m.journaled_ns, &m.raw),
                    m.journaled_ns,
                    m.raw.as_slice(),
                )
            })
            .filter(move |(row, _, _)| filter.matches(row, &locates))
    }

    fn locates_carrying(&self, stock: &[u8]) -> BTreeSet<(Vec<u8>, u16)> {
        self.messages
            .iter()
            .map(|((s, seq), m)| MessageRow::new(s, *seq, m.journaled_ns, &m.raw))
            .filter(|r| r.stock == stock)
            .map(|r| (r.session, r.stock_locate))
            .collect()
    }
}

/// Reads the whole journal in `dir` (read-only: nothing is repaired).
pub fn read_journal(dir: &Path) -> Result<JournalView, JournalError> {
    let mut view = JournalView::default();
    let mut reader = Reader::open(dir, Position::default());
    while let Some((entry, _)) = reader.next(None)? {
        match entry {
            Entry::Message {
                session,
                seq,
                journaled_ns,
                bytes,
            } => {
                let s = session.trimmed();
                let m = JournaledMessage {
                    journaled_ns,
                    raw: bytes.to_vec(),
                };
                if view.messages.insert((s.to_vec(), seq), m).is_some() {
                    view.duplicates += 1;
                }
            }
            Entry::Gap {
                session,
                from,
                end,
                journaled_ns,
            } => view.gaps.push(GapRow {
                day: crate::store::day_of(journaled_ns),
                session: session.trimmed().to_vec(),
                from_seq: from,
                end_seq: end,
                journaled_ns,
            }),
        }
    }
    for ((s, seq), m) in &view.messages {
        let r = MessageRow::new(s, *seq, m.journaled_ns, &m.raw);
        if !r.stock.is_empty() {
            view.symbols
                .entry((r.session, r.stock_locate))
                .and_modify(|sym| {
                    if r.stock < *sym {
                        sym.clone_from(&r.stock);
                    }
                })
                .or_insert(r.stock);
        }
    }
    view.recovery = reader.recovery();
    view.torn_tail = reader.leftover();
    Ok(view)
}

/// The gap rows in ClickHouse.
pub async fn store_gaps(store: &Store) -> Result<Vec<GapRow>, StoreError> {
    let q = store.query(
        "SELECT day, session, from_seq, end_seq, journaled_ns FROM ticklane.gaps FINAL \
         ORDER BY session, from_seq",
    );
    store
        .bounded("querying gaps", q.fetch_all::<GapRow>())
        .await
}

/// Rows stored more than once for the same (session, seq) (hidden by
/// FINAL; zero when shipping was exactly once).
pub async fn store_duplicates(store: &Store) -> Result<u64, StoreError> {
    let q =
        store.query("SELECT toUInt64(count() - uniqExact(session, seq)) FROM ticklane.messages");
    store
        .bounded("counting duplicate rows", q.fetch_one::<u64>())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_reach_the_sql_text() {
        let hostile = b"x' OR 1=1 --\\\0\"".repeat(1000);
        let q = Query::messages()
            .session(&hostile)
            .stock(&hostile)
            .types(b"'A")
            .seq(Some(1), Some(u64::MAX))
            .received(Some(2), Some(3))
            .exchange_time(Some(4), Some(5))
            .order_reference(6)
            .order_by(OrderBy::Received, Direction::Desc)
            .limit(5);
        let sql = q.sql();
        assert_eq!(
            sql.text,
            "SELECT session, seq, journaled_ns, raw FROM ticklane.messages FINAL WHERE 1 \
             AND session = unhex(?) AND seq >= ? AND seq <= ? AND journaled_ns >= ? \
             AND journaled_ns < ? AND timestamp >= ? AND timestamp < ? AND order_reference = ? \
             AND type IN (unhex(?), unhex(?)) AND (session, stock_locate) IN (SELECT session, \
             stock_locate FROM ticklane.messages FINAL WHERE stock = unhex(?)) \
             ORDER BY journaled_ns DESC, session DESC, seq DESC LIMIT ?"
        );
        assert_eq!(sql.params.len(), 12);
        for p in &sql.params {
            if let Param::Hex(t) = p {
                assert!(
                    t.bytes().all(|b| b.is_ascii_hexdigit()),
                    "only hex digits are bound"
                );
            }
        }
        assert_eq!(sql.params[0], Param::Hex(hex(&hostile)));
        let rendered = sql.render();
        assert!(!rendered.contains('?') && !rendered.contains("OR 1=1"));
        assert!(rendered.ends_with("LIMIT 5") && rendered.contains("seq <= 18446744073709551615"));
        for a in [Aggregate::Count, Aggregate::CountByType, Aggregate::ByStock] {
            let agg = q.clone().aggregate(a).sql();
            assert_eq!(agg.params.len(), 11, "{a:?}: the filter's values, no limit");
            assert!(!agg.text.contains("OR 1=1"));
        }
    }

    fn message(kind: u8, locate: u16, timestamp: u64, rest: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&locate.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&timestamp.to_be_bytes()[2..]);
        m.extend_from_slice(rest);
        m
    }

    fn add_order(locate: u16, ts: u64, reference: u64, stock: &[u8; 8]) -> Vec<u8> {
        let mut rest = reference.to_be_bytes().to_vec();
        rest.push(b'B');
        rest.extend_from_slice(&100u32.to_be_bytes());
        rest.extend_from_slice(stock);
        rest.extend_from_slice(&1_000_000u32.to_be_bytes());
        message(b'A', locate, ts, &rest)
    }

    fn executed(locate: u16, ts: u64, reference: u64, shares: u32, price: Option<u32>) -> Vec<u8> {
        let mut rest = reference.to_be_bytes().to_vec();
        rest.extend_from_slice(&shares.to_be_bytes());
        rest.extend_from_slice(&9u64.to_be_bytes());
        match price {
            Some(p) => {
                rest.push(b'Y');
                rest.extend_from_slice(&p.to_be_bytes());
                message(b'C', locate, ts, &rest)
            }
            None => message(b'E', locate, ts, &rest),
        }
    }

    fn view(msgs: &[(u64, u64, Vec<u8>)]) -> JournalView {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) =
            crate::journal::Journal::open(dir.path(), crate::journal::JournalConfig::default())
                .unwrap();
        let session = ticklane_protocols::moldudp64::Session::from_name(b"S").unwrap();
        for (seq, ns, bytes) in msgs {
            j.append(&Entry::Message {
                session,
                seq: *seq,
                journaled_ns: *ns,
                bytes,
            });
        }
        j.commit().unwrap();
        read_journal(dir.path()).unwrap()
    }

    /// The journal side: each filter, the order, the limit and the
    /// aggregates, on a hand-made day whose answers are known.
    #[test]
    fn the_journal_side_filters_orders_and_aggregates() {
        let v = view(&[
            (1, 100, add_order(1, 50, 7, b"AAPL    ")),
            (2, 200, add_order(2, 40, 8, b"MSFT    ")),
            (3, 300, executed(1, 30, 7, 10, None)),
            (4, 400, executed(1, 20, 7, 20, Some(1_010_000))),
            (5, 500, executed(2, 10, 8, 30, Some(2_000_000))),
        ]);
        let seqs = |q: Query| q.run_journal(&v).iter().map(|s| s.seq).collect::<Vec<_>>();
        assert_eq!(seqs(Query::messages()), [1, 2, 3, 4, 5]);
        assert_eq!(
            seqs(Query::messages().stock(b"AAPL")),
            [1, 3, 4],
            "by locate"
        );
        assert_eq!(seqs(Query::messages().stock(b"AAP")), Vec::<u64>::new());
        assert_eq!(seqs(Query::messages().order_reference(8)), [2, 5]);
        assert_eq!(
            seqs(Query::messages().received(Some(200), Some(400))),
            [2, 3]
        );
        assert_eq!(
            seqs(Query::messages().exchange_time(Some(20), Some(41))),
            [2, 3, 4]
        );
        assert_eq!(
            seqs(Query::messages().types(b"EC").seq(Some(4), None)),
            [4, 5]
        );
        assert_eq!(
            seqs(
                Query::messages()
                    .order_by(OrderBy::ExchangeTime, Direction::Asc)
                    .limit(3)
            ),
            [5, 4, 3]
        );
        assert_eq!(
            seqs(Query::messages().order_by(OrderBy::Received, Direction::Desc)),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            Query::messages()
                .aggregate(Aggregate::Count)
                .run_journal(&v),
            Aggregated::Count(5)
        );
        let Aggregated::ByType(t) = Query::messages()
            .aggregate(Aggregate::CountByType)
            .run_journal(&v)
        else {
            panic!()
        };
        assert_eq!(
            t.iter()
                .map(|t| (t.r#type[0], t.messages))
                .collect::<Vec<_>>(),
            [(b'A', 2), (b'C', 2), (b'E', 1)]
        );
        let Aggregated::ByStock(s) = Query::messages()
            .aggregate(Aggregate::ByStock)
            .run_journal(&v)
        else {
            panic!()
        };
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                &s[0].stock[..],
                s[0].trades,
                s[0].volume,
                s[0].priced_volume,
                s[0].notional
            ),
            (&b"AAPL"[..], 2, 30, 20, 20 * 1_010_000)
        );
        assert_eq!(s[0].vwap(), Some(101.0));
        assert_eq!((&s[1].stock[..], s[1].volume), (&b"MSFT"[..], 30));
    }
}
