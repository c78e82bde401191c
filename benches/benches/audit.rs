//! The audit journal's append rate on one core and its bytes per message,
//! over the generated realistic message mix, against a baseline measured in
//! the same run: the same message bytes written to a file with no framing
//! and no CRC (what an append-only file costs at the least).
//!
//! Target: ≥ 5 M messages/s journaled on one core. The suite lives in the
//! library (`ticklane bench --suite audit` runs it too).

use ticklane_benches::suite::{self, Scale};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scale = Scale {
        messages: 1_000_000,
        rounds: 5,
    };
    match suite::audit::run(scale, std::path::Path::new(".")) {
        Ok(s) => print!("{}", s.text()),
        Err(e) => panic!("audit suite: {e}"),
    }
}
