//! What a restart on a full journal costs before live traffic: the journal
//! replayed into fresh books and VWAP (`ticklane run --audit-dir` on a
//! journal of an earlier run), per million messages, against baselines
//! measured in the same run: the same messages applied from memory (the
//! books' own cost, no journal), and the journal read alone (both passes,
//! nothing applied).

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::BusConfig;
use ticklane_appliance::pipeline::Pipeline;
use ticklane_audit::journal::{FsyncPolicy, Journal, JournalConfig};
use ticklane_audit::record::Entry;
use ticklane_audit::restore::{rebuild, replay};
use ticklane_benches::{MoldStream, interleaved_best};
use ticklane_protocols::itch;
use ticklane_protocols::moldudp64::Packet;

const MESSAGES: u64 = 1_000_000;

/// The stream's messages, journaled as the audit writer does (batches of 4096).
fn write_journal(stream: &MoldStream, dir: &std::path::Path) {
    let (mut j, _) = Journal::open(
        dir,
        JournalConfig {
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Off,
        },
    )
    .expect("opening the journal");
    let mut n = 0u64;
    for p in stream.iter().filter_map(|p| Packet::new_checked(p).ok()) {
        for (seq, m) in p.messages() {
            j.append(&Entry::Message {
                session: p.session(),
                seq,
                journaled_ns: 1,
                bytes: m,
            });
            n += 1;
            if n.is_multiple_of(4096) {
                j.commit().expect("writing the journal");
            }
        }
    }
    j.commit().expect("writing the journal");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let stream = MoldStream::generate(MESSAGES, 500, 1400);
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");
    write_journal(&stream, dir.path());
    let books = || Books::new(1 << 20);
    let mut restore = || {
        let (b, _, r) = rebuild(dir.path(), books(), Vwap::default()).expect("replaying");
        assert_eq!(r.messages, stream.messages);
        b.iter().count() as u64
    };
    let mut memory = || {
        let (mut p, _events) = Pipeline::with_bus(
            books(),
            Vwap::default(),
            BusConfig {
                events: 1,
                audit: 1,
            },
        );
        for packet in stream.iter().filter_map(|p| Packet::new_checked(p).ok()) {
            for (seq, m) in packet.messages() {
                if let Ok(m) = itch::parse(m) {
                    let _ = p.deliver(packet.session(), seq, m);
                }
            }
        }
        p.books.iter().count() as u64
    };
    let mut read = || {
        let mut n = 0u64;
        replay(dir.path(), |_, _, b| n += b.len() as u64).expect("reading");
        n
    };
    let results = interleaved_best(
        3,
        &mut [
            ("journal replayed into books", &mut restore),
            ("same messages from memory", &mut memory),
            ("journal read only (2 passes)", &mut read),
        ],
    );
    let msgs = stream.messages as f64;
    println!(
        "\naudit journal restore at start, {} messages, best of 3 interleaved runs:",
        stream.messages
    );
    for (name, d, _) in &results {
        let s = d.as_secs_f64();
        println!(
            "  {name:<30} {:>8.1} ms per million messages  {:>6.2} M msg/s",
            s / msgs * 1e9,
            msgs / s / 1e6
        );
    }
    let (r, m) = (results[0].1.as_secs_f64(), results[1].1.as_secs_f64());
    println!(
        "ratio (same run): restore / from memory: {:.2}x the time (the journal's share: {:.0}%)",
        r / m,
        (1.0 - m / r) * 100.0
    );
}
