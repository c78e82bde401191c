//! `ticklane send` against Debian's `tcpreplay --topspeed`, on the same veth
//! pair in the same run: the whole sending process timed, every frame
//! counted where it arrives (the peer's rx_packets), for the AF_XDP path
//! (`--via xdp`), the AF_PACKET path (`--via packet`) and tcpreplay,
//! interleaved, best of 3. Then the steadiness of a paced send: the rate in
//! every 10 ms at `--pps 200000`. Target: AF_XDP ≥ 3× tcpreplay's
//! packets/s.
//!
//! Needs root and tcpreplay (`apt-get install tcpreplay`; without it only
//! the two ticklane paths are compared). Builds its own namespaces
//! (198.18.0.0/15) and removes them. Run:
//! `cargo bench -p ticklane-benches --bench send`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ticklane_appliance::source::steering::{Steering, XdpModeRequest};
use ticklane_benches::{VethLab, enter, threaded_napi};

const NS_A: &str = "tlsenda";
const NS_B: &str = "tlsendb";
const VA: &str = "vtlsenda";
const VB: &str = "vtlsendb";

/// The release binary, built now.
fn ticklane() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "ticklane"])
        .current_dir(&root)
        .status()
        .expect("cargo");
    assert!(status.success(), "building ticklane");
    root.join("target/release/ticklane")
}

fn received() -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", NS_B, "cat"])
        .arg(format!("/sys/class/net/{VB}/statistics/rx_packets"))
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

/// Runs `command` in namespace a; returns (wall seconds, frames received).
fn timed(command: &[&str]) -> (f64, u64) {
    let before = received();
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", NS_A])
        .args(command)
        .output()
        .expect("the sender runs");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, received() - before)
}

/// Samples the peer's rx_packets every 10 ms while `run` runs; returns the
/// per-interval rates (packets/s) of the intervals where frames arrived.
fn steadiness(run: impl FnOnce()) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sampler = std::thread::spawn(move || {
        // This thread's namespace's counters (sysfs shows the mounter's).
        enter(NS_B);
        let read = || -> u64 {
            let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
            dev.lines()
                .find_map(|l| l.trim_start().strip_prefix(&format!("{VB}:")))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        let mut samples = Vec::new();
        let (mut last, mut at) = (read(), Instant::now());
        for _ in 0..6000 {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            let (now, t) = (read(), Instant::now());
            samples.push((now - last) as f64 / t.duration_since(at).as_secs_f64());
            (last, at) = (now, t);
        }
        samples
    });
    run();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("the sampler");
    // The intervals of the send itself: trim the idle ones at both ends and
    // the partial first and last.
    let busy: Vec<f64> = samples.into_iter().filter(|r| *r > 0.0).collect();
    busy.get(1..busy.len().saturating_sub(1))
        .unwrap_or_default()
        .to_vec()
}

/// Runs `contenders` (each prefixed with `prefix`) best of 3 interleaved
/// and prints their rates and ratios (tcpreplay last when `tcpreplay`).
fn race(contenders: &[(&str, Vec<&str>)], tcpreplay: bool, prefix: &[&str]) {
    let mut best = vec![(f64::MAX, 0u64); contenders.len()];
    for _ in 0..3 {
        for (i, (_, command)) in contenders.iter().enumerate() {
            let command: Vec<&str> = prefix.iter().chain(command).copied().collect();
            let (secs, frames) = timed(&command);
            if secs < best[i].0 {
                best[i] = (secs, frames);
            }
        }
    }
    let rate = |(secs, frames): (f64, u64)| frames as f64 / secs;
    for ((name, _), b) in contenders.iter().zip(&best) {
        println!(
            "  {name:<28} {:>8.0} packets/s ({} received in {:.3} s)",
            rate(*b),
            b.1,
            b.0
        );
    }
    println!("  ratios (same run):");
    println!(
        "    AF_XDP / AF_PACKET: {:.2}x",
        rate(best[0]) / rate(best[1])
    );
    if tcpreplay {
        println!(
            "    AF_XDP / tcpreplay: {:.2}x (target >= 3x)",
            rate(best[0]) / rate(best[2])
        );
    }
}

/// XDP attached to the receiving veth (the steering program with no
/// subscription: everything passes to the kernel) and its NAPI threaded
/// and pinned to core 1, until dropped.
struct ReceiverOnItsOwnCore {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReceiverOnItsOwnCore {
    fn start() -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(NS_B);
            let mut xdp = Steering::load().expect("the XDP program loads");
            xdp.attach(VB, XdpModeRequest::Auto)
                .expect("XDP attaches to the receiving veth");
            threaded_napi(NS_B, VB, 1);
            ready.send(()).expect("the bench waits");
            let _ = stopped.recv();
            drop(xdp);
        });
        is_ready.recv().expect("the receiver is set up");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ReceiverOnItsOwnCore {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("send bench: needs root (network namespaces, AF_XDP): skipped");
        return;
    }
    let bin = ticklane();
    let dir = std::env::temp_dir().join(format!("tl-send-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let capture = dir.join("feed.pcap");
    let capture = capture.to_str().expect("a UTF-8 path");
    let bin = bin.to_str().expect("a UTF-8 path");
    // 500,000 small frames (4 messages each): what a sender's packet rate
    // is measured on.
    let generated = Command::new(bin)
        .args([
            "gen",
            "--messages",
            "2000000",
            "--stocks",
            "50",
            "--max-messages",
            "4",
            "-o",
            capture,
        ])
        .output()
        .expect("gen");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let _lab = VethLab::new((NS_A, NS_B), (VA, VB), "198.18.201");
    let tcpreplay = Command::new("tcpreplay").arg("--version").output().is_ok();
    if !tcpreplay {
        eprintln!(
            "send bench: tcpreplay is not installed (apt-get install tcpreplay): it is left out"
        );
    }
    let send = |via: &'static str| {
        vec![
            bin,
            "send",
            capture,
            "--iface",
            VA,
            "--topspeed",
            "--via",
            via,
        ]
    };
    let mut contenders: Vec<(&str, Vec<&str>)> = vec![
        ("ticklane send --via xdp", send("xdp")),
        ("ticklane send --via packet", send("packet")),
    ];
    if tcpreplay {
        contenders.push((
            "tcpreplay --topspeed",
            vec!["tcpreplay", "--topspeed", "-q", "-i", VA, capture],
        ));
    }
    println!(
        "sending 500,000 frames (≈184 bytes) on a veth pair, whole process, best of 3 interleaved:"
    );
    race(&contenders, tcpreplay, &[]);
    // A NIC's far end costs the sender nothing; a veth's runs on the
    // sending core unless NAPI is threaded. With XDP (ours, no
    // subscription: everything passes) and threaded NAPI on the receiving
    // veth pinned to core 1, and every sender on core 0, each sender is
    // measured on its own work.
    let receiver = ReceiverOnItsOwnCore::start();
    println!(
        "the same, the receiving veth's NAPI on core 1 (threaded, pinned), the senders on core 0:"
    );
    race(&contenders, tcpreplay, &["taskset", "-c", "0"]);
    drop(receiver);
    let paced = steadiness(|| {
        timed(&[
            bin, "send", capture, "--iface", VA, "--pps", "200000", "--via", "xdp",
        ]);
    });
    let n = paced.len().max(1) as f64;
    let mean = paced.iter().sum::<f64>() / n;
    let sd = (paced.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    println!(
        "paced at 200,000 packets/s via AF_XDP: achieved {mean:.0} packets/s over {} 10 ms intervals, standard deviation {:.1}%",
        paced.len(),
        100.0 * sd / mean.max(1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
