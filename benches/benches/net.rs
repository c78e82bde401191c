//! The live receive paths on one veth pair (the suite `ticklane bench
//! --suite net` runs too): XDP → AF_XDP against the kernel UDP socket path,
//! each with and without threaded NAPI; loss-free rates, wire-to-handler
//! latency and receiver CPU per packet, with the ratios (targets: AF_XDP ≥
//! 1.5× the kernel path's loss-free rate, p99 ≤ 1/3 of its p99).
//!
//! Needs root; builds its own namespaces (198.18.0.0/15, 239.0.0.0/8) and
//! removes them. Run: `cargo bench -p ticklane-benches --bench net`.

use ticklane_benches::suite::SuiteError;
use ticklane_benches::suite::net::{self, NetScale};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match net::run(NetScale::FULL, &mut |line| println!("{line}")) {
        Ok(s) => print!("{}", s.text()),
        Err(SuiteError::Unavailable(why)) => eprintln!("the net benchmark {why}; skipped"),
        Err(e) => panic!("net suite: {e}"),
    }
}
