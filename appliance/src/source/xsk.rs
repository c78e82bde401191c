//! AF_XDP receive sockets (xsk-rs over libxdp): the UMEM, its rings, and the
//! receive loop that lends each frame, in place, to a closure. All of the
//! raw, unsafe AF_XDP work of ticklane lives in this module.
//!
//! Frame ownership is simple: the UMEM has exactly as many frames as the
//! fill ring has slots. Every frame starts in the fill ring; a received frame
//! is owned by this module from `consume` until the closure has returned,
//! then goes straight back to the fill ring, in batches.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use ticklane_xdp::{RX_MAGIC, RX_META_LEN, RX_XDP_SOFTWARE};

/// How to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRequest {
    /// Zero-copy if the driver offers it, else copy.
    Auto,
    /// Zero-copy or fail.
    Zerocopy,
    /// Copy mode.
    Copy,
}

/// Ring and UMEM sizes (powers of two).
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    /// Receive queue (NIC queue) to bind to.
    pub queue: u32,
    /// Socket rx ring slots.
    pub rx_size: u32,
    /// Fill ring slots, and UMEM frames. Keep it ≥ NIC rx ring + socket rx ring.
    pub fill_size: u32,
    /// Bytes per UMEM frame.
    pub frame_size: u32,
    /// Frames handled per batch.
    pub batch: usize,
    /// How to bind.
    pub bind: BindRequest,
    /// Try a huge-page UMEM first.
    pub huge_pages: bool,
    /// Busy polling: (microseconds, budget); None leaves it off.
    pub busy_poll: Option<(u32, u32)>,
}

impl XskConfig {
    /// Queue 0, rings of 16k (rx) and 32k (fill, and as many 2 KiB frames):
    /// at 300 kpps on a 2-core machine whose poller shares a core, 4k rings
    /// overflowed during scheduling stalls and 16k rings did not (10 runs
    /// in a row, `tests/live.rs`).
    pub const DEFAULT: Self = Self {
        queue: 0,
        rx_size: 16_384,
        fill_size: 32_768,
        frame_size: 2048,
        batch: 64,
        bind: BindRequest::Auto,
        huge_pages: true,
        busy_poll: None,
    };
}

impl Default for XskConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why an AF_XDP socket could not be opened or driven.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A ring or frame size is not a power of two in range.
    #[error("AF_XDP configuration: {what} {size} is not a power of two in the allowed range")]
    Size {
        /// Which size.
        what: &'static str,
        /// The value given.
        size: u32,
    },
    /// The interface name is not one the kernel accepts.
    #[error("AF_XDP: {0:?} is not a valid interface name")]
    InterfaceName(String),
    /// The UMEM could not be created.
    #[error(
        "AF_XDP UMEM of {frames} frames (a large UMEM needs CAP_IPC_LOCK or a higher `ulimit -l`)"
    )]
    Umem {
        /// Frames asked for.
        frames: u32,
        /// What xsk-rs said, with the OS error beneath it.
        #[source]
        source: xsk_rs::umem::UmemCreateError,
    },
    /// The socket could not be created or bound.
    #[error("AF_XDP socket on {iface} queue {queue} ({mode} bind)")]
    Socket {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// Bind mode tried.
        mode: &'static str,
        /// What xsk-rs said, with the OS error beneath it.
        #[source]
        source: xsk_rs::socket::SocketCreateError,
    },
    /// The kernel handed back no fill and completion rings.
    #[error(
        "AF_XDP socket on {iface} queue {queue}: no fill and completion rings were handed back"
    )]
    NoFillRing {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
    },
    /// A busy-poll socket option was refused.
    #[error("AF_XDP busy-poll option {option} refused (needs CAP_NET_ADMIN and kernel 5.11+)")]
    BusyPoll {
        /// The option's name.
        option: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the socket's statistics failed.
    #[error("AF_XDP statistics (XDP_STATISTICS) could not be read")]
    Statistics(#[source] std::io::Error),
}

impl XskError {
    /// The OS error beneath, if there is one (to tell a missing privilege
    /// from other failures without reading text).
    pub fn os_error(&self) -> Option<&std::io::Error> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                return Some(io);
            }
            cause = c.source();
        }
        None
    }
}

/// Kernel counters of the socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    /// Dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub rx_fill_ring_empty: u64,
    /// Invalid rx descriptors.
    pub rx_invalid_descs: u64,
}

/// Reads the XDP program's `struct tl_rx_meta` at `meta` (the receive time,
/// if the program wrote it on the clock this module knows), and clears its
/// magic, so that a frame whose next packet gets no metadata is not taken
/// for stamped with this one's time.
///
/// # Safety
///
/// `meta` points at [`RX_META_LEN`] bytes of a UMEM frame this module owns
/// (received, not yet back in the fill ring), valid for reads and writes.
#[inline]
unsafe fn take_rx_meta(meta: *mut u8) -> Option<u64> {
    let mut bytes = [0u8; RX_META_LEN];
    // SAFETY: the caller guarantees RX_META_LEN readable bytes at `meta`;
    // `bytes` is a distinct local of that size.
    unsafe { std::ptr::copy_nonoverlapping(meta, bytes.as_mut_ptr(), RX_META_LEN) };
    let word =
        |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(12) != RX_MAGIC {
        return None;
    }
    // SAFETY: the magic is the last 4 of the RX_META_LEN bytes the caller
    // guarantees writable.
    unsafe { std::ptr::write_bytes(meta.add(12), 0, 4) };
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&bytes[..8]);
    (word(8) == RX_XDP_SOFTWARE).then_some(u64::from_ne_bytes(ns))
}

/// An AF_XDP socket receiving on one queue.
pub struct XskReceiver {
    umem: Umem,
    rx: RxQueue,
    fill: FillQueue,
    _tx: TxQueue,
    _comp: CompQueue,
    batch: Vec<FrameDesc>,
    /// All frames, handed to the fill ring by [`XskReceiver::prime`].
    initial: Vec<FrameDesc>,
    zero_copy: bool,
    huge_pages: bool,
    /// Bytes per UMEM frame (where a frame's own headroom ends).
    frame_size: usize,
}

impl std::fmt::Debug for XskReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskReceiver")
            .field("zero_copy", &self.zero_copy)
            .field("huge_pages", &self.huge_pages)
            .finish_non_exhaustive()
    }
}

fn queue_size(what: &'static str, size: u32) -> Result<QueueSize, XskError> {
    QueueSize::new(size).map_err(|_| XskError::Size { what, size })
}

/// Ring sizes of one socket and its UMEM.
struct Rings {
    fill: u32,
    comp: u32,
    rx: u32,
    tx: u32,
}

/// A UMEM of `frames` frames of `frame_size` bytes, on huge pages when asked
/// and available: the UMEM, its frame descriptors, and whether huge pages
/// were had.
fn umem(
    frame_size: u32,
    frames: u32,
    rings: &Rings,
    huge_pages: bool,
) -> Result<(Umem, Vec<FrameDesc>, bool), XskError> {
    let size_err = || XskError::Size {
        what: "frame size",
        size: frame_size,
    };
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(frame_size).map_err(|_| size_err())?)
        .fill_queue_size(queue_size("fill ring", rings.fill)?)
        .comp_queue_size(queue_size("completion ring", rings.comp)?)
        .build()
        .map_err(|_| size_err())?;
    let count = NonZeroU32::new(frames).ok_or(XskError::Size {
        what: "frame count",
        size: 0,
    })?;
    let umem_err = |source| XskError::Umem { frames, source };
    if huge_pages && let Ok((u, d)) = Umem::new(umem_cfg, count, true) {
        return Ok((u, d, true));
    }
    let (u, d) = Umem::new(umem_cfg, count, false).map_err(umem_err)?;
    Ok((u, d, false))
}

/// The rings of a bound socket.
struct Bound {
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    zero_copy: bool,
}

/// Binds a socket on `iface`/`queue` to `umem` (zero-copy, copy, or
/// zero-copy then copy).
fn bind(
    iface: &str,
    queue: u32,
    request: BindRequest,
    umem: &Umem,
    rings: &Rings,
) -> Result<Bound, XskError> {
    let name: Interface = iface
        .parse()
        .map_err(|_| XskError::InterfaceName(iface.to_owned()))?;
    let attempt = |bind: BindFlags, mode: &'static str| {
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(queue_size("rx ring", rings.rx)?)
            .tx_queue_size(queue_size("tx ring", rings.tx)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind | BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        // SAFETY: each UMEM of this module is bound by exactly one socket
        // (this call), so the shared-UMEM double-free condition of
        // `Socket::new` cannot arise; libxdp's own program is inhibited.
        unsafe { Socket::new(sock_cfg, umem, &name, queue) }.map_err(|source| XskError::Socket {
            iface: iface.to_owned(),
            queue,
            mode,
            source,
        })
    };
    let ((tx, rx, fq_cq), zero_copy) = match request {
        BindRequest::Zerocopy => (attempt(BindFlags::XDP_ZEROCOPY, "zero-copy")?, true),
        BindRequest::Copy => (attempt(BindFlags::XDP_COPY, "copy")?, false),
        BindRequest::Auto => match attempt(BindFlags::XDP_ZEROCOPY, "zero-copy") {
            Ok(s) => (s, true),
            Err(_) => (attempt(BindFlags::XDP_COPY, "copy")?, false),
        },
    };
    let (fill, comp) = fq_cq.ok_or_else(|| XskError::NoFillRing {
        iface: iface.to_owned(),
        queue,
    })?;
    Ok(Bound {
        tx,
        rx,
        fill,
        comp,
        zero_copy,
    })
}

impl XskReceiver {
    /// Creates the UMEM and binds a socket to `iface`/`cfg.queue`. Our own
    /// XDP program is the one attached (libxdp's is inhibited).
    pub fn open(iface: &str, cfg: &XskConfig) -> Result<Self, XskError> {
        let rings = Rings {
            fill: cfg.fill_size,
            comp: 64,
            rx: cfg.rx_size,
            tx: 64,
        };
        let (umem, initial, huge_pages) =
            umem(cfg.frame_size, cfg.fill_size, &rings, cfg.huge_pages)?;
        let Bound {
            tx,
            rx,
            fill,
            comp,
            zero_copy,
        } = bind(iface, cfg.queue, cfg.bind, &umem, &rings)?;
        let mut me = Self {
            umem,
            rx,
            fill,
            _tx: tx,
            _comp: comp,
            batch: vec![FrameDesc::default(); cfg.batch.max(1)],
            initial,
            zero_copy,
            huge_pages,
            frame_size: cfg.frame_size as usize,
        };
        if let Some((usecs, budget)) = cfg.busy_poll {
            me.busy_poll(usecs, budget)?;
        }
        Ok(me)
    }

    /// True when bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// True when the UMEM is on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    fn busy_poll(&mut self, usecs: u32, budget: u32) -> Result<(), XskError> {
        let fd = self.as_raw_fd();
        for (option, opt, value) in [
            ("SO_PREFER_BUSY_POLL", libc::SO_PREFER_BUSY_POLL, 1),
            (
                "SO_BUSY_POLL",
                libc::SO_BUSY_POLL,
                usecs.min(i32::MAX as u32) as i32,
            ),
            (
                "SO_BUSY_POLL_BUDGET",
                libc::SO_BUSY_POLL_BUDGET,
                budget.min(i32::MAX as u32) as i32,
            ),
        ] {
            crate::sys::set_int(fd, libc::SOL_SOCKET, opt, value)
                .map_err(|source| XskError::BusyPoll { option, source })?;
        }
        Ok(())
    }

    /// Hands every frame to the fill ring. Call before the socket goes into
    /// the XSKMAP, or the first packets find no frame and are lost.
    pub fn prime(&mut self) -> usize {
        let frames = std::mem::take(&mut self.initial);
        // SAFETY: the descriptors are this UMEM's own, fresh from
        // `Umem::new`, and in no ring yet; the fill ring has exactly as many
        // slots as there are frames.
        unsafe { self.fill.produce(&frames) }
    }

    /// Receives one batch, waiting up to `timeout_ms` (0: do not wait),
    /// lends each frame to `f` in place, with the receive time the XDP
    /// program wrote in front of it (`bpf_ktime_get_ns()`, CLOCK_MONOTONIC)
    /// if it did, then returns the frames to the fill ring. Returns how many
    /// frames were received.
    #[inline]
    pub fn receive(
        &mut self,
        timeout_ms: i32,
        mut f: impl FnMut(&[u8], Option<u64>),
    ) -> io::Result<usize> {
        // Take what is there without a syscall; sleep in poll() only when
        // the ring is empty.
        // SAFETY: `batch` only holds descriptors of this UMEM; `consume`
        // overwrites its first n entries with frames the kernel hands over.
        let mut n = unsafe { self.rx.consume(&mut self.batch) };
        if n == 0 && timeout_ms > 0 {
            // SAFETY: as above.
            n = unsafe { self.rx.poll_and_consume(&mut self.batch, timeout_ms)? };
        }
        let frame_size = self.frame_size;
        for desc in &mut self.batch[..n] {
            // The metadata lies in the frame's own headroom, just before the
            // packet: only where the packet starts far enough into its frame.
            let room = desc.addr() % frame_size >= RX_META_LEN;
            // SAFETY: `desc` came from this UMEM's rx ring just now, so its
            // address and length lie inside the UMEM mapping owned by `self`,
            // and the kernel does not touch the frame until we give it back
            // below; nothing else reads or writes it meanwhile.
            let mut data = unsafe { self.umem.data_mut(desc) };
            let received = if room {
                // SAFETY: the RX_META_LEN bytes before the packet are in the
                // same UMEM frame (its offset in the frame is at least
                // RX_META_LEN, and frames are `frame_size` apart from the
                // start of the one mapping), which this module owns until
                // the frame goes back to the fill ring; the pointer is
                // derived from the exclusive view of that frame's packet.
                unsafe { take_rx_meta(data.contents_mut().as_mut_ptr().sub(RX_META_LEN)) }
            } else {
                None
            };
            f(data.contents(), received);
        }
        if n > 0 {
            // SAFETY: these frames were consumed above, are no longer read,
            // and belong to this UMEM: back to the fill ring they came from.
            // The fill ring always has room: it has a slot for every frame,
            // and these n frames are out of it.
            let back = unsafe { self.fill.produce(&self.batch[..n]) };
            debug_assert_eq!(back, n);
            if self.fill.needs_wakeup() {
                self.fill.wakeup(self.rx.fd_mut(), 0)?;
            }
        } else if timeout_ms == 0 && self.fill.needs_wakeup() {
            self.fill.wakeup(self.rx.fd_mut(), 0)?;
        }
        Ok(n)
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> Result<XskStats, XskError> {
        let s = self
            .rx
            .fd()
            .xdp_statistics()
            .map_err(XskError::Statistics)?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
            rx_invalid_descs: s.rx_invalid_descs(),
        })
    }
}

impl AsRawFd for XskReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }
}

/// An AF_XDP socket sending frames on one queue: every frame is copied
/// once, into a UMEM frame, and handed to the kernel in batches (one
/// wake-up per batch where the driver needs it). Frames return through the
/// completion ring and are reused.
pub struct XskSender {
    umem: Umem,
    tx: TxQueue,
    comp: CompQueue,
    _rx: RxQueue,
    _fill: FillQueue,
    /// Frames not with the kernel.
    free: Vec<FrameDesc>,
    /// Frames written, not yet handed over.
    staged: Vec<FrameDesc>,
    /// Scratch for completions.
    done: Vec<FrameDesc>,
    /// Frames with the kernel.
    in_flight: usize,
    zero_copy: bool,
}

impl std::fmt::Debug for XskSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSender")
            .field("zero_copy", &self.zero_copy)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// Frames of a sender's UMEM (and slots of its rings).
const TX_FRAMES: u32 = 4096;

/// Frames handed to the kernel at once.
pub const TX_BATCH: usize = 64;

impl XskSender {
    /// Creates a UMEM of 4096 frames and binds a socket to `iface`/`queue`
    /// for sending.
    pub fn open(iface: &str, queue: u32, bind_request: BindRequest) -> Result<Self, XskError> {
        let rings = Rings {
            fill: 64,
            comp: TX_FRAMES,
            rx: 64,
            tx: TX_FRAMES,
        };
        let (umem, free, _) = umem(2048, TX_FRAMES, &rings, false)?;
        let Bound {
            tx,
            rx,
            fill,
            comp,
            zero_copy,
        } = bind(iface, queue, bind_request, &umem, &rings)?;
        Ok(Self {
            umem,
            tx,
            comp,
            _rx: rx,
            _fill: fill,
            free,
            staged: Vec::with_capacity(TX_BATCH),
            done: vec![FrameDesc::default(); TX_FRAMES as usize],
            in_flight: 0,
            zero_copy,
        })
    }

    /// True when bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Takes back the frames the kernel has sent.
    fn reap(&mut self) {
        // SAFETY: `done` is scratch; `consume` overwrites its first n
        // entries with descriptors of this UMEM the kernel has finished with.
        let n = unsafe { self.comp.consume(&mut self.done) };
        self.free.extend_from_slice(&self.done[..n]);
        self.in_flight -= n;
    }

    /// Copies `frame` into a UMEM frame and stages it; a full batch is
    /// handed over at once. Waits (bounded) for a free frame when all are
    /// with the kernel. A frame larger than a UMEM frame is refused.
    pub fn queue(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.free.is_empty() {
            self.reap();
        }
        let mut tries = 0;
        while self.free.is_empty() {
            self.submit()?;
            self.tx.poll(1)?;
            self.reap();
            tries += 1;
            if tries > 1000 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the AF_XDP completion ring stayed empty for a second",
                ));
            }
        }
        let Some(mut desc) = self.free.pop() else {
            return Ok(());
        };
        // SAFETY: `desc` is a frame of this UMEM taken from `free`: the
        // kernel gave it back (or never had it) and no other descriptor
        // names it, so nothing else reads or writes it while we do.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        let mut cursor = data.cursor();
        cursor.set_pos(0);
        if io::Write::write_all(&mut cursor, frame).is_err() {
            self.free.push(desc);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a {}-byte frame does not fit a UMEM frame", frame.len()),
            ));
        }
        self.staged.push(desc);
        if self.staged.len() >= TX_BATCH {
            self.submit()?;
        }
        Ok(())
    }

    /// Hands the staged frames to the kernel (and wakes it where needed).
    pub fn submit(&mut self) -> io::Result<()> {
        while !self.staged.is_empty() {
            // SAFETY: the staged descriptors are frames of this UMEM that
            // are in no ring, written above and not touched again until the
            // completion ring hands them back.
            let n = unsafe { self.tx.produce_and_wakeup(&self.staged)? };
            self.in_flight += n;
            self.staged.drain(..n);
            if n == 0 {
                // The ring is full: let the kernel drain it.
                self.tx.poll(1)?;
                self.reap();
            }
        }
        Ok(())
    }

    /// Hands over what is staged and waits (up to a second) until the kernel
    /// has sent everything.
    pub fn flush(&mut self) -> io::Result<()> {
        self.submit()?;
        for _ in 0..1000 {
            self.reap();
            if self.in_flight == 0 {
                return Ok(());
            }
            if self.tx.needs_wakeup() {
                self.tx.wakeup()?;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{} frames were still unsent after a second", self.in_flight),
        ))
    }
}
