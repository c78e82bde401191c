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

impl XskReceiver {
    /// Creates the UMEM and binds a socket to `iface`/`cfg.queue`. Our own
    /// XDP program is the one attached (libxdp's is inhibited).
    pub fn open(iface: &str, cfg: &XskConfig) -> Result<Self, XskError> {
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(cfg.frame_size).map_err(|_| XskError::Size {
                what: "frame size",
                size: cfg.frame_size,
            })?)
            .fill_queue_size(queue_size("fill ring", cfg.fill_size)?)
            .comp_queue_size(queue_size("completion ring", 64)?)
            .build()
            .map_err(|_| XskError::Size {
                what: "frame size",
                size: cfg.frame_size,
            })?;
        let frames = NonZeroU32::new(cfg.fill_size).ok_or(XskError::Size {
            what: "fill ring",
            size: 0,
        })?;
        let umem_err = |source| XskError::Umem {
            frames: cfg.fill_size,
            source,
        };
        let (umem, initial, huge_pages) = match cfg.huge_pages {
            true => match Umem::new(umem_cfg, frames, true) {
                Ok((u, d)) => (u, d, true),
                Err(_) => {
                    let (u, d) = Umem::new(umem_cfg, frames, false).map_err(umem_err)?;
                    (u, d, false)
                }
            },
            false => {
                let (u, d) = Umem::new(umem_cfg, frames, false).map_err(umem_err)?;
                (u, d, false)
            }
        };
        let name: Interface = iface
            .parse()
            .map_err(|_| XskError::InterfaceName(iface.to_owned()))?;
        let attempt = |bind: BindFlags, mode: &'static str| {
            let sock_cfg = SocketConfig::builder()
                .rx_queue_size(queue_size("rx ring", cfg.rx_size)?)
                .tx_queue_size(queue_size("tx ring", 64)?)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(bind | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: this UMEM is new and bound only here, so the
            // shared-UMEM double-free condition of `Socket::new` cannot
            // arise; libxdp's own program is inhibited, ours is attached.
            unsafe { Socket::new(sock_cfg, &umem, &name, cfg.queue) }.map_err(|source| {
                XskError::Socket {
                    iface: iface.to_owned(),
                    queue: cfg.queue,
                    mode,
                    source,
                }
            })
        };
        let (sockets, zero_copy) = match cfg.bind {
            BindRequest::Zerocopy => (attempt(BindFlags::XDP_ZEROCOPY, "zero-copy")?, true),
            BindRequest::Copy => (attempt(BindFlags::XDP_COPY, "copy")?, false),
            BindRequest::Auto => match attempt(BindFlags::XDP_ZEROCOPY, "zero-copy") {
                Ok(s) => (s, true),
                Err(_) => (attempt(BindFlags::XDP_COPY, "copy")?, false),
            },
        };
        let (tx, rx, fq_cq) = sockets;
        let (fill, comp) = fq_cq.ok_or_else(|| XskError::NoFillRing {
            iface: iface.to_owned(),
            queue: cfg.queue,
        })?;
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
    /// lends each frame to `f` in place, then returns the frames to the fill
    /// ring. Returns how many frames were received.
    #[inline]
    pub fn receive(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        // Take what is there without a syscall; sleep in poll() only when
        // the ring is empty.
        // SAFETY: `batch` only holds descriptors of this UMEM; `consume`
        // overwrites its first n entries with frames the kernel hands over.
        let mut n = unsafe { self.rx.consume(&mut self.batch) };
        if n == 0 && timeout_ms > 0 {
            // SAFETY: as above.
            n = unsafe { self.rx.poll_and_consume(&mut self.batch, timeout_ms)? };
        }
        for desc in &self.batch[..n] {
            // SAFETY: `desc` came from this UMEM's rx ring just now, so its
            // address and length lie inside the UMEM mapping owned by `self`,
            // and the kernel does not touch the frame until we give it back
            // below.
            let data = unsafe { self.umem.data(desc) };
            f(data.contents());
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
