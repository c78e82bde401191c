//! `ticklane book`, `replay` and `retrans-server` as a user drives them.

use std::process::Command;

use serde_json::Value;
use ticklane_e2e::{arg, start_retrans_server, ticklane, ticklane_bin, ticklane_ok};

const FEED: [&str; 6] = ["--messages", "60000", "--stocks", "30", "--seed", "5"];

fn gen_with_expectation(dir: &std::path::Path, name: &str, extra: &[&str]) -> (String, String) {
    let out = arg(dir, name);
    let book = arg(dir, &format!("{name}.book"));
    let mut args = vec!["gen", "-o", &out, "--expect-book", &book];
    args.extend_from_slice(&FEED);
    args.extend_from_slice(extra);
    ticklane_ok(&args);
    (out, std::fs::read_to_string(book).unwrap())
}

#[test]
fn book_equals_the_generators_expectation_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["f.pcap", "f.pcapng", "f.itch"] {
        let (feed, expected) = gen_with_expectation(dir.path(), name, &[]);
        assert_eq!(
            expected.lines().count(),
            30,
            "every stock has resting orders"
        );
        let run = ticklane_ok(&["book", &feed]);
        assert_eq!(run.stdout, expected, "{name}");
    }
}

#[test]
fn book_selects_a_stock_and_a_depth() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, expected) = gen_with_expectation(dir.path(), "f.pcap", &[]);
    let first: Value = serde_json::from_str(expected.lines().next().unwrap()).unwrap();
    let stock = first["stock"].as_str().unwrap();
    let run = ticklane_ok(&["book", &feed, "--stock", stock, "--depth", "2"]);
    let got: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(run.stdout.lines().count(), 1);
    assert_eq!(got["stock"], stock);
    let bids = first["bids"].as_array().unwrap();
    assert_eq!(
        got["bids"].as_array().unwrap()[..],
        bids[..2.min(bids.len())]
    );
    let asks = first["asks"].as_array().unwrap();
    assert_eq!(
        got["asks"].as_array().unwrap()[..],
        asks[..2.min(asks.len())]
    );
    let run = ticklane_ok(&["book", &feed, "--stock", "NOPE"]);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("no resting orders for stock NOPE"),
        "{}",
        run.stderr
    );
}

fn replay_json(args: &[&str]) -> Value {
    let mut all = vec!["replay", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ticklane_ok(&all).stdout).unwrap()
}

#[test]
fn replay_reports_a_clean_feed() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_with_expectation(dir.path(), "f.pcap", &[]);
    let v = replay_json(&[&feed]);
    assert_eq!(v["messages"], 60_000);
    assert_eq!(v["session"]["gaps"], 0);
    assert_eq!(v["session"]["lost_messages"], 0);
    assert_eq!(
        v["consumed"]["audit"], 60_000,
        "every message reached the audit ring"
    );
    assert_eq!(v["bus"]["audit_overflow"], 0);
    assert!(v["consumed"]["trades"].as_u64().unwrap() > 0);
    assert!(v["consumed"]["vwap"].as_u64().unwrap() > 0);
    assert!(v["consumed"]["bbo"].as_u64().unwrap() > 0);
    assert_eq!(v["books"]["stocks"], 30);
}

#[test]
fn a_damaged_feed_without_a_server_reports_its_losses() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = arg(dir.path(), "d.pcap");
    gen_with_expectation(
        dir.path(),
        "f.pcap",
        &[
            "--damaged",
            &damaged,
            "--drop",
            "0.02",
            "--dup",
            "0.02",
            "--reorder",
            "0.02",
        ],
    );
    let run = ticklane_ok(&["replay", "--json", &damaged]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let lost = v["session"]["lost_messages"].as_u64().unwrap();
    assert!(lost > 0);
    assert_eq!(
        v["messages"].as_u64().unwrap() + lost,
        60_000,
        "every message delivered once or reported lost"
    );
    assert!(v["session"]["duplicate_packets"].as_u64().unwrap() > 0);
    assert!(run.stderr.contains("messages lost"), "{}", run.stderr);
}

#[test]
fn more_lost_ranges_than_are_listed_are_counted_and_flagged_cut() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = arg(dir.path(), "d.pcap");
    // One message per packet, a third dropped: thousands of holes, more
    // than the summary lists (KEPT_RANGES, 1024).
    ticklane_ok(&[
        "gen",
        "-o",
        &arg(dir.path(), "f.pcap"),
        "--messages",
        "20000",
        "--stocks",
        "10",
        "--max-messages",
        "1",
        "--damaged",
        &damaged,
        "--drop",
        "0.3",
    ]);
    let received = ticklane_e2e::decoded_seqs(&damaged);
    let holes = (1..=20_000u64)
        .filter(|seq| !received.contains(seq) && (*seq == 1 || received.contains(&(seq - 1))))
        .count() as u64;
    assert!(holes > 1024, "{holes} holes");

    let run = ticklane_ok(&["replay", "--json", &damaged]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let ranges = &v["session"]["lost_ranges"];
    assert_eq!(ranges["ranges"], holes, "every range counted: {ranges:#}");
    assert_eq!(ranges["listed"].as_array().unwrap().len(), 1024);
    assert_eq!(ranges["cut"], true);
    assert_eq!(ranges["messages"], 20_000 - received.len() as u64);
    assert_eq!(ranges["messages"], v["session"]["lost_messages"]);
    assert!(
        run.stderr.contains(&format!("in {holes} gaps"))
            && run.stderr.contains("the list of ranges was cut"),
        "{}",
        run.stderr
    );
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn gaps_are_recovered_from_a_retrans_server_over_udp() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = arg(dir.path(), "d.pcap");
    let (clean, expected) = gen_with_expectation(
        dir.path(),
        "f.pcap",
        &[
            "--damaged",
            &damaged,
            "--drop",
            "0.03",
            "--dup",
            "0.02",
            "--reorder",
            "0.02",
        ],
    );
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let _server = start_retrans_server(Command::new(ticklane_bin()), &clean, &listen);
    let v = replay_json(&["--retrans", &listen, &damaged]);
    assert_eq!(v["session"]["lost_messages"], 0, "{v}");
    assert_eq!(v["messages"], 60_000);
    assert!(v["session"]["requests"].as_u64().unwrap() > 0);
    assert_eq!(v["session"]["gaps"], v["session"]["gaps_filled"]);
    let run = ticklane_ok(&["book", "--retrans", &listen, &damaged]);
    assert_eq!(
        run.stdout, expected,
        "books of the repaired feed equal the clean feed's"
    );
}

#[test]
fn bad_pipeline_options_are_refused() {
    let run = ticklane(&["replay", "x.pcap", "--speed", "fast"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("not max, 1x or Nx"), "{}", run.stderr);
    let run = ticklane(&["replay", "x.pcap", "--retrans", "nowhere"]);
    assert_eq!(run.code, Some(2));
    let run = ticklane(&["retrans-server", "missing.pcap", "--listen", "127.0.0.1:1"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("missing.pcap"), "{}", run.stderr);
    for (allow, why) in [
        ("198.18.3.0/33", "not a prefix length of 0 to 32"),
        ("198.18.3/24", "not an IP address"),
    ] {
        let run = ticklane(&[
            "retrans-server",
            "x.pcap",
            "--listen",
            "127.0.0.1:1",
            "--allow",
            allow,
        ]);
        assert_eq!(run.code, Some(2));
        assert!(run.stderr.contains(why), "{}", run.stderr);
    }
    let run = ticklane(&[
        "retrans-server",
        "x.pcap",
        "--listen",
        "127.0.0.1:1",
        "--client-burst",
        "1000",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(
            "cannot pay for a whole answer of --max-packets 40 × --max-payload 1400 = 56000 bytes"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn replay_at_capture_speed_takes_the_capture_time() {
    // Three packets stamped 0.3 s apart, replayed at 1x and at 10x.
    use ticklane_capture::{CaptureWriter, Format};
    use ticklane_protocols::moldudp64::{PacketBuilder, Session};
    use ticklane_protocols::wire::{UdpFrameSpec, write_udp_frame};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.pcap");
    let mut w = CaptureWriter::create(&path, Format::Pcap).unwrap();
    let spec = UdpFrameSpec::multicast([2; 6], [198, 18, 0, 1], [239, 1, 1, 1], 26477);
    for i in 0..3u64 {
        let mut payload = [0u8; 64];
        let mut b =
            PacketBuilder::new(&mut payload, Session::from_name(b"SLOW").unwrap(), 1 + i).unwrap();
        b.push(&[b'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'O']).unwrap();
        let mut frame = [0u8; 128];
        let n = write_udp_frame(&mut frame, &spec, b.finish()).unwrap();
        w.write_frame(1_000_000_000 + i * 300_000_000, &frame[..n])
            .unwrap();
    }
    w.finish().unwrap();
    let p = path.to_str().unwrap();
    let timed = |speed: &str| {
        let start = std::time::Instant::now();
        let v = replay_json(&["--speed", speed, p]);
        assert_eq!(v["messages"], 3);
        start.elapsed().as_secs_f64()
    };
    let real_time = timed("1x");
    assert!(
        real_time >= 0.6,
        "1x follows the capture's 0.6 s: {real_time}"
    );
    let fast = timed("10x");
    assert!(fast < real_time, "10x is faster: {fast} vs {real_time}");
}
