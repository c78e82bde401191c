//! Shared pieces of the benchmarks: the in-memory feed they all parse, and a
//! same-run ratio report.

pub mod baseline;
pub mod suite;

use std::time::{Duration, Instant};

use std::sync::atomic::AtomicBool;

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::BusConfig;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Finished, Poller, PollerConfig, PollerError, TimeBase};
use ticklane_appliance::request::RequestServer;
use ticklane_appliance::session::SessionConfig;
use ticklane_appliance::source::Source;
use ticklane_appliance::source::memory::MemorySource;
use ticklane_lab::market::{MAX_MESSAGE_LEN, Market, MarketConfig, Mix};
use ticklane_protocols::moldudp64::{PacketBuilder, Session};

/// A generated MoldUDP64 stream held in memory.
pub struct MoldStream {
    /// All packets back to back.
    pub bytes: Vec<u8>,
    /// `(start, end)` of every packet in `bytes`.
    pub packets: Vec<(usize, usize)>,
    /// Messages in all packets.
    pub messages: u64,
}

impl MoldStream {
    /// Packs `messages` messages of a synthetic day (the generator's
    /// default, recent mix) into packets of at most `max_payload` bytes.
    pub fn generate(messages: u64, stocks: u16, max_payload: usize) -> Self {
        Self::market(
            MarketConfig {
                seed: 42,
                stocks,
                messages,
                max_live_orders: 100_000,
                mix: Mix::Recent,
                resting: 0,
            },
            max_payload,
        )
    }

    /// Packs the messages of a synthetic market into packets of at most
    /// `max_payload` bytes.
    pub fn market(config: MarketConfig, max_payload: usize) -> Self {
        let mut market = Market::new(config);
        let session = Session::from_name(b"BENCH").expect("short name");
        let mut msg = [0u8; MAX_MESSAGE_LEN];
        let mut payload = vec![0u8; max_payload];
        let mut bytes = Vec::new();
        let mut packets = Vec::new();
        let mut seq = 1;
        let mut pending = market.next_message(&mut msg);
        while pending.is_some() {
            let mut b = PacketBuilder::new(&mut payload, session, seq).expect("room for a header");
            while let Some(n) = pending {
                if b.push(&msg[..n]).is_err() {
                    break;
                }
                pending = market.next_message(&mut msg);
            }
            seq += u64::from(b.count());
            let start = bytes.len();
            bytes.extend_from_slice(b.finish());
            packets.push((start, bytes.len()));
        }
        Self {
            bytes,
            packets,
            messages: seq - 1,
        }
    }

    /// The packets as slices.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.packets.iter().map(|&(s, e)| &self.bytes[s..e])
    }

    /// The packets as a poller's source (one line), handed over in batches
    /// of 64 as a NIC ring would.
    pub fn source(&self) -> MemorySource {
        let mut source = MemorySource::new(64);
        for p in self.iter() {
            source.push(0, p);
        }
        source
    }
}

/// Best (shortest) time of `rounds` interleaved runs of each contender, so
/// that all contenders see the same machine conditions.
pub fn interleaved_best(
    rounds: usize,
    contenders: &mut [(&str, &mut dyn FnMut() -> u64)],
) -> Vec<(String, Duration, u64)> {
    let mut best = vec![Duration::MAX; contenders.len()];
    let mut checks = vec![0u64; contenders.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in contenders.iter_mut().enumerate() {
            let t = Instant::now();
            checks[i] = std::hint::black_box(run());
            best[i] = best[i].min(t.elapsed());
        }
    }
    contenders
        .iter()
        .zip(best)
        .zip(checks)
        .map(|(((name, _), d), c)| ((*name).to_owned(), d, c))
        .collect()
}

/// Two network namespaces joined by a veth pair, for the benchmarks that
/// put frames on a wire; made fresh (a leftover of a killed run is removed
/// first) and removed on drop.
pub struct VethLab {
    /// Namespace of side a.
    pub ns_a: &'static str,
    /// Namespace of side b.
    pub ns_b: &'static str,
    /// Interface in a.
    pub va: &'static str,
    /// Interface in b.
    pub vb: &'static str,
}

/// Runs `ip` with `args`, insisting that it succeeds.
pub fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl VethLab {
    /// Makes the namespaces and the pair, with `net`.1 on `va` and `net`.2
    /// on `vb` (`net` being three octets of 198.18.0.0/15, e.g. "198.18.200").
    pub fn new(
        (ns_a, ns_b): (&'static str, &'static str),
        (va, vb): (&'static str, &'static str),
        net: &str,
    ) -> Self {
        let lab = Self { ns_a, ns_b, va, vb };
        lab.remove();
        ip(&["netns", "add", ns_a]);
        ip(&["netns", "add", ns_b]);
        ip(&[
            "link", "add", va, "netns", ns_a, "type", "veth", "peer", "name", vb, "netns", ns_b,
        ]);
        ip(&["-n", ns_a, "addr", "add", &format!("{net}.1/24"), "dev", va]);
        ip(&["-n", ns_b, "addr", "add", &format!("{net}.2/24"), "dev", vb]);
        for (ns, dev) in [(ns_a, va), (ns_b, vb)] {
            ip(&["-n", ns, "link", "set", dev, "mtu", "1500", "up"]);
        }
        lab
    }

    fn remove(&self) {
        for ns in [self.ns_a, self.ns_b] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for VethLab {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Turns on threaded NAPI on interface `dev` of namespace `ns` (a veth
/// has NAPI only while an XDP program is attached: call it after attaching)
/// and pins its threads to `core`.
pub fn threaded_napi(ns: &str, dev: &str, core: usize) {
    // Through the namespace's own sysfs (a thread's setns does not remount it).
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("echo 1 > /sys/class/net/{dev}/threaded"))
        .status()
        .expect("ip runs");
    assert!(status.success(), "setting threaded NAPI on {dev}");
    pin_napi_threads(dev, core);
}

/// Pins the NAPI kernel threads of interface `dev` (`napi/<dev>-<id>`, the
/// name cut to 15 characters) to `core`; panics when there is none (set
/// threaded NAPI first).
pub fn pin_napi_threads(dev: &str, core: usize) {
    let prefix: String = format!("napi/{dev}-").chars().take(15).collect();
    let mut pinned = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(&prefix) {
            pin_task(pid, core);
            pinned += 1;
        }
    }
    assert!(pinned > 0, "no NAPI thread named {prefix}* to pin");
}

/// Pins task `pid` (0: the calling thread) to `core`.
pub fn pin_task(pid: i32, core: usize) {
    // SAFETY: an empty cpu_set_t is all zeros; CPU_SET writes inside it
    // (core < CPU_SETSIZE on any machine this runs on); sched_setaffinity
    // only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Moves the calling thread into network namespace `ns`.
pub fn enter(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace exists");
    // SAFETY: `f` is an open namespace descriptor; setns(2) moves only the
    // calling thread.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

/// The production path: the poller over packets in memory, into the
/// delivery sink (books, VWAP, tape, bus, audit ring; nobody drains the
/// rings, so full ones count their drops as they would in production),
/// with books sized for `max_orders`, serving the control plane's requests
/// of `requests` when given. Returns the messages delivered.
pub fn whole_pipeline(
    source: &MemorySource,
    max_orders: usize,
    requests: Option<RequestServer>,
) -> u64 {
    pipeline_over(source.clone(), max_orders, requests)
        .expect("a poller over memory never fails")
        .snapshot
        .delivered
}

/// [`whole_pipeline`] over any source; returns what the poller finished
/// with.
pub fn pipeline_over<S: Source>(
    source: S,
    max_orders: usize,
    requests: Option<RequestServer>,
) -> Result<Finished<S>, PollerError> {
    let (pipeline, _subscribers) = Pipeline::with_bus(
        Books::new(max_orders),
        Vwap::default(),
        BusConfig {
            events: 1 << 10,
            audit: 1 << 10,
        },
    );
    let cfg = PollerConfig {
        session: SessionConfig {
            window_packets: 64,
            ..SessionConfig::default()
        },
        time: TimeBase::Capture,
        ..PollerConfig::default()
    };
    let stop = AtomicBool::new(false);
    let (mut poller, _stats) = Poller::new(source, pipeline, None, cfg, &stop)?;
    if let Some(server) = requests {
        poller.serve(server);
    }
    let ending = poller.run()?;
    Ok(poller.finish(ending))
}
