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

/// What a live run does to the audit's server while the feed is sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// SIGSTOP for 10 s, then SIGCONT.
    Stop10s,
    /// SIGKILL, then a restart on the same data.
    Kill,
}

/// A generated feed with losses, duplicates and reordering, sent live to
/// `ticklane run` (XDP) with a re-request server on the clean capture, and
/// the audit on: journal, and with `clickhouse` a real server in the
/// receiver's namespace, faulted as `fault` says a second into the feed.
/// Then: `audit verify` equals the clean capture exactly once and
/// `audit query --format jsonl` equals `ticklane decode` of it, line for line.
fn live_audit(tag: &str, clickhouse: bool, fault: Fault) {
    if !ticklane_e2e::netns_available() {
        return;
    }
    let _serial = ticklane_e2e::serial();
    let dir = tempfile::tempdir().unwrap();
    let (clean, damaged, summary) = (
        ticklane_e2e::arg(dir.path(), "c.pcap"),
        ticklane_e2e::arg(dir.path(), "d.pcap"),
        ticklane_e2e::arg(dir.path(), "s.json"),
    );
    let journal = ticklane_e2e::arg(dir.path(), "journal");
    ticklane_e2e::ticklane_ok(&[
        "gen",
        "--messages",
        "40000",
        "--stocks",
        "20",
        "--seed",
        "11",
        "-o",
        &clean,
        "--group",
        "239.8.8.8:30008",
        "--damaged",
        &damaged,
        "--drop",
        "0.03",
        "--dup",
        "0.01",
        "--reorder",
        "0.02",
    ]);
    let lab = ticklane_e2e::Lab::new(tag, 1);
    let server_addr = format!("{}:9000", lab.addr(false));
    let _retrans =
        ticklane_e2e::start_retrans_server(lab.ticklane_in(&lab.a), &clean, &server_addr);
    // Declared after the lab: stopped before its namespaces go.
    let mut ch = clickhouse.then(|| ClickHouse::start_in(Some(&lab.b)));
    let url = ch.as_ref().map(ClickHouse::url);
    let audit = |args: &[&str]| {
        lab.ticklane_in(&lab.b)
            .arg("audit")
            .args(args)
            .output()
            .unwrap()
    };
    let store_args: Vec<&str> = match &url {
        Some(u) => vec!["--clickhouse", u],
        None => vec!["--journal", &journal],
    };
    if let Some(u) = &url {
        ticklane_e2e::assert_success(&audit(&["init", "--clickhouse", u]));
    }
    let mut args = vec![
        "--feed",
        "239.8.8.8:30008",
        "--retrans",
        &server_addr,
        "--summary-json",
        &summary,
        "--audit-dir",
        &journal,
        "--audit-fsync",
        "batch",
        "--audit-ship-timeout",
        "30",
    ];
    if let Some(u) = &url {
        // A short answer timeout: a stopped server makes attempts fail (and
        // the batch in flight ambiguous) rather than only wait.
        args.extend_from_slice(&["--clickhouse", u, "--clickhouse-timeout", "2"]);
    }
    let run = ticklane_e2e::start_run(&lab, &args);
    let mut sender = lab
        .ticklane_in(&lab.a)
        .args(["send", &damaged, "--iface", &lab.va, "--pps", "400"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    if let Some(server) = &mut ch {
        match fault {
            Fault::None => {}
            Fault::Stop10s => {
                server.signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_secs(10));
                server.signal(libc::SIGCONT);
            }
            Fault::Kill => {
                server.kill();
                std::thread::sleep(Duration::from_secs(1));
                server.restart();
            }
        }
    }
    assert!(sender.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = ticklane_e2e::stop_run(run);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["session"]["lost_messages"], 0, "{s}\n{stderr}");
    assert_eq!(s["messages"], 40_000, "{stderr}");
    let trail = &s["audit"]["trail"];
    assert_eq!(trail["journaled"], 40_000, "{trail}\n{stderr}");
    assert_eq!(trail["gaps"], serde_json::json!([]));
    if clickhouse {
        assert_eq!(
            trail["shipped"]["left_for_next_start"], 0,
            "{trail}\n{stderr}"
        );
        assert_eq!(trail["shipped"]["rows"], 40_000, "{trail}");
        if fault != Fault::None {
            assert!(
                trail["shipped"]["failed_attempts"].as_u64().unwrap() > 0,
                "the fault was felt: {trail}"
            );
        }
    }
    let mut verify_args = vec!["verify", &clean];
    verify_args.extend_from_slice(&store_args);
    let v = audit(&verify_args);
    let said = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && said.contains("all 40000 messages of"),
        "{said}\n{}\nrun: {trail}",
        String::from_utf8_lossy(&v.stderr)
    );
    let mut query_args = vec!["query", "--format", "jsonl"];
    query_args.extend_from_slice(&store_args);
    let q = audit(&query_args);
    ticklane_e2e::assert_success(&q);
    let decoded = ticklane_e2e::ticklane_ok(&["decode", &clean]).stdout;
    assert!(
        q.stdout == decoded.as_bytes(),
        "audit query --format jsonl equals ticklane decode of the clean capture, line for line"
    );
    if !clickhouse {
        truncated_journal(&journal, &clean, &audit);
    }
}

/// The last segment cut inside its last record: verify names the exact
/// range lost, and the next open of the journal cuts the torn tail, counted.
fn truncated_journal(journal: &str, clean: &str, audit: &dyn Fn(&[&str]) -> std::process::Output) {
    let segs = ticklane_audit::journal::segments(std::path::Path::new(journal)).unwrap();
    let last = std::path::Path::new(journal).join(format!("{:020}.seg", segs.last().unwrap()));
    let len = std::fs::metadata(&last).unwrap().len();
    // The last record is the capture's last message (no gaps were journaled).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let v = audit(&["verify", clean, "--journal", journal]);
    let out = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(1), "{out}");
    assert!(out.contains("39999 of 40000 messages match"), "{out}");
    assert!(
        out.contains("missing: session \"TICKLANE01\" seq 40000..=40000"),
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("torn record"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let (j, rec) = Journal::open(std::path::Path::new(journal), JournalConfig::default()).unwrap();
    drop(j);
    assert_eq!(rec.torn_segments, 1);
    assert!(
        rec.bytes_dropped > 0 && rec.bytes_dropped < 32 + 50,
        "the rest of one record is cut: {rec:?}"
    );
}

#[test]
fn a_live_feed_with_losses_lands_in_clickhouse_exactly_once() {
    live_audit("aud", true, Fault::None);
}

#[test]
fn the_journal_alone_is_the_audit_store_and_a_truncated_segment_is_reported_exactly() {
    live_audit("auj", false, Fault::None);
}

#[test]
fn clickhouse_stopped_for_10_s_mid_feed_loses_and_duplicates_nothing() {
    live_audit("aus", true, Fault::Stop10s);
}

#[test]
fn clickhouse_killed_mid_feed_and_restarted_loses_and_duplicates_nothing() {
    live_audit("auk", true, Fault::Kill);
}
