//! NASDAQ TotalView-ITCH 5.0.
//!
//! Every message is a packed big-endian struct (see [`messages`]) read in
//! place with `zerocopy`: [`parse`] turns a message's bytes into a
//! [`MessageRef`] borrowing them, and [`dispatch`] calls the matching method of
//! a [`Handler`]. Both check the type byte and that the length is exactly the
//! type's, and fail with an [`ItchError`] otherwise; they never panic.
//!
//! The 23 layouts, the handler trait, the enum, the field names and the
//! per-type constants are all generated from one table in [`messages`], so a
//! message is described once.

mod fields;
pub mod messages;
mod price;

pub use fields::{Alpha, Char, Field, FieldValue, Header, Timestamp, U16, U32, U64};
pub use messages::*;
pub use price::{Price4, Price8};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// What every ITCH message type provides, generated from the table.
pub trait Message: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Copy {
    /// The type byte ('A' for an add order…).
    const TYPE: u8;
    /// Total length on the wire, type byte included.
    const LEN: usize;
    /// The Rust name of the message.
    const NAME: &'static str;
    /// Names of the fields after the common header, in wire order.
    const FIELDS: &'static [&'static str];

    /// The common header.
    fn header(&self) -> &Header;

    /// Calls `f` with the name and value of every field after the header, in
    /// wire order.
    fn for_each_field<'a>(&'a self, f: impl FnMut(&'static str, FieldValue<'a>));

    /// Casts exactly [`Self::LEN`] bytes to this message (type byte unchecked).
    fn view(bytes: &[u8]) -> Result<&Self, ItchError> {
        Self::ref_from_bytes(bytes).map_err(|_| ItchError::Length {
            message_type: Self::TYPE,
            expected: Self::LEN,
            actual: bytes.len(),
        })
    }
}

/// Why bytes are not an ITCH 5.0 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItchError {
    /// No bytes at all.
    Empty,
    /// A type byte that ITCH 5.0 does not define.
    UnknownType(u8),
    /// The length disagrees with the message type.
    Length {
        /// The type byte.
        message_type: u8,
        /// Length of that type.
        expected: usize,
        /// Length received.
        actual: usize,
    },
}

impl core::fmt::Display for ItchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Empty => f.write_str("empty ITCH message"),
            Self::UnknownType(t) => write!(f, "unknown ITCH message type {}", Printable(t)),
            Self::Length {
                message_type,
                expected,
                actual,
            } => write!(
                f,
                "ITCH message type {} is {expected} bytes long, got {actual}",
                Printable(message_type)
            ),
        }
    }
}

/// Shows a type byte as 'A' when printable, as 0x41 otherwise.
struct Printable(u8);

impl core::fmt::Display for Printable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "{:#04x}", self.0)
        }
    }
}

/// One row of [`MESSAGE_TYPES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageType {
    /// The type byte.
    pub tag: u8,
    /// The Rust name.
    pub name: &'static str,
    /// Wire length.
    pub len: usize,
}

#[cfg(test)]
mod tests;
