//! MoldUDP64 1.00: the downstream packet that carries ITCH messages, and the
//! request packet a client sends to a re-request server.
//!
//! A downstream packet is a 20-byte header (session, sequence number of its
//! first message, message count) followed by `message_count` blocks of
//! `u16 length + message`. A count of 0 is a heartbeat (its sequence number is
//! the next one expected); 0xFFFF announces the end of the session.

/// Length of the downstream header (and of a whole request packet).
pub const HEADER_LEN: usize = 20;
/// Message count of an end-of-session packet.
pub const END_OF_SESSION: u16 = 0xffff;

mod field {
    use core::ops::Range;
    pub(super) const SESSION: Range<usize> = 0..10;
    pub(super) const SEQUENCE: Range<usize> = 10..18;
    pub(super) const COUNT: Range<usize> = 18..20;
}

/// A MoldUDP64 session name: ten ASCII bytes, space padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Session(pub [u8; 10]);

impl Session {
    /// A session from a name of at most ten bytes, space padded; `None` when
    /// the name is longer.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        let mut s = [b' '; 10];
        s.get_mut(..name.len())?.copy_from_slice(name);
        Some(Self(s))
    }

    /// The name without its trailing spaces.
    pub fn trimmed(&self) -> &[u8] {
        trim_trailing_spaces(&self.0)
    }
}

/// `bytes` without trailing ASCII spaces.
pub fn trim_trailing_spaces(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Why bytes are not a valid MoldUDP64 downstream packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoldError {
    /// Shorter than the 20-byte header.
    Truncated,
    /// A message block's length runs past the end of the packet.
    BlockOverrun {
        /// Index of the block in the packet.
        index: u16,
        /// Byte offset of its length field in the packet.
        offset: usize,
    },
    /// A message block of length zero.
    EmptyBlock {
        /// Index of the block in the packet.
        index: u16,
    },
    /// Bytes left over after the announced message blocks (or after a
    /// heartbeat or end-of-session header).
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The packet's messages would run past the largest sequence number.
    SequenceOverflow,
}

impl core::fmt::Display for MoldError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("MoldUDP64 packet shorter than its 20-byte header"),
            Self::BlockOverrun { index, offset } => write!(
                f,
                "MoldUDP64 message block {index} (at byte {offset}) runs past the end of the packet"
            ),
            Self::EmptyBlock { index } => write!(f, "MoldUDP64 message block {index} is empty"),
            Self::TrailingBytes { count } => {
                write!(f, "{count} bytes after the last MoldUDP64 message block")
            }
            Self::SequenceOverflow => f.write_str("MoldUDP64 sequence numbers overflow u64"),
        }
    }
}

/// What a downstream packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Carries one or more messages.
    Messages,
    /// No messages; keeps the session alive and tells the next sequence number.
    Heartbeat,
    /// The session is over; its sequence number is the one after the last message.
    EndOfSession,
}

/// A checked view of a MoldUDP64 downstream packet. Every message block has
/// been checked against the packet's length, so iterating cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Validates the header and walks every block length once.
    pub fn new_checked(buffer: T) -> Result<Self, MoldError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(MoldError::Truncated);
        }
        let count = be_u16(b, field::COUNT.start);
        let mut rest = &b[HEADER_LEN..];
        if count != END_OF_SESSION {
            let seq = u64::from_be_bytes(sequence_bytes(b));
            if seq.checked_add(u64::from(count)).is_none() {
                return Err(MoldError::SequenceOverflow);
            }
            for index in 0..count {
                let offset = b.len() - rest.len();
                let Some((len, after)) = rest.split_first_chunk::<2>() else {
                    return Err(MoldError::BlockOverrun { index, offset });
                };
                let len = usize::from(u16::from_be_bytes(*len));
                if len == 0 {
                    return Err(MoldError::EmptyBlock { index });
                }
                rest = after
                    .get(len..)
                    .ok_or(MoldError::BlockOverrun { index, offset })?;
            }
        }
        if !rest.is_empty() {
            return Err(MoldError::TrailingBytes { count: rest.len() });
        }
        Ok(Self { buffer })
    }

    /// The whole packet's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The session name.
    pub fn session(&self) -> Session {
        let mut s = [0u8; 10];
        s.copy_from_slice(&self.buffer.as_ref()[field::SESSION]);
        Session(s)
    }

    /// Sequence number of the first message (for a heartbeat or end of
    /// session: of the next message).
    pub fn sequence_number(&self) -> u64 {
        u64::from_be_bytes(sequence_bytes(self.buffer.as_ref()))
    }

    /// The raw message count field.
    pub fn message_count(&self) -> u16 {
        be_u16(self.buffer.as_ref(), field::COUNT.start)
    }

    /// Messages, heartbeat or end of session.
    pub fn kind(&self) -> PacketKind {
        match self.message_count() {
            0 => PacketKind::Heartbeat,
            END_OF_SESSION => PacketKind::EndOfSession,
            _ => PacketKind::Messages,
        }
    }

    /// Number of messages carried (0 for heartbeats and end of session).
    pub fn messages_len(&self) -> u16 {
        match self.kind() {
            PacketKind::Messages => self.message_count(),
            PacketKind::Heartbeat | PacketKind::EndOfSession => 0,
        }
    }

    /// Sequence number that follows this packet's last message.
    pub fn next_sequence_number(&self) -> u64 {
        self.sequence_number() + u64::from(self.messages_len())
    }

    /// The messages with their own sequence numbers, in order.
    pub fn messages(&self) -> Messages<'_> {
        Messages {
            rest: &self.buffer.as_ref()[HEADER_LEN..],
            next_seq: self.sequence_number(),
            left: self.messages_len(),
        }
    }
}

fn sequence_bytes(b: &[u8]) -> [u8; 8] {
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[field::SEQUENCE]);
    s
}

/// Iterator over the messages of a checked [`Packet`]: `(sequence, bytes)`.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
    next_seq: u64,
    left: u16,
}

impl<'a> Iterator for Messages<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // The packet was checked at construction, so both splits always
        // succeed; written with `?` the iterator stays free of panics anyway.
        let (len, rest) = self.rest.split_first_chunk::<2>()?;
        let (message, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
        self.rest = rest;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.left -= 1;
        Some((seq, message))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for Messages<'_> {}

/// A re-request: "send me `message_count` messages of `session` from
/// `sequence_number` on".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The session the messages belong to.
    pub session: Session,
    /// First sequence number wanted.
    pub sequence_number: u64,
    /// How many messages.
    pub message_count: u16,
}

/// Why bytes are not a request packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Not exactly 20 bytes long.
    BadLength {
        /// The length received.
        len: usize,
    },
}

impl Request {
    /// Decodes a request packet, which is exactly 20 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, RequestError> {
        let b: &[u8; HEADER_LEN] = bytes
            .try_into()
            .map_err(|_| RequestError::BadLength { len: bytes.len() })?;
        let mut session = [0u8; 10];
        session.copy_from_slice(&b[field::SESSION]);
        Ok(Self {
            session: Session(session),
            sequence_number: u64::from_be_bytes(sequence_bytes(b)),
            message_count: be_u16(b, field::COUNT.start),
        })
    }

    /// The 20 bytes of the request.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        header(self.session, self.sequence_number, self.message_count)
    }
}

/// A downstream header on its own: with count 0 a heartbeat, with
/// [`END_OF_SESSION`] the end of the session.
pub fn header(session: Session, sequence_number: u64, message_count: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[field::SESSION].copy_from_slice(&session.0);
    h[field::SEQUENCE].copy_from_slice(&sequence_number.to_be_bytes());
    h[field::COUNT].copy_from_slice(&message_count.to_be_bytes());
    h
}

/// Builds a downstream packet in a caller-owned buffer.
#[derive(Debug)]
pub struct PacketBuilder<'a> {
    buf: &'a mut [u8],
    len: usize,
    count: u16,
}

/// Why a message could not be added to a [`PacketBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The buffer has no room for the block; finish this packet, start another.
    Full,
    /// The message is empty or longer than a u16 length can say.
    BadLength,
}

impl<'a> PacketBuilder<'a> {
    /// Starts a packet whose first message has sequence number
    /// `sequence_number`; `None` when `buf` cannot hold the header.
    pub fn new(buf: &'a mut [u8], session: Session, sequence_number: u64) -> Option<Self> {
        buf.get_mut(..HEADER_LEN)?
            .copy_from_slice(&header(session, sequence_number, 0));
        Some(Self {
            buf,
            len: HEADER_LEN,
            count: 0,
        })
    }

    /// Appends one message block.
    pub fn push(&mut self, message: &[u8]) -> Result<(), PushError> {
        let len = u16::try_from(message.len()).map_err(|_| PushError::BadLength)?;
        if len == 0 || self.count == END_OF_SESSION - 1 {
            return Err(if len == 0 {
                PushError::BadLength
            } else {
                PushError::Full
            });
        }
        let end = self.len + 2 + message.len();
        let block = self.buf.get_mut(self.len..end).ok_or(PushError::Full)?;
        block[..2].copy_from_slice(&len.to_be_bytes());
        block[2..].copy_from_slice(message);
        self.len = end;
        self.count += 1;
        self.buf[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
        Ok(())
    }

    /// Messages added so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True while no message was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The packet's bytes.
    pub fn finish(self) -> &'a [u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::from_name(b"S123456789").unwrap()
    }

    #[test]
    fn builds_and_walks_a_packet() {
        let mut buf = [0u8; 64];
        let mut b = PacketBuilder::new(&mut buf, session(), 41).unwrap();
        b.push(b"first").unwrap();
        b.push(b"second!").unwrap();
        let bytes = b.finish();
        assert_eq!(bytes.len(), 20 + 7 + 9);
        let p = Packet::new_checked(bytes).unwrap();
        assert_eq!(p.kind(), PacketKind::Messages);
        assert_eq!(p.session().trimmed(), b"S123456789");
        assert_eq!(p.next_sequence_number(), 43);
        let got: [(u64, &[u8]); 2] = [(41, b"first"), (42, b"second!")];
        assert!(p.messages().eq(got));
    }

    #[test]
    fn full_buffer_is_reported() {
        let mut buf = [0u8; 28];
        let mut b = PacketBuilder::new(&mut buf, session(), 1).unwrap();
        b.push(b"123456").unwrap();
        assert_eq!(b.push(b"1"), Err(PushError::Full));
        assert_eq!(b.push(b""), Err(PushError::BadLength));
        assert_eq!(b.count(), 1);
    }

    #[test]
    fn heartbeat_and_end_of_session() {
        let hb = header(session(), 1000, 0);
        let p = Packet::new_checked(&hb[..]).unwrap();
        assert_eq!(p.kind(), PacketKind::Heartbeat);
        assert_eq!(p.messages().count(), 0);
        assert_eq!(p.next_sequence_number(), 1000);
        let eos = header(session(), 1000, END_OF_SESSION);
        let p = Packet::new_checked(&eos[..]).unwrap();
        assert_eq!(p.kind(), PacketKind::EndOfSession);
        assert_eq!(p.messages().count(), 0);
        assert_eq!(p.next_sequence_number(), 1000);
    }

    #[test]
    fn lying_block_lengths_are_caught() {
        let mut pkt = [0u8; 30];
        pkt[..20].copy_from_slice(&header(session(), 1, 2));
        pkt[20..22].copy_from_slice(&3u16.to_be_bytes());
        pkt[25..27].copy_from_slice(&9u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&pkt[..]).unwrap_err(),
            MoldError::BlockOverrun {
                index: 1,
                offset: 25
            }
        );
        pkt[25..27].copy_from_slice(&3u16.to_be_bytes());
        assert!(Packet::new_checked(&pkt[..]).is_ok());
        assert_eq!(
            Packet::new_checked(&pkt[..29]).unwrap_err(),
            MoldError::BlockOverrun {
                index: 1,
                offset: 25
            }
        );
        pkt[25..27].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&pkt[..]).unwrap_err(),
            MoldError::EmptyBlock { index: 1 }
        );
        assert_eq!(
            Packet::new_checked(&pkt[..19]).unwrap_err(),
            MoldError::Truncated
        );
        let mut long_heartbeat = [0u8; 21];
        long_heartbeat[..20].copy_from_slice(&header(session(), 1, 0));
        assert_eq!(
            Packet::new_checked(&long_heartbeat[..]).unwrap_err(),
            MoldError::TrailingBytes { count: 1 }
        );
    }

    #[test]
    fn sequence_overflow_is_refused() {
        let mut pkt = [0u8; 23];
        pkt[..20].copy_from_slice(&header(session(), u64::MAX, 1));
        pkt[21] = 1;
        assert_eq!(
            Packet::new_checked(&pkt[..]).unwrap_err(),
            MoldError::SequenceOverflow
        );
    }

    #[test]
    fn request_round_trip_and_length_check() {
        let r = Request {
            session: session(),
            sequence_number: 77,
            message_count: 300,
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        assert_eq!(
            Request::decode(&[0; 19]),
            Err(RequestError::BadLength { len: 19 })
        );
    }
}
