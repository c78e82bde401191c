//! The audit journal's append rate on one core and its bytes per message,
//! over the generated realistic message mix, against a baseline measured in
//! the same run: the same message bytes written to a file with no framing
//! and no CRC (what an append-only file costs at the least). Target: ≥ 5 M
//! messages/s journaled on one core. That suite lives in the library
//! (`ticklane bench --suite audit` runs it too).
//!
//! Then the poller's latency per packet with the audit on (the writer thread
//! draining the audit ring into a journal, fsync every 100 ms, as `ticklane
//! run --audit-dir` does) against off (the ring drained and dropped by a
//! thread waking as often): the same production poller over the same
//! in-memory feed, interleaved in the same run, p50/p99/p99.9 per packet
//! and their ratio. Target: p99 unchanged within noise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::BusConfig;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Poller, PollerConfig, TimeBase};
use ticklane_appliance::source::memory::MemorySource;
use ticklane_appliance::source::{
    Arrival, Polled, Source, SourceCounters, SourceError, Verdict, Wait,
};
use ticklane_audit::fill::FillConfig;
use ticklane_audit::journal::{FsyncPolicy, Journal, JournalConfig};
use ticklane_audit::writer::{AuditWriter, take_audit};
use ticklane_benches::MoldStream;
use ticklane_benches::suite::{self, Scale};

const MESSAGES: u64 = 1_000_000;

/// The memory source handing over one packet per poll and noting when
/// each poll starts (ns since `base`, into room made beforehand): the time
/// between two polls is what the poller spent on one packet.
struct Timed {
    inner: MemorySource,
    base: Instant,
    marks: Arc<[AtomicU64]>,
    at: Arc<AtomicUsize>,
}

impl Source for Timed {
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        wait: Wait,
        f: F,
    ) -> Result<Polled, SourceError> {
        let i = self.at.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.marks.get(i) {
            m.store(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        self.inner.poll(wait, f)
    }

    fn counters(&self) -> SourceCounters {
        self.inner.counters()
    }
}

/// Per-packet poller times (ns, sorted) over `stream`, the audit ring
/// drained by the journal writer (`audit`) or by a thread that drops it.
fn poller_latencies(stream: &MoldStream, audit: bool) -> Vec<u64> {
    let (pipeline, mut subscribers) = Pipeline::with_bus(
        Books::new(1 << 18),
        Vwap::default(),
        BusConfig {
            events: 1 << 10,
            audit: 1 << 20,
        },
    );
    let mut ring = take_audit(&mut subscribers);
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");
    let done = Arc::new(AtomicBool::new(false));
    let (writer, dropper) = if audit {
        let (journal, _) = Journal::open(
            dir.path(),
            JournalConfig {
                segment_bytes: 64 << 20,
                fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
            },
        )
        .expect("opening the journal");
        (
            Some(AuditWriter::spawn(ring, journal, FillConfig::default()).expect("the writer")),
            None,
        )
    } else {
        let done = done.clone();
        let t = std::thread::spawn(move || {
            loop {
                let last = done.load(Ordering::Acquire);
                while ring.pop().is_ok() {}
                if last {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        (None, Some(t))
    };
    let packets = stream.packets.len();
    let marks: Arc<[AtomicU64]> = (0..packets + 2).map(|_| AtomicU64::new(0)).collect();
    let mut inner = MemorySource::new(1);
    for p in stream.iter() {
        inner.push(0, p);
    }
    let source = Timed {
        inner,
        base: Instant::now(),
        marks: marks.clone(),
        at: Arc::new(AtomicUsize::new(0)),
    };
    let cfg = PollerConfig {
        time: TimeBase::Capture,
        ..PollerConfig::default()
    };
    let stop = AtomicBool::new(false);
    let (mut poller, _stats) =
        Poller::new(source, pipeline, None, cfg, &stop).expect("a poller over memory");
    let ending = poller.run().expect("memory never fails");
    let delivered = poller.finish(ending).snapshot.delivered;
    assert_eq!(delivered, stream.messages);
    if let Some(w) = writer {
        let r = w.finish(&[]);
        assert_eq!(r.journaled, stream.messages, "the whole feed journaled");
    }
    done.store(true, Ordering::Release);
    if let Some(t) = dropper {
        t.join().expect("the dropping thread");
    }
    let marks: Vec<u64> = marks.iter().map(|m| m.load(Ordering::Relaxed)).collect();
    let mut lat: Vec<u64> = marks[..=packets]
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    lat.sort_unstable();
    lat
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Poller p50/p99/p99.9 per packet, audit on and off, `rounds` interleaved
/// runs; each percentile's median over the rounds.
fn latency_report(stream: &MoldStream, rounds: usize) {
    let ps = [0.5, 0.99, 0.999];
    let mut on: Vec<Vec<u64>> = vec![Vec::new(); ps.len()];
    let mut off: Vec<Vec<u64>> = vec![Vec::new(); ps.len()];
    for _ in 0..rounds {
        for (audit, into) in [(false, &mut off), (true, &mut on)] {
            let lat = poller_latencies(stream, audit);
            for (i, p) in ps.iter().enumerate() {
                into[i].push(percentile(&lat, *p));
            }
        }
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let msgs_per_packet = stream.messages as f64 / stream.packets.len() as f64;
    println!(
        "\npoller latency per packet (production poller, memory source, {} packets of {:.1} messages), median of {rounds} interleaved runs:",
        stream.packets.len(),
        msgs_per_packet
    );
    let mut ratios = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let (a, b) = (median(&mut on[i]), median(&mut off[i]));
        ratios.push(a as f64 / b as f64);
        println!(
            "  p{:<5} audit off {a_off:>7} ns  on {a:>7} ns  on/off {:.2}  ({:.1} / {:.1} ns per message)",
            p * 100.0,
            a as f64 / b as f64,
            b as f64 / msgs_per_packet,
            a as f64 / msgs_per_packet,
            a_off = b,
        );
    }
    println!(
        "ratio (same run): poller p99 audit on / off = {:.2}; target: unchanged within noise (<= 1.10): {}",
        ratios[1],
        if ratios[1] <= 1.10 { "met" } else { "NOT met" }
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scale = Scale {
        messages: MESSAGES,
        rounds: 5,
    };
    match suite::audit::run(scale, std::path::Path::new(".")) {
        Ok(s) => print!("{}", s.text()),
        Err(e) => panic!("audit suite: {e}"),
    }
    latency_report(&MoldStream::generate(MESSAGES, 500, 1400), 5);
}
