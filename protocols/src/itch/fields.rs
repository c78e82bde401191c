//! The field types ITCH messages are made of, and the common header.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

pub use zerocopy::byteorder::network_endian::{U16, U32, U64};

/// A field's value as the canonical decode shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// An integer (prices and times are raw wire integers).
    Int(u64),
    /// An alpha field, trailing spaces trimmed.
    Text(&'a [u8]),
}

/// A wire field type: how to read it, build it, and show it.
pub trait Field: Copy {
    /// The native value.
    type Value: Copy;
    /// Reads the value.
    fn value(&self) -> Self::Value;
    /// Builds the wire form of a value.
    fn from_value(value: Self::Value) -> Self;
    /// The value for the canonical decode.
    fn show(&self) -> FieldValue<'_>;
}

macro_rules! int_field {
    ($($wire:ty => $native:ty),*) => {$(
        impl Field for $wire {
            type Value = $native;
            fn value(&self) -> $native {
                self.get()
            }
            fn from_value(value: $native) -> Self {
                Self::new(value)
            }
            fn show(&self) -> FieldValue<'_> {
                FieldValue::Int(u64::from(self.get()))
            }
        }
    )*};
}
int_field!(U16 => u16, U32 => u32, U64 => u64);

/// A one-byte alpha field (a side, a flag, a code).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Hash, Debug,
)]
#[repr(transparent)]
pub struct Char(pub u8);

impl Field for Char {
    type Value = u8;
    fn value(&self) -> u8 {
        self.0
    }
    fn from_value(value: u8) -> Self {
        Self(value)
    }
    fn show(&self) -> FieldValue<'_> {
        FieldValue::Text(crate::moldudp64::trim_trailing_spaces(
            core::slice::from_ref(&self.0),
        ))
    }
}

/// An N-byte alpha field: ASCII, left-justified, space padded.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Hash, Debug,
)]
#[repr(transparent)]
pub struct Alpha<const N: usize>(pub [u8; N]);

impl<const N: usize> Alpha<N> {
    /// Pads `text` with spaces; `None` when it is longer than N.
    pub fn padded(text: &[u8]) -> Option<Self> {
        let mut a = [b' '; N];
        a.get_mut(..text.len())?.copy_from_slice(text);
        Some(Self(a))
    }

    /// The text without trailing spaces.
    pub fn trimmed(&self) -> &[u8] {
        crate::moldudp64::trim_trailing_spaces(&self.0)
    }
}

impl<const N: usize> Field for Alpha<N> {
    type Value = Self;
    fn value(&self) -> Self {
        *self
    }
    fn from_value(value: Self) -> Self {
        value
    }
    fn show(&self) -> FieldValue<'_> {
        FieldValue::Text(self.trimmed())
    }
}

/// Nanoseconds since midnight, as 6 big-endian bytes.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Hash, Debug,
)]
#[repr(transparent)]
pub struct Timestamp(pub [u8; 6]);

impl Timestamp {
    /// Largest value 48 bits hold.
    pub const MAX: u64 = (1 << 48) - 1;

    /// Nanoseconds since midnight.
    pub fn nanos(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The low 48 bits of `nanos`.
    pub fn from_nanos(nanos: u64) -> Self {
        let b = nanos.to_be_bytes();
        Self([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// The 11 bytes every ITCH message starts with.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Hash, Debug,
)]
#[repr(C)]
pub struct Header {
    /// The type byte.
    pub message_type: u8,
    /// The instrument's locate code for the day (0 for market-wide messages).
    pub stock_locate: U16,
    /// NASDAQ internal tracking number.
    pub tracking_number: U16,
    /// Nanoseconds since midnight.
    pub timestamp: Timestamp,
}

const _: () = assert!(size_of::<Header>() == 11);

impl Header {
    /// A header for a message of type `message_type`.
    pub fn new(message_type: u8, stock_locate: u16, tracking_number: u16, nanos: u64) -> Self {
        Self {
            message_type,
            stock_locate: U16::new(stock_locate),
            tracking_number: U16::new(tracking_number),
            timestamp: Timestamp::from_nanos(nanos),
        }
    }

    /// The locate code.
    pub fn stock_locate(&self) -> u16 {
        self.stock_locate.get()
    }

    /// The tracking number.
    pub fn tracking_number(&self) -> u16 {
        self.tracking_number.get()
    }

    /// Nanoseconds since midnight.
    pub fn timestamp(&self) -> u64 {
        self.timestamp.nanos()
    }
}
