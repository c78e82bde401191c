//! The raw Linux calls of the appliance that no safe crate offers in the
//! form the hot path needs, each `unsafe` block with its proof: socket
//! options, multicast membership, batched receive (`recvmmsg`), waiting on
//! several descriptors (`poll`) and pinning a thread to a core. Everything
//! else talks to the kernel through `std`, `aya` or `xsk-rs`.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// Largest batch [`receive_batch`] takes in one call.
pub const MAX_BATCH: usize = 64;

/// Largest datagram a batch buffer holds (MoldUDP64 packets fit an
/// Ethernet MTU; a longer datagram is cut and then fails its checks).
pub const DATAGRAM: usize = 2048;

/// Index of an interface, or an error that says how to list them.
pub fn interface_index(iface: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(iface).map_err(|e| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {iface} does not exist here ({e}; see `ip link`)"),
        )
    })
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Sets a socket option whose value is the plain C struct or integer `T`.
fn set_option<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` whose size is passed; setsockopt reads
    // only those bytes, and a bad descriptor or option is an error, not UB.
    // The callers pass the C type the option is documented to take.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets an integer socket option.
pub fn set_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_option(fd, level, opt, &value)
}

/// Asks for a receive buffer of `bytes`: past `net.core.rmem_max` with
/// SO_RCVBUFFORCE when allowed (root, CAP_NET_ADMIN), else as much as
/// SO_RCVBUF grants. Bursts (a re-request server's answer, a feed's
/// microburst) must not overflow a default-sized buffer.
pub fn set_receive_buffer(socket: &impl AsRawFd, bytes: usize) {
    let fd = socket.as_raw_fd();
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value).is_err() {
        // Best effort: the default buffer still works, only smaller.
        let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value);
    }
}

fn in_addr(addr: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(addr.octets()),
    }
}

/// `addr` as the `sockaddr_storage` the RFC 3678 requests take.
fn storage(addr: Ipv4Addr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a plain C struct; all-zero bytes are a
    // valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: in_addr(addr),
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_storage is made to be at least as large and as
    // aligned as every socket address, sockaddr_in included, so a
    // sockaddr_in written at its start lies inside it, aligned.
    unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
    storage
}

/// A non-blocking UDP socket bound to `group:port` (so only that group's
/// datagrams arrive) and joined to the group on interface `ifindex`: from
/// `source` only when given (IGMPv3 source-specific membership, so that
/// switches forward only that sender's traffic), else from any source.
/// It receives only what it joined itself (IP_MULTICAST_ALL off), not the
/// groups other sockets of the host joined. Dropping the socket leaves the
/// group.
pub fn multicast_socket(
    group: Ipv4Addr,
    port: u16,
    ifindex: u32,
    source: Option<Ipv4Addr>,
) -> io::Result<UdpSocket> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` is a fresh socket owned by nobody else; the UdpSocket
    // takes ownership and closes it on drop (also on the error paths below).
    let socket = unsafe { UdpSocket::from_raw_fd(fd) };
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 0)?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: in_addr(group),
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
    match source {
        Some(source) => {
            let req = libc::group_source_req {
                gsr_interface: ifindex,
                gsr_group: storage(group),
                gsr_source: storage(source),
            };
            set_option(fd, libc::IPPROTO_IP, libc::MCAST_JOIN_SOURCE_GROUP, &req)?;
        }
        None => {
            let mreq = libc::ip_mreqn {
                imr_multiaddr: in_addr(group),
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as libc::c_int,
            };
            set_option(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
        }
    }
    Ok(socket)
}

/// Buffers for one batch of datagrams, allocated once.
#[derive(Debug)]
pub struct Batch {
    bufs: Box<[[u8; DATAGRAM]; MAX_BATCH]>,
    lens: [usize; MAX_BATCH],
    sources: [Ipv4Addr; MAX_BATCH],
    /// Receive times (`SO_TIMESTAMPNS`, CLOCK_REALTIME ns; 0: none).
    stamps: [u64; MAX_BATCH],
    len: usize,
}

/// Room for one control message of a `struct timespec` (CMSG_SPACE(16) on
/// 64-bit Linux is 32 bytes), as u64s for the alignment `cmsghdr` needs.
const CONTROL_WORDS: usize = 8;

impl Default for Batch {
    fn default() -> Self {
        Self {
            bufs: Box::new([[0; DATAGRAM]; MAX_BATCH]),
            lens: [0; MAX_BATCH],
            sources: [Ipv4Addr::UNSPECIFIED; MAX_BATCH],
            stamps: [0; MAX_BATCH],
            len: 0,
        }
    }
}

/// One datagram of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The address it came from.
    pub source: Ipv4Addr,
    /// Its payload.
    pub payload: &'a [u8],
    /// When the kernel received it (CLOCK_REALTIME ns), on a socket with
    /// [`receive_timestamps`] on.
    pub received_ns: Option<u64>,
}

impl Batch {
    /// The datagrams of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        self.bufs[..self.len]
            .iter()
            .zip(&self.lens)
            .zip(&self.sources)
            .zip(&self.stamps)
            .map(|(((b, n), source), stamp)| Datagram {
                source: *source,
                payload: &b[..(*n).min(DATAGRAM)],
                received_ns: (*stamp != 0).then_some(*stamp),
            })
    }
}

/// Receives up to [`MAX_BATCH`] datagrams from `socket` in one `recvmmsg`
/// without blocking, with the addresses they came from. Returns how many
/// arrived (0 when none was waiting).
pub fn receive_batch(socket: &impl AsRawFd, batch: &mut Batch) -> io::Result<usize> {
    batch.len = 0;
    // SAFETY: iovec is a plain C struct; all-zero bytes are a valid value
    // (null pointer, zero length).
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: mmsghdr is a plain C struct; all-zero bytes are a valid value
    // (null pointers, zero lengths and flags).
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: sockaddr_in is a plain C struct; all-zero bytes are a valid value.
    let mut names: [libc::sockaddr_in; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut controls = [[0u64; CONTROL_WORDS]; MAX_BATCH];
    for ((((v, m), buf), name), control) in iov
        .iter_mut()
        .zip(msgs.iter_mut())
        .zip(batch.bufs.iter_mut())
        .zip(names.iter_mut())
        .zip(controls.iter_mut())
    {
        *v = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = std::ptr::from_mut(name).cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_control = control.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>();
    }
    // SAFETY: `msgs` point at `iov` and `names`, `iov` at `batch.bufs`, all
    // alive and exclusively borrowed for the call; the kernel writes at most
    // `iov_len` bytes into each buffer and `msg_namelen` bytes into each
    // name, and fills at most MAX_BATCH entries.
    let got = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            MAX_BATCH as libc::c_uint,
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
    let got = (got as usize).min(MAX_BATCH);
    for ((((len, source), stamp), m), name) in batch
        .lens
        .iter_mut()
        .zip(batch.sources.iter_mut())
        .zip(batch.stamps.iter_mut())
        .zip(&msgs[..got])
        .zip(&names)
    {
        *len = m.msg_len as usize;
        *source = Ipv4Addr::from(name.sin_addr.s_addr.to_ne_bytes());
        *stamp = timestamp_of(&m.msg_hdr);
    }
    batch.len = got;
    Ok(got)
}

/// The `SCM_TIMESTAMPNS` receive time in a received message's control
/// data, in nanoseconds (0: none).
fn timestamp_of(hdr: &libc::msghdr) -> u64 {
    // SAFETY: `hdr` is a msghdr the kernel filled in `receive_batch`: its
    // control pointer and the length the kernel set describe control data
    // inside that call's live `controls` buffer, which the CMSG macros walk
    // without leaving it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !cmsg.is_null() {
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return a header wholly inside
        // the control data, or null.
        let c = unsafe { &*cmsg };
        if c.cmsg_level == libc::SOL_SOCKET
            && c.cmsg_type == libc::SCM_TIMESTAMPNS
            && c.cmsg_len as usize >= size_of::<libc::cmsghdr>() + size_of::<libc::timespec>()
        {
            // SAFETY: the length checked above covers a timespec after the
            // header; CMSG_DATA points there; it may be unaligned.
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            return (ts.tv_sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ts.tv_nsec as u64);
        }
        // SAFETY: as for CMSG_FIRSTHDR, with `cmsg` a header of `hdr`.
        cmsg = unsafe { libc::CMSG_NXTHDR(hdr, cmsg) };
    }
    0
}

/// Asks the kernel for the receive time of every datagram of `socket`
/// (`SO_TIMESTAMPNS`, read by [`receive_batch`]).
pub fn receive_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    set_int(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        1,
    )
}

/// Now on `clock`, in nanoseconds (through the vDSO: no system call where
/// the clock source allows, as on TSC and kvm-clock machines).
pub fn clock_ns(clock: crate::source::RxClock) -> u64 {
    let id = match clock {
        crate::source::RxClock::Monotonic => libc::CLOCK_MONOTONIC,
        crate::source::RxClock::Realtime => libc::CLOCK_REALTIME,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one timespec into the live struct
    // it is given; the clock IDs are valid on every Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Sleeps until one of `fds` is readable or `timeout_ms` passes (at most 16
/// descriptors are watched). Interrupted sleeps return early, which is fine:
/// the caller polls again.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) {
    let mut set = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 16];
    let n = fds.len().min(set.len());
    for (p, fd) in set.iter_mut().zip(fds) {
        *p = libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        };
    }
    // SAFETY: `set[..n]` are initialised pollfd entries alive for the call.
    unsafe {
        libc::poll(set.as_mut_ptr(), n as libc::nfds_t, timeout_ms);
    }
}

/// Pins the calling thread to `core`.
pub fn pin_to_core(core: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(core).map_err(io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Whether this kernel offers AF_XDP sockets: opens one and closes it.
pub fn af_xdp_available() -> io::Result<()> {
    // SAFETY: plain socket(2) call; a valid descriptor is owned and closed
    // at once by the OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// The soft RLIMIT_MEMLOCK of this process in bytes, `None` when unlimited.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit into the live struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur))
}
