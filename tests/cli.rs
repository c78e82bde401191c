//! The binary as a user drives it: `ticklane gen` and `ticklane decode` on
//! good, damaged, truncated, garbage and mislabelled input.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use ticklane_capture::{CaptureWriter, Format};
use ticklane_e2e::{arg, ticklane, ticklane_ok};
use ticklane_protocols::wire::{UdpFrameSpec, write_udp_frame};

fn gen_feed(dir: &Path, name: &str, extra: &[&str]) -> (String, Value) {
    let out = arg(dir, name);
    let summary = arg(dir, &format!("{name}.summary.json"));
    let mut args = vec!["gen", "-o", &out, "--summary-json", &summary];
    args.extend_from_slice(extra);
    ticklane_ok(&args);
    let report = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    (out, report)
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

const SMALL: [&str; 6] = ["--messages", "30000", "--stocks", "40", "--seed", "11"];

#[test]
fn gen_is_deterministic_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = gen_feed(dir.path(), "a.pcap", &SMALL);
    let (b, _) = gen_feed(dir.path(), "b.pcap", &SMALL);
    let mut other = SMALL;
    other[5] = "12";
    let (c, _) = gen_feed(dir.path(), "c.pcap", &other);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

#[test]
fn decode_of_a_generated_feed_matches_what_was_generated() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, report) = gen_feed(dir.path(), "feed.pcap", &SMALL);
    let run = ticklane_ok(&["decode", &feed]);
    let msgs = lines(&run.stdout);
    assert_eq!(msgs.len(), 30_000);
    assert_eq!(report["messages"], 30_000);
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m["session"], "TICKLANE01");
        assert_eq!(
            m["seq"],
            i as u64 + 1,
            "sequence numbers run from 1 without holes"
        );
        *by_type
            .entry(m["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = report["by_type"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(by_type, expected);
    assert_eq!(by_type.len(), 23, "every ITCH 5.0 type is in the feed");
}

#[test]
fn pcap_pcapng_and_binaryfile_decode_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, _) = gen_feed(dir.path(), "f.pcap", &SMALL);
    let (pcapng, _) = gen_feed(dir.path(), "f.pcapng", &SMALL);
    let (bin, _) = gen_feed(dir.path(), "f.itch", &SMALL);
    let from_pcap = ticklane_ok(&["decode", &pcap]).stdout;
    assert_eq!(ticklane_ok(&["decode", &pcapng]).stdout, from_pcap);
    let from_bin = ticklane_ok(&["decode", &bin]).stdout;
    assert_eq!(
        from_bin,
        from_pcap.replace("\"session\":\"TICKLANE01\"", "\"session\":\"\""),
        "BinaryFILE has no session, and numbers its messages from 1"
    );
}

#[test]
fn summary_reports_types_sessions_and_exact_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = arg(dir.path(), "damaged.pcap");
    let mut args = SMALL.to_vec();
    args.extend_from_slice(&[
        "--damaged",
        &damaged,
        "--drop",
        "0.05",
        "--max-messages",
        "5",
    ]);
    let (clean, report) = gen_feed(dir.path(), "clean.pcap", &args);
    assert!(report["damage"]["dropped"].as_u64().unwrap() > 0);

    let clean_summary = ticklane_ok(&["decode", "--summary", &clean]).stdout;
    assert!(clean_summary.contains("messages: 30000"), "{clean_summary}");
    assert!(
        clean_summary.contains("session \"TICKLANE01\""),
        "{clean_summary}"
    );
    assert!(clean_summary.contains("seq 1..30000"), "{clean_summary}");
    assert!(clean_summary.contains("gaps: none"), "{clean_summary}");
    assert!(clean_summary.contains("A AddOrder"), "{clean_summary}");

    let received = lines(&ticklane_ok(&["decode", &damaged]).stdout).len();
    let summary = ticklane_ok(&["decode", "--summary", &damaged]).stdout;
    let missing = 30_000 - received;
    assert!(missing > 0);
    assert!(
        summary.contains(&format!("({missing} messages missing)")),
        "the summary counts exactly the {missing} lost messages:\n{summary}"
    );
}

#[test]
fn garbage_empty_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = arg(dir.path(), "garbage.pcap");
    std::fs::write(
        &garbage,
        b"\x13\x37this is not a capture at all, just text\n",
    )
    .unwrap();
    let run = ticklane(&["decode", &garbage]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("not a pcap, pcapng or BinaryFILE"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("garbage.pcap"),
        "names the file: {}",
        run.stderr
    );

    let empty = arg(dir.path(), "empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let run = ticklane(&["decode", &empty]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("empty"), "{}", run.stderr);

    let run = ticklane(&["decode", &arg(dir.path(), "nope.pcap")]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("nope.pcap"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn a_truncated_capture_prints_what_it_can_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(dir.path(), "feed.pcap", &SMALL);
    let bytes = std::fs::read(&feed).unwrap();
    let cut = arg(dir.path(), "cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let run = ticklane(&["decode", &cut]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("truncated"), "{}", run.stderr);
    assert!(run.stderr.contains("byte offset"), "{}", run.stderr);
    let decoded = lines(&run.stdout);
    assert!(
        decoded.len() > 15_000 && decoded.len() < 30_000,
        "{}",
        decoded.len()
    );
}

/// Byte offset of packet `n`'s frame (1-based) in a nanosecond pcap.
fn frame_offset(pcap: &[u8], n: usize) -> usize {
    let mut at = 24;
    for _ in 1..n {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
    }
    at + 16
}

#[test]
fn one_bad_packet_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(dir.path(), "feed.pcap", &SMALL);
    let good = lines(&ticklane_ok(&["decode", &feed]).stdout);
    let mut bytes = std::fs::read(&feed).unwrap();
    let frame = frame_offset(&bytes, 7);
    let mold = frame + 14 + 20 + 8;
    let count = usize::from(u16::from_be_bytes([bytes[mold + 18], bytes[mold + 19]]));
    bytes[mold + 20] = 0xff; // first block claims ~65 KB
    let bad = arg(dir.path(), "bad.pcap");
    std::fs::write(&bad, &bytes).unwrap();
    let run = ticklane(&["decode", &bad]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("packet 7 (byte offset"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("runs past the end of the packet; skipped"),
        "{}",
        run.stderr
    );
    assert_eq!(lines(&run.stdout).len(), good.len() - count);
}

#[test]
fn an_unknown_message_type_skips_only_that_message() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(dir.path(), "feed.pcap", &SMALL);
    let mut bytes = std::fs::read(&feed).unwrap();
    let mold = frame_offset(&bytes, 9) + 14 + 20 + 8;
    let seq = u64::from_be_bytes(bytes[mold + 10..mold + 18].try_into().unwrap());
    bytes[mold + 22] = b'Z';
    let bad = arg(dir.path(), "bad.pcap");
    std::fs::write(&bad, &bytes).unwrap();
    let run = ticklane(&["decode", &bad]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("message seq {seq}: unknown ITCH message type 'Z'")),
        "{}",
        run.stderr
    );
    let msgs = lines(&run.stdout);
    assert_eq!(msgs.len(), 29_999);
    assert!(msgs.iter().all(|m| m["seq"] != seq));
}

#[test]
fn udp_that_is_not_moldudp64_is_called_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dns.pcap");
    let mut w = CaptureWriter::create(&path, Format::Pcap).unwrap();
    let spec = UdpFrameSpec::multicast([2; 6], [198, 18, 0, 9], [239, 2, 2, 2], 5353);
    let mut frame = [0u8; 128];
    for i in 0..5u64 {
        let n = write_udp_frame(&mut frame, &spec, b"\x00\x01 not a mold packet").unwrap();
        w.write_frame(i, &frame[..n]).unwrap();
    }
    w.finish().unwrap();
    let run = ticklane(&["decode", path.to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("none of its 5 UDP packets is a valid MoldUDP64 packet"),
        "{}",
        run.stderr
    );
}

#[test]
fn feed_filter_selects_by_group_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(
        dir.path(),
        "feed.pcap",
        &["--messages", "500", "--group", "239.9.9.9:4000"],
    );
    let run = ticklane_ok(&["decode", "--feed", "239.9.9.9:4000", &feed]);
    assert_eq!(lines(&run.stdout).len(), 500);
    let run = ticklane(&["decode", "--feed", "239.9.9.9:4001", &feed]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("check --feed"), "{}", run.stderr);
    let run = ticklane(&["decode", "--feed", "10.0.0.1:4000", &feed]);
    assert_eq!(run.code, Some(2), "a bad --feed is a usage error");
    assert!(
        run.stderr.contains("not a multicast group"),
        "{}",
        run.stderr
    );
}

#[test]
fn feed_filter_honours_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(
        dir.path(),
        "feed.pcap",
        &[
            "--messages",
            "300",
            "--group",
            "239.9.9.9:4000",
            "--source",
            "198.18.3.1",
        ],
    );
    let run = ticklane_ok(&["decode", "--feed", "239.9.9.9:4000@198.18.3.1", &feed]);
    assert_eq!(lines(&run.stdout).len(), 300);
    let run = ticklane(&["decode", "--feed", "239.9.9.9:4000@198.18.3.2", &feed]);
    assert_eq!(run.code, Some(1), "no frame from that source");
    assert!(run.stderr.contains("check --feed"), "{}", run.stderr);
}

#[test]
fn integrity_options_that_cannot_be_honoured_are_refused() {
    let run = ticklane(&[
        "run",
        "--iface",
        "lo",
        "--mode",
        "udp",
        "--vlan",
        "100",
        "--feed",
        "239.1.1.1:1",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("--vlan is for the XDP path"),
        "{}",
        run.stderr
    );
    let run = ticklane(&[
        "run",
        "--iface",
        "lo",
        "--feed",
        "239.1.1.1:1@198.18.0.1",
        "--feed",
        "239.1.1.1:1@198.18.0.2",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("is given twice"), "{}", run.stderr);
    let run = ticklane(&[
        "run",
        "--iface",
        "lo",
        "--vlan",
        "4095",
        "--feed",
        "239.1.1.1:1",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("not a VLAN ID"), "{}", run.stderr);
    let run = ticklane(&["run", "--iface", "lo", "--feed", "239.1.1.1:1@239.2.2.2"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("not a unicast address"),
        "{}",
        run.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let out = arg(dir.path(), "x.pcap");
    let run = ticklane(&["gen", "-o", &out, "--group", "239.1.1.1:1@198.18.0.1"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("--source"), "{}", run.stderr);
}

#[test]
fn bad_gen_options_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let out = arg(dir.path(), "x.pcap");
    let run = ticklane(&["gen", "-o", &out, "--session", "MUCH_TOO_LONG_NAME"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("at most 10 ASCII characters"),
        "{}",
        run.stderr
    );
    let run = ticklane(&["gen", "-o", &out, "--damaged", &out, "--drop", "1.5"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("not a probability"), "{}", run.stderr);
    let bin = arg(dir.path(), "x.itch");
    let run = ticklane(&["gen", "-o", &bin, "--damaged", &out, "--drop", "0.1"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no packets to damage"),
        "{}",
        run.stderr
    );
    let run = ticklane(&["gen", "-o", &out, "--max-payload", "40"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("--max-payload"), "{}", run.stderr);
}

#[test]
fn help_explains_the_commands() {
    let run = ticklane_ok(&["--help"]);
    assert!(
        run.stdout.contains("gen") && run.stdout.contains("decode"),
        "{}",
        run.stdout
    );
    let run = ticklane_ok(&["decode", "--help"]);
    assert!(
        run.stdout.contains("BinaryFILE") && run.stdout.contains("--summary"),
        "{}",
        run.stdout
    );
    let run = ticklane_ok(&["gen", "--help"]);
    assert!(
        run.stdout.contains("--seed") && run.stdout.contains("--damaged"),
        "{}",
        run.stdout
    );
}
