//! The runtime store (`redb`): the feeds subscribed live, so that they are
//! subscribed again when the appliance restarts with the same store, and
//! the settings changed live ([`crate::settings`]). The feeds of `--feed`
//! are the command line's, not the store's.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ticklane_capture::feed::Feed;

use crate::feeds;

/// GROUP:PORT → GROUP:PORT[@SOURCE] of every feed subscribed live.
const LIVE_FEEDS: TableDefinition<'_, &str, &str> = TableDefinition::new("live_feeds");

/// Setting name → its value as text, for every setting changed live.
const SETTINGS: TableDefinition<'_, &str, &str> = TableDefinition::new("settings");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("the state store {path}")]
pub struct StoreError {
    /// The store's file.
    pub path: PathBuf,
    /// What redb said.
    #[source]
    pub source: redb::Error,
}

/// The store, open.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

/// A feed as the store writes it.
fn text(feed: &Feed) -> String {
    let name = feeds::name(feed.group, feed.port);
    match feed.source {
        Some(s) => format!("{name}@{s}"),
        None => name,
    }
}

impl Store {
    /// Opens the store at `path`, creating it if need be.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |e: redb::Error| StoreError {
            path: path.to_owned(),
            source: e,
        };
        let db = Database::create(path).map_err(|e| err(e.into()))?;
        // The tables exist from the start, so that reading never misses them.
        let tx = db.begin_write().map_err(|e| err(e.into()))?;
        tx.open_table(LIVE_FEEDS).map_err(|e| err(e.into()))?;
        tx.open_table(SETTINGS).map_err(|e| err(e.into()))?;
        tx.commit().map_err(|e| err(e.into()))?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl Fn(redb::Error) -> StoreError + '_ {
        |source| StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// The feeds subscribed live, as `GROUP:PORT[@SOURCE]`, in key order.
    pub fn live_feeds(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .entries(LIVE_FEEDS)?
            .into_iter()
            .map(|(_, feed)| feed)
            .collect())
    }

    /// The settings changed live: (name, value as text), in name order.
    pub fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.entries(SETTINGS)
    }

    /// Records a setting changed live (durably, before it returns).
    pub fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let err = self.err();
        let tx = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = tx.open_table(SETTINGS).map_err(|e| err(e.into()))?;
            table.insert(name, value).map_err(|e| err(e.into()))?;
        }
        tx.commit().map_err(|e| err(e.into()))
    }

    fn entries(
        &self,
        which: TableDefinition<'_, &str, &str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let err = self.err();
        let tx = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = tx.open_table(which).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| err(e.into()))? {
            let (key, value) = entry.map_err(|e| err(e.into()))?;
            out.push((key.value().to_owned(), value.value().to_owned()));
        }
        Ok(out)
    }

    /// Records a feed subscribed live (durably, before it returns).
    pub fn add(&self, feed: &Feed) -> Result<(), StoreError> {
        self.change(feed, true)
    }

    /// Forgets a feed unsubscribed live.
    pub fn remove(&self, feed: &Feed) -> Result<(), StoreError> {
        self.change(feed, false)
    }

    fn change(&self, feed: &Feed, add: bool) -> Result<(), StoreError> {
        let err = self.err();
        let key = feeds::name(feed.group, feed.port);
        let tx = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = tx.open_table(LIVE_FEEDS).map_err(|e| err(e.into()))?;
            if add {
                table
                    .insert(key.as_str(), text(feed).as_str())
                    .map_err(|e| err(e.into()))?;
            } else {
                table.remove(key.as_str()).map_err(|e| err(e.into()))?;
            }
        }
        tx.commit().map_err(|e| err(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_feeds_survive_a_reopen_and_go_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let a = feeds::parse("239.1.1.1:1000@198.18.0.1").unwrap();
        let b = feeds::parse("239.1.1.2:2000").unwrap();
        {
            let store = Store::open(&path).unwrap();
            assert!(store.live_feeds().unwrap().is_empty());
            store.add(&a).unwrap();
            store.add(&b).unwrap();
            store.remove(&b).unwrap();
            store.add(&b).unwrap();
            store.remove(&a).unwrap();
            store.add(&a).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.live_feeds().unwrap(),
            ["239.1.1.1:1000@198.18.0.1", "239.1.1.2:2000"]
        );
        store.remove(&a).unwrap();
        assert_eq!(store.live_feeds().unwrap(), ["239.1.1.2:2000"]);
        store.set_setting("max_streams", "128").unwrap();
        store.set_setting("log_interval", "2s").unwrap();
        store.set_setting("max_streams", "16").unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.settings().unwrap(),
            [
                ("log_interval".to_owned(), "2s".to_owned()),
                ("max_streams".to_owned(), "16".to_owned())
            ]
        );
        let e = Store::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("state store"), "{e}");
    }
}
