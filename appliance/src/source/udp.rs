//! The kernel UDP path: one socket per feed, bound to its group:port and
//! joined on the feed interface (IGMP, so that switches forward the group;
//! source-specific when the feed names its source), read in batches with
//! `recvmmsg`. Used where XDP is not possible; the XDP path joins the groups
//! through [`FeedSocket`] too, for the switches. The kernel verifies the
//! checksums and the VLAN here; the source is checked again on every
//! datagram, since a source-specific join filters what the network sends,
//! not every way a datagram can reach the socket.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use ticklane_capture::feed::Feed;

use super::{Arrival, Payload, Polled, Source, SourceCounters, SourceError, Verdict, Wait};
use crate::sys::{self, Batch};

/// A UDP socket bound to one feed (group:port) and joined to its group on
/// one interface (from the feed's source only, when it has one). Dropping
/// it leaves the group.
#[derive(Debug)]
pub struct FeedSocket {
    socket: UdpSocket,
    /// The feed.
    pub feed: Feed,
}

impl FeedSocket {
    /// Opens, binds and joins the feed on interface `ifindex`, with a
    /// receive buffer of `receive_buffer` bytes.
    pub fn join(feed: Feed, ifindex: u32, receive_buffer: usize) -> io::Result<Self> {
        let Feed {
            group,
            port,
            source,
        } = feed;
        let socket = sys::multicast_socket(group, port, ifindex, source).map_err(|e| {
            let from = source.map(|s| format!(" from {s}")).unwrap_or_default();
            io::Error::new(e.kind(), format!("joining {group}:{port}{from}: {e}"))
        })?;
        sys::set_receive_buffer(&socket, receive_buffer);
        Ok(Self { socket, feed })
    }
}

impl AsRawFd for FeedSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The feeds' sockets, line = position in the list.
#[derive(Debug)]
pub struct UdpSource {
    sockets: Vec<FeedSocket>,
    fds: Vec<RawFd>,
    batch: Batch,
    counters: SourceCounters,
}

impl UdpSource {
    /// Receives on these sockets, one per feed line.
    pub fn new(sockets: Vec<FeedSocket>) -> Self {
        Self {
            fds: sockets.iter().map(AsRawFd::as_raw_fd).collect(),
            sockets,
            batch: Batch::default(),
            counters: SourceCounters::default(),
        }
    }
}

impl Source for UdpSource {
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        wait: Wait,
        mut f: F,
    ) -> Result<Polled, SourceError> {
        let mut total = 0;
        for (line, socket) in self.sockets.iter().enumerate() {
            let n = sys::receive_batch(socket, &mut self.batch)?;
            total += n;
            for d in self.batch.iter() {
                if socket.feed.source.is_some_and(|s| s != d.source) {
                    self.counters.wrong_source += 1;
                    continue;
                }
                f(Arrival {
                    line,
                    payload: Payload::Packet(d.payload),
                    captured_at: None,
                });
            }
        }
        self.counters.received += total as u64;
        if total == 0
            && let Wait::Sleep(ms) = wait
        {
            sys::wait_readable(&self.fds, ms);
        }
        Ok(Polled::Arrivals(total))
    }

    fn counters(&self) -> SourceCounters {
        self.counters
    }
}
