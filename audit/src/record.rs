//! The journal's record: a fixed little-endian header and a payload, the
//! whole covered by a CRC-32 (crc32fast), so that a torn or corrupted
//! record is recognised, never misread.
//!
//! ```text
//! 0   u32  crc32 of bytes 4..32+len
//! 4   u8   kind: 1 message, 2 gap
//! 5   u8   len: payload bytes
//! 6   [10] session (MoldUDP64, space padded)
//! 16  u64  seq (message: its sequence number; gap: first missing)
//! 24  u64  journaled_ns (wall clock, ns since the Unix epoch)
//! 32  len  payload (message: its ITCH bytes; gap: u64 end, one past the last missing)
//! ```

use ticklane_protocols::moldudp64::Session;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 32;
/// Largest payload (a length byte).
pub const MAX_PAYLOAD: usize = u8::MAX as usize;

const KIND_MESSAGE: u8 = 1;
const KIND_GAP: u8 = 2;

/// One journaled entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A delivered message.
    Message {
        /// Its session.
        session: Session,
        /// Its sequence number.
        seq: u64,
        /// When the writer journaled it (ns since the Unix epoch).
        journaled_ns: u64,
        /// Its ITCH bytes.
        bytes: &'a [u8],
    },
    /// Delivered messages `from..end` that could not be journaled (the audit
    /// ring was full, or the journal was stopped), with exact bounds.
    Gap {
        /// Their session.
        session: Session,
        /// First missing sequence number.
        from: u64,
        /// One past the last.
        end: u64,
        /// When the gap was journaled.
        journaled_ns: u64,
    },
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, valid record of `len` bytes.
    Record(Entry<'a>, usize),
    /// The bytes end inside a record (a torn tail, or more is still to come).
    Incomplete,
    /// The CRC or the kind does not match: corruption.
    Corrupt,
}

impl Entry<'_> {
    /// Bytes it takes in the journal.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Entry::Message { bytes, .. } => bytes.len().min(MAX_PAYLOAD),
                Entry::Gap { .. } => 8,
            }
    }

    /// Appends its encoding to `out` (a message longer than 255 bytes, which
    /// ITCH never has, is cut to 255).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let (kind, session, seq, ns) = match *self {
            Entry::Message {
                session,
                seq,
                journaled_ns,
                ..
            } => (KIND_MESSAGE, session, seq, journaled_ns),
            Entry::Gap {
                session,
                from,
                journaled_ns,
                ..
            } => (KIND_GAP, session, from, journaled_ns),
        };
        let payload_len = self.encoded_len() - HEADER_LEN;
        out.extend_from_slice(&[0; 4]);
        out.push(kind);
        out.push(payload_len as u8);
        out.extend_from_slice(&session.0);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&ns.to_le_bytes());
        match *self {
            Entry::Message { bytes, .. } => out.extend_from_slice(&bytes[..payload_len]),
            Entry::Gap { end, .. } => out.extend_from_slice(&end.to_le_bytes()),
        }
        let crc = crc32fast::hash(&out[start + 4..]);
        out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the record at the start of `buf`.
    pub fn decode(buf: &[u8]) -> Decoded<'_> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Decoded::Incomplete;
        };
        let len = HEADER_LEN + usize::from(header[5]);
        let Some(record) = buf.get(..len) else {
            return Decoded::Incomplete;
        };
        let crc = u32::from_le_bytes([record[0], record[1], record[2], record[3]]);
        if crc != crc32fast::hash(&record[4..]) {
            return Decoded::Corrupt;
        }
        let session = Session(record[6..16].try_into().unwrap_or_default());
        let seq = u64::from_le_bytes(record[16..24].try_into().unwrap_or_default());
        let journaled_ns = u64::from_le_bytes(record[24..32].try_into().unwrap_or_default());
        let payload = &record[HEADER_LEN..];
        let entry = match (record[4], payload.len()) {
            (KIND_MESSAGE, _) => Entry::Message {
                session,
                seq,
                journaled_ns,
                bytes: payload,
            },
            (KIND_GAP, 8) => Entry::Gap {
                session,
                from: seq,
                end: u64::from_le_bytes(payload.try_into().unwrap_or_default()),
                journaled_ns,
            },
            _ => return Decoded::Corrupt,
        };
        Decoded::Record(entry, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::from_name(b"S1").unwrap()
    }

    #[test]
    fn entries_round_trip() {
        let entries = [
            Entry::Message {
                session: session(),
                seq: 7,
                journaled_ns: 1_700_000_000_000_000_000,
                bytes: b"D\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x09",
            },
            Entry::Gap {
                session: session(),
                from: 8,
                end: 12,
                journaled_ns: 5,
            },
        ];
        let mut buf = Vec::new();
        for e in &entries {
            e.encode(&mut buf);
        }
        let mut at = 0;
        for e in &entries {
            match Entry::decode(&buf[at..]) {
                Decoded::Record(got, len) => {
                    assert_eq!(&got, e);
                    assert_eq!(len, e.encoded_len());
                    at += len;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_recognised() {
        let mut buf = Vec::new();
        Entry::Message {
            session: session(),
            seq: 1,
            journaled_ns: 2,
            bytes: b"S\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00O",
        }
        .encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(
                Entry::decode(&buf[..cut]),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            // A flipped length bit may make the record look longer than the
            // buffer (incomplete); anything else must fail the CRC.
            assert!(
                matches!(Entry::decode(&bad), Decoded::Corrupt | Decoded::Incomplete),
                "bit {bit} flipped went unnoticed"
            );
        }
    }
}
