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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            queue: 0,
            rx_size: 4096,
            fill_size: 8192,
            frame_size: 2048,
            batch: 64,
            bind: BindRequest::Auto,
            huge_pages: true,
            busy_poll: None,
        }
    }
}

/// Why an AF_XDP socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A size is not a power of two, or similar.
    #[error("AF_XDP configuration: {0}")]
    Config(String),
    /// The UMEM could not be created.
    #[error("AF_XDP UMEM: {0} (a large UMEM needs CAP_IPC_LOCK or a higher `ulimit -l`)")]
    Umem(String),
    /// The socket could not be created or bound.
    #[error("AF_XDP socket on {iface} queue {queue} ({mode}): {reason}")]
    Socket {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// Bind mode tried.
        mode: &'static str,
        /// What went wrong.
        reason: String,
    },
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

fn queue_size(n: u32) -> Result<QueueSize, XskError> {
    QueueSize::new(n).map_err(|e| XskError::Config(e.to_string()))
}

impl XskReceiver {
    /// Creates the UMEM and binds a socket to `iface`/`cfg.queue`. Our own
    /// XDP program is the one attached (libxdp's is inhibited).
    pub fn open(iface: &str, cfg: &XskConfig) -> Result<Self, XskError> {
        let umem_cfg = UmemConfig::builder()
            .frame_size(
                FrameSize::new(cfg.frame_size).map_err(|e| XskError::Config(e.to_string()))?,
            )
            .fill_queue_size(queue_size(cfg.fill_size)?)
            .comp_queue_size(queue_size(64)?)
            .build()
            .map_err(|e| XskError::Config(e.to_string()))?;
        let frames =
            NonZeroU32::new(cfg.fill_size).ok_or_else(|| XskError::Config("fill size 0".into()))?;
        let (umem, initial, huge_pages) = match cfg.huge_pages {
            true => match Umem::new(umem_cfg, frames, true) {
                Ok((u, d)) => (u, d, true),
                Err(_) => {
                    let (u, d) = Umem::new(umem_cfg, frames, false)
                        .map_err(|e| XskError::Umem(e.to_string()))?;
                    (u, d, false)
                }
            },
            false => {
                let (u, d) = Umem::new(umem_cfg, frames, false)
                    .map_err(|e| XskError::Umem(e.to_string()))?;
                (u, d, false)
            }
        };
        let name: Interface = iface
            .parse()
            .map_err(|_| XskError::Config(format!("bad interface name {iface}")))?;
        let attempt = |bind: BindFlags, mode: &'static str| {
            let sock_cfg = SocketConfig::builder()
                .rx_queue_size(queue_size(cfg.rx_size)?)
                .tx_queue_size(queue_size(64)?)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(bind | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: this UMEM is new and bound only here, so the
            // shared-UMEM double-free condition of `Socket::new` cannot
            // arise; libxdp's own program is inhibited, ours is attached.
            unsafe { Socket::new(sock_cfg, &umem, &name, cfg.queue) }.map_err(|e| {
                XskError::Socket {
                    iface: iface.to_owned(),
                    queue: cfg.queue,
                    mode,
                    reason: format!(
                        "{e}: {}",
                        std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    ),
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
        let (fill, comp) = fq_cq.ok_or_else(|| XskError::Socket {
            iface: iface.to_owned(),
            queue: cfg.queue,
            mode: "any",
            reason: "no fill and completion rings were handed back".into(),
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
            me.busy_poll(usecs, budget);
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

    fn busy_poll(&mut self, usecs: u32, budget: u32) {
        let fd = self.as_raw_fd();
        for (opt, value) in [
            (libc::SO_PREFER_BUSY_POLL, 1i32),
            (libc::SO_BUSY_POLL, usecs as i32),
            (libc::SO_BUSY_POLL_BUDGET, budget as i32),
        ] {
            // SAFETY: `fd` is this socket's open descriptor, `value` a live
            // c_int whose size is passed; setsockopt reads nothing else.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const value).cast(),
                    size_of::<i32>() as libc::socklen_t,
                )
            };
            if r != 0 {
                eprintln!(
                    "ticklane: warning: busy-poll option {opt} refused: {}",
                    io::Error::last_os_error()
                );
            }
        }
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
    pub fn stats(&self) -> XskStats {
        match self.rx.fd().xdp_statistics() {
            Ok(s) => XskStats {
                rx_dropped: s.rx_dropped(),
                rx_ring_full: s.rx_ring_full(),
                rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
                rx_invalid_descs: s.rx_invalid_descs(),
            },
            Err(_) => XskStats::default(),
        }
    }
}

impl AsRawFd for XskReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }
}
