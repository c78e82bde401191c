//! Gap recovery on the live path (namespace lab, XDP → AF_XDP, a
//! re-request server on the exchange side): a large gap is filled within
//! milliseconds of its detection, and a lossy, reordered feed costs about
//! what it lost in requests, run after run. Needs root.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use ticklane_e2e::{
    Frames, Lab, arg, assert_success, frames_of, gen_day, netns_available, serial,
    start_retrans_server_with, start_run, stop_run, write_frames,
};
use ticklane_protocols::moldudp64::Packet;
use ticklane_protocols::wire;

const FEED: &str = "239.7.9.9:30011";

/// The sequence numbers of the messages that `frames` carry.
fn carried(frames: &Frames) -> BTreeSet<u64> {
    let mut seqs = BTreeSet::new();
    for (_, f) in frames {
        let udp = wire::parse_ethernet_udp(f).unwrap();
        if let Ok(p) = Packet::new_checked(udp.payload) {
            seqs.extend(p.messages().map(|(seq, _)| seq));
        }
    }
    seqs
}

/// A lab with a re-request server answering from `clean` (its client
/// budget sized for the lab, as in the demo).
fn lab_with_server(tag: &str, clean: &str) -> (Lab, String, ticklane_e2e::Killed) {
    let lab = Lab::new(tag, 1);
    let server = format!("{}:9000", lab.addr(false));
    let killed = start_retrans_server_with(
        lab.ticklane_in(&lab.a),
        clean,
        &server,
        &["--client-burst", "1048576", "--client-rate", "16000000"],
        Stdio::null(),
    );
    (lab, server, killed)
}

/// Runs the appliance on `lossy` sent at `pps` with the server; returns
/// the summary and whether the books equal `book`.
fn repaired_run(lab: &Lab, server: &str, lossy: &str, pps: &str, book: &str) -> (Value, bool) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, book_out) = (arg(dir.path(), "s.json"), arg(dir.path(), "out.book"));
    let run = start_run(
        lab,
        &[
            "--mode",
            "xdp",
            "--feed",
            FEED,
            "--retrans",
            server,
            "--summary-json",
            &summary,
            "--book-out",
            &book_out,
        ],
    );
    let sent = lab
        .ticklane_in(&lab.a)
        .args(["send", lossy, "--iface", &lab.va, "--pps", pps])
        .output()
        .unwrap();
    assert_success(&sent);
    std::thread::sleep(Duration::from_millis(700));
    let (_, stderr) = stop_run(run);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let equal =
        std::fs::read_to_string(&book_out).unwrap() == std::fs::read_to_string(book).unwrap();
    (s, equal)
}

#[test]
fn a_1000_message_gap_is_filled_within_5_ms_of_its_detection() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (clean, book) = gen_day(dir.path(), "c", "100000", "11", &["--group", FEED]);
    // Three gaps of (at least) 1,000 messages each: whole packets from
    // message 20,000, 50,000 and 80,000 on.
    let frames = frames_of(&clean);
    let mut lossy = Vec::new();
    let mut dropping: Option<(u64, u64)> = None;
    let mut starts = vec![20_000u64, 50_000, 80_000].into_iter().peekable();
    for (ts, f) in &frames {
        let p = Packet::new_checked(wire::parse_ethernet_udp(f).unwrap().payload).unwrap();
        let (seq, n) = (p.sequence_number(), u64::from(p.messages_len()));
        if dropping.is_none() && starts.peek().is_some_and(|&s| seq >= s) {
            starts.next();
            dropping = Some((seq, 0));
        }
        if let Some((from, dropped)) = dropping.as_mut() {
            if *dropped < 1_000 {
                *dropped += n;
                continue;
            }
            assert!(seq >= *from + 1_000);
            dropping = None;
        }
        lossy.push((*ts, f.clone()));
    }
    let lost = carried(&frames).len() - carried(&lossy).len();
    assert!((3_000..3_100).contains(&lost), "{lost} messages dropped");
    let lossy_path = arg(dir.path(), "lossy.pcap");
    write_frames(&lossy_path, &lossy);

    let (lab, server, _server) = lab_with_server("gap5", &clean);
    let (s, books_equal) = repaired_run(&lab, &server, &lossy_path, "50000", &book);
    let session = &s["session"];
    assert!(books_equal, "the books equal the clean feed's: {s}");
    assert_eq!(session["lost_messages"], 0, "{s}");
    assert_eq!(session["gaps"], 3, "{s}");
    assert_eq!(session["gaps_filled"], 3, "{s}");
    let r = &session["recovery_us"];
    eprintln!(
        "recovery of 3 gaps of 1,000 messages: p50 <= {} us, p99 <= {} us, max {} us",
        r["p50_at_most"], r["p99_at_most"], r["max"]
    );
    assert!(
        r["max"].as_u64().unwrap() <= 5_000,
        "every gap filled within 5 ms of its detection: {r}"
    );
}

#[test]
fn requests_stay_within_1_5_times_the_loss_over_10_runs() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let lossy = arg(dir.path(), "lossy.pcap");
    // The demo's damage (2% loss, 1% duplicates, 1% reordering) on a
    // shorter day, sent at the demo's 100,000 packets/s.
    let (clean, book) = gen_day(
        dir.path(),
        "c",
        "200000",
        "7",
        &[
            "--group",
            FEED,
            "--damaged",
            &lossy,
            "--drop",
            "0.02",
            "--dup",
            "0.01",
            "--reorder",
            "0.01",
        ],
    );
    let lost = (carried(&frames_of(&clean)).len() - carried(&frames_of(&lossy)).len()) as u64;
    assert!(lost > 2_000, "{lost} messages dropped");
    let (lab, server, _server) = lab_with_server("ratio", &clean);
    for run in 0..10 {
        let (s, books_equal) = repaired_run(&lab, &server, &lossy, "100000", &book);
        let session = &s["session"];
        let requested = session["requested_messages"].as_u64().unwrap();
        eprintln!(
            "run {run}: {requested} messages requested for {lost} lost ({:.2}x), {} retries, \
             recovery p99 <= {} us",
            requested as f64 / lost as f64,
            session["retries"],
            session["recovery_us"]["p99_at_most"]
        );
        assert!(
            books_equal,
            "run {run}: the books equal the clean feed's: {s}"
        );
        assert_eq!(session["lost_messages"], 0, "run {run}: {s}");
        assert_eq!(session["window_overflow"], 0, "run {run}: {s}");
        assert!(
            requested * 2 <= lost * 3,
            "run {run}: {requested} messages requested for {lost} lost: {s}"
        );
    }
}
