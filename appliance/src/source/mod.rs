//! Where packets come from. Every source hands the [`crate::poller`] the
//! same thing, a MoldUDP64 payload with the feed line it arrived on (or, for
//! a BinaryFILE, a bare numbered message), in place, with no copy:
//!
//! - [`xdp::XdpSource`]: the XDP program steers the subscribed feeds of one
//!   NIC queue into an AF_XDP socket; frames are parsed where they lie in
//!   the UMEM ([`steering`], [`xsk`]);
//! - [`udp::UdpSource`]: kernel UDP sockets joined to the groups, read with
//!   `recvmmsg` (the fallback where XDP is not possible);
//! - [`capture::CaptureSource`]: a pcap, pcapng or BinaryFILE capture, as
//!   fast as possible or paced by its timestamps.

pub mod capture;
pub mod memory;
pub mod steering;
pub mod udp;
pub mod xdp;
pub mod xsk;

use ticklane_capture::feed::Problem;

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
    /// The AF_XDP socket's kernel counters, on the XDP path.
    pub xsk: Option<xsk::XskStats>,
    /// The XDP program's counters, on the XDP path.
    pub xdp: Option<steering::XdpCounters>,
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
}
