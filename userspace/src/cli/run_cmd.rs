//! `ticklane run` and `ticklane send`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ticklane::book::Books;
use ticklane::bus::{self, BusConfig, Drain};
use ticklane::capture::{self, Record};
use ticklane::net::send::FrameSender;
use ticklane::net::steering::XdpModeRequest;
use ticklane::net::xsk::{BindRequest, XskConfig};
use ticklane::pipeline::Pipeline;
use ticklane::run::{self, Mode, RunConfig};
use ticklane::session::SessionConfig;
use ticklane::vwap::Vwap;

use super::GroupPort;

/// Receive live feeds on one interface queue: XDP → AF_XDP → in-place parse.
///
/// The XDP program steers the subscribed GROUP:PORT feeds of the queue into
/// an AF_XDP socket and passes everything else to the kernel; a poller parses
/// each frame where it lies, sequences it (gaps recovered with --retrans),
/// arbitrates A/B lines (--feed repeated), and keeps books, VWAP and tape.
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
    /// Feed GROUP:PORT (repeatable; the same session on several feeds is A/B arbitrated).
    #[arg(long = "feed", value_name = "GROUP:PORT", required = true)]
    feeds: Vec<GroupPort>,
    /// auto: XDP, else kernel UDP with a warning; xdp: XDP or fail; udp: kernel sockets.
    #[arg(long, value_enum, default_value = "auto")]
    mode: Mode,
    /// XDP attach mode: auto tries native then generic.
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: XdpModeRequest,
    /// AF_XDP bind: auto tries zero-copy then copy.
    #[arg(long, value_enum, default_value = "auto")]
    bind: BindRequest,
    /// Socket rx ring slots (power of two).
    #[arg(long, default_value_t = 4096)]
    rx_ring: u32,
    /// Fill ring slots and UMEM frames (power of two, ≥ NIC ring + rx ring).
    #[arg(long, default_value_t = 8192)]
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
    #[arg(long)]
    duration: Option<f64>,
    /// MoldUDP64 re-request server HOST:PORT (repeatable).
    #[arg(long = "retrans", value_name = "HOST:PORT")]
    retrans: Vec<SocketAddr>,
    /// Start at the first packet seen instead of backfilling from sequence 1.
    #[arg(long)]
    join_live: bool,
    /// Write the final summary as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Write the canonical decode of every message received here (a debugging
    /// tap: it formats JSON on the poller and slows it down).
    #[arg(long)]
    tap: Option<PathBuf>,
    /// Write the canonical books at exit here.
    #[arg(long)]
    book_out: Option<PathBuf>,
    /// Capacity of the order pool.
    #[arg(long, default_value_t = 1 << 20)]
    max_orders: usize,
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("installing the signal handler")?;
    }
    let cfg = RunConfig {
        iface: args.iface.clone(),
        feeds: args.feeds.iter().map(|f| (f.group, f.port)).collect(),
        mode: args.mode,
        xdp_mode: args.xdp_mode,
        xsk: XskConfig {
            queue: args.queue,
            rx_size: args.rx_ring,
            fill_size: args.fill_ring,
            bind: args.bind,
            busy_poll: args.busy_poll.map(|us| (us, 64)),
            ..XskConfig::default()
        },
        session: SessionConfig {
            backfill_from: if args.join_live { None } else { Some(1) },
            ..SessionConfig::default()
        },
        retrans: args.retrans.clone(),
        core: args.core,
        duration: args.duration.map(Duration::from_secs_f64),
        spin: args.spin,
    };
    let tap: Option<Box<dyn Write>> = match &args.tap {
        Some(p) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ))),
        None => None,
    };
    let (publisher, subscribers) = bus::bus(BusConfig::default());
    let drain = Drain::spawn(subscribers);
    let mut pipeline = Pipeline::new(
        Books::new(args.max_orders),
        Vwap::new(1_000_000_000, 100_000_000),
        publisher,
    );
    let summary = run::run(&cfg, &mut pipeline, tap, &stop, |s| {
        eprintln!(
            "ticklane run: ready on {} queue {} ({}{}{})",
            args.iface,
            args.queue,
            s.mode,
            s.xdp_mode.map(|m| format!(", {m} XDP")).unwrap_or_default(),
            s.bind.map(|b| format!(", {b} bind")).unwrap_or_default()
        );
    })
    .map_err(|e| anyhow::anyhow!(hint(&e.to_string())))?;
    drain.finish();
    let json = summary.to_json(&pipeline);
    println!(
        "ticklane run: {} packets, {} messages in {:.1} s via {}; {} lost",
        summary.packets,
        summary.messages,
        summary.seconds,
        summary.mode,
        summary.session.unrecoverable_messages
    );
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.book_out {
        let mut out = Vec::new();
        pipeline.books.write_canonical(&mut out, None, None);
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds what to do to a missing-privilege error, the one operators meet most.
fn hint(e: &str) -> String {
    if e.contains("Operation not permitted") || e.contains("EPERM") {
        format!(
            "{e}\n  hint: run as root (or grant CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK)"
        )
    } else {
        e.to_owned()
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
    #[arg(long, conflicts_with_all = ["speed", "topspeed"])]
    pps: Option<f64>,
    /// Capture timing sped up by this factor (1 = as captured).
    #[arg(long, conflicts_with = "topspeed")]
    speed: Option<f64>,
    /// As fast as possible.
    #[arg(long)]
    topspeed: bool,
    /// Send the capture this many times.
    #[arg(long = "loop", default_value_t = 1)]
    loops: u32,
}

pub(crate) fn send(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let sender = FrameSender::open(&args.iface)?;
    if args.pps.is_some_and(|p| p <= 0.0) || args.speed.is_some_and(|s| s <= 0.0) {
        bail!("--pps and --speed must be above 0");
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let mut failure = None;
    let bar = super::progress_bar(0, "sending");
    for round in 0..args.loops {
        let round_start = Instant::now();
        let mut in_round = 0u64;
        let mut first_ts: Option<u64> = None;
        capture::read(&args.file, |r| {
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
                (Some(pps), _) => Some(Duration::from_secs_f64(in_round as f64 / pps)),
                (None, Some(speed)) => {
                    let first = *first_ts.get_or_insert(f.ts_nanos);
                    Some(Duration::from_secs_f64(
                        f.ts_nanos.saturating_sub(first) as f64 / 1e9 / speed,
                    ))
                }
                _ if args.topspeed => None,
                _ => {
                    let first = *first_ts.get_or_insert(f.ts_nanos);
                    Some(Duration::from_nanos(f.ts_nanos.saturating_sub(first)))
                }
            };
            if let Some(due) = due {
                while let Some(left) = due
                    .checked_sub(round_start.elapsed())
                    .filter(|l| !l.is_zero())
                {
                    if left > Duration::from_micros(200) {
                        std::thread::sleep(left - Duration::from_micros(100));
                    } else if left > Duration::from_micros(20) {
                        // Give the core away rather than spin, so that a
                        // lab's other processes (a receiver, a re-request
                        // server) are not starved by the sender.
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
            if let Err(e) = sender.send(f.data) {
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
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "ticklane send: {sent} packets ({:.1} MB) in {secs:.2} s: {:.0} pps, {:.1} Mbit/s",
        bytes as f64 / 1e6,
        sent as f64 / secs,
        bytes as f64 * 8.0 / secs / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
