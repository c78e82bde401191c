//! Where packets come from. Every source hands the [`crate::poller`] the
//! same thing, a MoldUDP64 payload with the feed line it arrived on (or, for
//! a BinaryFILE, a bare numbered message), in place, with no copy:
//!
//! - [`xdp::XdpSource`]: the XDP program steers the subscribed feeds of one
//!   NIC queue into an AF_XDP socket; frames are parsed where they lie in
//!   the UMEM ([`steering`], [`xsk`]) and checked as the kernel would have
//!   ([`admission`]: feed, source, checksums);
//! - [`udp::UdpSource`]: kernel UDP sockets joined to the groups, read with
//!   `recvmmsg` (the fallback where XDP is not possible);
//! - [`capture::CaptureSource`]: a pcap, pcapng or BinaryFILE capture, as
//!   fast as possible or paced by its timestamps.

pub mod admission;
pub mod capture;
pub mod memory;
pub mod steering;
pub mod udp;
pub mod xdp;
pub mod xsk;

use std::net::Ipv4Addr;

use ticklane_capture::feed::{Feed, Problem};
use ticklane_xdp::Counter;

/// What a source hands over.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// A UDP payload that should be a MoldUDP64 packet.
    Packet(&'a [u8]),
    /// A BinaryFILE message: no packet, numbered from 1 in the file.
    Message {
        /// Its number.
        seq: u64,
        /// Its bytes.
        bytes: &'a [u8],
    },
}

/// One arrival, lent to the poller for the duration of a call.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The feed line (index of the `--feed`), for A/B arbitration.
    pub line: usize,
    /// Its content.
    pub payload: Payload<'a>,
    /// When it was captured (nanoseconds since the epoch), for captures.
    pub captured_at: Option<u64>,
    /// When it was received, for live sources that know (the wire-to-handler
    /// latency is measured from it).
    pub received_at: Option<RxTime>,
}

/// Who took a frame's receive time, which says on which clock it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxSource {
    /// The XDP program, in software (`bpf_ktime_get_ns()` as it ran, before
    /// the frame was steered): CLOCK_MONOTONIC. The driver's own time (XDP
    /// RX metadata) needs a device-bound program, which aya 0.14 cannot load.
    XdpSoftware,
    /// The kernel, as the datagram reached the socket layer
    /// (`SO_TIMESTAMPNS`): CLOCK_REALTIME.
    KernelSocket,
}

/// The clocks receive times are taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxClock {
    /// CLOCK_MONOTONIC.
    Monotonic,
    /// CLOCK_REALTIME.
    Realtime,
}

impl RxSource {
    /// The clock its times are on.
    pub fn clock(self) -> RxClock {
        match self {
            Self::XdpSoftware => RxClock::Monotonic,
            Self::KernelSocket => RxClock::Realtime,
        }
    }

    /// Its name in status and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::XdpSoftware => "xdp_software",
            Self::KernelSocket => "kernel_so_timestampns",
        }
    }
}

/// When a frame was received: nanoseconds on the clock of `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxTime {
    /// Nanoseconds on `source.clock()`.
    pub ns: u64,
    /// Who took it.
    pub source: RxSource,
}

/// What the poller made of an arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken (delivered, held, or counted as a duplicate).
    Taken,
    /// Malformed and skipped; a source that knows where the arrival lay
    /// (a capture) reports it with its location.
    Rejected(Problem),
    /// The poller is stopping: a source in a long pass ends it now.
    Stop,
}

/// How a source may wait when nothing is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Never sleep: spin on the rings (lowest latency, one whole core).
    Spin,
    /// Sleep in the kernel up to this many milliseconds.
    Sleep(i32),
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// This many arrivals were handed over (0: nothing came while waiting).
    Arrivals(usize),
    /// The input is over (captures); live sources never end.
    End,
}

/// A source's own counters, read by the poller for its stats snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Frames or datagrams received.
    pub received: u64,
    /// Frames that were not one of the subscribed feeds (other traffic).
    pub foreign: u64,
    /// Frames cut short or malformed below MoldUDP64 (Ethernet, IPv4, UDP).
    pub malformed: u64,
    /// Frames of a feed refused for a wrong IPv4 header checksum.
    pub bad_ip_checksum: u64,
    /// Frames of a feed refused for a wrong UDP checksum.
    pub bad_udp_checksum: u64,
    /// Datagrams to a feed's group and port from another source than the
    /// feed's, refused here (the XDP program counts its own).
    pub wrong_source: u64,
    /// Frames of a feed taken without a UDP checksum (0: none computed,
    /// which RFC 768 allows over IPv4; not a rejection).
    pub udp_checksum_absent: u64,
    /// The AF_XDP socket's kernel counters, on the XDP path.
    pub xsk: Option<xsk::XskStats>,
    /// The XDP program's counters, on the XDP path.
    pub xdp: Option<steering::XdpCounters>,
}

impl SourceCounters {
    /// Every frame refused on its way to the feed handler, by why: the
    /// source's counts and the XDP program's together.
    pub fn rejected(&self) -> Rejected {
        let xdp = |c: Counter| self.xdp.map_or(0, |x| x.get(c));
        Rejected {
            ip_checksum: self.bad_ip_checksum,
            udp_checksum: self.bad_udp_checksum,
            vlan: xdp(Counter::Vlan),
            source: self.wrong_source + xdp(Counter::Source),
            malformed: self.malformed + xdp(Counter::Malformed),
            fragment: xdp(Counter::Fragment),
            not_subscribed: self.foreign,
        }
    }
}

/// Frames refused on the way to the feed handler, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejected {
    /// A feed's frames with a wrong IPv4 header checksum.
    pub ip_checksum: u64,
    /// A feed's frames with a wrong UDP checksum.
    pub udp_checksum: u64,
    /// A feed's group and port on another VLAN than the interface's (the
    /// XDP program passes them to the kernel).
    pub vlan: u64,
    /// A feed's group and port from another source than the feed's.
    pub source: u64,
    /// Frames cut short or inconsistent in a header (Ethernet, VLAN, IPv4, UDP).
    pub malformed: u64,
    /// IPv4 fragments (a feed's datagrams are never fragmented).
    pub fragment: u64,
    /// Frames that reached the source but are not one of its feeds.
    pub not_subscribed: u64,
}

impl Rejected {
    /// Each kind with its name in summaries.
    pub fn kinds(&self) -> [(&'static str, u64); 7] {
        [
            ("ip_checksum", self.ip_checksum),
            ("udp_checksum", self.udp_checksum),
            ("vlan", self.vlan),
            ("source", self.source),
            ("malformed", self.malformed),
            ("fragment", self.fragment),
            ("not_subscribed", self.not_subscribed),
        ]
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.kinds().iter().map(|(_, n)| n).sum()
    }
}

/// Why a source failed while running.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A socket or ring operation failed.
    #[error("receiving: {0}")]
    Io(#[from] std::io::Error),
    /// The capture could not be read.
    #[error(transparent)]
    Capture(#[from] ticklane_capture::CaptureError),
}

/// Why a feed could not be added to or removed from a running source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedChangeError {
    /// This source's feeds are fixed (captures), or a kernel UDP source
    /// was not handed the feed's socket.
    #[error("feeds cannot be changed on this source while it runs: restart with the feed given")]
    Unsupported,
    /// The group and port are a feed already.
    #[error("already subscribed, as feed line {line}")]
    AlreadySubscribed {
        /// Its line.
        line: usize,
    },
    /// The group and port are not a feed.
    #[error("not subscribed")]
    NotSubscribed,
    /// Every feed line is taken.
    #[error("all {MAX_LINES} feed lines are in use: unsubscribe one first", MAX_LINES = crate::stats::MAX_LINES)]
    Full,
}

/// A source of arrivals, driven by the poller.
pub trait Source {
    /// Hands every arrival that is there to `f` in place, waiting as `wait`
    /// allows when nothing is. A capture may hand over its whole content in
    /// one call (its pacing and the [`Verdict::Stop`] answer bound it).
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        wait: Wait,
        f: F,
    ) -> Result<Polled, SourceError>;

    /// Its counters. Reading them may take a syscall: the poller calls it
    /// on its housekeeping tick, not per packet.
    fn counters(&self) -> SourceCounters;

    /// Takes `feed`'s datagrams from now on, on the feed line returned;
    /// a source that receives through kernel sockets takes `socket` (opened
    /// and joined by the asker), others leave it. Called by the poller
    /// between polls, on a control-plane request: it must neither allocate
    /// nor make a syscall (nor close a socket).
    fn add_feed(
        &mut self,
        feed: Feed,
        socket: &mut Option<udp::FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        let _ = (feed, socket);
        Err(FeedChangeError::Unsupported)
    }

    /// Stops taking the datagrams of the feed to `group:port`; returns the
    /// line it had, and puts the feed's socket, if it had one, in `socket`
    /// for the asker to close. The same rules as [`Self::add_feed`].
    fn remove_feed(
        &mut self,
        group: Ipv4Addr,
        port: u16,
        socket: &mut Option<udp::FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        let _ = (group, port, socket);
        Err(FeedChangeError::Unsupported)
    }
}
