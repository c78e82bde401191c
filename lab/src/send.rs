//! Putting captured frames on an interface, for labs, tests and benchmarks:
//! an AF_PACKET raw socket bound to the interface.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Index of an interface, or an error that says how to list them.
fn interface_index(iface: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(iface).map_err(|e| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {iface} does not exist here ({e}; see `ip link`)"),
        )
    })
}

/// A raw sender on one interface.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
}

impl FrameSender {
    /// Opens an AF_PACKET socket bound to `iface` (needs CAP_NET_RAW).
    pub fn open(iface: &str) -> io::Result<Self> {
        let ifindex = interface_index(iface)?;
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("raw socket on {iface}: {e} (sending needs root or CAP_NET_RAW)"),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll for the call, its size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Sends one frame; a full device queue is waited out briefly.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        for _ in 0..1000 {
            // SAFETY: `frame` is a live buffer of `frame.len()` bytes.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOBUFS) && e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the device queue stayed full",
        ))
    }
}
