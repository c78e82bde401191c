//! The live receive paths on one veth pair, in the same run: XDP → AF_XDP
//! against the kernel UDP socket path (recvmmsg), each with and without
//! threaded NAPI on the receiving veth.
//!
//! A sender thread in one namespace puts MoldUDP64 frames on the wire with an
//! AF_PACKET socket at fixed rates; each frame's ITCH message carries its
//! send time (CLOCK_MONOTONIC, low 48 bits, in the timestamp field). A
//! receiver thread in the other namespace parses every frame through the real
//! path (Ethernet/IPv4/UDP → MoldUDP64 → ITCH) and takes the wire-to-handler
//! latency from the same clock. For each path: the highest rate with no loss,
//! the latency distribution at a common moderate rate, and receiver CPU time
//! per packet. With threaded NAPI, its kernel threads are pinned to the
//! sender's core, away from the receiver's. Targets: AF_XDP ≥ 2× the kernel
//! path's loss-free rate and ≤ ½ its receiver CPU per packet, p99 ≤ 1/3 of
//! its p99.
//!
//! Needs root; builds its own namespaces (198.18.0.0/15, 239.0.0.0/8) and
//! removes them.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use ticklane_appliance::source::steering::{Steering, XdpModeRequest};
use ticklane_appliance::source::udp::FeedSocket;
use ticklane_appliance::source::xdp::Vlan;
use ticklane_appliance::source::xsk::{XskConfig, XskReceiver};
use ticklane_appliance::sys::{Batch, interface_index, receive_batch, wait_readable};
use ticklane_capture::feed::Feed;
use ticklane_lab::send::FrameSender;
use ticklane_protocols::itch::{self, Alpha, Char, Header, Message, U32, U64};
use ticklane_protocols::moldudp64::{Packet, PacketBuilder, Session};
use ticklane_protocols::wire::{self, UdpFrameSpec};
use zerocopy::IntoBytes;

use super::{Check, Distribution, Suite, SuiteError, Target, Timing};
use crate::{VethLab, enter};

/// The receiving interface of the lab, and its driver.
pub const INTERFACE: (&str, &str) = (VB, "veth");

/// How much a run sends.
#[derive(Debug, Clone, Copy)]
pub struct NetScale {
    /// Packets per trial.
    pub packets: u64,
    /// The rates tried, in order, until one loses packets.
    pub rates: &'static [u64],
}

impl NetScale {
    /// The `cargo bench` size.
    pub const FULL: Self = Self {
        packets: 100_000,
        rates: &[
            100_000, 200_000, 300_000, 500_000, 700_000, 900_000, 1_200_000, 1_600_000, 2_000_000,
            3_000_000,
        ],
    };
    /// A first look.
    pub const QUICK: Self = Self {
        packets: 20_000,
        rates: &[100_000, 300_000, 700_000, 1_200_000],
    };
}

const NS_A: &str = "tlbencha";
const NS_B: &str = "tlbenchb";
const VA: &str = "vtlbencha";
const VB: &str = "vtlbenchb";
const GROUP: [u8; 4] = [239, 18, 0, 1];
const PORT: u16 = 31000;
const FEED: Feed = Feed {
    group: Ipv4Addr::new(GROUP[0], GROUP[1], GROUP[2], GROUP[3]),
    port: PORT,
    source: None,
};
const MASK48: u64 = (1 << 48) - 1;

/// Turns on threaded NAPI on the receiving veth, its threads pinned to the
/// sender's core (a veth has NAPI only while an XDP program is attached, so
/// call it after attaching).
fn threaded_napi() {
    crate::threaded_napi(NS_B, VB, 0);
}

/// Pins the calling thread to `core`.
fn pin(core: usize) {
    crate::pin_task(0, core);
}

/// Nanoseconds on `clock`.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// A 122-byte frame: one add order whose timestamp is patched at send time.
fn template(seq: u64) -> (Vec<u8>, usize) {
    let m = itch::AddOrder {
        header: Header::new(itch::AddOrder::TYPE, 1, 0, 0),
        order_reference_number: U64::new(seq),
        buy_sell_indicator: Char(b'B'),
        shares: U32::new(100),
        stock: Alpha::padded(b"BENCH").unwrap(),
        price: U32::new(1_000_000),
    };
    let mut payload = [0u8; 128];
    let mut b =
        PacketBuilder::new(&mut payload, Session::from_name(b"NETBENCH").unwrap(), seq).unwrap();
    b.push(m.as_bytes()).unwrap();
    let mold = b.finish().to_vec();
    let spec = UdpFrameSpec::multicast([2, 0, 0, 0, 0, 1], [198, 18, 200, 1], GROUP, PORT);
    let mut frame = vec![0u8; 256];
    let n = wire::write_udp_frame(&mut frame, &spec, &mold).unwrap();
    frame.truncate(n);
    // The send time is patched into every frame: drop the UDP checksum (0 is
    // "none" in IPv4) rather than recompute it per packet, or the kernel
    // path would discard the frames as corrupt.
    frame[14 + 20 + 6..14 + 20 + 8].fill(0);
    // Offset of the ITCH timestamp: Ethernet 14 + IPv4 20 + UDP 8 + Mold 20 + block length 2 + 5.
    (frame, 14 + 20 + 8 + 20 + 2 + 5)
}

/// Receiver side of a trial.
#[derive(Default)]
struct Received {
    /// Rate the sender achieved.
    sent_pps: f64,
    packets: u64,
    latencies: Vec<u64>,
    cpu_ns: u64,
}

fn handle(frame_payload: &[u8], now48: u64, out: &mut Received) {
    let Ok(p) = Packet::new_checked(frame_payload) else {
        return;
    };
    for (_, m) in p.messages() {
        if let Ok(msg) = itch::parse(m) {
            out.packets += 1;
            if out.latencies.len() < out.latencies.capacity() {
                out.latencies
                    .push(now48.wrapping_sub(msg.header().timestamp()) & MASK48);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    AfXdp,
    Kernel,
}

/// Sends `count` frames at `pps` from namespace A while the receiver in B
/// runs the given path; returns what B received.
fn trial(
    path: Path,
    threaded: bool,
    spin: bool,
    pps: u64,
    count: u64,
) -> Result<Received, SuiteError> {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU64::new(0));
    let (stop_r, ready_r) = (stop.clone(), ready.clone());
    let receiver = std::thread::spawn(move || {
        enter(NS_B);
        pin(1);
        let mut out = Received {
            latencies: Vec::with_capacity(count as usize),
            ..Received::default()
        };
        match path {
            Path::AfXdp => {
                let mut steering = Steering::load().unwrap();
                steering.attach(VB, XdpModeRequest::Auto).unwrap();
                if threaded {
                    threaded_napi();
                }
                let mut sock = XskReceiver::open(
                    VB,
                    &XskConfig {
                        huge_pages: false,
                        ..XskConfig::default()
                    },
                )
                .unwrap();
                sock.prime();
                steering.subscribe(&FEED, Vlan::Untagged).unwrap();
                steering.register_socket(0, &sock).unwrap();
                ready_r.store(1, Ordering::Release);
                let cpu0 = thread_cpu_ns();
                while !stop_r.load(Ordering::Acquire) {
                    // Spinning: lowest latency; sleeping in poll() when
                    // idle: CPU time is work.
                    sock.receive(if spin { 0 } else { 1 }, |frame, _| {
                        let now48 = monotonic_ns() & MASK48;
                        if let Ok(udp) = wire::parse_ethernet_udp(frame) {
                            handle(udp.payload, now48, &mut out);
                        }
                    })
                    .unwrap();
                }
                out.cpu_ns = thread_cpu_ns() - cpu0;
            }
            Path::Kernel => {
                // With threaded NAPI the veth needs an XDP program for NAPI
                // to exist: ours, with no subscription, passes everything.
                let _pass_all = threaded.then(|| {
                    let mut s = Steering::load().unwrap();
                    s.attach(VB, XdpModeRequest::Auto).unwrap();
                    threaded_napi();
                    s
                });
                let ifindex = interface_index(VB).unwrap();
                let sock = FeedSocket::join(FEED, ifindex, 32 << 20).unwrap();
                let mut batch = Batch::default();
                ready_r.store(1, Ordering::Release);
                let cpu0 = thread_cpu_ns();
                while !stop_r.load(Ordering::Acquire) {
                    let n = receive_batch(&sock, &mut batch).unwrap();
                    if n == 0 {
                        if !spin {
                            wait_readable(&[sock.as_raw_fd()], 1);
                        }
                        continue;
                    }
                    let now48 = monotonic_ns() & MASK48;
                    for datagram in batch.iter() {
                        handle(datagram.payload, now48, &mut out);
                    }
                }
                out.cpu_ns = thread_cpu_ns() - cpu0;
            }
        }
        out
    });
    while ready.load(Ordering::Acquire) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let sender = std::thread::spawn(move || {
        enter(NS_A);
        pin(0);
        let tx = FrameSender::open(VA)?;
        let (mut frame, ts_at) = template(1);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(30);
        for i in 0..count {
            let due = Duration::from_nanos(i * 1_000_000_000 / pps);
            while start.elapsed() < due {
                std::hint::spin_loop();
            }
            let t = (monotonic_ns() & MASK48).to_be_bytes();
            frame[ts_at..ts_at + 6].copy_from_slice(&t[2..]);
            tx.send(&frame)?;
            if Instant::now() > deadline {
                break;
            }
        }
        Ok::<_, std::io::Error>(start.elapsed())
    });
    let took = sender.join();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    let received = receiver.join();
    let took = took
        .map_err(|_| SuiteError::Disagree("the sender thread failed (see above)".into()))?
        .map_err(|source| SuiteError::Io {
            what: format!("sending on {VA}"),
            source,
        })?;
    let mut r = received
        .map_err(|_| SuiteError::Disagree("the receiver thread failed (see above)".into()))?;
    r.sent_pps = count as f64 / took.as_secs_f64().max(1e-9);
    Ok(r)
}

struct PathResult {
    name: String,
    loss_free_pps: u64,
    latency: Distribution,
    cpu_ns_per_packet: f64,
}

fn measure(
    path: Path,
    threaded: bool,
    name: &str,
    size: &NetScale,
    progress: &mut dyn FnMut(String),
) -> Result<PathResult, SuiteError> {
    let per_trial = size.packets;
    let mut loss_free = 0;
    for &pps in size.rates {
        let r = trial(path, threaded, true, pps, per_trial)?;
        let ok = r.packets == per_trial;
        progress(format!(
            "  {name:<22} asked {pps:>9} pps, sent {:>9.0} pps: {:>7} of {per_trial} received{}",
            r.sent_pps,
            r.packets,
            if ok { "" } else { "  (loss)" }
        ));
        if !ok {
            break;
        }
        // Credit what the sender really achieved (its core is the ceiling on veth).
        loss_free = (r.sent_pps as u64).min(pps);
    }
    // Latency (spinning receiver) and CPU per packet (receiver sleeping in
    // poll() when idle) at a moderate rate every path sustains.
    let r = trial(path, threaded, true, 200_000, per_trial)?;
    let cpu = trial(path, threaded, false, 200_000, per_trial)?;
    Ok(PathResult {
        latency: Distribution::new(
            name,
            "ns wire to handler",
            r.latencies.iter().map(|&ns| ns as f64).collect(),
        ),
        name: name.to_owned(),
        loss_free_pps: loss_free,
        cpu_ns_per_packet: cpu.cpu_ns as f64 / cpu.packets.max(1) as f64,
    })
}

/// The suite: both paths, without and with threaded NAPI; `progress` gets
/// a line per trial.
pub fn run(size: NetScale, progress: &mut dyn FnMut(String)) -> Result<Suite, SuiteError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SuiteError::Unavailable(
            "needs root (network namespaces, XDP, AF_XDP)".into(),
        ));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err(SuiteError::Unavailable(
            "needs iproute2's ip to build its veth lab".into(),
        ));
    }
    let _lab = VethLab::new((NS_A, NS_B), (VA, VB), "198.18.200");
    let mut results = Vec::new();
    for threaded in [false, true] {
        let suffix = if threaded { " +threaded NAPI" } else { "" };
        progress(format!("receive path{suffix}:"));
        results.push(measure(
            Path::AfXdp,
            threaded,
            &format!("AF_XDP{suffix}"),
            &size,
            progress,
        )?);
        results.push(measure(
            Path::Kernel,
            threaded,
            &format!("kernel UDP{suffix}"),
            &size,
            progress,
        )?);
    }
    let mut timings = Vec::new();
    let mut checks = Vec::new();
    for pair in results.chunks(2) {
        let (x, k) = (&pair[0], &pair[1]);
        for (r, base) in [(x, Some(k.name.clone())), (k, None)] {
            // A rate as a timing: the trial's packets (one message each)
            // over the time they take at the loss-free rate.
            timings.push(Timing {
                name: r.name.clone(),
                seconds: size.packets as f64 / r.loss_free_pps.max(1) as f64,
                messages: size.packets,
                baseline: base,
            });
        }
        checks.push(Check::new(
            &format!("{} / {} loss-free rate", x.name, k.name),
            x.loss_free_pps as f64 / k.loss_free_pps.max(1) as f64,
            "x",
            Some(Target::AtLeast(2.0)),
        ));
        checks.push(Check::new(
            &format!("{} p99 / {} p99", x.name, k.name),
            x.latency.quantile(0.99) / k.latency.quantile(0.99).max(1.0),
            "x",
            Some(Target::AtMost(0.33)),
        ));
        checks.push(Check::new(
            &format!("{} / {} receiver CPU per packet", x.name, k.name),
            x.cpu_ns_per_packet / k.cpu_ns_per_packet.max(1.0),
            "x",
            Some(Target::AtMost(0.5)),
        ));
    }
    Ok(Suite {
        name: "net",
        title: format!(
            "receive paths on a veth pair ({VB}, driver veth), 122-byte frames, {} packets a \
             trial: highest loss-free rate (messages/s), latency at 200,000 packets/s",
            size.packets
        ),
        timings,
        checks,
        distributions: results.into_iter().map(|r| r.latency).collect(),
        notes: vec![
            "on a veth the receive work runs on the sending CPU: the sender's core is the \
             ceiling of every path's rate (docs: DESIGN, veth facts)"
                .into(),
        ],
    })
}
