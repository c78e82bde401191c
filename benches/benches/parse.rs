//! Parse + dispatch of one in-memory MoldUDP64 stream of generated messages:
//! ticklane against the peer crates `itch5` (zerocopy) and `itchy` (nom), and
//! against a plain memcpy of the same bytes, all in one run.
//!
//! Every contender reads the same fields from the order-flow messages (add,
//! execute, cancel, delete, replace) so that none can skip the work. Criterion
//! measures each one; a final interleaved best-of-N pass prints messages/s and
//! the ratios (targets: ≥ 10× itchy, ≥ 50% of memcpy bandwidth).

use std::ops::ControlFlow;

use criterion::{Criterion, Throughput, criterion_group};
use ticklane_benches::{MoldStream, interleaved_best};
use ticklane_protocols::itch::{self, Handler};
use ticklane_protocols::moldudp64::{HEADER_LEN, Packet};

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

criterion_group!(benches, bench_parse);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}
