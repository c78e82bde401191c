//! Sustained audit shipping rate, journal → ClickHouse (the shipper: read
//! and check the journal, build the rows, seal batches, record the pending
//! batch, insert, acknowledge), against the raw `clickhouse` crate inserting
//! the very same rows, prebuilt in memory, in the same batch sizes, to the
//! same real server (Debian's 18.16, started here), in the same run.
//!
//! Target: the shipper at ≥ 90% of the raw insert rate.

use std::time::{Duration, Instant};

use ticklane_audit::journal::{Journal, JournalConfig};
use ticklane_audit::record::Entry;
use ticklane_audit::shipper::{ShipConfig, Shipper};
use ticklane_audit::store::{MessageRow, Store, StoreConfig};
use ticklane_benches::MoldStream;
use ticklane_e2e::clickhouse::ClickHouse;
use ticklane_protocols::moldudp64::Packet;

const MESSAGES: u64 = 1_000_000;
const ROUNDS: usize = 5;

fn main() {
    // The shipper's own batch size, for both.
    let batch = ShipConfig::default().max_rows;
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !std::path::Path::new(ticklane_e2e::clickhouse::SERVER).exists() {
        println!(
            "audit_ship: clickhouse-server is not installed (scripts/deps.sh installs it); skipped"
        );
        return;
    }
    let stream = MoldStream::generate(MESSAGES, 500, 1400);
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");
    let (mut journal, _) = Journal::open(dir.path(), JournalConfig::default()).expect("journal");
    let mut rows = Vec::with_capacity(stream.messages as usize);
    let ns = 1_780_000_000_000_000_000;
    for p in stream.iter() {
        let Ok(packet) = Packet::new_checked(p) else {
            continue;
        };
        let session = packet.session();
        for (seq, m) in packet.messages() {
            journal.append(&Entry::Message {
                session,
                seq,
                journaled_ns: ns,
                bytes: m,
            });
            rows.push(MessageRow::new(session.trimmed(), seq, ns, m));
        }
    }
    journal.commit().expect("writing the journal");
    drop(journal);
    for chunk in rows.chunks_mut(batch) {
        let (first, last) = (chunk[0].seq, chunk[chunk.len() - 1].seq);
        for r in chunk {
            (r.batch_first, r.batch_last) = (first, last);
        }
    }
    let server = ClickHouse::start();
    let url = server.url();
    let store = Store::new(StoreConfig::new(&url)).expect("store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(store.init()).expect("schema");
    let raw_client = clickhouse::Client::default()
        .with_url(&url)
        .with_validation(false);
    let raw_round = || {
        server.sql("TRUNCATE TABLE ticklane.messages");
        let t = Instant::now();
        rt.block_on(async {
            for chunk in rows.chunks(batch) {
                let mut insert = raw_client
                    .insert_unescaped::<MessageRow>("ticklane.messages")
                    .await
                    .expect("insert");
                for r in chunk {
                    insert.write(r).await.expect("write");
                }
                insert.end().await.expect("end");
            }
        });
        t.elapsed()
    };
    let ship_round = || {
        server.sql("TRUNCATE TABLE ticklane.messages");
        let _ = std::fs::remove_file(dir.path().join("acked"));
        let t = Instant::now();
        let report = Shipper::spawn(
            dir.path(),
            store.clone(),
            ShipConfig {
                reclaim: false,
                ..ShipConfig::default()
            },
            None,
        )
        .expect("shipper")
        .finish(Duration::from_secs(600));
        assert_eq!(
            (report.rows, report.failures),
            (rows.len() as u64, 0),
            "{report:?}"
        );
        t.elapsed()
    };
    // Interleaved, the order swapped every round: each contender runs as
    // often right after the other's load on the server (its merges).
    let (mut ships, mut raws) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round.is_multiple_of(2) {
            raws.push(raw_round());
            ships.push(ship_round());
        } else {
            ships.push(ship_round());
            raws.push(raw_round());
        }
    }
    // The last round ended with the shipper's rows when ROUNDS is odd.
    if ROUNDS.is_multiple_of(2) {
        ships.push(ship_round());
    }
    let best_ship = ships.iter().copied().min().unwrap_or(Duration::MAX);
    let best_raw = raws.iter().copied().min().unwrap_or(Duration::MAX);
    let mut pair_ratios: Vec<f64> = ships
        .iter()
        .zip(&raws)
        .map(|(s, r)| r.as_secs_f64() / s.as_secs_f64())
        .collect();
    pair_ratios.sort_by(f64::total_cmp);
    // What reading the journal and building the rows costs alone (the
    // shipper overlaps it with the inserts, on the same 2 cores as the server).
    let t = Instant::now();
    let mut built = 0usize;
    let mut reader = ticklane_audit::journal::Reader::open(dir.path(), Default::default());
    while let Some((
        Entry::Message {
            session,
            seq,
            journaled_ns,
            bytes,
        },
        _,
    )) = reader.next(None).expect("reading the journal")
    {
        built += std::hint::black_box(MessageRow::new(session.trimmed(), seq, journaled_ns, bytes))
            .raw
            .len();
    }
    let seal = t.elapsed();
    assert!(built > 0);
    let stored: u64 = server
        .sql("SELECT count() FROM ticklane.messages")
        .trim()
        .parse()
        .expect("a count");
    assert_eq!(stored, rows.len() as u64, "every row once");
    let n = rows.len() as f64;
    let (ship, raw) = (n / best_ship.as_secs_f64(), n / best_raw.as_secs_f64());
    println!(
        "\naudit shipping to ClickHouse 18.16 (local server), {} messages in batches of {batch}, best of {ROUNDS} interleaved runs (order swapped each round):",
        rows.len()
    );
    println!(
        "  shipper, journal -> ClickHouse  {:>8.0} ms  {:>6.2} M msg/s",
        best_ship.as_secs_f64() * 1e3,
        ship / 1e6
    );
    println!(
        "  raw clickhouse crate insert     {:>8.0} ms  {:>6.2} M msg/s",
        best_raw.as_secs_f64() * 1e3,
        raw / 1e6
    );
    println!(
        "  (journal read + rows built alone: {:.0} ms)",
        seal.as_secs_f64() * 1e3
    );
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("  per round, ms: shipper {}; raw {}", ms(&ships), ms(&raws));
    println!(
        "  per round, shipper rate / raw rate: {}",
        pair_ratios
            .iter()
            .map(|r| format!("{:.0}%", r * 100.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "ratio (same run): shipper / raw = {:.0}% (best vs best; median of the rounds {:.0}%); target >= 90%: {}",
        ship / raw * 100.0,
        pair_ratios[pair_ratios.len() / 2] * 100.0,
        if ship / raw >= 0.9 { "met" } else { "NOT met" }
    );
}
