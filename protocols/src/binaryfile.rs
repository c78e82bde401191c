//! NASDAQ BinaryFILE framing: the historical `*.NASDAQ_ITCH50` files are a
//! plain stream of `u16 big-endian length + message`, with no session and no
//! sequence numbers (messages are numbered from 1 by position).

/// What the next bytes of a BinaryFILE stream hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block<'a> {
    /// A whole message, and how many bytes (length prefix included) it used.
    Message {
        /// The message bytes.
        message: &'a [u8],
        /// Bytes consumed: 2 + the message length.
        consumed: usize,
    },
    /// The stream ends inside a block; at least `needed` bytes in all are
    /// required to finish it.
    Incomplete {
        /// Bytes needed from the start of the block.
        needed: usize,
    },
    /// A length prefix of zero, which no message has.
    EmptyMessage,
}

/// Reads the block at the start of `bytes`.
#[inline]
pub fn next_block(bytes: &[u8]) -> Block<'_> {
    let [hi, lo, rest @ ..] = bytes else {
        return Block::Incomplete { needed: 2 };
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if len == 0 {
        return Block::EmptyMessage;
    }
    match rest.get(..len) {
        Some(message) => Block::Message {
            message,
            consumed: 2 + len,
        },
        None => Block::Incomplete { needed: 2 + len },
    }
}

/// Why a BinaryFILE stream in memory could not be walked to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryFileError {
    /// The stream ends inside the block at this byte offset.
    Truncated {
        /// Offset of the block's length prefix.
        offset: usize,
    },
    /// A zero length prefix at this byte offset.
    EmptyMessage {
        /// Offset of the block's length prefix.
        offset: usize,
    },
}

/// Iterates the messages of a BinaryFILE stream held in memory, with their
/// byte offsets; stops after the first error.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Messages<'a> {
    /// Starts at the first byte of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(usize, &'a [u8]), BinaryFileError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..).filter(|r| !r.is_empty())?;
        let offset = self.offset;
        match next_block(rest) {
            Block::Message { message, consumed } => {
                self.offset += consumed;
                Some(Ok((offset, message)))
            }
            Block::Incomplete { .. } => {
                self.offset = self.bytes.len();
                Some(Err(BinaryFileError::Truncated { offset }))
            }
            Block::EmptyMessage => {
                self.offset = self.bytes.len();
                Some(Err(BinaryFileError::EmptyMessage { offset }))
            }
        }
    }
}

/// Writes one block (length prefix and message) into `out`; returns its
/// length, or `None` when `out` is too small or the message is empty or
/// longer than 65535 bytes.
pub fn write_block(out: &mut [u8], message: &[u8]) -> Option<usize> {
    let len = u16::try_from(message.len()).ok().filter(|&l| l > 0)?;
    let block = out.get_mut(..2 + message.len())?;
    block[..2].copy_from_slice(&len.to_be_bytes());
    block[2..].copy_from_slice(message);
    Some(block.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_written_blocks() {
        let mut buf = [0u8; 32];
        let a = write_block(&mut buf, b"abc").unwrap();
        let b = write_block(&mut buf[a..], b"defgh").unwrap();
        let got: [Result<(usize, &[u8]), BinaryFileError>; 2] =
            [Ok((0, b"abc")), Ok((5, b"defgh"))];
        assert!(Messages::new(&buf[..a + b]).eq(got));
    }

    #[test]
    fn reports_truncation_and_empty_blocks() {
        let bytes = [0, 3, b'a', b'b', b'c', 0, 9, b'x'];
        let mut m = Messages::new(&bytes);
        assert_eq!(m.next(), Some(Ok((0, &b"abc"[..]))));
        assert_eq!(
            m.next(),
            Some(Err(BinaryFileError::Truncated { offset: 5 }))
        );
        assert_eq!(m.next(), None);
        assert_eq!(next_block(&[0]), Block::Incomplete { needed: 2 });
        assert_eq!(next_block(&[0, 4, 1]), Block::Incomplete { needed: 6 });
        assert_eq!(next_block(&[0, 0, 1]), Block::EmptyMessage);
        assert_eq!(write_block(&mut [0u8; 8], b""), None);
        assert_eq!(write_block(&mut [0u8; 3], b"ab"), None);
    }
}
