//! The audit trail against the real ClickHouse server (Debian's 18.16,
//! started by the test, stopped by its PID): the shipper's exactly-once
//! protocol, and the `ticklane audit` commands.

use std::time::{Duration, Instant};

use ticklane_audit::journal::{AckState, Journal, JournalConfig, Position};
use ticklane_audit::record::Entry;
use ticklane_audit::shipper::{ShipConfig, Shipper};
use ticklane_audit::store::{Store, StoreConfig};
use ticklane_e2e::clickhouse::ClickHouse;
use ticklane_lab::market::{MAX_MESSAGE_LEN, Market, MarketConfig};
use ticklane_protocols::moldudp64::Session;

/// `n` messages of a synthetic day, as (seq, bytes).
fn market(n: u64) -> Vec<(u64, Vec<u8>)> {
    let mut m = Market::new(MarketConfig {
        seed: 7,
        stocks: 20,
        messages: n,
        max_live_orders: 10_000,
    });
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let mut out = Vec::new();
    while let Some(len) = m.next_message(&mut buf) {
        out.push((out.len() as u64 + 1, buf[..len].to_vec()));
    }
    out
}

fn append(j: &mut Journal, session: Session, msgs: &[(u64, Vec<u8>)]) {
    for (seq, bytes) in msgs {
        j.append(&Entry::Message {
            session,
            seq: *seq,
            journaled_ns: 1_780_000_000_000_000_000,
            bytes,
        });
    }
    j.commit().unwrap();
}

/// Whether `done` came true within 30 s.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn init(server: &ClickHouse) -> Store {
    let store = Store::new(StoreConfig::new(&server.url())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.init()).unwrap();
    assert!(rt.block_on(store.version()).unwrap().starts_with("18.16"));
    store
}

fn count(server: &ClickHouse, final_: bool) -> u64 {
    let sql = format!(
        "SELECT count() FROM ticklane.messages{}",
        if final_ { " FINAL" } else { "" }
    );
    server.sql(&sql).trim().parse().unwrap()
}

/// A crash between sending a batch and recording its acknowledgement
/// leaves it pending: at restart the same batch is rebuilt from the journal,
/// the server is asked, and it is not sent again (no duplicate rows, even
/// without FINAL). Without the pending record it would be sent twice, and
/// only FINAL would hide it: that is shown too, so the check is not vacuous.
#[test]
fn a_batch_in_flight_at_a_crash_is_asked_about_and_never_shipped_twice() {
    let server = ClickHouse::start();
    let store = init(&server);
    let dir = tempfile::tempdir().unwrap();
    let session = Session::from_name(b"CRASH").unwrap();
    let msgs = market(10_000);
    let (first, second) = msgs.split_at(4_000);
    let (mut journal, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    append(&mut journal, session, first);
    let half: Position = *journal.committed().lock().unwrap();
    let shipper = Shipper::spawn(
        dir.path(),
        store.clone(),
        ShipConfig::default(),
        Some(journal.committed()),
    )
    .unwrap();
    let gauges = shipper.gauges();
    let shipped = wait_until(|| gauges.rows.load(std::sync::atomic::Ordering::Relaxed) == 4_000);
    if !shipped {
        panic!(
            "the first half was not shipped: {:?}",
            shipper.finish(Duration::ZERO)
        );
    }
    append(&mut journal, session, second);
    let end: Position = *journal.committed().lock().unwrap();
    let report = shipper.finish(Duration::from_secs(20));
    assert_eq!(
        (report.rows, report.left_messages),
        (10_000, 0),
        "{report:?}"
    );
    assert_eq!(AckState::load(dir.path()).unwrap().acked, end);
    assert_eq!(count(&server, false), 10_000);

    // The crash: the second batch was sent, its acknowledgement not written.
    AckState {
        acked: half,
        pending: Some(end),
    }
    .store(dir.path())
    .unwrap();
    let again = Shipper::spawn(dir.path(), store.clone(), ShipConfig::default(), None)
        .unwrap()
        .finish(Duration::from_secs(20));
    assert_eq!(again.found_landed, 1, "{again:?}");
    assert_eq!(again.rows, 6_000, "acknowledged now");
    assert_eq!(count(&server, false), 10_000, "nothing sent twice");
    assert_eq!(AckState::load(dir.path()).unwrap().acked, end);

    // Without the pending record the batch goes again: the backstop.
    AckState {
        acked: half,
        pending: None,
    }
    .store(dir.path())
    .unwrap();
    let blind = Shipper::spawn(dir.path(), store, ShipConfig::default(), None)
        .unwrap()
        .finish(Duration::from_secs(20));
    assert_eq!(blind.found_landed, 0);
    assert_eq!(
        count(&server, false),
        16_000,
        "18.16 keeps the duplicate insert"
    );
    assert_eq!(
        count(&server, true),
        10_000,
        "FINAL reads each (session, seq) once"
    );
}
