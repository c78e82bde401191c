//! The control plane's weight on the hot path: the whole pipeline over a
//! generated feed in memory with no control plane, and serving 10,000 book
//! snapshots (10 levels) a second asked by another thread through the
//! poller's request ring, interleaved, best of each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ticklane_appliance::request;

use super::{Check, Scale, Suite, SuiteError, timings};
use crate::{MoldStream, interleaved_best, whole_pipeline};

/// The suite.
pub fn run(scale: Scale) -> Result<Suite, SuiteError> {
    let stream = MoldStream::generate(scale.messages, 500, 1400);
    let source = stream.source();
    let served = Arc::new(AtomicU64::new(0));
    let mut quiet = || whole_pipeline(&source, 1 << 18, None);
    let counted = served.clone();
    let mut flooded = || {
        let (mut requester, server) = request::ring();
        let done = Arc::new(AtomicBool::new(false));
        let (flag, counted) = (done.clone(), counted.clone());
        let flooder = std::thread::spawn(move || {
            // The flood: 10,000 book snapshots a second (ten every
            // millisecond), answers collected as the link thread does.
            let mut locate = 0u16;
            while !flag.load(Ordering::Relaxed) {
                for _ in 0..10 {
                    locate = locate % 500 + 1;
                    let _ = requester.send(request::Ask::Book {
                        stock: request::Stock::Locate(locate),
                        into: request::BookSnapshot::with_depth(10),
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
                while requester.receive().is_some() {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let delivered = whole_pipeline(&source, 1 << 18, Some(server));
        done.store(true, Ordering::Relaxed);
        let _ = flooder.join();
        delivered
    };
    let rounds = scale.rounds.max(1);
    let results = interleaved_best(
        rounds,
        &mut [
            ("no control plane", &mut quiet),
            ("10,000 GetBook/s through the ring", &mut flooded),
        ],
    );
    for (name, _, delivered) in &results {
        if *delivered != stream.messages {
            return Err(SuiteError::Disagree(format!(
                "{name}: {delivered} of {} messages delivered",
                stream.messages
            )));
        }
    }
    let timings = timings(
        &results,
        |_, _| stream.messages,
        |name| (name != "no control plane").then_some("no control plane"),
    );
    let cost = timings[1].seconds / timings[0].seconds;
    let served = served.load(Ordering::Relaxed);
    Ok(Suite {
        name: "control",
        title: format!(
            "the poller over {} messages in memory, without and with a flood of book snapshots \
             through its request ring, best of {rounds} interleaved runs",
            stream.messages
        ),
        checks: vec![Check::new("flooded / quiet (time)", cost, "x", None)],
        timings,
        distributions: Vec::new(),
        notes: vec![format!(
            "book snapshots served during the flooded runs: {served}; the gRPC and TCP \
             request rates are measured by `cargo bench -p ticklane-benches --bench control`"
        )],
    })
}
