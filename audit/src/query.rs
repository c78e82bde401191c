//! Reading the audit back, from the journal or from ClickHouse, with the
//! same filters, ordered by session and sequence number. Values reach the
//! SQL only as bound parameters (strings as `unhex(?)` of their hex), never
//! spliced into its text.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use ticklane_protocols::itch::{self, FieldValue};

use crate::journal::{JournalError, Position, Reader, Recovery};
use crate::record::Entry;
use crate::store::{GapRow, Store, StoreError, hex};

/// What to select.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Session (trimmed), exactly.
    pub session: Option<Vec<u8>>,
    /// Lowest sequence number.
    pub from_seq: Option<u64>,
    /// Highest sequence number (inclusive).
    pub to_seq: Option<u64>,
    /// Stock symbol (trimmed), exactly.
    pub stock: Option<Vec<u8>>,
    /// Message types (empty: all).
    pub types: Vec<u8>,
    /// At most this many messages.
    pub limit: Option<u64>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct Stored {
    /// Session, trimmed.
    #[serde(with = "serde_bytes")]
    pub session: Vec<u8>,
    /// Sequence number.
    pub seq: u64,
    /// The ITCH bytes.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

fn stock_of(bytes: &[u8]) -> Vec<u8> {
    let mut stock = Vec::new();
    if let Ok(m) = itch::parse(bytes) {
        m.for_each_field(|name, v| {
            if let ("stock", FieldValue::Text(t)) = (name, v) {
                stock = t.to_vec();
            }
        });
    }
    stock
}

impl Filter {
    /// Whether a message passes (the journal side of the same filter).
    pub fn matches(&self, session: &[u8], seq: u64, raw: &[u8]) -> bool {
        self.session.as_deref().is_none_or(|s| s == session)
            && self.from_seq.is_none_or(|f| seq >= f)
            && self.to_seq.is_none_or(|t| seq <= t)
            && (self.types.is_empty() || raw.first().is_some_and(|t| self.types.contains(t)))
            && self.stock.as_deref().is_none_or(|s| stock_of(raw) == s)
    }

    /// The SQL, with `?` for every value, and the values in order.
    pub fn sql(&self) -> (String, Vec<Param>) {
        let mut sql = String::from("SELECT session, seq, raw FROM ticklane.messages FINAL WHERE 1");
        let mut params = Vec::new();
        if let Some(s) = &self.session {
            sql.push_str(" AND session = unhex(?)");
            params.push(Param::Text(hex(s)));
        }
        if let Some(f) = self.from_seq {
            sql.push_str(" AND seq >= ?");
            params.push(Param::Int(f));
        }
        if let Some(t) = self.to_seq {
            sql.push_str(" AND seq <= ?");
            params.push(Param::Int(t));
        }
        if let Some(s) = &self.stock {
            sql.push_str(" AND stock = unhex(?)");
            params.push(Param::Text(hex(s)));
        }
        if !self.types.is_empty() {
            sql.push_str(" AND type IN (");
            for (i, t) in self.types.iter().enumerate() {
                sql.push_str(if i == 0 { "unhex(?)" } else { ", unhex(?)" });
                params.push(Param::Text(hex(&[*t])));
            }
            sql.push(')');
        }
        sql.push_str(" ORDER BY session, seq");
        if let Some(l) = self.limit {
            sql.push_str(" LIMIT ?");
            params.push(Param::Int(l));
        }
        (sql, params)
    }
}

/// A bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// An integer.
    Int(u64),
    /// A string (escaped by the client).
    Text(String),
}

/// What the journal holds, read without changing it.
#[derive(Debug, Default)]
pub struct JournalView {
    /// Messages passing the filter, by (session, seq), once each.
    pub messages: BTreeMap<(Vec<u8>, u64), Vec<u8>>,
    /// Messages journaled more than once (same session and seq).
    pub duplicates: u64,
    /// Gap records.
    pub gaps: Vec<GapRow>,
    /// Torn segments skipped while reading.
    pub recovery: Recovery,
    /// Bytes after the last whole record of the last segment (a torn tail
    /// that the next open of the journal will cut).
    pub torn_tail: u64,
}

/// Reads the whole journal in `dir` (read-only: nothing is repaired).
pub fn read_journal(dir: &Path, filter: &Filter) -> Result<JournalView, JournalError> {
    let mut view = JournalView::default();
    let mut reader = Reader::open(dir, Position::default());
    while let Some((entry, _)) = reader.next(None)? {
        match entry {
            Entry::Message {
                session,
                seq,
                bytes,
                ..
            } => {
                let s = session.trimmed();
                if !filter.matches(s, seq, bytes) {
                    continue;
                }
                if view
                    .messages
                    .insert((s.to_vec(), seq), bytes.to_vec())
                    .is_some()
                {
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
    view.recovery = reader.recovery();
    view.torn_tail = reader.leftover();
    if let Some(limit) = filter.limit {
        while view.messages.len() as u64 > limit {
            view.messages.pop_last();
        }
    }
    Ok(view)
}

/// Streams the messages passing `filter` from ClickHouse, ordered.
pub async fn query_store(
    store: &Store,
    filter: &Filter,
    mut each: impl FnMut(Stored),
) -> Result<(), StoreError> {
    let (sql, params) = filter.sql();
    let mut q = store.query(&sql);
    for p in params {
        q = match p {
            Param::Int(v) => q.bind(v),
            Param::Text(t) => q.bind(t),
        };
    }
    let what = "querying messages";
    let mut cursor = q.fetch::<Stored>().map_err(|source| StoreError::Server {
        url: store.url().to_owned(),
        what,
        source,
    })?;
    while let Some(row) = store.bounded(what, cursor.next()).await? {
        each(row);
    }
    Ok(())
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
    let q = store.query("SELECT count() - uniqExact(session, seq) FROM ticklane.messages");
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
        let f = Filter {
            session: Some(hostile.clone()),
            stock: Some(hostile.clone()),
            types: vec![b'\'', b'A'],
            from_seq: Some(1),
            to_seq: Some(u64::MAX),
            limit: Some(5),
        };
        let (sql, params) = f.sql();
        assert_eq!(
            sql,
            "SELECT session, seq, raw FROM ticklane.messages FINAL WHERE 1 AND session = unhex(?) \
             AND seq >= ? AND seq <= ? AND stock = unhex(?) AND type IN (unhex(?), unhex(?)) \
             ORDER BY session, seq LIMIT ?"
        );
        assert_eq!(params.len(), 7);
        for p in &params {
            if let Param::Text(t) = p {
                assert!(
                    t.bytes().all(|b| b.is_ascii_hexdigit()),
                    "only hex digits are bound"
                );
            }
        }
        assert_eq!(params[0], Param::Text(hex(&hostile)));
    }

    #[test]
    fn the_journal_side_filters_alike() {
        let mut a = vec![b'A', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        a.extend_from_slice(&5u64.to_be_bytes());
        a.push(b'B');
        a.extend_from_slice(&100u32.to_be_bytes());
        a.extend_from_slice(b"AAPL    ");
        a.extend_from_slice(&1u32.to_be_bytes());
        let f = Filter {
            stock: Some(b"AAPL".to_vec()),
            types: vec![b'A'],
            ..Filter::default()
        };
        assert!(f.matches(b"S", 1, &a));
        assert!(
            !Filter {
                stock: Some(b"MSFT".to_vec()),
                ..f.clone()
            }
            .matches(b"S", 1, &a)
        );
        assert!(
            !Filter {
                types: vec![b'E'],
                ..f.clone()
            }
            .matches(b"S", 1, &a)
        );
        assert!(
            !Filter {
                from_seq: Some(2),
                ..f.clone()
            }
            .matches(b"S", 1, &a)
        );
        assert!(
            !Filter {
                session: Some(b"T".to_vec()),
                ..f
            }
            .matches(b"S", 1, &a)
        );
    }
}
