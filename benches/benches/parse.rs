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

use std::ops::ControlFlow;

use criterion::{Criterion, Throughput, criterion_group};
use ticklane_appliance::source::admission::{Admission, Checksums};
use ticklane_benches::{MoldStream, interleaved_best};
use ticklane_capture::feed::{Feed, FeedFilter};
use ticklane_protocols::itch::{self, Handler};
use ticklane_protocols::moldudp64::{HEADER_LEN, Packet};
use ticklane_protocols::wire::checksum::UdpChecksum;
use ticklane_protocols::wire::{self, UdpFrame, UdpFrameSpec};

const MESSAGES: u64 = 500_000;

/// The work every contender does per message: fold the order-flow fields.
#[derive(Default)]
struct Fold(u64);

impl Fold {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = self.0.wrapping_mul(31).wrapping_add(v);
    }
}

impl Handler for Fold {
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.add(m.order_reference_number() ^ u64::from(m.shares()) ^ u64::from(m.price()));
    }
    fn on_add_order_mpid(&mut self, m: &itch::AddOrderMpid) {
        self.add(m.order_reference_number() ^ u64::from(m.shares()) ^ u64::from(m.price()));
    }
    fn on_order_executed(&mut self, m: &itch::OrderExecuted) {
        self.add(m.order_reference_number() ^ u64::from(m.executed_shares()));
    }
    fn on_order_cancel(&mut self, m: &itch::OrderCancel) {
        self.add(m.order_reference_number() ^ u64::from(m.cancelled_shares()));
    }
    fn on_order_delete(&mut self, m: &itch::OrderDelete) {
        self.add(m.order_reference_number());
    }
    fn on_order_replace(&mut self, m: &itch::OrderReplace) {
        self.add(m.new_order_reference_number() ^ u64::from(m.shares()) ^ u64::from(m.price()));
    }
}

impl itch5::MessageHandler for Fold {
    fn on_add_order_no_mpid_attribution(
        &mut self,
        m: &itch5::messages::AddOrderNoMPIDAttribution,
    ) -> ControlFlow<()> {
        self.add(
            m.order_reference_number() ^ u64::from(m.shares()) ^ u64::from(m.price().into_u32()),
        );
        ControlFlow::Continue(())
    }
    fn on_add_order_with_mpid_attribution(
        &mut self,
        m: &itch5::messages::AddOrderWithMPIDAttribution,
    ) -> ControlFlow<()> {
        self.add(
            m.order_reference_number() ^ u64::from(m.shares()) ^ u64::from(m.price().into_u32()),
        );
        ControlFlow::Continue(())
    }
    fn on_order_executed(&mut self, m: &itch5::messages::OrderExecuted) -> ControlFlow<()> {
        self.add(m.order_reference_number() ^ u64::from(m.executed_shares()));
        ControlFlow::Continue(())
    }
    fn on_order_cancel(&mut self, m: &itch5::messages::OrderCancel) -> ControlFlow<()> {
        self.add(m.order_reference_number() ^ u64::from(m.cancelled_shares()));
        ControlFlow::Continue(())
    }
    fn on_order_delete(&mut self, m: &itch5::messages::OrderDelete) -> ControlFlow<()> {
        self.add(m.order_reference_number());
        ControlFlow::Continue(())
    }
    fn on_order_replace(&mut self, m: &itch5::messages::OrderReplace) -> ControlFlow<()> {
        self.add(
            m.new_order_reference_number()
                ^ u64::from(m.shares())
                ^ u64::from(m.price().into_u32()),
        );
        ControlFlow::Continue(())
    }
}

fn ticklane_run(stream: &MoldStream) -> u64 {
    let mut fold = Fold::default();
    for bytes in stream.iter() {
        let Ok(packet) = Packet::new_checked(bytes) else {
            continue;
        };
        for (_, m) in packet.messages() {
            let _ = itch::dispatch(m, &mut fold);
        }
    }
    fold.0
}

fn itch5_run(stream: &MoldStream) -> u64 {
    let mut fold = Fold::default();
    for bytes in stream.iter() {
        // MoldUDP64 message blocks are BinaryFILE framing: hand them over.
        let _ = itch5::Parser::new(&bytes[HEADER_LEN..]).parse_stream(&mut fold);
    }
    fold.0
}

/// itchy reads a framed stream from `io::Read`; it gets all blocks at once,
/// which spares it the per-packet set-up the others pay.
fn itchy_run(blocks: &[u8]) -> u64 {
    let mut fold = Fold::default();
    for m in itchy::MessageStream::from_reader(blocks) {
        let Ok(m) = m else { break };
        match m.body {
            itchy::Body::AddOrder(a) => {
                fold.add(a.reference ^ u64::from(a.shares) ^ u64::from(a.price.raw()))
            }
            itchy::Body::OrderExecuted {
                reference,
                executed,
                ..
            } => fold.add(reference ^ u64::from(executed)),
            itchy::Body::OrderCancelled {
                reference,
                cancelled,
            } => fold.add(reference ^ u64::from(cancelled)),
            itchy::Body::DeleteOrder { reference } => fold.add(reference),
            itchy::Body::ReplaceOrder(r) => {
                fold.add(r.new_reference ^ u64::from(r.shares) ^ u64::from(r.price.raw()))
            }
            _ => {}
        }
    }
    fold.0
}

fn memcpy_run(src: &[u8], dst: &mut [u8]) -> u64 {
    dst.copy_from_slice(src);
    u64::from(dst[dst.len() / 2])
}

struct Inputs {
    stream: MoldStream,
    /// The message blocks of every packet, concatenated (BinaryFILE framing),
    /// without 'h' and 'O', which itchy cannot parse.
    itchy_blocks: Vec<u8>,
}

fn inputs() -> Inputs {
    let stream = MoldStream::generate(MESSAGES, 500, 1400);
    let mut itchy_blocks = Vec::with_capacity(stream.bytes.len());
    for bytes in stream.iter() {
        let packet = Packet::new_checked(bytes).expect("generated packets are valid");
        for (_, m) in packet.messages() {
            if !matches!(m[0], b'h' | b'O') {
                itchy_blocks.extend_from_slice(&(m.len() as u16).to_be_bytes());
                itchy_blocks.extend_from_slice(m);
            }
        }
    }
    Inputs {
        stream,
        itchy_blocks,
    }
}

fn bench_parse(c: &mut Criterion) {
    let inp = inputs();
    let mut dst = vec![0u8; inp.stream.bytes.len()];
    let mut g = c.benchmark_group("parse_dispatch");
    g.throughput(Throughput::Elements(inp.stream.messages));
    g.sample_size(20);
    g.bench_function("ticklane", |b| b.iter(|| ticklane_run(&inp.stream)));
    g.bench_function("itch5", |b| b.iter(|| itch5_run(&inp.stream)));
    g.bench_function("itchy", |b| b.iter(|| itchy_run(&inp.itchy_blocks)));
    g.bench_function("memcpy", |b| {
        b.iter(|| memcpy_run(&inp.stream.bytes, &mut dst))
    });
    g.finish();
}

/// The same-run ratio report.
fn report() {
    let inp = inputs();
    let mut dst = vec![0u8; inp.stream.bytes.len()];
    let (stream, blocks) = (&inp.stream, &inp.itchy_blocks);
    let mut t = || ticklane_run(stream);
    let mut f = || itch5_run(stream);
    let mut y = || itchy_run(blocks);
    let mut m = || memcpy_run(&stream.bytes, &mut dst);
    let results = interleaved_best(
        15,
        &mut [
            ("ticklane", &mut t),
            ("itch5", &mut f),
            ("itchy", &mut y),
            ("memcpy", &mut m),
        ],
    );
    assert_eq!(
        results[0].2, results[1].2,
        "ticklane and itch5 must fold the same values"
    );
    let secs = |name: &str| {
        results
            .iter()
            .find(|r| r.0 == name)
            .map(|r| r.1.as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let bytes = stream.bytes.len() as f64;
    let msgs = stream.messages as f64;
    println!(
        "\nparse + dispatch of {} messages in {} MoldUDP64 packets ({:.1} MB), best of 15 interleaved runs:",
        stream.messages,
        stream.packets.len(),
        bytes / 1e6
    );
    for (name, d, _) in &results {
        let s = d.as_secs_f64();
        if name == "memcpy" {
            println!(
                "  {name:<9} {:>8.2} ms  {:>7.2} GB/s",
                s * 1e3,
                bytes / s / 1e9
            );
        } else {
            println!(
                "  {name:<9} {:>8.2} ms  {:>7.2} GB/s  {:>8.1} M msg/s  {:>6.2} ns/msg",
                s * 1e3,
                bytes / s / 1e9,
                msgs / s / 1e6,
                s / msgs * 1e9
            );
        }
    }
    let tl = secs("ticklane");
    println!("ratios (same run):");
    println!(
        "  ticklane vs itchy : {:>6.1}x faster (target >= 10x)",
        secs("itchy") / tl
    );
    println!("  ticklane vs itch5 : {:>6.2}x faster", secs("itch5") / tl);
    println!(
        "  ticklane / memcpy bandwidth: {:>5.1}% (target >= 50%)",
        100.0 * secs("memcpy") / tl
    );
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
