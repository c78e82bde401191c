//! The client side of gap recovery: one UDP socket that sends MoldUDP64
//! requests to the re-request servers and receives their answers. The
//! sending half lives in the delivery sink (the session layer asks for
//! requests through it); the receiving half in the poller, which reads it in
//! batches only while a request is out.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use ticklane_protocols::moldudp64::Request;

use crate::sys::{self, Batch};

/// Sends requests.
#[derive(Debug)]
pub struct Requester {
    socket: UdpSocket,
    servers: Vec<SocketAddr>,
    failed_sends: u64,
}

/// Receives answers.
#[derive(Debug)]
pub struct Answers {
    socket: UdpSocket,
    batch: Batch,
}

/// Opens the socket for `servers` (none: no recovery, `None`): non-blocking,
/// with a receive buffer deep enough for a server's burst of answers.
pub fn open(servers: &[SocketAddr]) -> io::Result<Option<(Requester, Answers)>> {
    if servers.is_empty() {
        return Ok(None);
    }
    let socket = UdpSocket::bind(("0.0.0.0", 0))?;
    socket.set_nonblocking(true)?;
    sys::set_receive_buffer(&socket, 16 << 20);
    let receiving = socket.try_clone()?;
    Ok(Some((
        Requester {
            socket,
            servers: servers.to_vec(),
            failed_sends: 0,
        },
        Answers {
            socket: receiving,
            batch: Batch::default(),
        },
    )))
}

impl Requester {
    /// Sends `request` to server number `server`. A failed send is counted
    /// and retried by the session's timer like a lost answer.
    pub fn send(&mut self, server: usize, request: &Request) {
        let Some(addr) = self.servers.get(server) else {
            return;
        };
        if self.socket.send_to(&request.encode(), addr).is_err() {
            self.failed_sends += 1;
        }
    }

    /// Sends that failed.
    pub fn failed_sends(&self) -> u64 {
        self.failed_sends
    }
}

impl Answers {
    /// Receives one batch of answers without blocking and lends each to `f`.
    /// Returns how many arrived.
    pub fn receive(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        let n = sys::receive_batch(&self.socket, &mut self.batch)?;
        for datagram in self.batch.iter() {
            f(datagram.payload);
        }
        Ok(n)
    }

    /// The socket's descriptor, to wait on.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }
}
