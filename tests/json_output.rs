//! `--json` wherever a command prints a summary: one JSON object on
//! stdout, with the same figures the command reports otherwise: `gen`,
//! `decode --summary`, `run` and `send` on a namespace lab, `retrans-server`
//! answering a request, and `audit stats|gaps|verify` on the journal the
//! run wrote. (`replay`, `doctor` and `ctl` have theirs tested beside
//! their other tests; `book` prints JSON Lines already.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use ticklane_e2e::{Lab, arg, netns_available, start_run, stop_run, ticklane_ok};

fn object(stdout: &str) -> Value {
    let v: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{stdout}"));
    assert!(v.is_object(), "{v}");
    v
}

#[test]
fn gen_and_decode_summaries_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, damaged, file) = (
        arg(dir.path(), "clean.pcap"),
        arg(dir.path(), "damaged.pcap"),
        arg(dir.path(), "gen.json"),
    );
    let run = ticklane_ok(&[
        "gen",
        "--messages",
        "8000",
        "--stocks",
        "10",
        "--max-messages",
        "5",
        "--heartbeat-every",
        "50",
        "-o",
        &clean,
        "--damaged",
        &damaged,
        "--drop",
        "0.05",
        "--summary-json",
        &file,
        "--json",
    ]);
    let printed = object(&run.stdout);
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(printed, written);
    assert_eq!(printed["messages"], 8000);
    assert!(printed["damage"]["dropped"].as_u64() > Some(0), "{printed}");

    let clean_summary = object(&ticklane_ok(&["decode", "--summary", "--json", &clean]).stdout);
    assert_eq!(clean_summary["messages"], 8000);
    let by_type: u64 = clean_summary["by_type"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_type, 8000);
    let s = &clean_summary["sessions"][0];
    assert_eq!(s["session"], "TICKLANE01");
    assert_eq!((&s["first_seq"], &s["last_seq"]), (&1.into(), &8000.into()));
    assert_eq!(s["ended"], true);
    assert_eq!(s["heartbeats"], printed["heartbeats"]);
    assert_eq!(s["gaps"], serde_json::json!([]));

    // The damaged copy: the gaps listed are exactly the sequence numbers
    // the decode of the same file lacks.
    let summary = object(&ticklane_ok(&["decode", "--summary", "--json", &damaged]).stdout);
    let seen = ticklane_e2e::decoded_seqs(&damaged);
    let s = &summary["sessions"][0];
    let last = s["last_seq"].as_u64().unwrap();
    let absent: BTreeSet<u64> = (1..=last).filter(|q| !seen.contains(q)).collect();
    let listed: BTreeSet<u64> = s["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["from"].as_u64().unwrap()..=g["to"].as_u64().unwrap())
        .collect();
    assert!(!absent.is_empty());
    assert_eq!(listed, absent);
    assert_eq!(s["missing"], absent.len() as u64);
    assert_eq!(summary["messages"], seen.len() as u64);
}

#[test]
fn run_send_retrans_and_audit_summaries_as_json() {
    if !netns_available() {
        return;
    }
    let _serial = ticklane_e2e::serial();
    let dir = tempfile::tempdir().unwrap();
    let (capture, journal) = (arg(dir.path(), "day.pcap"), arg(dir.path(), "journal"));
    ticklane_ok(&[
        "gen",
        "--messages",
        "6000",
        "--stocks",
        "10",
        "--group",
        "239.8.9.9:30109",
        "-o",
        &capture,
    ]);
    let frames = ticklane_e2e::frames_of(&capture).len() as u64;
    let lab = Lab::new("js", 1);
    let run = start_run(
        &lab,
        &[
            "--feed",
            "239.8.9.9:30109",
            "--audit-dir",
            &journal,
            "--json",
        ],
    );
    let send = lab
        .ticklane_in(&lab.a)
        .args([
            "send", &capture, "--iface", &lab.va, "--pps", "5000", "--json",
        ])
        .output()
        .unwrap();
    assert!(send.status.success(), "{send:?}");
    let sent = object(&String::from_utf8(send.stdout).unwrap());
    assert_eq!(sent["packets"], frames, "{sent}");
    assert!(sent["bytes"].as_u64() > Some(frames * 60), "{sent}");
    assert!(sent["packets_per_second"].as_f64() > Some(0.0), "{sent}");
    std::thread::sleep(Duration::from_millis(500));
    let (stdout, stderr) = stop_run(run);
    let summary = object(&stdout);
    assert_eq!(summary["messages"], 6000, "{summary}\n{stderr}");
    assert_eq!(summary["session"]["complete"], true, "{summary}");
    assert_eq!(summary["session"]["lost_messages"], 0, "{summary}");

    let stats = object(&ticklane_ok(&["audit", "stats", "--journal", &journal, "--json"]).stdout);
    assert_eq!(stats["messages"], 6000, "{stats}");
    assert_eq!(stats["sessions"][0]["last_seq"], 6000, "{stats}");
    assert_eq!(stats["gap_ranges"], 0, "{stats}");
    assert!(
        stats["journal"]["bytes"].as_u64() > Some(6000 * 12),
        "{stats}"
    );
    let gaps = object(&ticklane_ok(&["audit", "gaps", "--journal", &journal, "--json"]).stdout);
    assert_eq!(gaps, serde_json::json!({"ranges": 0, "gaps": []}));
    let verify = object(
        &ticklane_ok(&["audit", "verify", &capture, "--journal", &journal, "--json"]).stdout,
    );
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["matched"], 6000, "{verify}");
    // Another capture: not ok, exit 1.
    let (longer, _) = ticklane_e2e::gen_day(dir.path(), "longer", "6001", "1", &[]);
    let differs =
        ticklane_e2e::ticklane(&["audit", "verify", &longer, "--journal", &journal, "--json"]);
    assert_eq!(differs.code, Some(1), "{}", differs.stderr);
    assert_eq!(object(&differs.stdout)["ok"], false);

    // The re-request server, asked for 5 messages once, says so.
    let listen = format!("{}:30110", lab.addr(true));
    // It stops by itself after --duration.
    let server = lab
        .ticklane_in(&lab.b)
        .args(["retrans-server", &capture, "--listen", &listen])
        .args(["--duration", "2", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let to = listen.clone();
    lab.in_netns(&lab.b, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        // MoldUDP64 request: session, sequence number 10, count 5.
        let mut request = b"TICKLANE01".to_vec();
        request.extend_from_slice(&10u64.to_be_bytes());
        request.extend_from_slice(&5u16.to_be_bytes());
        socket.send_to(&request, &to).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 2048];
        socket.recv(&mut buf).expect("an answer")
    })
    .join()
    .unwrap();
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary = object(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(summary["received"], 1, "{summary}");
    assert_eq!(summary["answered"], 1, "{summary}");
    assert_eq!(summary["messages"], 5, "{summary}");
    assert_eq!(summary["refused"]["total"], 0, "{summary}");
}
