//! Display helpers for ITCH's fixed-point prices.

/// A Price(4): an integer with 4 implied decimals (`1923400` is 192.3400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price4(pub u32);

/// A Price(8): an integer with 8 implied decimals (the MWCB levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price8(pub u64);

impl core::fmt::Display for Price4 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

impl core::fmt::Display for Price8 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:08}", self.0 / 100_000_000, self.0 % 100_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buf([u8; 32], usize);
    impl core::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }

    fn show(v: impl core::fmt::Display) -> Buf {
        let mut b = Buf([0; 32], 0);
        core::fmt::write(&mut b, format_args!("{v}")).unwrap();
        b
    }

    #[test]
    fn formats_implied_decimals() {
        let b = show(Price4(1_923_400));
        assert_eq!(&b.0[..b.1], b"192.3400");
        let b = show(Price4(5));
        assert_eq!(&b.0[..b.1], b"0.0005");
        let b = show(Price8(123_456_789_012));
        assert_eq!(&b.0[..b.1], b"1234.56789012");
    }
}
