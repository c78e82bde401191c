//! Parse + dispatch of one in-memory MoldUDP64 stream of generated messages:
//! ticklane against the peer crates `itch5` (zerocopy) and `itchy` (nom), and
//! against a plain memcpy of the same bytes, all in one run.
//!
//! Every contender reads the same fields from the order-flow messages (add,
//! execute, cancel, delete, replace) so that none can skip the work. Criterion
//! measures each one; a final interleaved best-of-N pass prints messages/s and
//! the ratios (targets: ≥ 10× itchy, ≥ 50% of memcpy bandwidth).
//!
//! Then the cost of the checksums the AF_XDP source verifies (IPv4 header,
//! UDP over its pseudo-header) per packet, on the same kind of packets in
//! Ethernet/IPv4/UDP frames, large (up to 1400-byte payloads) and small (up
//! to 200), in cache and streamed from memory, against a memcpy of the same
//! frames and the textbook 16-bit RFC 1071 loop, with the whole frame check
//! of the source with and without verification and parse + dispatch of the
//! same packets, each set in one interleaved run.

use criterion::{Criterion, Throughput, criterion_group};
use ticklane_appliance::source::admission::{Admission, Checksums};
use ticklane_benches::suite::parse::{CONTENDERS, Inputs, memcpy_run, ticklane_run};
use ticklane_benches::suite::{self, Scale};
use ticklane_benches::{MoldStream, interleaved_best};
use ticklane_capture::feed::{Feed, FeedFilter};
use ticklane_protocols::wire::checksum::UdpChecksum;
use ticklane_protocols::wire::{self, UdpFrame, UdpFrameSpec};

const MESSAGES: u64 = 500_000;

fn bench_parse(c: &mut Criterion) {
    let inp = Inputs::generate(MESSAGES);
    let mut dst = vec![0u8; inp.stream.bytes.len()];
    let mut g = c.benchmark_group("parse_dispatch");
    g.throughput(Throughput::Elements(inp.stream.messages));
    g.sample_size(20);
    for name in CONTENDERS {
        g.bench_function(name, |b| b.iter(|| inp.run(name, &mut dst)));
    }
    g.finish();
}

/// The same-run ratio report (the suite `ticklane bench` runs too).
fn report() {
    let scale = Scale {
        messages: MESSAGES,
        rounds: 8,
    };
    match suite::parse::run(scale) {
        Ok(s) => print!("{}", s.text()),
        Err(e) => panic!("parse suite: {e}"),
    }
}

/// The packets of a stream in the frames the AF_XDP source receives.
struct Frames {
    bytes: Vec<u8>,
    frames: Vec<(usize, usize)>,
}

const SOURCE: [u8; 4] = [198, 18, 0, 1];
const GROUP: [u8; 4] = [239, 1, 1, 1];
const PORT: u16 = 26477;

impl Frames {
    fn of(stream: &MoldStream) -> Self {
        let spec = UdpFrameSpec::multicast([2, 0, 0, 0, 0, 1], SOURCE, GROUP, PORT);
        let mut frame = [0u8; 2048];
        let mut bytes = Vec::with_capacity(stream.bytes.len() + 64 * stream.packets.len());
        let mut frames = Vec::with_capacity(stream.packets.len());
        for p in stream.iter() {
            let n = wire::write_udp_frame(&mut frame, &spec, p).expect("a packet fits a frame");
            let start = bytes.len();
            bytes.extend_from_slice(&frame[..n]);
            frames.push((start, bytes.len()));
        }
        Self { bytes, frames }
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().map(|&(s, e)| &self.bytes[s..e])
    }

    fn parsed(&self) -> Vec<UdpFrame<'_>> {
        self.iter()
            .map(|f| wire::parse_ethernet_udp(f).expect("a generated frame"))
            .collect()
    }
}

/// Both checksums of every (already parsed) frame: what verification adds.
fn checksum_run(parsed: &[UdpFrame<'_>]) -> u64 {
    parsed
        .iter()
        .filter(|u| u.ipv4_checksum_ok() && u.udp_checksum() == UdpChecksum::Valid)
        .count() as u64
}

/// The textbook RFC 1071 loop, 16 bits at a time: the baseline of the sum.
fn sum16(bytes: &[u8]) -> u32 {
    let mut s: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        s += u32::from(*last) << 8;
    }
    s
}

fn fold(mut s: u32) -> u32 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

/// The same verification with the textbook loop (untagged frames without
/// IP options, as generated).
fn checksum16_run(frames: &Frames) -> u64 {
    frames
        .iter()
        .filter(|f| {
            let pseudo = sum16(&f[26..34]) + 17 + (f.len() - 34) as u32;
            fold(sum16(&f[14..34])) == 0xffff && fold(pseudo + sum16(&f[34..])) == 0xffff
        })
        .count() as u64
}

/// The AF_XDP source's frame check (walk, feed, checksums as told).
fn admit_run(frames: &Frames, checksums: Checksums) -> u64 {
    let feed = Feed {
        group: GROUP.into(),
        port: PORT,
        source: Some(SOURCE.into()),
    };
    let mut admission = Admission::new(FeedFilter { feeds: vec![feed] }, checksums);
    frames
        .iter()
        .filter_map(|f| admission.admit(f))
        .map(|(_, p)| p.len() as u64)
        .sum()
}

fn bench_checksum(c: &mut Criterion) {
    let stream = MoldStream::generate(MESSAGES, 500, 1400);
    let frames = Frames::of(&stream);
    let parsed = frames.parsed();
    let mut dst = vec![0u8; frames.bytes.len()];
    let mut g = c.benchmark_group("checksum_per_packet");
    g.throughput(Throughput::Elements(frames.frames.len() as u64));
    g.sample_size(20);
    g.bench_function("verify", |b| b.iter(|| checksum_run(&parsed)));
    g.bench_function("memcpy", |b| b.iter(|| memcpy_run(&frames.bytes, &mut dst)));
    g.finish();
}

criterion_group!(benches, bench_parse, bench_checksum);

/// The same-run report of the checksum cost, for packets of at most
/// `max_payload` bytes, `messages` of them in all, each contender going over
/// the frames `rounds` times per run. Few messages keep the frames in the
/// caches, as on the live path, where the kernel (copy mode) or the NIC has
/// just written the frame; many stream them from memory.
fn report_checksums(max_payload: usize, messages: u64, rounds: u64) {
    let stream = MoldStream::generate(messages, 500, max_payload);
    let frames = Frames::of(&stream);
    let parsed = frames.parsed();
    let packets = frames.frames.len() as u64 * rounds;
    let mut dst = vec![0u8; frames.bytes.len()];
    let repeat = |f: &mut dyn FnMut() -> u64| (0..rounds).map(|_| f()).sum::<u64>();
    let mut sum = || repeat(&mut || checksum_run(&parsed));
    let mut sum16 = || repeat(&mut || checksum16_run(&frames));
    let mut copy = || repeat(&mut || memcpy_run(&frames.bytes, &mut dst));
    let mut verify = || repeat(&mut || admit_run(&frames, Checksums::Verify));
    let mut trust = || repeat(&mut || admit_run(&frames, Checksums::TrustNic));
    let mut parse = || repeat(&mut || ticklane_run(&stream));
    let results = interleaved_best(
        15,
        &mut [
            ("checksums", &mut sum),
            ("textbook", &mut sum16),
            ("memcpy", &mut copy),
            ("check+verify", &mut verify),
            ("check,trust", &mut trust),
            ("parse+dispatch", &mut parse),
        ],
    );
    assert_eq!(results[0].2, packets, "every frame verifies");
    assert_eq!(results[1].2, packets, "the textbook loop agrees");
    assert_eq!(
        results[3].2, results[4].2,
        "verified frames are all admitted"
    );
    let ns = |name: &str| {
        results
            .iter()
            .find(|r| r.0 == name)
            .map(|r| r.1.as_secs_f64() * 1e9 / packets as f64)
            .unwrap_or(f64::NAN)
    };
    let bytes = frames.bytes.len() as f64;
    println!(
        "\nchecksums of frames of up to {} bytes ({:.0} B on average), {:.2} MB of frames {}, best of 15 interleaved runs:",
        max_payload + wire::frame::FRAME_OVERHEAD,
        bytes / frames.frames.len() as f64,
        bytes / 1e6,
        if rounds > 1 {
            "gone over again and again (in cache)"
        } else {
            "gone over once (from memory)"
        }
    );
    for (name, d, _) in &results {
        let s = d.as_secs_f64();
        println!(
            "  {name:<15} {:>7.2} ns/packet  {:>6.2} GB/s of frames",
            s * 1e9 / packets as f64,
            bytes * rounds as f64 / s / 1e9
        );
    }
    let cost = ns("check+verify") - ns("check,trust");
    println!(
        "  ratios: checksums {:.2}x the time of memcpy; the textbook 16-bit loop {:.2}x slower; \
         verification adds {cost:.2} ns/packet to the source's frame check \
         ({:.1}% of parse+dispatch)",
        ns("checksums") / ns("memcpy"),
        ns("textbook") / ns("checksums"),
        100.0 * cost / ns("parse+dispatch")
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
    for max_payload in [1400, 200] {
        report_checksums(max_payload, 8_000, 60);
        report_checksums(max_payload, MESSAGES, 1);
    }
}
