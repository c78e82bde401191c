//! The binary as a user drives it: `ticklane gen` and `ticklane decode` on
//! good, damaged, truncated, garbage and mislabelled input, captures
//! streamed through pipes, and options that must be refused.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ticklane_capture::{CaptureWriter, Format};
use ticklane_e2e::{Run, arg, ticklane, ticklane_bin, ticklane_ok};
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

/// The sequence numbers a capture delivers (its damaged copy's survivors).
fn received_seqs(capture: &str) -> BTreeSet<u64> {
    lines(&ticklane_ok(&["decode", capture]).stdout)
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn damage_follows_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    // One message per packet: the packets of two seeds carry the same
    // sequence numbers, so equal choices would lose equal numbers.
    let damaged = |name: &str, seeds: &[&str]| {
        let copy = arg(dir.path(), &format!("{name}.damaged.pcap"));
        let mut args = vec![
            "--messages",
            "3000",
            "--stocks",
            "10",
            "--max-messages",
            "1",
            "--damaged",
            &copy,
            "--drop",
            "0.2",
        ];
        args.extend_from_slice(seeds);
        let (clean, _) = gen_feed(dir.path(), &format!("{name}.pcap"), &args);
        (clean, copy)
    };
    let (_, a) = damaged("a", &["--seed", "11"]);
    let (_, again) = damaged("again", &["--seed", "11"]);
    let (_, b) = damaged("b", &["--seed", "12"]);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&again).unwrap(),
        "the same seed damages alike"
    );
    let (got_a, got_b) = (received_seqs(&a), received_seqs(&b));
    assert!(
        got_a.len() < 2_800 && got_b.len() < 2_800,
        "packets were lost"
    );
    assert_ne!(got_a, got_b, "another seed loses other packets");

    // A/B lines of one feed: the same --seed, their own --damage-seed.
    let (line_a, copy_a) = damaged("line_a", &["--seed", "11", "--damage-seed", "1"]);
    let (line_b, copy_b) = damaged("line_b", &["--seed", "11", "--damage-seed", "2"]);
    assert_eq!(
        std::fs::read(&line_a).unwrap(),
        std::fs::read(&line_b).unwrap(),
        "one feed"
    );
    let (got_a, got_b) = (received_seqs(&copy_a), received_seqs(&copy_b));
    assert_ne!(got_a, got_b, "each line loses its own packets");
    assert!(
        got_a.union(&got_b).count() > got_a.len().max(got_b.len()),
        "together the lines hold more than either"
    );
}

/// How `ticklane_streamed` hands the capture over.
enum Stream {
    /// Through a named pipe given as the file.
    Fifo,
    /// On a pipe as standard input, the file being `/dev/stdin`.
    Stdin,
}

/// Runs `ticklane ARGS… INPUT` with `capture`'s bytes streamed through
/// `how` by another thread. A capture opened twice hangs on a FIFO (the
/// second open waits for a writer that is gone), so the run must end within
/// a minute.
fn ticklane_streamed(args: &[&str], capture: &str, how: Stream) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(capture).unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut command = Command::new(ticklane_bin());
    command
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = match how {
        Stream::Fifo => {
            let fifo = dir.path().join("feed.fifo");
            let path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
            // SAFETY: `path` is a NUL-terminated string alive for the call.
            let r = unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
            assert_eq!(r, 0, "mkfifo: {}", std::io::Error::last_os_error());
            let child = command.arg(&fifo).spawn().unwrap();
            // Blocks until ticklane opens the FIFO; a failed write (the
            // reader gone) shows in ticklane's result.
            std::thread::spawn(move || std::fs::write(fifo, bytes));
            child
        }
        Stream::Stdin => {
            let mut child = command
                .arg("/dev/stdin")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || stdin.write_all(&bytes));
            child
        }
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ticklane {args:?} did not end within 60 s on a streamed capture");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
    }
}

#[test]
fn captures_stream_through_a_fifo_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, _) = gen_feed(dir.path(), "f.pcap", &SMALL);
    let (pcapng, _) = gen_feed(dir.path(), "f.pcapng", &SMALL);
    let (bin, _) = gen_feed(dir.path(), "f.itch", &SMALL);
    for capture in [&pcap, &pcapng, &bin] {
        let expected = ticklane_ok(&["decode", capture]).stdout;
        for how in [Stream::Fifo, Stream::Stdin] {
            let run = ticklane_streamed(&["decode"], capture, how);
            assert_eq!(run.code, Some(0), "{capture}: {}", run.stderr);
            assert!(run.stdout == expected, "{capture}: the same messages");
        }
    }
    let books = ticklane_ok(&["book", &pcap]).stdout;
    let run = ticklane_streamed(&["book"], &pcap, Stream::Stdin);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, books);
    let run = ticklane_streamed(&["replay", "--json"], &pcapng, Stream::Fifo);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["messages"], 30_000);
    assert_eq!(v["session"]["lost_messages"], 0);
}

/// Byte offset of block `n` (0-based) of a little-endian pcapng.
fn pcapng_block_offset(pcapng: &[u8], n: usize) -> usize {
    let mut at = 0;
    for _ in 0..n {
        at += u32::from_le_bytes(pcapng[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    at
}

#[test]
fn a_corrupt_pcapng_block_length_is_a_short_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(dir.path(), "f.pcapng", &SMALL);
    let mut bytes = std::fs::read(&feed).unwrap();
    // Block 10: the section header, the interface, then packets 1 to 8.
    let at = pcapng_block_offset(&bytes, 10);
    bytes[at + 4..at + 8].copy_from_slice(&13u32.to_le_bytes()); // not a multiple of 4
    let bad = arg(dir.path(), "bad.pcapng");
    std::fs::write(&bad, &bytes).unwrap();
    let run = ticklane(&["decode", &bad]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.len() < 300,
        "{} bytes of error: {}",
        run.stderr.len(),
        &run.stderr[..run.stderr.len().min(600)]
    );
    assert!(
        run.stderr.contains(&format!("byte offset {at}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("head -c {at}")),
        "says what to do: {}",
        run.stderr
    );
    let clean = ticklane_ok(&["decode", &feed]).stdout;
    assert!(
        !run.stdout.is_empty() && clean.starts_with(&run.stdout),
        "the messages of the packets before it"
    );
}

#[test]
fn a_first_seq_that_would_overflow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = arg(dir.path(), "x.pcap");
    let run = ticklane(&[
        "gen",
        "-o",
        &out,
        "--messages",
        "100",
        "--first-seq",
        "18446744073709551615",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("overflows the 64-bit MoldUDP64 sequence number"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("--first-seq 18446744073709551515 or less"),
        "{}",
        run.stderr
    );
    assert!(!Path::new(&out).exists());
    // The last number that fits.
    let (_, report) = gen_feed(
        dir.path(),
        "last.pcap",
        &["--messages", "100", "--first-seq", "18446744073709551515"],
    );
    assert_eq!(report["next_seq"], u64::MAX);
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn refused_or_failed_commands_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = arg(dir.path(), "x.pcap");
    let damaged = arg(dir.path(), "d.pcap");
    let missing_dir = arg(dir.path(), "no/such/dir");
    let tap = arg(dir.path(), "tap.jsonl");
    let failures: [&[&str]; 6] = [
        &["gen", "-o", &out, "--max-payload", "40"],
        &[
            "gen",
            "-o",
            &out,
            "--damaged",
            &damaged,
            "--max-payload",
            "40",
        ],
        &[
            "gen",
            "-o",
            &out,
            "--damaged",
            &damaged,
            "--expect-book",
            &missing_dir,
        ],
        &["gen", "-o", &out, "--summary-json", &missing_dir],
        &["decode", "-o", &out, &missing_dir],
        // Fails before receiving, not after the run.
        &[
            "run",
            "--iface",
            "lo",
            "--feed",
            "239.1.1.1:26477",
            "--mode",
            "udp",
            "--duration",
            "1",
            "--tap",
            &tap,
            "--book-out",
            &missing_dir,
        ],
    ];
    for args in failures {
        let run = ticklane(args);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(
            names_in(dir.path()).is_empty(),
            "{args:?} left {:?}",
            names_in(dir.path())
        );
    }

    // A capture that breaks half-way: what decoded goes nowhere with -o.
    let src = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(src.path(), "feed.pcap", &SMALL);
    let bytes = std::fs::read(&feed).unwrap();
    let cut = arg(src.path(), "cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let run = ticklane(&["decode", "-o", &out, &cut]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("x.pcap not written"), "{}", run.stderr);
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn numbers_out_of_range_are_usage_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, _) = gen_feed(dir.path(), "f.pcap", &["--messages", "100"]);
    let usage: [&[&str]; 6] = [
        &["replay", &feed, "--vwap-interval-ms", "0"],
        &["replay", &feed, "--vwap-window-ms", "18446744073709551615"],
        &["book", &feed, "--max-orders", "18446744073709551615"],
        &["replay", &feed, "--speed", "nanx"],
        &[
            "run",
            "--iface",
            "lo",
            "--feed",
            "239.1.1.1:5000",
            "--duration",
            "1e300",
        ],
        &["send", &feed, "--iface", "lo", "--pps", "nan"],
    ];
    for args in usage {
        let run = ticklane(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let run = ticklane(&[
        "replay",
        &feed,
        "--vwap-window-ms",
        "86400000",
        "--vwap-interval-ms",
        "1",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("86400000 emission intervals"),
        "{}",
        run.stderr
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ticklane_ok(&["completions", shell]).stdout;
        for sub in ["run", "replay", "doctor", "retrans-server"] {
            assert!(script.contains(sub), "{shell} completes {sub}");
        }
        assert!(script.contains("max-jump"), "{shell} completes options");
    }
    let dir = tempfile::tempdir().unwrap();
    ticklane_ok(&["man", "--dir", dir.path().to_str().unwrap()]);
    let run = std::fs::read_to_string(dir.path().join("ticklane-run.1")).unwrap();
    assert!(run.starts_with(".ie") && run.contains(".TH ticklane-run 1"));
    assert!(run.contains("max\\-jump"), "every option documented");
    assert!(dir.path().join("ticklane.1").exists());
    // A reader that goes away early is not an error (nor a panic).
    let mut child = Command::new(ticklane_bin())
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// On a terminal (a tmux pane) `gen` draws a progress bar; into a file it
/// writes none.
#[test]
fn progress_bars_show_on_a_terminal_only() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed for the terminal tests (scripts/deps.sh installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = arg(dir.path(), "big.pcap");
    let session = format!("tlprogress{}", std::process::id());
    let command = format!(
        "{} gen --messages 100000000 --stocks 50 -o {out}; sleep 30",
        ticklane_bin().display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    assert!(
        tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "120",
            "-y",
            "10",
            &command
        ])
        .status
        .success()
    );
    // Whatever happens below, the session goes (and the gen with it).
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let _kill = Kill(session.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let screen = loop {
        let screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
            .into_owned();
        if screen.contains("generating") && screen.contains('%') {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "no progress bar on the terminal:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(screen.contains("eta"), "{screen}");
    // Not a terminal: no bar in what stderr wrote.
    let quiet = ticklane_ok(&[
        "gen",
        "--messages",
        "2000000",
        "-o",
        &arg(dir.path(), "q.pcap"),
    ]);
    assert!(!quiet.stderr.contains("generating ["), "{}", quiet.stderr);
}
