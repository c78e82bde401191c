//! Command-line spellings of the libraries' choices (the libraries know
//! nothing of clap).

use std::time::Duration;

use clap::ValueEnum;
use clap::builder::RangedU64ValueParser;
use ticklane_appliance::source::steering::XdpModeRequest;
use ticklane_appliance::source::xsk::BindRequest;
use ticklane_capture::Format;

/// A capture format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// Classic libpcap.
    Pcap,
    /// pcapng.
    Pcapng,
    /// NASDAQ BinaryFILE: u16 length + ITCH message, no packets.
    Binaryfile,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Pcap => Format::Pcap,
            FormatArg::Pcapng => Format::Pcapng,
            FormatArg::Binaryfile => Format::Binaryfile,
        }
    }
}

/// Which receive path `run` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// XDP + AF_XDP, falling back to kernel UDP with a warning.
    Auto,
    /// XDP + AF_XDP or fail.
    Xdp,
    /// Kernel UDP sockets (recvmmsg).
    Udp,
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum XdpModeArg {
    /// Native (driver) mode, falling back to generic with a warning.
    Auto,
    /// Native mode or fail.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl From<XdpModeArg> for XdpModeRequest {
    fn from(m: XdpModeArg) -> Self {
        match m {
            XdpModeArg::Auto => XdpModeRequest::Auto,
            XdpModeArg::Native => XdpModeRequest::Native,
            XdpModeArg::Generic => XdpModeRequest::Generic,
        }
    }
}

/// AF_XDP bind mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BindArg {
    /// Zero-copy if the driver offers it, else copy.
    Auto,
    /// Zero-copy or fail.
    Zerocopy,
    /// Copy mode.
    Copy,
}

impl From<BindArg> for BindRequest {
    fn from(b: BindArg) -> Self {
        match b {
            BindArg::Auto => BindRequest::Auto,
            BindArg::Zerocopy => BindRequest::Zerocopy,
            BindArg::Copy => BindRequest::Copy,
        }
    }
}

/// A rate or a speed factor: a finite number above 0.
pub(crate) fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        Ok(_) => Err(format!("{s} is not above 0")),
        Err(_) => Err(format!("'{s}' is not a number")),
    }
}

/// Seconds (fractions allowed), above 0.
pub(crate) fn seconds(s: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(positive(s)?).map_err(|_| format!("{s} seconds is too long"))
}

/// The most orders a pool may be sized for up front: ten times the peak of
/// a busy NASDAQ day (the pool still grows past it if it must).
const MAX_ORDERS: u64 = 1 << 26;

/// `--max-orders`: 0..=[`MAX_ORDERS`].
pub(crate) fn max_orders() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(0..=MAX_ORDERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_that_cannot_be_durations_are_refused() {
        assert_eq!(positive("2.5"), Ok(2.5));
        assert!(positive("0").unwrap_err().contains("not above 0"));
        assert!(positive("-1").is_err());
        assert!(positive("nan").is_err());
        assert!(positive("inf").is_err());
        assert!(positive("fast").unwrap_err().contains("not a number"));
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(seconds("1e300").unwrap_err().contains("too long"));
    }
}
