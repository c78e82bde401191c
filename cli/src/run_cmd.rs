//! `ticklane run` and `ticklane send`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::Drain;
use ticklane_appliance::delivery::Tap;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Poller, PollerConfig, TimeBase};
use ticklane_appliance::source::admission::Checksums;
use ticklane_appliance::source::steering::SteeringError;
use ticklane_appliance::source::udp::{FeedSocket, UdpSource};
use ticklane_appliance::source::xdp::{Vlan, XdpConfig, XdpError, XdpSource};
use ticklane_appliance::source::xsk::{BindRequest, XskConfig, XskSender};
use ticklane_appliance::source::{Source, Wait};
use ticklane_appliance::stats::StatsReader;
use ticklane_appliance::sys;
use ticklane_capture::pace;
use ticklane_capture::{OutputFile, Record};
use ticklane_control::feeds::Steer;
use ticklane_lab::send::FrameSender;

use super::GroupPort;
use super::args::{self, BindArg, ModeArg, SequencingArgs, XdpModeArg};
use super::report::{self, PathInfo};

/// Receive live feeds on one interface queue: XDP → AF_XDP → in-place parse.
///
/// The XDP program steers the subscribed GROUP:PORT feeds of the queue into
/// an AF_XDP socket and passes everything else to the kernel; a poller parses
/// each frame where it lies, sequences it (gaps recovered with --retrans),
/// arbitrates A/B lines (--feed repeated), and keeps books, VWAP and tape.
/// On the XDP path the checks the kernel would have made are made here: a
/// feed's frames on another VLAN than --vlan or from another source than its
/// @SOURCE are not steered, and frames with a wrong IPv4 or UDP checksum are
/// refused; each kind is counted ("rejected" in the summary).
/// Stats every second on stderr; on SIGINT/SIGTERM or after --duration: a
/// clean shutdown (program detached, groups left) and a summary. Needs root
/// (or CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK).
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Interface to receive on.
    #[arg(long)]
    iface: String,
    /// NIC receive queue to bind the AF_XDP socket to.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Feed GROUP:PORT (repeatable; the same session on several feeds is A/B
    /// arbitrated). With @SOURCE, only that sender's frames are taken, and the
    /// group is joined source-specific (IGMPv3).
    #[arg(long = "feed", value_name = "GROUP:PORT[@SOURCE]", required = true)]
    feeds: Vec<GroupPort>,
    /// The VLAN the feeds arrive on at this interface, as the frames carry it
    /// (XDP path): ID (802.1Q) or OUTER.INNER (QinQ). Default: untagged; a
    /// feed's frames with other tags are refused. With the NIC's VLAN
    /// stripping on, XDP sees no tags: turn it off (ethtool -K IFACE rxvlan off).
    #[arg(long, value_name = "ID[.INNER]", value_parser = super::args::vlan)]
    vlan: Option<Vlan>,
    /// Do not verify IPv4 header and UDP checksums on the XDP path: for a NIC
    /// that drops frames with wrong checksums itself.
    #[arg(long)]
    trust_nic_checksum: bool,
    /// auto: XDP, else kernel UDP with a warning; xdp: XDP or fail; udp: kernel sockets.
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    /// XDP attach mode: auto tries native then generic.
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: XdpModeArg,
    /// AF_XDP bind: auto tries zero-copy then copy.
    #[arg(long, value_enum, default_value = "auto")]
    bind: BindArg,
    /// Socket rx ring slots (power of two). Deep enough to ride out the
    /// scheduling stalls of a poller that shares its core (the summary's
    /// socket.rx_ring_full counts overflows).
    #[arg(long, default_value_t = XskConfig::DEFAULT.rx_size)]
    rx_ring: u32,
    /// Fill ring slots and UMEM frames of 2 KiB (power of two, ≥ NIC ring +
    /// rx ring; the default takes 64 MiB).
    #[arg(long, default_value_t = XskConfig::DEFAULT.fill_size)]
    fill_ring: u32,
    /// Busy polling on the socket: microseconds (SO_BUSY_POLL, with SO_PREFER_BUSY_POLL).
    #[arg(long)]
    busy_poll: Option<u32>,
    /// Spin on the rings instead of sleeping in poll() when idle (lowest latency, one full core).
    #[arg(long)]
    spin: bool,
    /// Core to pin the poller to.
    #[arg(long)]
    core: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = args::seconds)]
    duration: Option<Duration>,
    /// MoldUDP64 re-request server HOST:PORT (repeatable).
    #[arg(long = "retrans", value_name = "HOST:PORT")]
    retrans: Vec<SocketAddr>,
    #[command(flatten)]
    sequencing: SequencingArgs,
    /// Write the final summary as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Print the final summary as one JSON object on stdout (instead of
    /// the one-line text).
    #[arg(long)]
    json: bool,
    /// Write the canonical decode of every message received here (a debugging
    /// tap: it formats JSON on the poller and slows it down).
    #[arg(long)]
    tap: Option<PathBuf>,
    /// Write the canonical books at exit here.
    #[arg(long)]
    book_out: Option<PathBuf>,
    /// Capacity of the order pool.
    #[arg(long, default_value_t = 1 << 20, value_parser = args::max_orders())]
    max_orders: usize,
    #[command(flatten)]
    audit: super::audit_cmd::AuditRunArgs,
    #[command(flatten)]
    control: super::control_cmd::ControlArgs,
    /// Options from a TOML file: each key is a long option of this command
    /// (`queue = 1`, `feed = ["239.1.1.1:26477"]`, `spin = true`); an option
    /// on the command line wins over the file's.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// What the live run needs besides its source.
struct Live<'a> {
    args: &'a RunArgs,
    cfg: PollerConfig,
    stop: &'a AtomicBool,
    outputs: Outputs,
}

/// The files a run writes, opened before it starts: a path that cannot be
/// written fails at once, not after hours of receiving. The summary and the
/// books appear when the run ends; the tap is a stream, written as it goes.
struct Outputs {
    tap: Option<Tap>,
    summary: Option<OutputFile>,
    books: Option<OutputFile>,
}

impl Outputs {
    fn open(args: &RunArgs) -> anyhow::Result<Self> {
        let summary = args
            .summary_json
            .as_deref()
            .map(OutputFile::create)
            .transpose()?;
        let books = args
            .book_out
            .as_deref()
            .map(OutputFile::create)
            .transpose()?;
        // Last: a tap is written in place, and stays if anything after it fails.
        let tap = match &args.tap {
            Some(p) => Some(Tap::new(Box::new(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            )))),
            None => None,
        };
        Ok(Self {
            tap,
            summary,
            books,
        })
    }
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let stop = super::stop_flag()?;
    let outputs = Outputs::open(args)?;
    let feeds = super::feeds(&args.feeds)?;
    let vlan = args.vlan.unwrap_or_default();
    if args.vlan.is_some() && args.mode == ModeArg::Udp {
        bail!(
            "--vlan is for the XDP path; kernel sockets receive a VLAN on its own interface \
             (e.g. {}.ID): give that as --iface",
            args.iface
        );
    }
    let ifindex = sys::interface_index(&args.iface)?;
    // Joined in every mode: switches forward a group only to ports that asked.
    let sockets: Vec<FeedSocket> = feeds
        .iter()
        .map(|f| FeedSocket::join(*f, ifindex, 8 << 20))
        .collect::<Result<_, _>>()?;
    let cfg = PollerConfig {
        session: args.sequencing.config()?,
        lines: feeds.len(),
        retrans: args.retrans.clone(),
        wait: if args.spin {
            Wait::Spin
        } else {
            Wait::Sleep(1)
        },
        time: TimeBase::Monotonic,
        duration: args.duration,
        ..PollerConfig::default()
    };
    let checksums = if args.trust_nic_checksum {
        Checksums::TrustNic
    } else {
        Checksums::Verify
    };
    let xdp_cfg = XdpConfig {
        iface: args.iface.clone(),
        feeds,
        vlan,
        checksums,
        mode: args.xdp_mode.into(),
        xsk: XskConfig {
            queue: args.queue,
            rx_size: args.rx_ring,
            fill_size: args.fill_ring,
            bind: args.bind.into(),
            busy_poll: args.busy_poll.map(|us| (us, 64)),
            ..XskConfig::default()
        },
    };
    if let Some(core) = args.core
        && let Err(e) = sys::pin_to_core(core)
    {
        eprintln!("ticklane run: warning: cannot pin the poller to core {core}: {e}");
    }
    let live = Live {
        args,
        cfg,
        stop: &stop,
        outputs,
    };
    let xdp = match args.mode {
        ModeArg::Udp => Err(None),
        ModeArg::Xdp => Ok(XdpSource::open(&xdp_cfg).map_err(explain)?),
        ModeArg::Auto => match XdpSource::open(&xdp_cfg) {
            Ok(x) => Ok(x),
            // The other program steers the feed away from the kernel too:
            // falling back to UDP would receive nothing.
            Err(e @ XdpError::Steering(SteeringError::InterfaceBusy { .. })) => {
                return Err(explain(e));
            }
            // Kernel sockets on this interface would not see the VLAN's frames.
            Err(e) if args.vlan.is_some() => {
                return Err(explain(e).context(
                    "XDP is not possible here, and --vlan needs it (kernel sockets receive a \
                     VLAN on its own interface)",
                ));
            }
            Err(e) => {
                let reason = format!("{:#}", anyhow::Error::from(e));
                eprintln!(
                    "ticklane run: warning: XDP is not possible here ({reason}); using kernel UDP sockets"
                );
                Err(Some(reason))
            }
        },
    };
    match xdp {
        Ok(mut source) => {
            if let Some(native) = source.take_native_refused() {
                eprintln!(
                    "ticklane run: warning: native XDP refused ({:#}); running in generic mode (slower)",
                    anyhow::Error::from(native)
                );
            }
            let path = PathInfo {
                mode: "xdp",
                fallback_reason: None,
                xdp_mode: source.attached_mode().map(|m| m.name()),
                bind: Some(if source.zero_copy() {
                    "zerocopy"
                } else {
                    "copy"
                }),
                huge_pages: Some(source.huge_pages()),
                checksums: Some(match checksums {
                    Checksums::Verify => "verified",
                    Checksums::TrustNic => "trusted_nic",
                }),
            };
            // The sockets stay joined for the switches until the end (the
            // control plane's, when it may change the feeds).
            let (control, sockets) = if args.control.enabled() {
                let subscriptions = source.take_subscriptions().map_err(XdpError::from)?;
                let feeds = sockets.into_iter().map(|s| (s.feed, Some(s))).collect();
                let at = (args.iface.as_str(), ifindex, args.queue);
                let pending = super::control_cmd::prepare(
                    &args.control,
                    feeds,
                    Steer::Xdp(subscriptions),
                    at,
                )?;
                (Some(pending), Vec::new())
            } else {
                (None, sockets)
            };
            let outcome = drive(source, live, path, control);
            drop(sockets);
            outcome
        }
        Err(fallback_reason) => {
            let path = PathInfo {
                mode: "udp",
                fallback_reason,
                checksums: Some("kernel"),
                ..PathInfo::default()
            };
            let control = if args.control.enabled() {
                let feeds = sockets.iter().map(|s| (s.feed, None)).collect();
                let at = (args.iface.as_str(), ifindex, args.queue);
                Some(super::control_cmd::prepare(
                    &args.control,
                    feeds,
                    Steer::Kernel,
                    at,
                )?)
            } else {
                None
            };
            drive(UdpSource::new(sockets), live, path, control)
        }
    }
}

/// Runs the poller on `source` (with the control plane, when asked for)
/// until stopped, then reports.
fn drive<S: Source>(
    source: S,
    live: Live<'_>,
    path: PathInfo,
    control: Option<super::control_cmd::Pending>,
) -> anyhow::Result<ExitCode> {
    let Live {
        args,
        mut cfg,
        stop,
        outputs,
    } = live;
    // A journal of an earlier run: the books rebuilt from it, and its
    // session resumed after its last message.
    let (books, vwap, restored) =
        super::audit_cmd::restore(&args.audit, Books::new(args.max_orders), Vwap::default())?;
    if let Some((session, next)) = restored.as_ref().and_then(|r| r.resume()) {
        cfg.session.resume = Some((session, next));
        cfg.session.session.get_or_insert(session);
    }
    let (pipeline, mut subscribers) = Pipeline::with_bus(books, vwap, args.audit.bus());
    let audit = super::audit_cmd::LiveAudit::start(&args.audit, &mut subscribers, &args.retrans)?;
    let (mut poller, stats) = Poller::new(source, pipeline, outputs.tap, cfg, stop)?;
    let control = control.map(|c| c.start(&mut poller, &path)).transpose()?;
    if let (Some(plane), Some(audit)) = (&control, &audit) {
        plane.add_counters(audit.counter_source());
    }
    let drain = match &control {
        Some(plane) => Drain::spawn_forwarding(subscribers, plane.forwarder()),
        None => Drain::spawn(subscribers),
    };
    eprintln!(
        "ticklane run: ready on {} queue {} ({}{}{})",
        args.iface,
        args.queue,
        path.mode,
        path.xdp_mode
            .map(|m| format!(", {m} XDP"))
            .unwrap_or_default(),
        path.bind.map(|b| format!(", {b} bind")).unwrap_or_default()
    );
    let done = AtomicBool::new(false);
    let interval: Box<dyn Fn() -> Option<Duration> + Send + Sync> = match &control {
        Some(plane) => Box::new(plane.log_interval()),
        None => Box::new(|| Some(Duration::from_secs(1))),
    };
    let ending = std::thread::scope(|scope| {
        scope.spawn(|| print_stats(stats, &done, &*interval));
        let ending = poller.run();
        done.store(true, Ordering::Relaxed);
        ending
    })?;
    if let Some(plane) = control {
        plane.stop();
    }
    let finished = poller.finish(ending);
    let drained = drain.finish();
    if let Err(e) = &finished.tap.1 {
        eprintln!("ticklane run: warning: the tap could not be flushed: {e}");
    }
    let mut summary = report::summary(&finished, &path, &drained);
    if let Some(audit) = audit {
        summary["audit"]["trail"] = audit.finish(&finished.audit_missed);
    }
    if let Some(r) = &restored {
        summary["audit"]["restored"] = r.json();
    }
    report::warn("ticklane run", &summary);
    report::warn_rejected("ticklane run", &summary);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "ticklane run: {} packets, {} messages in {:.1} s via {}; {}{}",
            summary["packets"],
            summary["messages"],
            summary["seconds"].as_f64().unwrap_or(0.0),
            path.mode,
            report::lost_text(&summary),
            restored
                .as_ref()
                .map(|r| format!(
                    "; {} messages restored from the audit journal before",
                    r.json()["messages"]
                ))
                .unwrap_or_default()
        );
    }
    if let Some(mut out) = outputs.summary {
        serde_json::to_writer_pretty(&mut out, &summary)
            .with_context(|| format!("writing {}", out.path().display()))?;
        out.commit()?;
    }
    if let Some(mut out) = outputs.books {
        let mut books = Vec::new();
        finished
            .pipeline
            .books
            .write_canonical(&mut books, None, None);
        out.write_all(&books)
            .with_context(|| format!("writing {}", out.path().display()))?;
        out.commit()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The once-a-second stats line, printed from this thread (never from the
/// poller) off the poller's published snapshots.
fn print_stats(mut stats: StatsReader, done: &AtomicBool, interval: &dyn Fn() -> Option<Duration>) {
    let mut last = stats.read();
    let mut at = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        // The interval may change while the appliance runs (`ticklane ctl
        // config set log_interval`): it is read again every time.
        if interval().is_none_or(|every| at.elapsed() < every) {
            continue;
        }
        let now = stats.read();
        let secs = at.elapsed().as_secs_f64();
        let xsk = now.source.xsk.unwrap_or_default();
        eprintln!(
            "ticklane: {:.0} pkt/s, {:.0} msg/s, {} lost, {} dropped by the socket ({} ring full), {} fill-ring-empty, {} rejected{}{}",
            now.source.received.saturating_sub(last.source.received) as f64 / secs,
            now.delivered.saturating_sub(last.delivered) as f64 / secs,
            now.lost_messages,
            xsk.rx_dropped + xsk.rx_ring_full,
            xsk.rx_ring_full,
            xsk.rx_fill_ring_empty,
            now.source.rejected().total(),
            now.wire_to_handler
                .since(&last.wire_to_handler)
                .quantile(0.99)
                .map(|ns| format!(", wire-to-handler p99 < {:.1} us", ns as f64 / 1e3))
                .unwrap_or_default(),
            if now.is_stale() { ", STALE" } else { "" }
        );
        last = now;
        at = Instant::now();
    }
}

/// Adds what to do to a missing-privilege error, the one operators meet most.
fn explain(e: XdpError) -> anyhow::Error {
    let denied = e.is_permission_denied();
    let e = anyhow::Error::from(e);
    if denied {
        anyhow::anyhow!(
            "{e:#}\n  hint: run as root (or grant CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK)"
        )
    } else {
        e
    }
}

/// Put a capture's frames on an interface (for labs, tests, benchmarks).
///
/// Frames go out through an AF_PACKET socket, timed by the capture's
/// timestamps (--speed), at a fixed rate (--pps), or as fast as possible
/// (--topspeed). Prints progress and the achieved rate. Needs root or CAP_NET_RAW.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// Capture (pcap or pcapng of Ethernet frames).
    file: PathBuf,
    /// Interface to send on.
    #[arg(long)]
    iface: String,
    /// Fixed rate in packets per second.
    #[arg(long, conflicts_with_all = ["speed", "topspeed"], value_parser = args::positive)]
    pps: Option<f64>,
    /// Capture timing sped up by this factor (1 = as captured).
    #[arg(long, conflicts_with = "topspeed", value_parser = args::positive)]
    speed: Option<f64>,
    /// As fast as possible.
    #[arg(long)]
    topspeed: bool,
    /// Send the capture this many times.
    #[arg(long = "loop", default_value_t = 1)]
    loops: u32,
    /// How frames go out: an AF_XDP socket (batched, one copy into its
    /// UMEM), an AF_PACKET raw socket (one syscall per frame), or AF_XDP
    /// falling back to AF_PACKET where the interface or kernel refuses it.
    #[arg(long, value_enum, default_value = "auto")]
    via: ViaArg,
    /// The transmit queue the AF_XDP socket binds to.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Print what was sent as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// How `send` puts frames on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ViaArg {
    /// AF_XDP, else AF_PACKET (saying why).
    Auto,
    /// AF_XDP or fail.
    Xdp,
    /// AF_PACKET.
    Packet,
}

/// The socket `send` writes to.
enum Wire {
    Xdp(Box<XskSender>),
    Packet(FrameSender),
}

impl Wire {
    fn open(args: &SendArgs) -> anyhow::Result<Self> {
        let xdp = || XskSender::open(&args.iface, args.queue, BindRequest::Auto);
        Ok(match args.via {
            ViaArg::Packet => Self::Packet(FrameSender::open(&args.iface)?),
            ViaArg::Xdp => Self::Xdp(
                xdp()
                    .map(Box::new)
                    .with_context(|| format!("AF_XDP on {} (try --via packet)", args.iface))?,
            ),
            ViaArg::Auto => match xdp() {
                Ok(s) => Self::Xdp(Box::new(s)),
                Err(e) => {
                    eprintln!(
                        "ticklane send: AF_XDP refused on {} ({}); sending through AF_PACKET",
                        args.iface,
                        anyhow::Error::from(e)
                            .chain()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(": ")
                    );
                    Self::Packet(FrameSender::open(&args.iface)?)
                }
            },
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Xdp(s) if s.zero_copy() => "AF_XDP, zero-copy",
            Self::Xdp(_) => "AF_XDP, copy",
            Self::Packet(_) => "AF_PACKET",
        }
    }

    /// Queues one frame (AF_XDP batches it; AF_PACKET sends it now).
    fn queue(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Xdp(s) => s.queue(frame),
            Self::Packet(s) => s.send(frame),
        }
    }

    /// Hands what is queued to the kernel now.
    fn submit(&mut self) -> std::io::Result<()> {
        match self {
            Self::Xdp(s) => s.submit(),
            Self::Packet(_) => Ok(()),
        }
    }

    /// Waits until everything queued left.
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Xdp(s) => s.flush(),
            Self::Packet(_) => Ok(()),
        }
    }
}

pub(crate) fn send(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let mut wire = Wire::open(args)?;
    // A tiny rate puts the next frame beyond any Duration: it waits for ever.
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let mut failure = None;
    let bar = super::progress_bar(0, "sending");
    for round in 0..args.loops {
        let round_start = Instant::now();
        let mut in_round = 0u64;
        let mut first_ts: Option<u64> = None;
        ticklane_capture::read(&args.file, |r| {
            if failure.is_some() {
                return;
            }
            let Record::Frame(f) = r else {
                failure.get_or_insert_with(|| {
                    anyhow::anyhow!(
                        "a BinaryFILE holds messages, not frames: generate a pcap to send"
                    )
                });
                return;
            };
            let due = match (args.pps, args.speed) {
                (Some(pps), _) => Some(secs(in_round as f64 / pps)),
                (None, Some(speed)) => {
                    let first = *first_ts.get_or_insert(f.ts_nanos);
                    Some(secs(f.ts_nanos.saturating_sub(first) as f64 / 1e9 / speed))
                }
                _ if args.topspeed => None,
                _ => {
                    let first = *first_ts.get_or_insert(f.ts_nanos);
                    Some(Duration::from_nanos(f.ts_nanos.saturating_sub(first)))
                }
            };
            if let Some(due) = due
                && round_start.elapsed() < due
            {
                // Before waiting, what is due already goes.
                if let Err(e) = wire.submit() {
                    failure = Some(anyhow::anyhow!("sending: {e}"));
                    return;
                }
                pace::wait_until(round_start, due);
            }
            if let Err(e) = wire.queue(f.data) {
                failure = Some(anyhow::anyhow!(
                    "sending packet {} of round {}: {e}",
                    f.number,
                    round + 1
                ));
                return;
            }
            sent += 1;
            in_round += 1;
            bytes += f.data.len() as u64;
            if sent.is_multiple_of(4096) {
                bar.set_message(format!("{sent} packets"));
                bar.tick();
            }
        })?;
        if let Some(e) = failure.take() {
            return Err(e);
        }
    }
    wire.flush().context("sending the last frames")?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    if args.json {
        let summary = serde_json::json!({
            "packets": sent,
            "bytes": bytes,
            "seconds": secs,
            "via": wire.name(),
            "packets_per_second": sent as f64 / secs,
            "megabits_per_second": bytes as f64 * 8.0 / secs / 1e6,
            "loops": args.loops,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "ticklane send: {sent} packets ({:.1} MB) in {secs:.2} s via {}: {:.0} pps, {:.1} Mbit/s",
            bytes as f64 / 1e6,
            wire.name(),
            sent as f64 / secs,
            bytes as f64 * 8.0 / secs / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}
