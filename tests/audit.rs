//! The audit trail against the real ClickHouse server (Debian's 18.16,
//! started by the test, stopped by its PID): the shipper's exactly-once
//! protocol, and the `ticklane audit` commands.

use std::time::{Duration, Instant};

use ticklane_audit::journal::{AckState, Journal, JournalConfig, Position};
use ticklane_audit::record::Entry;
use ticklane_audit::shipper::{ShipConfig, Shipper};
use ticklane_audit::store::{Store, StoreConfig};
use ticklane_e2e::clickhouse::ClickHouse;
use ticklane_lab::market::{MAX_MESSAGE_LEN, Market, MarketConfig, Mix};
use ticklane_protocols::moldudp64::Session;

/// `n` messages of a synthetic day, as (seq, bytes).
fn market(n: u64) -> Vec<(u64, Vec<u8>)> {
    let mut m = Market::new(MarketConfig {
        seed: 7,
        stocks: 20,
        messages: n,
        max_live_orders: 10_000,
        mix: Mix::Recent,
        resting: 0,
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

/// A tmpfs of its own mounted on a directory (root, as every live test
/// runs), unmounted on drop.
struct SmallDisk(String);

impl SmallDisk {
    fn mount(dir: &str, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let opts = format!("size={size}");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "ticklane-audit-test", dir])
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mounting a tmpfs on {dir}");
        Self(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process still holding a file must not keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// What a live run does to the audit's server while the feed is sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// SIGSTOP for 10 s, then SIGCONT.
    Stop10s,
    /// SIGKILL, then a restart on the same data.
    Kill,
    /// The appliance SIGKILLed two seconds into the feed, then started again
    /// on the same journal (with no feed): it ships the unacknowledged tail.
    KillAppliance,
    /// An audit ring of 64 slots and the feed in a burst: the ring
    /// overflows; what it missed is filled from the re-request server.
    TinyRing,
    /// The same with no re-request server (and a feed without losses): the
    /// misses stay exact gap ranges.
    TinyRingNoServer,
    /// The journal on a small tmpfs that fills up mid-feed; space is freed
    /// once the alarm is raised: the journal resumes, and the window it
    /// missed is filled from the re-request server at the stop.
    DiskFull,
    /// ClickHouse SIGSTOPped a second into the feed and left so past the
    /// appliance's clean stop (a ship timeout of 1 s): the summary counts
    /// what is left, and the next start ships it.
    StoppedAtStop,
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
    // 3 MiB, 2.5 of them taken: the journal (about 2.4 MB for the feed)
    // fills it a second or so into the feed.
    let disk_full = fault == Fault::DiskFull;
    let _disk = disk_full.then(|| SmallDisk::mount(&journal, "3m"));
    let ballast = std::path::Path::new(&journal).join("ballast");
    if disk_full {
        std::fs::write(&ballast, vec![0u8; 2560 << 10]).unwrap();
    }
    ticklane_e2e::ticklane_ok(
        &[
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
        ]
        .iter()
        .chain(&ticklane_e2e::DAMAGE)
        .copied()
        .collect::<Vec<_>>(),
    );
    let lab = ticklane_e2e::Lab::new(tag, 1);
    let server_addr = format!("{}:9000", lab.addr(false));
    let no_server = fault == Fault::TinyRingNoServer;
    let _retrans = (!no_server)
        .then(|| ticklane_e2e::start_retrans_server(lab.ticklane_in(&lab.a), &clean, &server_addr));
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
        "--summary-json",
        &summary,
        "--audit-dir",
        &journal,
        "--audit-fsync",
        "batch",
        "--audit-ship-timeout",
        if fault == Fault::StoppedAtStop {
            "1"
        } else {
            "30"
        },
    ];
    if !no_server {
        args.extend_from_slice(&["--retrans", &server_addr]);
    }
    let tiny = matches!(fault, Fault::TinyRing | Fault::TinyRingNoServer);
    if tiny {
        args.extend_from_slice(&["--audit-ring", "64"]);
    }
    if let Some(u) = &url {
        // A short answer timeout: a stopped server makes attempts fail (and
        // the batch in flight ambiguous) rather than only wait.
        args.extend_from_slice(&["--clickhouse", u, "--clickhouse-timeout", "2"]);
    }
    let run = ticklane_e2e::start_run(&lab, &args);
    // Without a server, the feed must need none.
    let feed = if no_server { &clean } else { &damaged };
    let mut sender = lab
        .ticklane_in(&lab.a)
        .args(["send", feed, "--iface", &lab.va, "--pps"])
        .arg(if tiny { "20000" } else { "400" })
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    if let Some(server) = &mut ch {
        match fault {
            Fault::None | Fault::TinyRing | Fault::TinyRingNoServer | Fault::DiskFull => {}
            // Continued only after the appliance stopped.
            Fault::StoppedAtStop => server.signal(libc::SIGSTOP),
            Fault::KillAppliance => {
                // The server held still meanwhile, so that the kill leaves an
                // unshipped tail (and a batch in flight) behind.
                server.signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_secs(1));
                let mut run = run;
                run.child.0.kill().unwrap();
                run.child.0.wait().unwrap();
                let _ = sender.kill();
                let _ = sender.wait();
                server.signal(libc::SIGCONT);
                let url = server.url();
                return restarted_after_a_crash(
                    &lab, &args, &summary, &clean, &journal, &url, &audit,
                );
            }
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
    if disk_full {
        let said = |what: &str| wait_until(|| run.stderr_so_far().contains(what));
        assert!(
            said("ALARM: the audit journal stopped"),
            "{}",
            run.stderr_so_far()
        );
        std::fs::remove_file(&ballast).unwrap();
        assert!(
            said("the audit journal writes again"),
            "{}",
            run.stderr_so_far()
        );
    }
    assert!(sender.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = ticklane_e2e::stop_run(run);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["session"]["lost_messages"], 0, "{s}\n{stderr}");
    assert_eq!(s["messages"], 40_000, "{stderr}");
    let trail = &s["audit"]["trail"];
    if no_server {
        return overflow_recorded_exactly(&s, &clean, &journal, &audit);
    }
    if tiny {
        let missed = s["audit"]["missed"]["messages"].as_u64().unwrap();
        assert!(missed > 0, "the tiny ring overflowed: {s}");
        assert_eq!(
            trail["filled"]["messages"], missed,
            "every miss filled from the re-request server: {trail}\n{stderr}"
        );
        assert!(
            stderr.contains("were filled from the re-request servers"),
            "{stderr}"
        );
        // The journal alone holds the whole feed too, once.
        let v = audit(&["verify", &clean, "--journal", &journal]);
        let said = String::from_utf8_lossy(&v.stdout);
        assert!(
            v.status.success() && said.contains("all 40000 messages of"),
            "{said}"
        );
        let mut gaps_args = vec!["gaps"];
        gaps_args.extend_from_slice(&store_args);
        for source in [vec!["gaps", "--journal", &journal], gaps_args] {
            let gaps = String::from_utf8(audit(&source).stdout).unwrap();
            assert!(
                gaps.contains("ticklane audit gaps: 0 ranges"),
                "filled gaps are no gaps: {source:?}: {gaps}"
            );
        }
    }
    if disk_full {
        assert!(
            trail["journal_resumed_after"]
                .as_str()
                .is_some_and(|e| e.contains("No space left")),
            "{trail}"
        );
        assert!(
            trail["filled"]["messages"].as_u64().unwrap() > 0,
            "the stopped window was filled: {trail}\n{stderr}"
        );
    }
    if fault == Fault::StoppedAtStop {
        let server = ch.as_ref().unwrap();
        let left = trail["shipped"]["left_for_next_start"].as_u64().unwrap();
        assert!(
            left > 0,
            "the stopped server left a tail: {trail}\n{stderr}"
        );
        assert_eq!(
            left,
            ticklane_audit::shipper::unacknowledged(std::path::Path::new(&journal)).unwrap(),
            "the summary counts exactly what is not acknowledged"
        );
        assert!(
            stderr.contains(&format!("{left} left for the next start")),
            "{stderr}"
        );
        server.signal(libc::SIGCONT);
        // The next start (no feed) ships the tail; then everything is there once.
        let run = ticklane_e2e::start_run(&lab, &args);
        std::thread::sleep(Duration::from_millis(1500));
        let (_, stderr) = ticklane_e2e::stop_run(run);
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        let trail = &s["audit"]["trail"];
        assert_eq!(trail["shipped"]["rows"], left, "{trail}\n{stderr}");
        assert_eq!(trail["shipped"]["left_for_next_start"], 0, "{trail}");
    }
    assert_eq!(trail["journaled"], 40_000, "{trail}\n{stderr}");
    assert_eq!(trail["gaps"], serde_json::json!([]));
    if clickhouse && fault != Fault::StoppedAtStop {
        assert_eq!(
            trail["shipped"]["left_for_next_start"], 0,
            "{trail}\n{stderr}"
        );
        assert_eq!(trail["shipped"]["rows"], 40_000, "{trail}");
        if matches!(fault, Fault::Stop10s | Fault::Kill) {
            assert!(
                stderr.contains("ClickHouse is failing; the journal keeps the audit")
                    && stderr.contains("ClickHouse answers again"),
                "the outage was reported as it happened:\n{stderr}"
            );
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
    // Its last record is the capture's last message (nothing was filled).
    if !clickhouse && fault == Fault::None {
        truncated_journal(&journal, &clean, &audit);
    }
}

/// After `kill -9` of the appliance mid-feed: a new run on the same journal
/// ships exactly the unacknowledged tail (a batch in flight at the kill is
/// asked about, not duplicated); ClickHouse then holds every journaled
/// message once, 1..=K of the feed, and nothing else.
fn restarted_after_a_crash(
    lab: &ticklane_e2e::Lab,
    args: &[&str],
    summary: &str,
    clean: &str,
    journal: &str,
    url: &str,
    audit: &dyn Fn(&[&str]) -> std::process::Output,
) {
    let tail = ticklane_audit::shipper::unacknowledged(std::path::Path::new(journal)).unwrap();
    assert!(tail > 0, "the kill left an unshipped tail");
    let run = ticklane_e2e::start_run(lab, args);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, stderr) = ticklane_e2e::stop_run(run);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    let trail = &s["audit"]["trail"];
    assert_eq!(
        trail["journaled"], 0,
        "no feed this time: {trail}\n{stderr}"
    );
    assert_eq!(
        trail["shipped"]["rows"], tail,
        "exactly the unacknowledged tail: {trail}"
    );
    assert_eq!(trail["shipped"]["left_for_next_start"], 0, "{trail}");
    let v = audit(&["verify", clean, "--clickhouse", url]);
    let said = String::from_utf8(v.stdout).unwrap();
    let (matched, rest) = said
        .split_once(" of 40000 messages match")
        .and_then(|(head, rest)| Some((head.rsplit(' ').next()?.parse::<u64>().ok()?, rest)))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(matched > 0 && matched < 40_000, "killed mid-feed: {said}");
    assert_eq!(
        rest.trim(),
        format!(
            "missing: session \"TICKLANE01\" seq {}..=40000 ({} messages)",
            matched + 1,
            40_000 - matched
        ),
        "1..=K once each, nothing else and no duplicate rows:\n{said}"
    );
}

/// The audit ring overflowed: what it missed is in the summary, the
/// journal's gap records and `audit gaps` with exact bounds, and `audit
/// verify` finds exactly those ranges missing, nothing else.
fn overflow_recorded_exactly(
    s: &serde_json::Value,
    clean: &str,
    journal: &str,
    audit: &dyn Fn(&[&str]) -> std::process::Output,
) {
    let trail = &s["audit"]["trail"];
    let missed = s["audit"]["missed"]["messages"].as_u64().unwrap();
    assert!(missed > 0, "the tiny ring overflowed: {s}");
    assert_eq!(
        trail["journaled"].as_u64().unwrap() + missed,
        40_000,
        "{trail}"
    );
    assert_eq!(trail["gaps_journaled"], true);
    let gaps: Vec<(u64, u64)> = trail["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["from"].as_u64().unwrap(), g["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(gaps.iter().map(|(f, t)| t - f + 1).sum::<u64>(), missed);
    let listed = String::from_utf8(audit(&["gaps", "--journal", journal]).stdout).unwrap();
    let v = audit(&["verify", clean, "--journal", journal]);
    let said = String::from_utf8(v.stdout).unwrap();
    assert_eq!(v.status.code(), Some(1), "{said}");
    let missing: Vec<(u64, u64)> = said
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("missing: session \"TICKLANE01\" seq ")
        })
        .map(|r| {
            let (from, rest) = r.split_once("..=").unwrap();
            let to = rest.split(' ').next().unwrap();
            (from.parse().unwrap(), to.parse().unwrap())
        })
        .collect();
    assert_eq!(
        missing, gaps,
        "verify finds exactly the recorded gaps missing:\n{said}"
    );
    assert!(!said.contains("not in the capture") && !said.contains("different bytes"));
    for (from, to) in gaps {
        assert!(listed.contains(&format!("seq {from}..={to} ")), "{listed}");
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
fn the_appliance_killed_mid_feed_ships_its_unacknowledged_tail_at_restart() {
    live_audit("aua", true, Fault::KillAppliance);
}

#[test]
fn an_overflowing_audit_ring_is_filled_from_the_re_request_server_exactly_once() {
    live_audit("aur", true, Fault::TinyRing);
}

#[test]
fn without_a_server_an_overflowing_audit_ring_is_recorded_as_exact_gap_ranges() {
    live_audit("auo", false, Fault::TinyRingNoServer);
}

#[test]
fn a_journal_stopped_by_a_full_disk_resumes_and_its_window_is_filled() {
    live_audit("auf", false, Fault::DiskFull);
}

#[test]
fn a_clean_stop_with_clickhouse_down_counts_what_is_left_and_the_next_start_ships_it() {
    live_audit("aul", true, Fault::StoppedAtStop);
}

#[test]
fn clickhouse_stopped_for_10_s_mid_feed_loses_and_duplicates_nothing() {
    live_audit("aus", true, Fault::Stop10s);
}

#[test]
fn clickhouse_killed_mid_feed_and_restarted_loses_and_duplicates_nothing() {
    live_audit("auk", true, Fault::Kill);
}

/// The appliance SIGKILLed mid-feed (a paced feed, no losses) and started
/// again on the same journal while the feed goes on: the restart rebuilds
/// the books from the journal and asks the re-request server only for
/// what came while it was down. At the end its books equal `ticklane book`
/// of the capture, the journal holds every message exactly once, and what
/// it asked for is about what the downtime missed, far below the day.
#[test]
fn a_restart_on_the_same_journal_rebuilds_the_books_and_requests_only_the_downtime() {
    if !ticklane_e2e::netns_available() {
        return;
    }
    let _serial = ticklane_e2e::serial();
    let dir = tempfile::tempdir().unwrap();
    let (clean, summary, books) = (
        ticklane_e2e::arg(dir.path(), "c.pcap"),
        ticklane_e2e::arg(dir.path(), "s.json"),
        ticklane_e2e::arg(dir.path(), "out.book"),
    );
    let journal = ticklane_e2e::arg(dir.path(), "journal");
    ticklane_e2e::ticklane_ok(&[
        "gen",
        "--messages",
        "40000",
        "--stocks",
        "20",
        "--seed",
        "12",
        "-o",
        &clean,
        "--group",
        "239.8.8.10:30010",
    ]);
    let frames = ticklane_e2e::frames_of(&clean).len() as f64;
    // The whole feed in about 8 s.
    let pps = (frames / 8.0).ceil();
    let rate = 40_000.0 / (frames / pps);
    let lab = ticklane_e2e::Lab::new("aub", 1);
    let server_addr = format!("{}:9000", lab.addr(false));
    // A bucket deep enough for the session layer's requests in flight
    // together: no refusal, so no retry inflates what was asked for.
    let _retrans = ticklane_e2e::start_retrans_server_with(
        lab.ticklane_in(&lab.a),
        &clean,
        &server_addr,
        &["--client-burst", "1000000"],
        std::process::Stdio::null(),
    );
    let args = [
        "--feed",
        "239.8.8.10:30010",
        "--retrans",
        &server_addr,
        "--summary-json",
        &summary,
        "--book-out",
        &books,
        "--audit-dir",
        &journal,
    ];
    let mut first = ticklane_e2e::start_run(&lab, &args);
    let mut sender = lab
        .ticklane_in(&lab.a)
        .args([
            "send",
            &clean,
            "--iface",
            &lab.va,
            "--pps",
            &pps.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    first.child.0.kill().unwrap();
    first.child.0.wait().unwrap();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let second = ticklane_e2e::start_run(&lab, &args);
    let down = killed.elapsed().as_secs_f64();
    assert!(sender.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(1000));
    let (out, stderr) = ticklane_e2e::stop_run(second);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let restored = s["audit"]["restored"]["messages"].as_u64().unwrap();
    let live = s["messages"].as_u64().unwrap();
    let requested = s["session"]["requested_messages"].as_u64().unwrap();
    let missed = down * rate;
    eprintln!(
        "restart: {restored} messages restored in {} s; {requested} requested after the restart \
         ({} retries), about {missed:.0} sent while down ({down:.2} s at {rate:.0} messages/s)",
        s["audit"]["restored"]["seconds"], s["session"]["retries"]
    );
    assert!(restored > 0 && restored < 40_000, "{s}\n{stderr}");
    assert_eq!(
        restored + live,
        40_000,
        "each message delivered once, before or after the restart: {s}\n{stderr}"
    );
    assert_eq!(s["session"]["lost_messages"], 0, "{s}");
    assert_eq!(
        s["audit"]["restored"]["resume"]["next_seq"],
        restored + 1,
        "{s}"
    );
    assert!(
        out.contains(&format!(
            "{restored} messages restored from the audit journal"
        )),
        "{out}"
    );
    assert!(requested > 0, "the downtime was asked for: {s}");
    assert!(
        requested < restored && requested < 40_000 / 4,
        "only the downtime was asked for, not the day: {requested} requested, {restored} restored"
    );
    assert!(
        (requested as f64) < 1.5 * missed + 1000.0,
        "about what was missed while down ({missed:.0}): {requested}"
    );
    assert_eq!(
        std::fs::read_to_string(&books).unwrap(),
        ticklane_e2e::ticklane_ok(&["book", &clean]).stdout,
        "the books, rebuilt from the journal and then live, equal those of the capture"
    );
    let v = lab
        .ticklane_in(&lab.b)
        .args(["audit", "verify", &clean, "--journal", &journal])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && said.contains("all 40000 messages of"),
        "the journal holds the day exactly once: {said}"
    );
}

fn run(args: &[&str]) -> ticklane_e2e::Run {
    ticklane_e2e::ticklane(args)
}

/// A journal of `market(n)` written with the library, closed.
fn journal_of(dir: &std::path::Path, n: u64) -> Vec<(u64, Vec<u8>)> {
    let msgs = market(n);
    let (mut j, _) = Journal::open(
        dir,
        JournalConfig {
            segment_bytes: 64 << 10,
            ..JournalConfig::default()
        },
    )
    .unwrap();
    // In batches, as the writer commits: segments of 64 KiB rotate.
    for chunk in msgs.chunks(500) {
        append(&mut j, Session::from_name(b"Q1").unwrap(), chunk);
    }
    msgs
}

/// The same filters give the same lines from the journal and from
/// ClickHouse (after shipping that journal), in every format; jsonl is the
/// canonical decode format.
#[test]
fn audit_query_gives_the_same_answers_from_the_journal_and_from_clickhouse() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("j");
    let msgs = journal_of(&jdir, 5_000);
    let journal = jdir.to_str().unwrap();
    let server = ClickHouse::start();
    let url = server.url();
    ticklane_e2e::ticklane_ok(&["audit", "init", "--clickhouse", &url]);
    let store = Store::new(StoreConfig::new(&url)).unwrap();
    let shipped = Shipper::spawn(
        &jdir,
        store,
        ShipConfig {
            reclaim: false,
            ..ShipConfig::default()
        },
        None,
    )
    .unwrap()
    .finish(Duration::from_secs(20));
    assert_eq!(shipped.rows, 5_000, "{shipped:?}");
    // The expected jsonl, written here from the messages themselves.
    let mut expected = Vec::new();
    for (seq, bytes) in &msgs {
        let m = ticklane_protocols::itch::parse(bytes).unwrap();
        ticklane_capture::canonical::write_message(&mut expected, b"Q1", *seq, &m);
    }
    let all = ticklane_e2e::ticklane_ok(&["audit", "query", "--journal", journal]).stdout;
    assert!(
        all.as_bytes() == expected,
        "jsonl is the canonical decode format"
    );
    let filters: [&[&str]; 5] = [
        &[],
        &["--type", "A,E", "--limit", "50"],
        &["--from-seq", "100", "--to-seq", "200", "--format", "csv"],
        &["--session", "Q1", "--format", "table", "--limit", "20"],
        &["--stock", "nope' OR 1=1 --\\", "--format", "csv"],
    ];
    for f in filters {
        let mut j = vec!["audit", "query", "--journal", journal];
        j.extend_from_slice(f);
        let mut c = vec!["audit", "query", "--clickhouse", &url];
        c.extend_from_slice(f);
        let (from_j, from_c) = (
            ticklane_e2e::ticklane_ok(&j).stdout,
            ticklane_e2e::ticklane_ok(&c).stdout,
        );
        assert!(
            from_j == from_c,
            "{f:?}:\njournal:\n{from_j}\nclickhouse:\n{from_c}"
        );
        assert!(!from_j.is_empty());
    }
    let some = ticklane_e2e::ticklane_ok(&[
        "audit",
        "query",
        "--journal",
        journal,
        "--type",
        "A,E",
        "--limit",
        "50",
    ])
    .stdout;
    assert_eq!(some.lines().count(), 50);
    assert!(
        some.lines()
            .all(|l| l.contains("\"type\":\"A\"") || l.contains("\"type\":\"E\""))
    );
    let hostile = ticklane_e2e::ticklane_ok(&[
        "audit",
        "query",
        "--clickhouse",
        &url,
        "--stock",
        "x' OR '1'='1",
        "--format",
        "csv",
    ])
    .stdout;
    assert_eq!(
        hostile.lines().count(),
        1,
        "only the header: the quote is data, not SQL"
    );
    for source in [["--journal", journal], ["--clickhouse", &url]] {
        let stats = ticklane_e2e::ticklane_ok(&["audit", "stats", source[0], source[1]]).stdout;
        assert!(stats.contains("messages: 5000"), "{stats}");
        assert!(stats.contains("seq 1..=5000"), "{stats}");
    }
    // Wrong credentials: the server's refusal, said plainly.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong\n").unwrap();
    let r = ticklane_e2e::ticklane(&[
        "audit",
        "stats",
        "--clickhouse",
        &url,
        "--clickhouse-user",
        "nobody",
        "--clickhouse-password-file",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("Unknown user nobody"), "{}", r.stderr);
}

/// What an operator gets wrong gets a clear error, never a panic: each
/// command exits with `code` and its stderr says `says`.
#[test]
fn bad_urls_unreachable_servers_and_damaged_journals_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), 3_000);
    // A flipped byte inside a sealed segment: the file and offset are named.
    let first = ticklane_audit::journal::segments(dir.path()).unwrap()[0];
    let seg = dir.path().join(format!("{first:020}.seg"));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let damaged = dir.path().to_str().unwrap();
    let seg_name = format!("corrupt record in {}", seg.display());
    let unreachable = "http://127.0.0.1:1";
    let cases: [(&[&str], i32, &str); 8] = [
        (
            &["query", "--clickhouse", "localhost:8123"],
            1,
            "give http://HOST:PORT",
        ),
        (
            &[
                "stats",
                "--clickhouse",
                unreachable,
                "--clickhouse-timeout",
                "2",
            ],
            1,
            "ClickHouse at http://127.0.0.1:1",
        ),
        (
            &[
                "init",
                "--clickhouse",
                unreachable,
                "--clickhouse-timeout",
                "0",
            ],
            1,
            "--clickhouse-timeout must be",
        ),
        (
            &["query", "--journal", "/nonexistent/journal"],
            1,
            "is not a journal directory",
        ),
        (&["query"], 2, "--clickhouse <URL>|--journal <DIR>"),
        (
            &["query", "--journal", "/tmp", "--type", "Z"],
            2,
            "not an ITCH 5.0 message type",
        ),
        (
            &["verify", "/nonexistent.pcap", "--journal", damaged],
            1,
            "/nonexistent.pcap",
        ),
        (&["query", "--journal", damaged], 1, &seg_name),
    ];
    for (args, code, says) in cases {
        let r = run(&[&["audit"], args].concat());
        assert_eq!(r.code, Some(code), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(says),
            "{args:?} should say {says:?}: {}",
            r.stderr
        );
    }
}

/// `ticklane run --clickhouse` refuses to start, saying what to do, when
/// the server does not answer or has no audit tables (rather than
/// journaling while every shipment fails).
#[test]
fn run_refuses_an_unreachable_server_and_one_without_the_schema() {
    if !ticklane_e2e::netns_available() {
        return;
    }
    let _serial = ticklane_e2e::serial();
    let dir = tempfile::tempdir().unwrap();
    let journal = ticklane_e2e::arg(dir.path(), "journal");
    let lab = ticklane_e2e::Lab::new("aun", 1);
    let server = ClickHouse::start_in(Some(&lab.b));
    let url = server.url();
    for (u, says) in [
        (
            "http://127.0.0.1:1",
            "cannot use ClickHouse at http://127.0.0.1:1",
        ),
        (
            url.as_str(),
            "has no audit tables: run `ticklane audit init",
        ),
    ] {
        let out = lab
            .ticklane_in(&lab.b)
            .args([
                "run",
                "--iface",
                &lab.vb,
                "--feed",
                "239.8.8.9:30009",
                "--duration",
                "5",
            ])
            .args([
                "--audit-dir",
                &journal,
                "--clickhouse",
                u,
                "--clickhouse-timeout",
                "2",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// 2026-06-01T00:00:00Z in ns since the Unix epoch.
const JUNE_1: u64 = 1_780_272_000_000_000_000;

/// A session name and an 8-byte stock that are SQL-hostile (a quote, a
/// backslash, a NUL, a double quote, a newline, a semicolon).
const HOSTILE_SESSION: &[u8] = b"h'\\\0\"--";
const HOSTILE_STOCK: &[u8; 8] = b"x'\\\0\"\n;-";

/// A journal of `market(n)` in session Q2, one message a millisecond from
/// 2026-06-01 00:00 UTC, then a forged Add Order of stock
/// [`HOSTILE_STOCK`] in session [`HOSTILE_SESSION`].
fn timed_journal(dir: &std::path::Path, n: u64) -> Vec<(u64, Vec<u8>)> {
    let msgs = market(n);
    let (mut j, _) = Journal::open(dir, JournalConfig::default()).unwrap();
    let q2 = Session::from_name(b"Q2").unwrap();
    for (seq, bytes) in &msgs {
        j.append(&Entry::Message {
            session: q2,
            seq: *seq,
            journaled_ns: JUNE_1 + seq * 1_000_000,
            bytes,
        });
    }
    let mut forged = vec![b'A', 0x27, 0x0f, 0, 0, 0, 0, 0, 0, 0, 1];
    forged.extend_from_slice(&77u64.to_be_bytes());
    forged.push(b'S');
    forged.extend_from_slice(&5u32.to_be_bytes());
    forged.extend_from_slice(HOSTILE_STOCK);
    forged.extend_from_slice(&1u32.to_be_bytes());
    j.append(&Entry::Message {
        session: Session::from_name(HOSTILE_SESSION).unwrap(),
        seq: 1,
        journaled_ns: JUNE_1,
        bytes: &forged,
    });
    j.commit().unwrap();
    msgs
}

/// Ships the journal in `dir` (20,000 messages of Q2 and the forged one)
/// to `url`, everything acknowledged.
fn ship_all(dir: &std::path::Path, store: &Store) -> ticklane_audit::shipper::ShipReport {
    let shipped = Shipper::spawn(
        dir,
        store.clone(),
        ShipConfig {
            reclaim: false,
            ..ShipConfig::default()
        },
        None,
    )
    .unwrap()
    .finish(Duration::from_secs(30));
    assert_eq!(shipped.left_messages, 0, "{shipped:?}");
    shipped
}

/// The typed queries (time ranges, order reference, stock by locate, order
/// by, aggregates) give the same answers from the journal in `dir` (made by
/// [`timed_journal`] of `msgs`) and from the server at `url`, in every
/// format; the answers are checked independently too.
fn typed_queries_agree(dir: &std::path::Path, msgs: &[(u64, Vec<u8>)], url: &str) {
    use ticklane_audit::store::MessageRow;
    let journal = dir.to_str().unwrap();
    let rows: Vec<MessageRow> = msgs
        .iter()
        .map(|(seq, b)| MessageRow::new(b"Q2", *seq, JUNE_1 + seq * 1_000_000, b))
        .collect();
    // A stock and an executed order of the day, to filter on.
    let exec = rows.iter().find(|r| r.r#type == b"E").unwrap();
    let order_ref = exec.order_reference.to_string();
    let stock = rows.iter().find(|r| !r.stock.is_empty()).unwrap();
    let stock_name = String::from_utf8(stock.stock.clone()).unwrap();
    let mid = rows[rows.len() / 2].timestamp.to_string();
    let last_10_s = (JUNE_1 + 19_990_000_000).to_string();
    let checks: Vec<(Vec<&str>, Option<usize>)> = vec![
        // 5 s to 7 s after midnight UTC: seq 5000..=6999.
        (
            vec![
                "--from-time",
                "2026-06-01T00:00:05Z",
                "--to-time",
                "2026-06-01T00:00:07.000Z",
            ],
            Some(2_000),
        ),
        (
            vec!["--from-time", &last_10_s, "--format", "csv"],
            Some(11 + 1),
        ),
        (
            vec!["--from-exchange-time", &mid, "--format", "table"],
            None,
        ),
        (vec!["--to-exchange-time", &mid, "--type", "A,F,E"], None),
        (vec!["--order-ref", &order_ref], None),
        (vec!["--stock", &stock_name, "--type", "E,C,X,D"], None),
        (
            vec![
                "--order-by",
                "exchange-time",
                "--desc",
                "--limit",
                "100",
                "--format",
                "csv",
            ],
            Some(101),
        ),
        (vec!["--order-by", "received", "--limit", "7"], Some(7)),
        (vec!["--aggregate", "count", "--type", "A"], Some(1)),
        (
            vec!["--aggregate", "count-by-type", "--format", "csv"],
            None,
        ),
        (vec!["--aggregate", "volume", "--format", "table"], None),
        (vec!["--aggregate", "vwap", "--session", "Q2"], None),
        (
            vec![
                "--aggregate",
                "vwap",
                "--stock",
                &stock_name,
                "--format",
                "csv",
            ],
            Some(2),
        ),
        (
            vec!["--aggregate", "volume", "--order-ref", &order_ref],
            Some(1),
        ),
    ];
    for (f, lines) in &checks {
        let mut j = vec!["audit", "query", "--journal", journal];
        j.extend_from_slice(f);
        let mut c = vec!["audit", "query", "--clickhouse", url];
        c.extend_from_slice(f);
        let (from_j, from_c) = (
            ticklane_e2e::ticklane_ok(&j).stdout,
            ticklane_e2e::ticklane_ok(&c).stdout,
        );
        assert!(
            from_j == from_c,
            "{f:?}:\njournal:\n{from_j}\nclickhouse:\n{from_c}"
        );
        assert!(!from_j.is_empty(), "{f:?}");
        if let Some(n) = lines {
            assert_eq!(from_j.lines().count(), *n, "{f:?}:\n{from_j}");
        }
    }
    // The answers themselves, computed here from the messages.
    // (Session Q2 only: the forged message is another session's.)
    let q = |args: &[&str]| {
        let mut a = vec!["audit", "query", "--journal", journal, "--session", "Q2"];
        a.extend_from_slice(args);
        ticklane_e2e::ticklane_ok(&a).stdout
    };
    let adds = rows.iter().filter(|r| r.r#type == b"A").count();
    assert_eq!(
        q(&["--aggregate", "count", "--type", "A"]),
        format!("{{\"messages\":{adds}}}\n")
    );
    let of_order = rows
        .iter()
        .filter(|r| r.order_reference == exec.order_reference)
        .count();
    assert!(of_order >= 2, "the order was added and executed");
    assert_eq!(q(&["--order-ref", &order_ref]).lines().count(), of_order);
    let seqs: Vec<u64> = q(&["--order-by", "exchange-time", "--desc", "--limit", "5"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect();
    let mut by_time: Vec<&MessageRow> = rows.iter().collect();
    by_time.sort_by_key(|r| std::cmp::Reverse((r.timestamp, r.seq)));
    assert_eq!(seqs, by_time[..5].iter().map(|r| r.seq).collect::<Vec<_>>());
    let locate = stock.stock_locate;
    let (mut volume, mut priced, mut notional) = (0u64, 0u64, 0u64);
    for r in rows.iter().filter(|r| r.stock_locate == locate) {
        if matches!(r.r#type[0], b'E' | b'C' | b'P' | b'Q') {
            volume += r.shares;
        }
        if matches!(r.r#type[0], b'C' | b'P' | b'Q') {
            priced += r.shares;
            notional += r.price * r.shares;
        }
    }
    assert_eq!(
        q(&["--aggregate", "vwap", "--stock", &stock_name]),
        format!(
            "{{\"session\":\"Q2\",\"stock_locate\":{locate},\"stock\":\"{stock_name}\",\"priced_shares\":{priced},\"notional\":{notional},\"vwap\":\"{:.4}\"}}\n",
            notional as f64 / priced as f64 / 10_000.0
        )
    );
    assert!(
        q(&["--aggregate", "volume", "--stock", &stock_name])
            .contains(&format!("\"volume\":{volume}}}"))
    );
}

/// Hostile values (quotes, backslashes, NUL, 100 KB, unicode), bound
/// through the library: the same answers from `store` as from the journal
/// in `dir`, no error, and the forged stock found back exactly.
fn hostile_values_are_data(dir: &std::path::Path, store: &Store) {
    use ticklane_audit::query::{Aggregate, Aggregated, Query};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let view = ticklane_audit::query::read_journal(dir).unwrap();
    let long = b"\\'\0".repeat(34_000);
    let unicode = "株式会社' OR ''='\u{1F600}\u{202E}".as_bytes().to_vec();
    let hostile: [(&[u8], &[u8], usize); 5] = [
        (b"Q2", HOSTILE_STOCK, 0),
        (HOSTILE_SESSION, HOSTILE_STOCK, 1),
        (HOSTILE_SESSION, &long, 0),
        (&long, b"AAPL", 0),
        (&unicode, &unicode, 0),
    ];
    for (session, stock, n) in hostile {
        for q in [
            Query::messages().stock(stock),
            Query::messages().session(session).stock(stock),
            Query::messages().session(session),
        ] {
            let mut from_store = Vec::new();
            rt.block_on(q.run_store(store, |m| from_store.push(m)))
                .unwrap_or_else(|e| panic!("{} bytes: {e}", stock.len()));
            assert_eq!(from_store, q.run_journal(&view));
            let counted = rt
                .block_on(q.clone().aggregate(Aggregate::Count).run_store(store))
                .unwrap();
            assert_eq!(counted, Aggregated::Count(from_store.len() as u64));
            if q.filter.session.is_some() && q.filter.stock.is_some() {
                assert_eq!(from_store.len(), n, "{:?}", q.filter);
            }
        }
    }
    let forged = Query::messages().stock(HOSTILE_STOCK);
    let mut got = Vec::new();
    rt.block_on(forged.run_store(store, |m| got.push(m)))
        .unwrap();
    assert_eq!(
        (got[0].session.as_slice(), got[0].seq),
        (HOSTILE_SESSION, 1),
        "the hostile bytes are data, stored and found back exactly"
    );
}

/// On the real ClickHouse 18.16: typed queries and aggregates agree with
/// the journal, and hostile strings are data, never SQL.
#[test]
fn typed_queries_and_aggregates_agree_between_the_journal_and_clickhouse() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = timed_journal(dir.path(), 20_000);
    let server = ClickHouse::start();
    let url = server.url();
    let said = ticklane_e2e::ticklane_ok(&["audit", "init", "--clickhouse", &url]).stdout;
    assert!(
        said.contains("ClickHouse 18.16") && said.contains("(schema.sql)"),
        "{said}"
    );
    let store = Store::new(StoreConfig::new(&url)).unwrap();
    assert_eq!(ship_all(dir.path(), &store).rows, 20_001);
    typed_queries_agree(dir.path(), &msgs, &url);
    hostile_values_are_data(dir.path(), &store);
}

/// chDB (ClickHouse 26.x in-process, tests/python/chdb_http.py serving it
/// over the HTTP the crate speaks), a free loopback port, stopped on drop.
struct Chdb {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Chdb {
    fn start() -> Self {
        let py = ticklane_e2e::python_with("import chdb", "requirements-chdb.txt");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/chdb_http.py");
        let child = std::process::Command::new(py)
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .spawn()
            .unwrap();
        let chdb = Self {
            child,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let up = wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "chdb_http.py did not listen within 30 s");
        chdb
    }
}

impl Drop for Chdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The modern path against a modern engine (chDB, ClickHouse 26.x): `audit
/// init` finds a modern server and applies schema-modern.sql; the shipper
/// inserts each batch with its deduplication token, rows validated against
/// the server's column types; the same batches sent again blindly (as after
/// a crash with no pending record, which on 18.16 duplicates them) land
/// once; and every rendered query answers as the journal does.
#[test]
fn the_modern_path_deduplicates_by_token_and_answers_alike_on_chdb() {
    let chdb = Chdb::start();
    let dir = tempfile::tempdir().unwrap();
    let msgs = timed_journal(dir.path(), 20_000);
    let said = ticklane_e2e::ticklane_ok(&["audit", "init", "--clickhouse", &chdb.url]).stdout;
    assert!(
        said.contains("ClickHouse 26.") && said.contains("schema-modern.sql"),
        "{said}"
    );
    let printed = ticklane_e2e::ticklane_ok(&["audit", "init", "--print-sql", "--modern"]).stdout;
    assert!(printed.contains("non_replicated_deduplication_window"));
    let store = Store::new(StoreConfig::new(&chdb.url)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw_count = || {
        rt.block_on(
            store
                .query("SELECT count() FROM ticklane.messages")
                .fetch_one::<u64>(),
        )
        .unwrap()
    };
    let first = ship_all(dir.path(), &store);
    assert_eq!((first.rows, first.failures), (20_001, 0), "{first:?}");
    assert_eq!(raw_count(), 20_001);
    AckState::default().store(dir.path()).unwrap();
    let blind = ship_all(dir.path(), &store);
    assert_eq!((blind.rows, blind.found_landed), (20_001, 0), "{blind:?}");
    assert_eq!(
        raw_count(),
        20_001,
        "sent twice, landed once: the tokens, not FINAL"
    );
    typed_queries_agree(dir.path(), &msgs, &chdb.url);
    hostile_values_are_data(dir.path(), &store);
}

/// The audit journal on a 1 MiB filesystem, a live feed with losses and
/// recoveries of 40,000 messages (about 2.4 MB of journal): the disk fills
/// mid-feed; the alarm is raised on stderr, in the summary and in
/// `/metrics`; the journal stops cleanly (no torn record); the poller loses
/// nothing and its books equal `ticklane book` of the capture; and what was
/// not journaled is one exact gap range, which `audit verify` finds missing,
/// exactly.
#[test]
fn a_full_disk_raises_the_alarm_and_the_feed_loses_nothing() {
    if !ticklane_e2e::netns_available() {
        return;
    }
    let _serial = ticklane_e2e::serial();
    let dir = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let _mounted = SmallDisk::mount(disk.path().to_str().unwrap(), "1m");
    let journal = disk.path().join("journal");
    let journal = journal.to_str().unwrap();
    let (clean, damaged, summary, books) = (
        ticklane_e2e::arg(dir.path(), "c.pcap"),
        ticklane_e2e::arg(dir.path(), "d.pcap"),
        ticklane_e2e::arg(dir.path(), "s.json"),
        ticklane_e2e::arg(dir.path(), "out.book"),
    );
    let gen_args: Vec<&str> = [
        "gen",
        "--messages",
        "40000",
        "--stocks",
        "20",
        "--seed",
        "12",
        "-o",
        &clean,
        "--group",
        "239.8.8.7:30007",
        "--damaged",
        &damaged,
    ]
    .iter()
    .chain(&ticklane_e2e::DAMAGE)
    .copied()
    .collect();
    ticklane_e2e::ticklane_ok(&gen_args);
    let lab = ticklane_e2e::Lab::new("afull", 1);
    let server_addr = format!("{}:9000", lab.addr(false));
    let _retrans =
        ticklane_e2e::start_retrans_server(lab.ticklane_in(&lab.a), &clean, &server_addr);
    const METRICS: &str = "127.0.0.1:50163";
    let run = ticklane_e2e::start_run(
        &lab,
        &[
            "--feed",
            "239.8.8.7:30007",
            "--retrans",
            &server_addr,
            "--summary-json",
            &summary,
            "--book-out",
            &books,
            "--metrics",
            METRICS,
            "--audit-dir",
            journal,
            "--audit-segment-mib",
            "1",
        ],
    );
    let mut sender = lab
        .ticklane_in(&lab.a)
        .args(["send", &damaged, "--iface", &lab.va, "--pps", "400"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The alarm, as /metrics says it while the feed is still coming.
    let scraped = lab
        .in_netns(&lab.b, || {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (_, body) = ticklane_e2e::http_get(METRICS, "/metrics");
                if body.lines().any(|l| l == "ticklane_audit_journal_alarm 1")
                    || Instant::now() > deadline
                {
                    return body;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .join()
        .unwrap();
    assert!(sender.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = ticklane_e2e::stop_run(run);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert!(
        scraped
            .lines()
            .any(|l| l == "ticklane_audit_journal_alarm 1"),
        "/metrics raised the alarm:\n{scraped}\n{stderr}"
    );
    let disk_bytes: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("ticklane_audit_journal_disk_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the disk usage gauge:\n{scraped}"));
    assert!(
        disk_bytes > 500_000 && disk_bytes <= 1 << 20,
        "{disk_bytes}\n{scraped}"
    );
    assert_eq!(s["session"]["lost_messages"], 0, "{s}\n{stderr}");
    assert_eq!(s["messages"], 40_000, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&books).unwrap(),
        ticklane_e2e::ticklane_ok(&["book", &clean]).stdout,
        "the books equal the capture's"
    );
    assert!(
        stderr.contains("ALARM: the audit journal stopped"),
        "{stderr}"
    );
    let trail = &s["audit"]["trail"];
    assert!(
        trail["journal_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{trail}"
    );
    assert_eq!(trail["usage"]["alarm"], true, "{trail}");
    let journaled = trail["journaled"].as_u64().unwrap();
    assert!(journaled > 1_000 && journaled < 40_000, "{trail}");
    assert_eq!(
        trail["gaps"],
        serde_json::json!([{"session": "TICKLANE01", "from": journaled + 1, "to": 40_000}]),
        "one exact range: everything after the last journaled message"
    );
    assert_eq!(
        trail["usage"]["unjournaled_messages"].as_u64().unwrap(),
        40_000 - journaled
    );
    let v = ticklane_e2e::ticklane(&["audit", "verify", &clean, "--journal", journal]);
    assert_eq!(v.code, Some(1), "{}", v.stdout);
    assert!(!v.stderr.contains("torn"), "stopped cleanly: {}", v.stderr);
    let missing: Vec<&str> = v
        .stdout
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("missing:")
                || l.contains("not in the capture")
                || l.contains("different bytes")
        })
        .collect();
    assert_eq!(
        missing,
        [format!(
            "  missing: session \"TICKLANE01\" seq {}..=40000 ({} messages)",
            journaled + 1,
            40_000 - journaled
        )],
        "{}",
        v.stdout
    );
}
