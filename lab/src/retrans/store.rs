//! The messages a re-request server answers from: one session of a capture,
//! by sequence number.

use std::collections::BTreeMap;
use std::path::Path;

use ticklane_capture::feed::{FeedDecoder, FeedFilter, FeedSink, Location, Problem};
use ticklane_capture::{self as capture, CaptureError, Record};
use ticklane_protocols::itch::MessageRef;
use ticklane_protocols::moldudp64::Session;

/// The messages of one session, by sequence number.
#[derive(Debug)]
pub struct RetransStore {
    session: Session,
    first_seq: u64,
    /// `offsets[i]..offsets[i + 1]` holds message `first_seq + i`.
    offsets: Vec<usize>,
    bytes: Vec<u8>,
}

struct Collect<'a> {
    session: &'a mut Option<Session>,
    messages: &'a mut BTreeMap<u64, Vec<u8>>,
}

impl FeedSink for Collect<'_> {
    fn message(&mut self, session: &Session, seq: u64, message: MessageRef<'_>) {
        if *self.session.get_or_insert(*session) == *session {
            self.messages
                .entry(seq)
                .or_insert_with(|| message.as_bytes().to_vec());
        }
    }
    fn problem(&mut self, _: Location, _: Problem) {}
}

impl RetransStore {
    /// Loads the first session found in a capture (pcap or pcapng of a
    /// MoldUDP64 feed). Duplicates are kept once; a sequence number missing
    /// from the capture ends what can be served contiguously.
    pub fn load(path: &Path) -> Result<Self, CaptureError> {
        let mut session = None;
        let mut messages = BTreeMap::new();
        let mut decoder = FeedDecoder::new(FeedFilter::default());
        capture::read(path, |r| {
            if let Record::Frame(_) = r {
                decoder.record(
                    r,
                    &mut Collect {
                        session: &mut session,
                        messages: &mut messages,
                    },
                );
            }
        })?;
        let session = session.ok_or_else(|| CaptureError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            what: "no MoldUDP64 message in this capture (a BinaryFILE has no sessions to serve)"
                .into(),
        })?;
        let first_seq = messages.keys().next().copied().unwrap_or(1);
        Ok(Self::contiguous(session, first_seq, messages))
    }

    /// The messages from `first_seq` on, up to the first one missing.
    fn contiguous(
        session: Session,
        first_seq: u64,
        messages: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Self {
        let mut offsets = vec![0];
        let mut bytes = Vec::new();
        for (i, (seq, m)) in messages.into_iter().enumerate() {
            if seq != first_seq.saturating_add(i as u64) {
                break;
            }
            bytes.extend_from_slice(&m);
            offsets.push(bytes.len());
        }
        Self {
            session,
            first_seq,
            offsets,
            bytes,
        }
    }

    /// The session served.
    pub fn session(&self) -> Session {
        self.session
    }

    /// Sequence numbers served: `first..end`.
    pub fn range(&self) -> (u64, u64) {
        (
            self.first_seq,
            self.first_seq + self.offsets.len() as u64 - 1,
        )
    }

    /// Message `seq`, if held.
    pub fn message(&self, seq: u64) -> Option<&[u8]> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.bytes
            .get(*self.offsets.get(i)?..*self.offsets.get(i + 1)?)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Messages 10..20 of session "S", each its sequence number as 8 bytes.
    pub(in crate::retrans) fn store() -> RetransStore {
        store_of(10, (10..20u64).map(|seq| seq.to_be_bytes().to_vec()))
    }

    /// Session "S" holding `messages` from `first_seq` on.
    pub(in crate::retrans) fn store_of(
        first_seq: u64,
        messages: impl IntoIterator<Item = Vec<u8>>,
    ) -> RetransStore {
        RetransStore::contiguous(
            Session::from_name(b"S").unwrap(),
            first_seq,
            (first_seq..).zip(messages),
        )
    }

    #[test]
    fn serves_up_to_the_first_missing_message() {
        let s = RetransStore::contiguous(
            Session::from_name(b"S").unwrap(),
            5,
            [(5, vec![1]), (6, vec![2, 2]), (8, vec![3])],
        );
        assert_eq!(s.range(), (5, 7));
        assert_eq!(s.message(6), Some(&[2u8, 2][..]));
        assert_eq!(s.message(7), None);
        assert_eq!(s.message(4), None);
        assert_eq!(s.message(u64::MAX), None);
    }
}
