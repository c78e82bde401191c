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

use std::net::Ipv4Addr;

use super::{
    Arrival, FeedChangeError, Payload, Polled, RxSource, RxTime, Source, SourceCounters,
    SourceError, Verdict, Wait,
};
use crate::stats::MAX_LINES;
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
        // The receive times are for the wire-to-handler latency; a kernel
        // that refuses them only costs that measurement.
        let _ = sys::receive_timestamps(&socket);
        Ok(Self { socket, feed })
    }
}

impl AsRawFd for FeedSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The feeds' sockets, line = position in the list (a feed removed at run
/// time leaves its line vacant for the next one added).
#[derive(Debug)]
pub struct UdpSource {
    sockets: Vec<Option<FeedSocket>>,
    fds: Vec<RawFd>,
    batch: Batch,
    counters: SourceCounters,
}

impl UdpSource {
    /// Receives on these sockets, one per feed line; room for
    /// [`MAX_LINES`] is made here, so that adding one later allocates
    /// nothing.
    pub fn new(sockets: Vec<FeedSocket>) -> Self {
        let mut source = Self {
            sockets: Vec::with_capacity(sockets.len().max(MAX_LINES)),
            fds: Vec::with_capacity(sockets.len().max(MAX_LINES)),
            batch: Batch::default(),
            counters: SourceCounters::default(),
        };
        source.sockets.extend(sockets.into_iter().map(Some));
        source.refresh_fds();
        source
    }

    /// The descriptors waited on, after a change (within their room).
    fn refresh_fds(&mut self) {
        self.fds.clear();
        self.fds
            .extend(self.sockets.iter().flatten().map(AsRawFd::as_raw_fd));
    }

    fn line_of(&self, group: Ipv4Addr, port: u16) -> Option<usize> {
        self.sockets.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| (s.feed.group, s.feed.port) == (group, port))
        })
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
            let Some(socket) = socket else { continue };
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
                    received_at: d.received_ns.map(|ns| RxTime {
                        ns,
                        source: RxSource::KernelSocket,
                    }),
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

    /// Takes `socket` (the feed's, joined by the asker) on a vacant line or
    /// a new one.
    fn add_feed(
        &mut self,
        feed: Feed,
        socket: &mut Option<FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        if let Some(line) = self.line_of(feed.group, feed.port) {
            return Err(FeedChangeError::AlreadySubscribed { line });
        }
        if socket.as_ref().is_none_or(|s| s.feed != feed) {
            return Err(FeedChangeError::Unsupported);
        }
        let line = match self.sockets.iter().position(Option::is_none) {
            Some(line) => line,
            None if self.sockets.len() < MAX_LINES => {
                self.sockets.push(None);
                self.sockets.len() - 1
            }
            None => return Err(FeedChangeError::Full),
        };
        self.sockets[line] = socket.take();
        self.refresh_fds();
        Ok(line)
    }

    /// Hands the feed's socket back in `socket`, to be closed (leaving the
    /// group) off the poller.
    fn remove_feed(
        &mut self,
        group: Ipv4Addr,
        port: u16,
        socket: &mut Option<FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        let line = self
            .line_of(group, port)
            .ok_or(FeedChangeError::NotSubscribed)?;
        *socket = self.sockets[line].take();
        self.refresh_fds();
        Ok(line)
    }
}
