//! The ClickHouse side: the schema (`deploy/clickhouse/schema.sql`), the
//! rows, sealed batch inserts with explicit timeouts, and the question
//! "did this batch land?" asked after an ambiguous failure.
//!
//! Written for the oldest server it must serve, ClickHouse 18.16: rows go as
//! `RowBinary` with the crate's schema validation off (18.16 cannot answer
//! the crate's schema query), times are UInt64 nanoseconds, and duplicates
//! are kept out by the shipper's protocol, with `ReplacingMergeTree` ordered
//! by (session, seq) as the backstop (queries read with `FINAL`). The
//! crate's buffering `Inserter` is not used: it drops rows on error.
//!
//! Modern servers (22 and later, told apart by `SELECT version()`) get the
//! modern schema (`deploy/clickhouse/schema-modern.sql`: the same tables
//! with `non_replicated_deduplication_window`), every sealed batch is
//! inserted with `insert_deduplication_token` = its id and `async_insert=0`,
//! and the crate validates the rows' types against the server's columns.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clickhouse::Client;
use serde::{Deserialize, Serialize};
use ticklane_protocols::itch::{self, FieldValue};

/// The schema, as `ticklane audit init` applies it.
pub const SCHEMA: &str = include_str!("../../deploy/clickhouse/schema.sql");

/// The schema for modern servers (22 and later).
pub const SCHEMA_MODERN: &str = include_str!("../../deploy/clickhouse/schema-modern.sql");

/// Which schema and insert protocol a server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// ClickHouse before 22 (18.16 on these machines): batch ids in the rows
    /// and the question after an ambiguous failure; no type validation
    /// (18.16 cannot answer the crate's schema query).
    Legacy,
    /// ClickHouse 22 and later: deduplication tokens, type validation on.
    Modern,
}

impl Flavor {
    /// The flavor of a `version()` string ("18.16.1", "26.9.2.1").
    pub fn of_version(version: &str) -> Self {
        match version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
        {
            Some(major) if major >= 22 => Flavor::Modern,
            _ => Flavor::Legacy,
        }
    }

    /// The schema `ticklane audit init` applies.
    pub fn schema(self) -> &'static str {
        match self {
            Flavor::Legacy => SCHEMA,
            Flavor::Modern => SCHEMA_MODERN,
        }
    }
}

/// The database the schema creates.
pub const DATABASE: &str = "ticklane";

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL cannot be used.
    #[error("ClickHouse URL '{url}': {why}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The server refused or failed a request, or could not be reached.
    #[error("ClickHouse at {url}: {what}: {source}")]
    Server {
        /// The server.
        url: String,
        /// What was asked.
        what: &'static str,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// No answer within the timeout.
    #[error(
        "ClickHouse at {url}: {what}: no answer within {after:?} (is the server up, and not overloaded?)"
    )]
    Timeout {
        /// The server.
        url: String,
        /// What was asked.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
}

/// How the store talks to the server.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `http://HOST:PORT`.
    pub url: String,
    /// User (the server's default when None).
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Bound on sending a batch.
    pub send_timeout: Duration,
    /// Bound on the server's answer to a batch or a query.
    pub end_timeout: Duration,
}

impl StoreConfig {
    /// A config with the default timeouts (5 s to send, 30 s to answer).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            user: None,
            password: None,
            send_timeout: Duration::from_secs(5),
            end_timeout: Duration::from_secs(30),
        }
    }
}

/// One message row.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct MessageRow {
    /// Day of `journaled_ns` (days since 1970-01-01): the partition.
    pub day: u16,
    /// Session, trailing spaces trimmed.
    #[serde(with = "serde_bytes")]
    pub session: Vec<u8>,
    /// Sequence number.
    pub seq: u64,
    /// When it was journaled, ns since the Unix epoch.
    pub journaled_ns: u64,
    /// The exchange timestamp (ns since midnight).
    pub timestamp: u64,
    /// The type byte.
    #[serde(with = "serde_bytes")]
    pub r#type: Vec<u8>,
    /// Stock locate.
    pub stock_locate: u16,
    /// Stock symbol, trimmed ("" when the message has none).
    #[serde(with = "serde_bytes")]
    pub stock: Vec<u8>,
    /// Order reference number (the original one for U), 0 when none.
    pub order_reference: u64,
    /// Buy/sell indicator, "" when none.
    #[serde(with = "serde_bytes")]
    pub side: Vec<u8>,
    /// Shares (executed, cancelled, or of the order), 0 when none.
    pub shares: u64,
    /// Price (execution or cross price where that is the one), raw Price(4), 0 when none.
    pub price: u64,
    /// Match number, 0 when none.
    pub match_number: u64,
    /// The message's bytes as received.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    /// First sequence number of the sealed batch it was shipped in.
    pub batch_first: u64,
    /// Last sequence number of that batch.
    pub batch_last: u64,
}

/// One gap row: delivered messages `from_seq..end_seq` not in the audit.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct GapRow {
    /// Partition day.
    pub day: u16,
    /// Session.
    #[serde(with = "serde_bytes")]
    pub session: Vec<u8>,
    /// First missing.
    pub from_seq: u64,
    /// One past the last missing.
    pub end_seq: u64,
    /// When it was journaled.
    pub journaled_ns: u64,
}

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// The partition day of a time in ns since the Unix epoch.
pub fn day_of(ns: u64) -> u16 {
    (ns / NS_PER_DAY).min(u64::from(u16::MAX)) as u16
}

impl MessageRow {
    /// The row of one journaled message of `session` (trimmed) (a message that does not parse, which
    /// the poller never delivers, keeps its bytes and type with zero fields).
    pub fn new(session: &[u8], seq: u64, journaled_ns: u64, bytes: &[u8]) -> Self {
        let mut row = Self {
            day: 0,
            session: Vec::new(),
            seq: 0,
            journaled_ns: 0,
            timestamp: 0,
            r#type: Vec::new(),
            stock_locate: 0,
            stock: Vec::new(),
            order_reference: 0,
            side: Vec::new(),
            shares: 0,
            price: 0,
            match_number: 0,
            raw: Vec::new(),
            batch_first: 0,
            batch_last: 0,
        };
        row.fill(session, seq, journaled_ns, bytes);
        row
    }

    /// Makes this row the row of another message, as [`MessageRow::new`]
    /// does, reusing its buffers (the shipper recycles its batches' rows:
    /// no allocation per row, and no free on another thread).
    pub fn fill(&mut self, session: &[u8], seq: u64, journaled_ns: u64, bytes: &[u8]) {
        fn set(v: &mut Vec<u8>, bytes: &[u8]) {
            v.clear();
            v.extend_from_slice(bytes);
        }
        self.day = day_of(journaled_ns);
        set(&mut self.session, session);
        self.seq = seq;
        self.journaled_ns = journaled_ns;
        set(&mut self.r#type, bytes.get(..1).unwrap_or_default());
        set(&mut self.raw, bytes);
        self.stock.clear();
        self.side.clear();
        (self.timestamp, self.stock_locate) = (0, 0);
        (
            self.order_reference,
            self.shares,
            self.price,
            self.match_number,
        ) = (0, 0, 0, 0);
        (self.batch_first, self.batch_last) = (0, 0);
        if let Ok(m) = itch::parse(bytes) {
            self.timestamp = m.header().timestamp();
            self.stock_locate = m.header().stock_locate();
            m.for_each_field(|name, value| match (name, value) {
                ("stock", FieldValue::Text(t)) => set(&mut self.stock, t),
                ("buy_sell_indicator", FieldValue::Text(t)) => set(&mut self.side, t),
                (
                    "order_reference_number" | "original_order_reference_number",
                    FieldValue::Int(v),
                ) => {
                    self.order_reference = v;
                }
                ("shares" | "executed_shares" | "cancelled_shares", FieldValue::Int(v)) => {
                    self.shares = v
                }
                ("price" | "execution_price" | "cross_price", FieldValue::Int(v)) => self.price = v,
                ("match_number", FieldValue::Int(v)) => self.match_number = v,
                _ => {}
            });
        }
    }
}

/// A connection to the audit database.
#[derive(Clone)]
pub struct Store {
    /// Validation off: 18.16, and any server before its version is known.
    client: Client,
    /// Validation on: modern servers.
    validating: Client,
    /// Known after the first [`Store::flavor`].
    flavor: Arc<OnceLock<Flavor>>,
    cfg: StoreConfig,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.cfg.url).finish()
    }
}

impl Store {
    /// Checks the URL and builds the client (nothing is sent yet).
    pub fn new(cfg: StoreConfig) -> Result<Self, StoreError> {
        let bad = |why| StoreError::BadUrl {
            url: cfg.url.clone(),
            why,
        };
        let rest = if let Some(rest) = cfg.url.strip_prefix("http://") {
            rest
        } else if cfg.url.starts_with("https://") {
            return Err(bad(
                "https is not built into this ticklane; put a TLS proxy in front or use http on a trusted network",
            ));
        } else {
            return Err(bad(
                "give http://HOST:PORT (for example http://127.0.0.1:8123)",
            ));
        };
        let host = rest.split('/').next().unwrap_or_default();
        let port_ok = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(bad("give http://HOST:PORT with a port from 1 to 65535"));
        }
        let mut client = Client::default().with_url(cfg.url.trim_end_matches('/'));
        if let Some(u) = &cfg.user {
            client = client.with_user(u);
        }
        if let Some(p) = &cfg.password {
            client = client.with_password(p);
        }
        Ok(Self {
            validating: client.clone().with_validation(true),
            client: client.with_validation(false),
            flavor: Arc::new(OnceLock::new()),
            cfg,
        })
    }

    /// The same store with clients of its own (connections not pooled
    /// with this one's): a connection pooled by another runtime's requests
    /// hangs, or fails, when a new runtime takes it.
    pub fn fresh(&self) -> Result<Self, StoreError> {
        let mut s = Self::new(self.cfg.clone())?;
        s.flavor = self.flavor.clone();
        Ok(s)
    }

    /// The server's flavor, asked once (`SELECT version()`).
    pub async fn flavor(&self) -> Result<Flavor, StoreError> {
        if let Some(f) = self.flavor.get() {
            return Ok(*f);
        }
        let f = Flavor::of_version(&self.version().await?);
        Ok(*self.flavor.get_or_init(|| f))
    }

    /// The client for this server: validating once it is known to be modern.
    fn active(&self) -> &Client {
        match self.flavor.get() {
            Some(Flavor::Modern) => &self.validating,
            _ => &self.client,
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    fn err(&self, what: &'static str) -> impl FnOnce(clickhouse::error::Error) -> StoreError {
        let url = self.cfg.url.clone();
        move |source| StoreError::Server { url, what, source }
    }

    /// The server's version string.
    pub async fn version(&self) -> Result<String, StoreError> {
        self.bounded(
            "asking its version",
            self.query("SELECT version()").fetch_one::<String>(),
        )
        .await
    }

    /// `request`, bounded by the answer timeout.
    pub async fn bounded<T>(
        &self,
        what: &'static str,
        request: impl Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.cfg.end_timeout, request).await {
            Ok(r) => r.map_err(self.err(what)),
            Err(_) => Err(StoreError::Timeout {
                url: self.cfg.url.clone(),
                what,
                after: self.cfg.end_timeout,
            }),
        }
    }

    /// Whether `ticklane audit init` has created the tables.
    pub async fn schema_ready(&self) -> Result<bool, StoreError> {
        let q = self.query("EXISTS TABLE ticklane.messages");
        Ok(self
            .bounded("looking for the audit tables", q.fetch_one::<u8>())
            .await?
            == 1)
    }

    /// A query (bound it with [`Store::bounded`]).
    pub fn query(&self, sql: &str) -> clickhouse::query::Query {
        self.active().query(sql)
    }

    /// Applies the schema of the server's flavor (idempotent); returns the
    /// statements applied.
    pub async fn init(&self) -> Result<usize, StoreError> {
        let flavor = self.flavor().await?;
        let mut n = 0;
        for stmt in statements(flavor.schema()) {
            self.bounded(
                "applying the schema",
                self.query(&stmt.replace('?', "??")).execute(),
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }

    async fn insert<T>(
        &self,
        table: &str,
        rows: &[T],
        query_id: &str,
        what: &'static str,
    ) -> Result<(), StoreError>
    where
        for<'a> T: Serialize + clickhouse::Row<Value<'a> = T>,
    {
        let flavor = self.flavor().await?;
        let mut insert = self
            .active()
            // Constant, qualified names: `insert` would quote the dot.
            .insert_unescaped::<T>(table)
            .await
            .map_err(self.err(what))?
            .with_timeouts(Some(self.cfg.send_timeout), Some(self.cfg.end_timeout));
        for (name, value) in insert_settings(flavor, query_id) {
            insert = insert.with_setting(name, value);
        }
        for r in rows {
            insert.write(r).await.map_err(self.err(what))?;
        }
        insert.end().await.map_err(self.err(what))
    }

    /// Inserts one sealed batch of messages (one insert, one part: the
    /// caller keeps batches under 1,048,576 rows), as query `query_id`.
    pub async fn insert_messages(
        &self,
        rows: &[MessageRow],
        query_id: &str,
    ) -> Result<(), StoreError> {
        self.insert(
            "ticklane.messages",
            rows,
            query_id,
            "inserting a batch of messages",
        )
        .await
    }

    /// Inserts gap rows, as query `query_id`.
    pub async fn insert_gaps(&self, rows: &[GapRow], query_id: &str) -> Result<(), StoreError> {
        self.insert("ticklane.gaps", rows, query_id, "inserting gaps")
            .await
    }

    /// Whether query `query_id` is running on the server (an insert that
    /// timed out on this side may still be executing, or about to).
    pub async fn running(&self, query_id: &str) -> Result<bool, StoreError> {
        let q = self
            .query("SELECT count() FROM system.processes WHERE query_id = ?")
            .bind(query_id);
        Ok(self
            .bounded("asking whether an insert still runs", q.fetch_one::<u64>())
            .await?
            > 0)
    }

    /// Rows of batch (session, first, last) that are in the table (not
    /// deduplicated: a complete batch that landed twice shows twice).
    pub async fn batch_rows(
        &self,
        session: &[u8],
        first: u64,
        last: u64,
    ) -> Result<u64, StoreError> {
        self.count_of(
            "SELECT count() FROM ticklane.messages \
             WHERE session = unhex(?) AND batch_first = ? AND batch_last = ?",
            (session, first, last),
            "asking whether a batch landed",
        )
        .await
    }

    /// Rows of gap (session, from, end) in the table.
    pub async fn gap_rows(&self, session: &[u8], from: u64, end: u64) -> Result<u64, StoreError> {
        self.count_of(
            "SELECT count() FROM ticklane.gaps \
             WHERE session = unhex(?) AND from_seq = ? AND end_seq = ?",
            (session, from, end),
            "asking whether a gap landed",
        )
        .await
    }

    /// A count keyed by (session, a, b), bound in that order.
    async fn count_of(
        &self,
        sql: &'static str,
        (session, a, b): (&[u8], u64, u64),
        what: &'static str,
    ) -> Result<u64, StoreError> {
        let q = self.query(sql).bind(hex(session)).bind(a).bind(b);
        self.bounded(what, q.fetch_one::<u64>()).await
    }
}

/// The settings of a batch's insert: the same query id for every attempt
/// (the server refuses an attempt while an earlier one still runs) and, on
/// modern servers, the batch id as deduplication token with synchronous
/// inserts (an async insert would be acknowledged before it is a part).
pub fn insert_settings(flavor: Flavor, query_id: &str) -> Vec<(&'static str, String)> {
    let mut s = vec![("query_id", query_id.to_owned())];
    if flavor == Flavor::Modern {
        s.push(("insert_deduplication_token", query_id.to_owned()));
        s.push(("async_insert", "0".to_owned()));
    }
    s
}

/// Bytes as a hex string, for `unhex(?)`: 18.16 reads no `x'…'` literals,
/// and a session need not be UTF-8.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// The statements of a schema file: separated by lines holding only `;`,
/// comment lines dropped.
pub fn statements(schema: &str) -> Vec<String> {
    schema
        .split("\n;\n")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticklane_protocols::moldudp64::Session;

    #[test]
    fn bad_urls_are_refused_with_what_to_give() {
        for (url, says) in [
            ("localhost:8123", "http://HOST:PORT"),
            ("https://ch:8443", "https is not built"),
            ("http://ch", "port from 1"),
            ("http://ch:0", "port from 1"),
            ("http://:8123", "port from 1"),
            ("http://ch:99999", "port from 1"),
            ("", "http://HOST:PORT"),
        ] {
            let e = Store::new(StoreConfig::new(url)).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        assert!(Store::new(StoreConfig::new("http://127.0.0.1:8123")).is_ok());
    }

    #[test]
    fn the_schema_has_its_tables_and_only_what_18_16_accepts() {
        let stmts = statements(SCHEMA);
        assert_eq!(stmts.len(), 5);
        for t in ["messages", "gaps"] {
            assert!(
                stmts
                    .iter()
                    .any(|s| s.contains(&format!("TABLE IF NOT EXISTS ticklane.{t} (")))
            );
        }
        let sql = stmts.join("\n");
        assert!(!sql.contains("DateTime64") && !sql.contains("TTL"));
    }

    #[test]
    fn rows_carry_the_fields_of_each_kind() {
        let session = Session::from_name(b"S1").unwrap();
        // C: order executed with price.
        let mut c = vec![b'C', 0, 7, 0, 0, 0, 0, 0, 0, 0, 5];
        c.extend_from_slice(&42u64.to_be_bytes());
        c.extend_from_slice(&100u32.to_be_bytes());
        c.extend_from_slice(&9u64.to_be_bytes());
        c.push(b'Y');
        c.extend_from_slice(&1_234_500u32.to_be_bytes());
        let r = MessageRow::new(session.trimmed(), 3, NS_PER_DAY * 2 + 5, &c);
        assert_eq!(
            (
                r.day,
                r.session.as_slice(),
                r.r#type.as_slice(),
                r.stock_locate,
                r.timestamp
            ),
            (2, &b"S1"[..], &b"C"[..], 7, 5)
        );
        assert_eq!(
            (r.order_reference, r.shares, r.match_number, r.price),
            (42, 100, 9, 1_234_500)
        );
        let mut reused = r.clone();
        reused.fill(b"S2", 4, 0, b"\xffjunk");
        let junk = MessageRow::new(b"S2", 4, 0, b"\xffjunk");
        assert_eq!(
            reused, junk,
            "a recycled row is the new row, nothing left over"
        );
        assert_eq!((junk.r#type, junk.raw), (vec![0xff], b"\xffjunk".to_vec()));
    }
}
