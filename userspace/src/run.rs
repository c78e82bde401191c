//! `ticklane run`: the live appliance on one interface queue. Frames of the
//! subscribed feeds come through XDP → AF_XDP (or, as a fallback, kernel UDP
//! sockets) and are parsed in place, sequenced, arbitrated and applied to the
//! pipeline; statistics go to stderr every second; a clean shutdown detaches
//! the program, leaves the groups and reports.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ticklane_protocols::moldudp64::Packet;
use ticklane_protocols::wire;
use ticklane_xdp::Counter;

use crate::feed::FeedFilter;
use crate::net::steering::{Steering, SteeringError, XdpModeRequest};
use crate::net::udp::{FeedSocket, interface_index};
use crate::net::xsk::{XskConfig, XskError, XskReceiver, XskStats};
use crate::pipeline::{Apply, Pipeline, drain_socket};
use crate::session::{Arbiter, LineStats, SessionConfig, SessionStats};

/// Which receive path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// XDP + AF_XDP, falling back to kernel UDP with a warning.
    Auto,
    /// XDP + AF_XDP or fail.
    Xdp,
    /// Kernel UDP sockets (recvmmsg).
    Udp,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Interface.
    pub iface: String,
    /// Feeds (group, port); the same session on several feeds is arbitrated.
    pub feeds: Vec<(Ipv4Addr, u16)>,
    /// Receive path.
    pub mode: Mode,
    /// XDP attach mode.
    pub xdp_mode: XdpModeRequest,
    /// AF_XDP socket settings (queue, rings, bind mode).
    pub xsk: XskConfig,
    /// Session layer settings.
    pub session: SessionConfig,
    /// Re-request servers.
    pub retrans: Vec<SocketAddr>,
    /// Core to pin the poller to.
    pub core: Option<usize>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Spin instead of sleeping in poll() when idle.
    pub spin: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// "xdp" or "udp".
    pub mode: &'static str,
    /// Why XDP was not used, in auto mode.
    pub fallback_reason: Option<String>,
    /// "native"/"generic" in XDP mode.
    pub xdp_mode: Option<&'static str>,
    /// "zerocopy"/"copy" in XDP mode.
    pub bind: Option<&'static str>,
    /// UMEM on huge pages.
    pub huge_pages: Option<bool>,
    /// Frames or datagrams received.
    pub packets: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Frames that were not a subscribed feed's, or malformed.
    pub malformed: u64,
    /// The XDP program's counters.
    pub xdp_counters: Option<[u64; Counter::ALL.len()]>,
    /// The AF_XDP socket's kernel counters.
    pub xsk: Option<XskStats>,
    /// Session counters.
    pub session: SessionStats,
    /// Per-line counters.
    pub lines: Vec<LineStats>,
    /// Lost ranges.
    pub lost: Vec<(u64, u64)>,
    /// Wall time.
    pub seconds: f64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Interface or socket trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The XDP program.
    #[error(transparent)]
    Steering(#[from] SteeringError),
    /// The AF_XDP socket.
    #[error(transparent)]
    Xsk(#[from] XskError),
}

/// The XDP side, when it could be set up.
struct XdpPath {
    steering: Steering,
    socket: XskReceiver,
}

fn open_xdp(cfg: &RunConfig) -> Result<XdpPath, RunError> {
    let mut steering = Steering::load()?;
    steering.attach(&cfg.iface, cfg.xdp_mode)?;
    let mut socket = XskReceiver::open(&cfg.iface, &cfg.xsk)?;
    socket.prime();
    for (group, port) in &cfg.feeds {
        steering.subscribe(group.octets(), *port)?;
    }
    steering.register_socket(cfg.xsk.queue, &socket)?;
    Ok(XdpPath { steering, socket })
}

fn pin(core: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is a plain bitmask for which all-zero is the empty
    // set; CPU_SET writes inside it; sched_setaffinity reads `size_of` bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs until `stop` is set or the duration passes. `ready` is called once
/// everything is set up and receiving.
pub fn run(
    cfg: &RunConfig,
    pipeline: &mut Pipeline,
    mut tap: Option<Box<dyn Write>>,
    stop: &AtomicBool,
    ready: impl FnOnce(&RunSummary),
) -> Result<RunSummary, RunError> {
    let ifindex = interface_index(&cfg.iface)?;
    // Joined in every mode: switches deliver a group only to ports that asked.
    let sockets: Vec<FeedSocket> = cfg
        .feeds
        .iter()
        .map(|(g, p)| FeedSocket::join(*g, *p, ifindex, 8 << 20))
        .collect::<Result<_, _>>()?;
    let mut summary = RunSummary::default();
    let mut xdp = match cfg.mode {
        Mode::Udp => None,
        Mode::Xdp => Some(open_xdp(cfg)?),
        Mode::Auto => match open_xdp(cfg) {
            Ok(x) => Some(x),
            Err(e) => {
                eprintln!(
                    "ticklane: warning: XDP is not possible here ({e}); using kernel UDP sockets"
                );
                summary.fallback_reason = Some(e.to_string());
                None
            }
        },
    };
    match &xdp {
        Some(x) => {
            summary.mode = "xdp";
            summary.xdp_mode = x.steering.mode().map(|m| m.name());
            summary.bind = Some(if x.socket.zero_copy() {
                "zerocopy"
            } else {
                "copy"
            });
            summary.huge_pages = Some(x.socket.huge_pages());
        }
        None => summary.mode = "udp",
    }
    if let Some(core) = cfg.core
        && let Err(e) = pin(core)
    {
        eprintln!("ticklane: warning: cannot pin the poller to core {core}: {e}");
    }
    let retrans_socket = crate::net::udp::retrans_socket(&cfg.retrans)?;
    let session_cfg = SessionConfig {
        servers: cfg.retrans.len(),
        ..cfg.session.clone()
    };
    let mut arbiter = Arbiter::new(session_cfg, cfg.feeds.len().max(1), 2_000_000_000);
    let mut lost = Vec::new();
    // Re-borrowed with the object lifetime shortened to this function's, as
    // the sink's other borrows are (`as_deref_mut` would keep it 'static).
    let tap_ref: Option<&mut dyn Write> = match &mut tap {
        Some(t) => Some(t.as_mut()),
        None => None,
    };
    let mut apply = Apply {
        pipeline,
        socket: retrans_socket.as_ref(),
        servers: &cfg.retrans,
        session: crate::feed::BINARYFILE_SESSION,
        delivered: 0,
        lost: &mut lost,
        bad_messages: 0,
        tap: tap_ref,
        line: Vec::with_capacity(512),
    };
    let feeds = FeedFilter {
        feeds: cfg.feeds.iter().map(|(g, p)| (g.octets(), *p)).collect(),
    };
    let clock = quanta::Clock::new();
    let origin = clock.raw();
    let started = Instant::now();
    let mut udp_bufs = vec![[0u8; 2048]; 64];
    let mut udp_lens = vec![0usize; 64];
    let mut rx = vec![0u8; 65_536];
    let (mut packets, mut malformed) = (0u64, 0u64);
    let mut last_report = Instant::now();
    let (mut last_packets, mut last_messages) = (0u64, 0u64);
    ready(&summary);
    while !stop.load(Ordering::Relaxed) && cfg.duration.is_none_or(|d| started.elapsed() < d) {
        // One timestamp per batch, from the TSC.
        let now = clock.delta_as_nanos(origin, clock.raw());
        match &mut xdp {
            Some(x) => {
                let timeout = if cfg.spin { 0 } else { 1 };
                x.socket.receive(timeout, |frame| {
                    packets += 1;
                    let Ok(udp) = wire::parse_ethernet_udp(frame) else {
                        malformed += 1;
                        return;
                    };
                    match (feeds.line(&udp), Packet::new_checked(udp.payload)) {
                        (Some(line), Ok(p)) => arbiter.on_packet(line, now, &p, &mut apply),
                        _ => malformed += 1,
                    }
                })?;
            }
            None => {
                let mut any = 0;
                for (line, s) in sockets.iter().enumerate() {
                    let n = s.receive_batch(&mut udp_bufs, &mut udp_lens)?;
                    any += n;
                    for i in 0..n {
                        packets += 1;
                        match Packet::new_checked(&udp_bufs[i][..udp_lens[i]]) {
                            Ok(p) => arbiter.on_packet(line, now, &p, &mut apply),
                            Err(_) => malformed += 1,
                        }
                    }
                }
                if any == 0 && !cfg.spin {
                    wait_readable(&sockets, 1);
                }
            }
        }
        if let Some(s) = &retrans_socket {
            drain_socket(s, &mut rx, &mut arbiter, now, &mut apply);
        }
        arbiter.on_timer(now, &mut apply);
        if last_report.elapsed() >= Duration::from_secs(1) {
            let secs = last_report.elapsed().as_secs_f64();
            let drops = xdp.as_ref().map(|x| x.socket.stats()).unwrap_or_default();
            eprintln!(
                "ticklane: {:.0} pkt/s, {:.0} msg/s, {} lost, {} dropped, {} fill-ring-empty",
                (packets - last_packets) as f64 / secs,
                (apply.delivered - last_messages) as f64 / secs,
                arbiter.stats().unrecoverable_messages,
                drops.rx_dropped + drops.rx_ring_full,
                drops.rx_fill_ring_empty
            );
            last_report = Instant::now();
            last_packets = packets;
            last_messages = apply.delivered;
        }
    }
    let now = clock.delta_as_nanos(origin, clock.raw());
    arbiter.finish(now, &mut apply);
    summary.packets = packets;
    summary.messages = apply.delivered;
    summary.malformed = malformed + apply.bad_messages;
    if let Some(x) = &xdp {
        summary.xdp_counters = x.steering.counters().ok();
        summary.xsk = Some(x.socket.stats());
    }
    summary.session = arbiter.stats();
    summary.lines = arbiter.lines().to_vec();
    summary.lost = lost;
    summary.seconds = started.elapsed().as_secs_f64();
    if let Some(t) = &mut tap {
        t.flush()?;
    }
    // Dropping `xdp` detaches the program (its bpf_link) and closes the
    // socket; dropping `sockets` leaves the groups.
    drop(xdp);
    drop(sockets);
    Ok(summary)
}

fn wait_readable(sockets: &[FeedSocket], timeout_ms: i32) {
    use std::os::fd::AsRawFd;
    let mut fds: [libc::pollfd; 16] = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 16];
    let n = sockets.len().min(fds.len());
    for (p, s) in fds.iter_mut().zip(sockets) {
        *p = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
    }
    // SAFETY: `fds[..n]` are initialised pollfd entries alive for the call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms);
    }
}

impl RunSummary {
    /// The summary as JSON.
    pub fn to_json(&self, pipeline: &Pipeline) -> serde_json::Value {
        let by_type: serde_json::Map<String, serde_json::Value> =
            ticklane_protocols::itch::MESSAGE_TYPES
                .iter()
                .zip(pipeline.by_type())
                .map(|(t, n)| (char::from(t.tag).to_string(), (*n).into()))
                .collect();
        let xdp: Option<serde_json::Map<String, serde_json::Value>> = self.xdp_counters.map(|c| {
            Counter::ALL
                .iter()
                .map(|k| (k.name().to_string(), c[*k as usize].into()))
                .collect()
        });
        let s = &self.session;
        serde_json::json!({
            "mode": self.mode,
            "fallback_reason": self.fallback_reason,
            "xdp_mode": self.xdp_mode,
            "bind": self.bind,
            "huge_pages": self.huge_pages,
            "seconds": self.seconds,
            "packets": self.packets,
            "messages": self.messages,
            "by_type": by_type,
            "malformed": self.malformed,
            "xdp_counters": xdp,
            "socket": self.xsk.map(|x| serde_json::json!({
                "rx_dropped": x.rx_dropped, "rx_ring_full": x.rx_ring_full,
                "rx_fill_ring_empty_descs": x.rx_fill_ring_empty, "rx_invalid_descs": x.rx_invalid_descs,
            })),
            "session": {"gaps": s.gaps, "gaps_filled": s.gaps_filled, "lost_messages": s.unrecoverable_messages,
                        "duplicate_packets": s.duplicate_packets, "requests": s.requests, "retries": s.retries,
                        "held_packets": s.held_packets, "window_overflow": s.window_overflow,
                        "requested_messages": s.requested_messages},
            "lost_ranges": self.lost.iter().map(|(a, b)| [*a, *b]).collect::<Vec<_>>(),
            "lines": self.lines.iter().map(|l| serde_json::json!({"packets": l.packets, "duplicates": l.duplicates, "gaps": l.gaps})).collect::<Vec<_>>(),
        })
    }
}
