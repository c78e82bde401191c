//! Parse + dispatch of one in-memory MoldUDP64 stream of generated
//! messages: ticklane against the peer crates `itch5` (zerocopy) and
//! `itchy` (nom), and against a plain memcpy of the same bytes.
//!
//! Every contender reads the same fields from the order-flow messages (add,
//! execute, cancel, delete, replace) so that none can skip the work
//! (targets: ≥ 10× itchy, ≥ 50% of memcpy bandwidth).

use std::ops::ControlFlow;

use ticklane_protocols::itch::{self, Handler};
use ticklane_protocols::moldudp64::{HEADER_LEN, Packet};

use super::{Check, Scale, Suite, SuiteError, Target, timings};
use crate::{MoldStream, interleaved_best};

/// The work every contender does per message: fold the order-flow fields.
#[derive(Debug, Default)]
pub struct Fold(pub u64);

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

/// ticklane's parse + dispatch of every packet of `stream`.
pub fn ticklane_run(stream: &MoldStream) -> u64 {
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
        let _ =
            itch5::Parser::new(bytes.get(HEADER_LEN..).unwrap_or_default()).parse_stream(&mut fold);
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

/// A plain copy of `src` into `dst` (same length): the bandwidth ceiling.
pub fn memcpy_run(src: &[u8], dst: &mut [u8]) -> u64 {
    dst.copy_from_slice(src);
    u64::from(dst[dst.len() / 2])
}

/// The stream every contender parses.
pub struct Inputs {
    /// The generated packets.
    pub stream: MoldStream,
    /// The message blocks of every packet, concatenated (BinaryFILE
    /// framing), without 'h' and 'O', which itchy cannot parse.
    itchy_blocks: Vec<u8>,
}

impl Inputs {
    /// `messages` of the generator's default mix, 500 stocks, full packets.
    pub fn generate(messages: u64) -> Self {
        let stream = MoldStream::generate(messages, 500, 1400);
        let mut itchy_blocks = Vec::with_capacity(stream.bytes.len());
        for bytes in stream.iter() {
            let Ok(packet) = Packet::new_checked(bytes) else {
                continue;
            };
            for (_, m) in packet.messages() {
                if !matches!(m.first(), Some(b'h' | b'O')) {
                    itchy_blocks.extend_from_slice(&(m.len() as u16).to_be_bytes());
                    itchy_blocks.extend_from_slice(m);
                }
            }
        }
        Self {
            stream,
            itchy_blocks,
        }
    }

    /// One contender over the inputs, by name (for the criterion groups).
    pub fn run(&self, contender: &str, dst: &mut [u8]) -> u64 {
        match contender {
            "itch5" => itch5_run(&self.stream),
            "itchy" => itchy_run(&self.itchy_blocks),
            "memcpy" => memcpy_run(&self.stream.bytes, dst),
            _ => ticklane_run(&self.stream),
        }
    }
}

/// The contenders, ticklane first.
pub const CONTENDERS: [&str; 4] = ["ticklane", "itch5", "itchy", "memcpy"];

/// The suite: parse + dispatch of `scale.messages` messages.
pub fn run(scale: Scale) -> Result<Suite, SuiteError> {
    let inp = Inputs::generate(scale.messages);
    let mut dst = vec![0u8; inp.stream.bytes.len()];
    let (stream, blocks) = (&inp.stream, &inp.itchy_blocks);
    let mut t = || ticklane_run(stream);
    let mut f = || itch5_run(stream);
    let mut y = || itchy_run(blocks);
    let mut m = || memcpy_run(&stream.bytes, &mut dst);
    let results = interleaved_best(
        scale.rounds.max(1) * 2,
        &mut [
            ("ticklane", &mut t),
            ("itch5", &mut f),
            ("itchy", &mut y),
            ("memcpy", &mut m),
        ],
    );
    if results[0].2 != results[1].2 {
        return Err(SuiteError::Disagree(
            "ticklane and itch5 folded different values: they did not read the same messages"
                .into(),
        ));
    }
    let timings = timings(
        &results,
        |_, _| stream.messages,
        |name| matches!(name, "ticklane" | "itch5").then_some("itchy"),
    );
    let secs = |name: &str| {
        timings
            .iter()
            .find(|t| t.name == name)
            .map_or(f64::NAN, |t| t.seconds)
    };
    let tl = secs("ticklane");
    Ok(Suite {
        name: "parse",
        title: format!(
            "parse + dispatch of {} messages in {} MoldUDP64 packets ({:.1} MB), best of {} \
             interleaved runs",
            stream.messages,
            stream.packets.len(),
            stream.bytes.len() as f64 / 1e6,
            scale.rounds.max(1) * 2
        ),
        checks: vec![
            Check::new(
                "ticklane vs itchy (speed)",
                secs("itchy") / tl,
                "x",
                Some(Target::AtLeast(10.0)),
            ),
            Check::new("ticklane vs itch5 (speed)", secs("itch5") / tl, "x", None),
            Check::new(
                "ticklane's share of memcpy bandwidth",
                100.0 * secs("memcpy") / tl,
                "%",
                Some(Target::AtLeast(50.0)),
            ),
        ],
        timings,
        distributions: Vec::new(),
        notes: vec![
            "memcpy copies the same bytes and parses nothing: its messages/s is the bandwidth \
             ceiling, not a parser"
                .into(),
        ],
    })
}
