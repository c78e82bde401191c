//! A restart on the same journal: the journaled messages replayed, in
//! sequence order per session, through whatever the caller applies them to
//! (the pipeline: books and VWAP rebuilt as they were), and where each
//! session resumes (after its last journaled message), so that the session
//! layer asks the re-request servers only for what came while the
//! appliance was down.
//!
//! The journal is mostly in sequence order, but not wholly: messages that
//! filled the audit's gaps ([`crate::fill`]) were journaled after later
//! ones. So the journal is read twice: the first pass keeps only those late
//! messages (few: what the audit ring missed), the second applies the rest
//! in journal order with each late one put back in its place. A message
//! journaled twice is applied once and counted.

use std::collections::BTreeMap;
use std::path::Path;

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::BusConfig;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_protocols::itch;
use ticklane_protocols::moldudp64::Session;

use crate::journal::{JournalError, Position, Reader, Recovery};
use crate::record::Entry;

/// What the journal held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Messages applied.
    pub messages: u64,
    /// Messages journaled more than once (applied once).
    pub duplicates: u64,
    /// Each session with the sequence number after its last journaled
    /// message, in the order the sessions were first journaled.
    pub sessions: Vec<(Session, u64)>,
    /// The session of the last message journaled (the one the feed is on).
    pub last: Option<Session>,
    /// Torn segments skipped while reading (counted, as `audit query` does).
    pub recovery: Recovery,
}

impl Restored {
    /// Where the last journaled session resumes: (session, next seq).
    pub fn resume(&self) -> Option<(Session, u64)> {
        let last = self.last?;
        self.sessions.iter().find(|(s, _)| *s == last).copied()
    }
}

/// Sequence numbers journaled for one session, as sorted disjoint ranges.
#[derive(Debug, Default)]
struct Seen {
    ranges: Vec<(u64, u64)>,
}

impl Seen {
    fn max(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.1 - 1)
    }

    fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= seq);
        self.ranges.get(i).is_some_and(|r| r.0 <= seq)
    }

    /// Adds `seq` (not contained).
    fn add(&mut self, seq: u64) {
        let i = self.ranges.partition_point(|r| r.1 <= seq);
        let joins_before = i > 0 && self.ranges[i - 1].1 == seq;
        let joins_after = self.ranges.get(i).is_some_and(|r| r.0 == seq + 1);
        match (joins_before, joins_after) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 = seq + 1,
            (false, true) => self.ranges[i].0 = seq,
            (false, false) => self.ranges.insert(i, (seq, seq + 1)),
        }
    }
}

/// Per session state, found by a linear search from the last one used
/// (a journal holds one session a day).
struct Sessions<T> {
    list: Vec<(Session, T)>,
    last: usize,
}

impl<T: Default> Sessions<T> {
    fn new() -> Self {
        Self {
            list: Vec::new(),
            last: 0,
        }
    }

    fn get(&mut self, session: Session) -> &mut T {
        if self.list.get(self.last).is_none_or(|(s, _)| *s != session) {
            self.last = match self.list.iter().position(|(s, _)| *s == session) {
                Some(i) => i,
                None => {
                    self.list.push((session, T::default()));
                    self.list.len() - 1
                }
            };
        }
        &mut self.list[self.last].1
    }
}

/// Replays the journal in `dir` into `apply` (session, seq, bytes), each
/// message once, in sequence order per session. A journal directory that
/// does not exist holds nothing.
pub fn replay(
    dir: &Path,
    mut apply: impl FnMut(Session, u64, &[u8]),
) -> Result<Restored, JournalError> {
    let mut restored = Restored::default();
    if !dir.is_dir() {
        return Ok(restored);
    }
    // Pass 1: the late messages (journaled after a higher one of their
    // session), by (session, seq); duplicates counted.
    let mut seen: Sessions<Seen> = Sessions::new();
    let mut late: BTreeMap<([u8; 10], u64), Vec<u8>> = BTreeMap::new();
    restored.recovery = each_message(dir, |session, seq, bytes| {
        restored.last = Some(session);
        let s = seen.get(session);
        if s.contains(seq) {
            restored.duplicates += 1;
            return;
        }
        if s.max().is_some_and(|m| seq < m) {
            late.insert((session.0, seq), bytes.to_vec());
        }
        s.add(seq);
    })?;
    restored.sessions = seen
        .list
        .iter()
        .filter_map(|(session, s)| Some((*session, s.max()? + 1)))
        .collect();
    // Pass 2: in journal order, each late message applied just before the
    // first message of its session above it, and the duplicates skipped.
    let mut applied: Sessions<Option<u64>> = Sessions::new();
    each_message(dir, |session, seq, bytes| {
        let high = applied.get(session);
        if high.is_some_and(|h| seq <= h) || late.contains_key(&(session.0, seq)) {
            return;
        }
        *high = Some(seq);
        while let Some(&key) = late
            .range((session.0, 0)..(session.0, seq))
            .next()
            .map(|e| e.0)
        {
            if let Some(bytes) = late.remove(&key) {
                apply(session, key.1, &bytes);
                restored.messages += 1;
            }
        }
        apply(session, seq, bytes);
        restored.messages += 1;
    })?;
    // Every late message went back in place: each is below a message its
    // session journaled before it, which pass 2 reached first.
    Ok(restored)
}

/// Hands every message of the journal in `dir` to `f` (session, seq,
/// bytes), in journal order; returns what opening it repaired.
fn each_message(
    dir: &Path,
    mut f: impl FnMut(Session, u64, &[u8]),
) -> Result<Recovery, JournalError> {
    let mut reader = Reader::open(dir, Position::default());
    while let Some((entry, _)) = reader.next(None)? {
        if let Entry::Message {
            session,
            seq,
            bytes,
            ..
        } = entry
        {
            f(session, seq, bytes);
        }
    }
    Ok(reader.recovery())
}

/// Rebuilds `books` and `vwap` from the journal in `dir`: its messages
/// replayed through a pipeline of their own (the same books and VWAP code
/// as live; its bus rings have one slot, so the replay's events go nowhere
/// and nothing is journaled again).
pub fn rebuild(
    dir: &Path,
    books: Books,
    vwap: Vwap,
) -> Result<(Books, Vwap, Restored), JournalError> {
    let (mut pipeline, _events) = Pipeline::with_bus(
        books,
        vwap,
        BusConfig {
            events: 1,
            audit: 1,
        },
    );
    let restored = replay(dir, |session, seq, bytes| {
        if let Ok(m) = itch::parse(bytes) {
            // Refused by the one-slot audit ring, as meant: it is journaled.
            let _ = pipeline.deliver(session, seq, m);
        }
    })?;
    let Pipeline { books, vwap, .. } = pipeline;
    Ok((books, vwap, restored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, JournalConfig};

    fn journal(dir: &Path, entries: &[(&[u8], u64)]) {
        let (mut j, _) = Journal::open(dir, JournalConfig::default()).unwrap();
        for (session, seq) in entries {
            j.append(&Entry::Message {
                session: Session::from_name(session).unwrap(),
                seq: *seq,
                journaled_ns: 1,
                bytes: &seq.to_be_bytes(),
            });
        }
        j.commit().unwrap();
    }

    fn replayed(dir: &Path) -> (Vec<(Vec<u8>, u64)>, Restored) {
        let mut out = Vec::new();
        let r = replay(dir, |s, q, b| {
            assert_eq!(b, q.to_be_bytes());
            out.push((s.trimmed().to_vec(), q));
        })
        .unwrap();
        (out, r)
    }

    #[test]
    fn late_fills_go_back_in_place_duplicates_once_and_each_session_resumes_after_its_last() {
        let dir = tempfile::tempdir().unwrap();
        // A run with holes 4..6 and 9 filled at its stop, a duplicate, then
        // a restart that went on from 11 and the next day's session.
        let first: Vec<(&[u8], u64)> = [1, 2, 3, 6, 7, 8, 10, 4, 5, 9, 7]
            .iter()
            .map(|q| (&b"D1"[..], *q))
            .collect();
        journal(dir.path(), &first);
        journal(
            dir.path(),
            &[(b"D1", 11), (b"D1", 12), (b"D2", 1), (b"D2", 2)],
        );
        let (order, r) = replayed(dir.path());
        let mut want: Vec<(Vec<u8>, u64)> = (1..=12).map(|q| (b"D1".to_vec(), q)).collect();
        want.extend((1..=2).map(|q| (b"D2".to_vec(), q)));
        assert_eq!(order, want, "sequence order per session, each once");
        assert_eq!((r.messages, r.duplicates), (14, 1));
        let d = |n: &[u8]| Session::from_name(n).unwrap();
        assert_eq!(r.sessions, vec![(d(b"D1"), 13), (d(b"D2"), 3)]);
        assert_eq!(r.resume(), Some((d(b"D2"), 3)));
    }

    #[test]
    fn no_journal_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (order, r) = replayed(&dir.path().join("absent"));
        assert!(order.is_empty());
        assert_eq!(r, Restored::default());
        assert_eq!(r.resume(), None);
    }
}
