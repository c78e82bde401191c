//! The kernel UDP path: one socket per feed, bound to its group:port and
//! joined on the feed interface (IGMP, so that switches forward the group),
//! read in batches with `recvmmsg`. Used where XDP is not possible; the XDP
//! path joins the groups through [`FeedSocket`] too, for the switches.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use super::{Arrival, Payload, Polled, Source, SourceCounters, SourceError, Verdict, Wait};
use crate::sys::{self, Batch};

/// A UDP socket bound to one feed (group:port) and joined to its group on
/// one interface. Dropping it leaves the group.
#[derive(Debug)]
pub struct FeedSocket {
    socket: UdpSocket,
    /// The group.
    pub group: Ipv4Addr,
    /// The port.
    pub port: u16,
}

impl FeedSocket {
    /// Opens, binds and joins `group:port` on interface `ifindex`, with a
    /// receive buffer of `receive_buffer` bytes.
    pub fn join(
        group: Ipv4Addr,
        port: u16,
        ifindex: u32,
        receive_buffer: usize,
    ) -> io::Result<Self> {
        let socket = sys::multicast_socket(group, port, ifindex)
            .map_err(|e| io::Error::new(e.kind(), format!("joining {group}:{port}: {e}")))?;
        sys::set_receive_buffer(&socket, receive_buffer);
        Ok(Self {
            socket,
            group,
            port,
        })
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
    received: u64,
}

impl UdpSource {
    /// Receives on these sockets, one per feed line.
    pub fn new(sockets: Vec<FeedSocket>) -> Self {
        Self {
            fds: sockets.iter().map(AsRawFd::as_raw_fd).collect(),
            sockets,
            batch: Batch::default(),
            received: 0,
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
            for payload in self.batch.iter() {
                f(Arrival {
                    line,
                    payload: Payload::Packet(payload),
                    captured_at: None,
                });
            }
        }
        self.received += total as u64;
        if total == 0
            && let Wait::Sleep(ms) = wait
        {
            sys::wait_readable(&self.fds, ms);
        }
        Ok(Polled::Arrivals(total))
    }

    fn counters(&self) -> SourceCounters {
        SourceCounters {
            received: self.received,
            ..SourceCounters::default()
        }
    }
}
