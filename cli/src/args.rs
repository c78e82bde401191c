//! Command-line spellings of the libraries' choices (the libraries know
//! nothing of clap).

use std::time::Duration;

use clap::ValueEnum;
use clap::builder::RangedU64ValueParser;
use ticklane_appliance::session::SessionConfig;
use ticklane_appliance::source::steering::XdpModeRequest;
use ticklane_appliance::source::xdp::Vlan;
use ticklane_appliance::source::xsk::BindRequest;
use ticklane_capture::Format;
use ticklane_protocols::moldudp64::Session;

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

/// How sessions are sequenced and trusted (shared by `run`, `replay` and
/// `book`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SequencingArgs {
    /// Start at the first packet seen instead of backfilling from sequence
    /// 1 (a late join: the messages before it are not there to build books
    /// from; by default they count as lost).
    #[arg(long)]
    join_live: bool,
    /// The MoldUDP64 session expected (e.g. the day's name): taken at its
    /// first packet. Without it, a new session is taken once 3 of its
    /// packets (or one on each of two lines) arrived, so that a stray or
    /// forged packet of another session changes nothing; its first packets
    /// are kept aside meanwhile, not lost.
    #[arg(long, value_name = "NAME", value_parser = parse_session)]
    session: Option<Session>,
    /// Furthest a packet may claim to be beyond the last known sequence
    /// number and still be trusted on its own; further, it waits for a
    /// second packet to confirm the jump (a single forged packet numbered
    /// 2^63 then moves nothing).
    #[arg(long, default_value_t = 1_000_000, value_name = "MESSAGES")]
    max_jump: u64,
    /// How much of the feed the reorder window holds while a hole is being
    /// filled, in milliseconds at `--peak-pps`: packets past a full window
    /// are dropped and have to be asked for again (`window_overflow`).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    reorder_window_ms: u64,
    /// The feed's peak rate in packets per second, which sizes the reorder
    /// window (about 2 KiB of memory per packet, touched only when used).
    #[arg(long, default_value_t = 100_000, value_name = "PPS")]
    peak_pps: u64,
    /// With re-request servers: how long a hole may wait for a reordered
    /// packet before it is asked for. It is asked for at once when the
    /// feed moves past it (then it was no adjacent swap); 0 asks at once.
    #[arg(long, default_value_t = 500, value_name = "MICROSECONDS")]
    request_delay_us: u64,
}

/// Most packets a reorder window may hold (2 GiB of memory per session).
const MAX_WINDOW_PACKETS: usize = 1 << 20;

impl SequencingArgs {
    /// The session layer's configuration these options make, or why the
    /// window they ask for is too large.
    pub(crate) fn config(&self) -> anyhow::Result<SessionConfig> {
        let window_packets = SessionConfig::window_for(
            self.reorder_window_ms.saturating_mul(1_000_000),
            self.peak_pps,
        );
        anyhow::ensure!(
            window_packets <= MAX_WINDOW_PACKETS,
            "a reorder window of {} ms at {} packets/s holds {window_packets} packets, more than \
             the {MAX_WINDOW_PACKETS} (2 GiB per session) allowed: lower --reorder-window-ms or --peak-pps",
            self.reorder_window_ms,
            self.peak_pps
        );
        Ok(SessionConfig {
            backfill_from: if self.join_live { None } else { Some(1) },
            session: self.session,
            max_jump: self.max_jump,
            window_packets,
            request_delay_ns: self.request_delay_us.saturating_mul(1_000),
            ..SessionConfig::default()
        })
    }
}

fn parse_session(name: &str) -> Result<Session, String> {
    if name.is_empty() || !name.is_ascii() {
        return Err("a session name is 1 to 10 ASCII characters".into());
    }
    Session::from_name(name.as_bytes())
        .ok_or_else(|| format!("\"{name}\" is longer than a session name (10 characters)"))
}

/// A `--vlan`: `ID` (one 802.1Q tag) or `OUTER.INNER` (QinQ), IDs 1 to 4094.
pub(crate) fn vlan(s: &str) -> Result<Vlan, String> {
    let id = |t: &str| match t.parse::<u16>() {
        Ok(id @ 1..=4094) => Ok(id),
        _ => Err(format!("'{t}' is not a VLAN ID (1 to 4094)")),
    };
    match s.split_once('.') {
        None => Ok(Vlan::Tagged(id(s)?)),
        Some((outer, inner)) => Ok(Vlan::QinQ(id(outer)?, id(inner)?)),
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
    fn vlan_spellings() {
        assert_eq!(vlan("100"), Ok(Vlan::Tagged(100)));
        assert_eq!(vlan("100.200"), Ok(Vlan::QinQ(100, 200)));
        for bad in ["0", "4095", "x", "100.", "1.2.3"] {
            assert!(vlan(bad).unwrap_err().contains("not a VLAN ID"), "{bad}");
        }
    }

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
