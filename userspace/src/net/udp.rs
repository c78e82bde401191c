//! Kernel UDP sockets: multicast membership (IGMP joins on the feed
//! interface, for the switches) and the fallback receive path, batched with
//! `recvmmsg`, for hosts where XDP is not possible.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};

/// Index of an interface, or a clear error.
pub fn interface_index(iface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(iface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {iface} does not exist here (see `ip link`)"),
        ));
    }
    Ok(index)
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_int(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket, `value` a live c_int whose size is given.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// Asks for a receive buffer of `bytes`: past `net.core.rmem_max` with
/// SO_RCVBUFFORCE when allowed (root, CAP_NET_ADMIN), else as much as
/// SO_RCVBUF grants. Bursts (a re-request server's answer, a feed's
/// microburst) must not overflow a default-sized buffer.
pub fn set_receive_buffer(socket: &impl AsRawFd, bytes: usize) {
    let fd = socket.as_raw_fd();
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value).is_err() {
        let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value);
    }
}

/// The socket that talks to re-request servers, if there are any:
/// non-blocking, with room for a server's burst of answers.
pub fn retrans_socket(servers: &[std::net::SocketAddr]) -> io::Result<Option<UdpSocket>> {
    if servers.is_empty() {
        return Ok(None);
    }
    let s = UdpSocket::bind(("0.0.0.0", 0))?;
    s.set_nonblocking(true)?;
    set_receive_buffer(&s, 16 << 20);
    Ok(Some(s))
}

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
    /// Opens, binds to the group's address (so only that group's datagrams
    /// arrive) and joins the group on interface `ifindex`.
    pub fn join(
        group: Ipv4Addr,
        port: u16,
        ifindex: u32,
        receive_buffer: usize,
    ) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        check(fd)?;
        // SAFETY: `fd` is a fresh socket owned by nobody else; the UdpSocket
        // takes ownership and closes it on drop.
        let socket = unsafe { UdpSocket::from_raw_fd(fd) };
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        set_int(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            receive_buffer.min(i32::MAX as usize) as i32,
        )?;
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(group.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_in for the whole call, its size given.
        check(unsafe {
            libc::bind(
                fd,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })?;
        let mreq = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from_ne_bytes(group.octets()),
            },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as libc::c_int,
        };
        // SAFETY: `mreq` is a valid ip_mreqn for the whole call, its size given.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_ADD_MEMBERSHIP,
                (&raw const mreq).cast(),
                size_of::<libc::ip_mreqn>() as libc::socklen_t,
            )
        })?;
        Ok(Self {
            socket,
            group,
            port,
        })
    }

    /// Receives up to `bufs.len()` datagrams at once without blocking;
    /// `lens[i]` gets the length of datagram `i`. Returns how many arrived.
    pub fn receive_batch(&self, bufs: &mut [[u8; 2048]], lens: &mut [usize]) -> io::Result<usize> {
        const MAX: usize = 64;
        let n = bufs.len().min(lens.len()).min(MAX);
        // SAFETY: iovec is a plain C struct; all-zero bytes are a valid
        // value (null pointer, zero length).
        let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
        // SAFETY: mmsghdr is a plain C struct; all-zero bytes are a valid
        // value (null pointers, zero lengths and flags).
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            iov[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..n]` point at `iov[..n]`, which point at `bufs`,
        // all alive and exclusively borrowed for the call; the kernel writes
        // at most `iov_len` bytes into each buffer.
        let got = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let got = got as usize;
        for i in 0..got {
            lens[i] = msgs[i].msg_len as usize;
        }
        Ok(got)
    }
}

impl AsRawFd for FeedSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}
