//! The control plane on a live appliance (namespace lab, XDP → AF_XDP): a
//! running `ticklane run` observed and changed through gRPC (`ticklane ctl`
//! and a foreign client, Python grpcio with stubs generated from the
//! repository's .proto), the TCP line protocol and `/metrics`, with no
//! restart, while hostile clients (1,000 idle connections and garbage on the
//! gRPC port, a stream client that never reads, slowloris and binary on the
//! line port) do their worst; the feed loses nothing. Needs root.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ticklane_e2e::{
    Killed, Lab, arg, assert_success, netns_available, serial, start_run, stop_run, ticklane_ok,
};

const FEED_A: &str = "239.8.8.1:31001";
const FEED_B: &str = "239.8.8.2:31002";
const SPARE: &str = "239.8.8.3:31003";
const GRPC: &str = "127.0.0.1:50151";
const LINE: &str = "127.0.0.1:50152";
const METRICS: &str = "127.0.0.1:50153";
const TOKEN: &str = "s3cret-token";

/// The Python interpreter of the tests' virtualenv, with grpcio and
/// grpcio-tools (tests/python/requirements.txt).
fn python() -> PathBuf {
    ticklane_e2e::python_with("import grpc, grpc_tools", "requirements.txt")
}

/// Python stubs generated from the repository's .proto into `dir`.
fn stubs(py: &Path, dir: &Path) -> String {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let out = dir.join("stubs");
    std::fs::create_dir_all(&out).unwrap();
    assert_success(
        &Command::new(py)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", proto.display()))
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()))
            .arg(proto.join("ticklane/v1/ticklane.proto"))
            .output()
            .unwrap(),
    );
    out.to_str().unwrap().to_owned()
}

/// `tests/python/client.py ARGS…` run inside namespace `ns`.
fn python_client(py: &Path, ns: &str, stubs: &str, args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/client.py");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(py)
        .arg(script)
        .args([stubs, GRPC, TOKEN])
        .args(args);
    c
}

/// A generated day of `messages` messages on `group` under `session`.
fn day(dir: &Path, name: &str, group: &str, session: &str, messages: &str, seed: &str) -> String {
    let feed = arg(dir, &format!("{name}.pcap"));
    ticklane_ok(&[
        "gen",
        "--messages",
        messages,
        "--stocks",
        "20",
        "--seed",
        seed,
        "--session",
        session,
        "-o",
        &feed,
        "--group",
        group,
    ]);
    feed
}

fn frames(path: &str) -> u64 {
    let mut n = 0;
    ticklane_capture::read(Path::new(path), |_| n += 1).unwrap();
    n
}

/// One line-protocol exchange per command, on one connection.
fn line_session(commands: &[&[u8]]) -> Vec<String> {
    let mut s = TcpStream::connect(LINE).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answers = Vec::new();
    let mut pending = Vec::new();
    for c in commands {
        s.write_all(c).unwrap();
        loop {
            if let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                answers.push(String::from_utf8_lossy(&line[..nl]).into_owned());
                break;
            }
            let mut buf = [0u8; 65536];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the line server closed after {answers:?}");
            pending.extend_from_slice(&buf[..n]);
        }
    }
    answers
}

/// GET `path` from the metrics server: (status line, body).
fn http_get(path: &str) -> (String, String) {
    ticklane_e2e::http_get(METRICS, path)
}

fn ctl(lab: &Lab, args: &[&str]) -> std::process::Output {
    lab.ticklane_in(&lab.b)
        .args(["ctl", "--grpc", GRPC])
        .args(args)
        .output()
        .unwrap()
}

fn ctl_ok(lab: &Lab, args: &[&str]) -> String {
    let out = ctl(lab, args);
    assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

fn send(lab: &Lab, capture: &str) -> std::process::Child {
    lab.ticklane_in(&lab.a)
        .args(["send", capture, "--iface", &lab.va, "--pps", "20000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A wire-to-handler histogram's p50 and p99 are plausible for a veth lab
/// on a loaded 2-core machine whose poller sleeps when idle: above 100 ns
/// (no clock mix-up into zero), below 50 ms and one second (no clock
/// mix-up into the epoch's distance).
fn assert_plausible(w: &Value) {
    let (p50, p99) = (w["p50_ns"].as_u64().unwrap(), w["p99_ns"].as_u64().unwrap());
    assert!((100..50_000_000).contains(&p50), "p50 {p50} ns: {w}");
    assert!((p50..1_000_000_000).contains(&p99), "p99 {p99} ns: {w}");
}

fn session<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no session {name} in {summary}"))
}

#[test]
fn the_control_plane_observes_and_changes_a_live_appliance_despite_hostile_clients() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let stubs = stubs(&py, dir.path());
    let a = day(dir.path(), "a", FEED_A, "CTLA", "100000", "3");
    let b = day(dir.path(), "b", FEED_B, "CTLB", "20000", "4");
    let token = arg(dir.path(), "token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let wrong = arg(dir.path(), "wrong");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let summary = arg(dir.path(), "summary.json");
    let state = arg(dir.path(), "state.redb");
    let lab = Lab::new("ctl", 1);
    let run = start_run(
        &lab,
        &[
            "--mode",
            "xdp",
            "--feed",
            FEED_A,
            "--grpc",
            GRPC,
            "--control",
            LINE,
            "--metrics",
            METRICS,
            "--token-file",
            &token,
            "--state",
            &state,
            "--summary-json",
            &summary,
        ],
    );

    // Hostile clients, held open through the feed: 1,000 idle connections
    // and garbage on the gRPC port, slowloris and binary on the line port.
    let hostile = lab
        .in_netns(&lab.b, || {
            let mut held = Vec::new();
            for _ in 0..1000 {
                held.push(TcpStream::connect(GRPC).unwrap());
            }
            held[0]
                .write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff garbage \xfe\r\n")
                .unwrap();
            for _ in 0..20 {
                let mut s = TcpStream::connect(LINE).unwrap();
                s.write_all(b"STA").unwrap(); // and never the rest
                held.push(s);
            }
            held
        })
        .join()
        .unwrap();
    // A stream client that never reads: its stdout is a pipe nobody drains.
    let never_reads = Killed(
        lab.ticklane_in(&lab.b)
            .args(["ctl", "--grpc", GRPC, "stream", "trades"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let streams = python_client(&py, &lab.b, &stubs, &["streams", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    // Feed A, and a live subscription change while it flows.
    let sender = send(&lab, &a);
    std::thread::sleep(Duration::from_millis(300));
    let sub = ctl_ok(&lab, &["--token-file", &token, "subscribe", SPARE]);
    assert!(
        sub.contains("subscribed 239.8.8.3:31003 (feed line 1)"),
        "{sub}"
    );
    let unsub = ctl_ok(&lab, &["--token-file", &token, "unsubscribe", SPARE]);
    assert!(unsub.contains("unsubscribed"), "{unsub}");
    assert_success(&sender.wait_with_output().unwrap());
    std::thread::sleep(Duration::from_millis(700));

    // The books at the end of the feed, through every client, equal
    // `ticklane book` of the capture.
    for stock in ["ZVZZT", "AAPL", "MSFT"] {
        let expected = ticklane_ok(&["book", &a, "--stock", stock]).stdout;
        if expected.is_empty() {
            continue;
        }
        assert_eq!(
            ctl_ok(&lab, &["book", stock, "--json"]),
            expected,
            "{stock}"
        );
    }
    let all = ticklane_ok(&["book", &a]).stdout;
    let first: Value = serde_json::from_str(all.lines().next().unwrap()).unwrap();
    let stock = first["stock"].as_str().unwrap().to_owned();
    let expected_line = all.lines().next().unwrap().to_owned();
    assert_eq!(
        ctl_ok(&lab, &["book", &stock, "--json"]).trim_end(),
        expected_line
    );
    let depth1 = ctl_ok(&lab, &["book", &stock, "--json", "--depth", "1"]);
    let d1: Value = serde_json::from_str(&depth1).unwrap();
    assert!(d1["bids"].as_array().unwrap().len() <= 1 && d1["asks"].as_array().unwrap().len() <= 1);

    // The foreign client: every unary method, and the refusals.
    let checked = python_client(&py, &lab.b, &stubs, &["check", &stock, "NOSUCH", SPARE])
        .output()
        .unwrap();
    assert_success(&checked);
    let c: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(c["status"]["mode"], "xdp", "{c}");
    assert_eq!(c["status"]["feeds"], serde_json::json!([FEED_A]), "{c}");
    assert_eq!(c["counters"]["delivered_messages"], 100_000, "{c}");
    assert_eq!(c["counters"]["lost_messages"], 0, "{c}");
    let py_book =
        serde_json::json!({"stock": stock, "bids": c["book"]["bids"], "asks": c["book"]["asks"]});
    assert_eq!(py_book, first, "Python's GetBook equals ticklane book");
    assert_eq!(c["book"]["session"], "CTLA");
    assert_eq!(c["book"]["stale"], false);
    assert!(c["book"]["seq"].as_u64().unwrap() >= 100_000, "{c}");
    assert_eq!(c["top"]["bids"].as_u64().unwrap().min(1), c["top"]["bids"]);
    for (call, code) in [
        ("unknown_stock", "NOT_FOUND"),
        ("bad_symbol", "INVALID_ARGUMENT"),
        ("no_token", "UNAUTHENTICATED"),
        ("wrong_token", "UNAUTHENTICATED"),
        ("unicast", "INVALID_ARGUMENT"),
        ("port_zero", "INVALID_ARGUMENT"),
        ("oversized", "RESOURCE_EXHAUSTED"),
        ("unsubscribe_unknown", "NOT_FOUND"),
        ("again", "ALREADY_EXISTS"),
    ] {
        assert_eq!(c[call][0], code, "{call}: {}", c[call]);
        assert!(!c[call][1].as_str().unwrap().is_empty(), "{call} says why");
    }
    assert_eq!(c["subscribed"][0], SPARE);
    assert_eq!(c["feeds_with_spare"], serde_json::json!([FEED_A, SPARE]));
    assert_eq!(c["feeds_after"], serde_json::json!([FEED_A]));
    // Receive times: every packet of feed A stamped by the XDP program,
    // with a plausible wire-to-handler time (a poller that sleeps when idle,
    // on a loaded 2-core machine: microseconds to milliseconds).
    assert_eq!(c["rx_timestamps"], "xdp_software", "{c}");
    let w = &c["histograms"]["wire_to_handler"];
    assert_eq!(w["source"], "xdp_software", "{c}");
    assert_eq!(
        w["count"], c["counters"]["packets"],
        "one time per packet: {c}"
    );
    assert_plausible(w);
    assert!(
        c["histograms"]["poller_loop"]["count"].as_u64().unwrap() > 0,
        "{c}"
    );
    // The settings, from the foreign client.
    assert_eq!(
        c["config_keys"],
        serde_json::json!(["log_interval", "max_streams", "ready_max_p99"])
    );
    assert_eq!(c["config_get"], "1s");
    assert_eq!(c["config_set"], serde_json::json!(["2s", true]));
    assert_eq!(c["config_after"], "2s");
    for (call, code, says) in [
        ("config_no_token", "UNAUTHENTICATED", "token"),
        ("config_bad_key", "INVALID_ARGUMENT", "config list"),
        (
            "config_bad_value",
            "INVALID_ARGUMENT",
            "whole number from 1 to 4096",
        ),
    ] {
        assert_eq!(c[call][0], code, "{call}: {}", c[call]);
        assert!(
            c[call][1].as_str().unwrap().contains(says),
            "{call}: {}",
            c[call]
        );
    }
    let wrong_token = ctl(&lab, &["--token-file", &wrong, "subscribe", SPARE]);
    assert!(!wrong_token.status.success());
    assert!(String::from_utf8_lossy(&wrong_token.stderr).contains("Unauthenticated"));

    let got = streams.wait_with_output().unwrap();
    assert_success(&got);
    let st: Value = serde_json::from_slice(&got.stdout).unwrap();
    for topic in ["bbo", "trades", "events"] {
        assert!(st["counts"][topic].as_u64().unwrap() > 0, "{topic}: {st}");
    }

    // The settings through ticklane ctl: max_streams applies at once (the
    // client that never reads holds the one stream allowed), bad keys and
    // values are refused with what to do.
    assert_eq!(
        ctl_ok(&lab, &["config", "get", "log_interval"]),
        "log_interval = 2s\n"
    );
    let set = ctl_ok(
        &lab,
        &["--token-file", &token, "config", "set", "max_streams", "1"],
    );
    assert_eq!(set, "max_streams = 1\n");
    let refused = ctl(&lab, &["stream", "bbo", "--count", "1"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("ResourceExhausted") && why.contains("max_streams"),
        "{why}"
    );
    ctl_ok(
        &lab,
        &[
            "--token-file",
            &token,
            "config",
            "set",
            "max_streams",
            "100",
        ],
    );
    for (args, says) in [
        (
            ["config", "set", "nosuch", "1"],
            "'nosuch' is not a setting",
        ),
        (
            ["config", "set", "log_interval", "fast"],
            "is not a duration",
        ),
        (["config", "set", "max_streams", "0"], "give 1 to 4096"),
    ] {
        let out = ctl(
            &lab,
            &[&["--token-file", token.as_str()][..], &args[..]].concat(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("InvalidArgument"),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
    }
    let list = ctl_ok(&lab, &["config", "list"]);
    assert!(list.contains("max_streams = 100 (default 64): "), "{list}");

    // The line protocol, garbage and all.
    let answers = lab
        .in_netns(&lab.b, move || {
            let mut long = vec![b'X'; 5000];
            long.push(b'\n');
            let book = format!("BOOK {stock}\n");
            line_session(&[
                b"HELP\n",
                b"STATUS\n",
                b"FEEDS\n",
                book.as_bytes(),
                b"\x00\xff\xfe\n",
                &long,
                b"FROB\n",
                b"SUB 239.8.8.3:31003\n",
                b"AUTH wrong\n",
                format!("AUTH {TOKEN}\n").as_bytes(),
                b"SUB 10.0.0.1:5\n",
                b"SUB 239.8.8.3:31003\n",
                b"UNSUB 239.8.8.3:31003\n",
                b"STATS\n",
            ])
        })
        .join()
        .unwrap();
    let expect = [
        "OK commands",
        "OK version=",
        "OK 1 feeds line0=239.8.8.1:31001",
        &format!("OK {expected_line}"),
        "ERR not a text line",
        "ERR line longer than 1024 bytes",
        "ERR unknown command 'FROB'",
        "ERR not authenticated",
        "ERR wrong token",
        "OK authenticated",
        "ERR 10.0.0.1 is not a multicast group",
        "OK subscribed 239.8.8.3:31003 line=1",
        "OK unsubscribed 239.8.8.3:31003 line=1",
        "OK packets=",
    ];
    assert_eq!(answers.len(), expect.len(), "{answers:#?}");
    for (got, want) in answers.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    assert!(
        answers[1].contains(" rx_timestamps=xdp_software "),
        "{}",
        answers[1]
    );
    assert!(
        answers[13].contains(" wire_to_handler_p99_ns="),
        "{}",
        answers[13]
    );

    // Metrics and health.
    let (metrics, health, ready) = lab
        .in_netns(&lab.b, || {
            (
                http_get("/metrics"),
                http_get("/healthz"),
                http_get("/readyz"),
            )
        })
        .join()
        .unwrap();
    assert!(metrics.0.contains("200"), "{metrics:?}");
    assert!(
        metrics
            .1
            .contains("ticklane_delivered_messages_total 100000"),
        "{}",
        metrics.1
    );
    assert!(
        metrics
            .1
            .contains("ticklane_line_packets_total{session=\"CTLA\",feed=\"239.8.8.1:31001\"}"),
        "{}",
        metrics.1
    );
    assert!(
        health.0.contains("200") && ready.0.contains("200"),
        "{health:?} {ready:?}"
    );
    for histogram in ["wire_to_handler", "poller_loop"] {
        assert!(
            metrics
                .1
                .contains(&format!("# TYPE ticklane_{histogram}_seconds histogram"))
                && metrics.1.contains(&format!(
                    "ticklane_{histogram}_seconds_bucket{{le=\"+Inf\"}}"
                )),
            "{histogram}: {}",
            metrics.1
        );
    }
    assert!(
        metrics
            .1
            .contains("ticklane_rx_timestamps{source=\"xdp_software\"} 1"),
        "{}",
        metrics.1
    );

    // Feed B subscribed live: steered at once (a kernel socket joined to
    // its group gets nothing), sequenced as its own session, nothing lost.
    let local = lab.addr(true);
    let kernel = |secs: &str| {
        let mut p = python_client(
            &py,
            &lab.b,
            &stubs,
            &["kernel", "239.8.8.2", "31002", &local, secs],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let mut ready = [0u8; 6];
        p.stdout.as_mut().unwrap().read_exact(&mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        p
    };
    let received = |p: std::process::Child| -> u64 {
        let out = p.wait_with_output().unwrap();
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let started = Instant::now();
    let sub = ctl_ok(&lab, &["--token-file", &token, "subscribe", FEED_B]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "subscribed in {took:?}");
    assert!(
        sub.contains("subscribed 239.8.8.2:31002 (feed line 1)"),
        "{sub}"
    );
    let listener = kernel("1.5");
    let sender = send(&lab, &b);
    assert_success(&sender.wait_with_output().unwrap());
    let while_steered = received(listener);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(while_steered, 0, "XDP steered feed B away from the kernel");
    let status: Value = serde_json::from_str(&ctl_ok(&lab, &["status", "--json"])).unwrap();
    let b_session = status["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == "CTLB");
    assert_eq!(
        b_session.map(|s| s["next_seq"].clone()),
        Some(20_001.into()),
        "{status}"
    );

    // Unsubscribed: feed B goes back to the kernel, the appliance takes none.
    ctl_ok(&lab, &["--token-file", &token, "unsubscribe", FEED_B]);
    let before: Value = serde_json::from_str(&ctl_ok(&lab, &["stats", "--json"])).unwrap();
    let listener = kernel("1.5");
    let sender = send(&lab, &b);
    assert_success(&sender.wait_with_output().unwrap());
    let to_kernel = received(listener);
    let after: Value = serde_json::from_str(&ctl_ok(&lab, &["stats", "--json"])).unwrap();
    let packets = |v: &Value| {
        v["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "packets")
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(
        packets(&before),
        packets(&after),
        "no packet of B taken once unsubscribed"
    );
    assert!(
        to_kernel * 2 >= frames(&b),
        "the kernel received feed B: {to_kernel} of {}",
        frames(&b)
    );

    // A feed subscribed live is kept in the state file, for the restart.
    ctl_ok(&lab, &["--token-file", &token, "subscribe", SPARE]);
    drop(hostile);
    drop(never_reads);
    let (stdout, stderr) = stop_run(run);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["messages"], 120_000, "{s}\n{stdout}\n{stderr}");
    assert_eq!(s["session"]["lost_messages"], 0, "{s}");
    // Day A ended before B began: B took A's slot, as the next day does.
    let b = session(&s, "CTLB");
    assert_eq!(
        (&b["lost_messages"], &b["ended"], &b["next_seq"]),
        (&0.into(), &true.into(), &20_001.into()),
        "{s}"
    );

    // Restarted with the same state file: the live subscription is back.
    let again = start_run(
        &lab,
        &[
            "--mode", "xdp", "--feed", FEED_A, "--grpc", GRPC, "--state", &state,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let feeds = loop {
        let feeds: Value = serde_json::from_str(&ctl_ok(&lab, &["feeds", "--json"])).unwrap();
        if feeds.as_array().unwrap().len() == 2 || Instant::now() > deadline {
            break feeds;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let kept = ctl_ok(&lab, &["config", "get", "max_streams"]);
    let (_, log) = stop_run(again);
    assert_eq!(kept, "max_streams = 100\n", "{log}");
    assert!(
        log.contains("setting max_streams = 100 (as set before the restart)"),
        "{log}"
    );
    let names: Vec<&Value> = feeds
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["feed"])
        .collect();
    assert_eq!(names, [FEED_A, SPARE], "{log}");
    assert!(log.contains("239.8.8.3:31003 subscribed again"), "{log}");
}

/// On kernel UDP sockets too, a feed subscribed live gets its own socket
/// (joined at once) and is sequenced; unsubscribed, its socket is closed and
/// the appliance takes none of it.
#[test]
fn feeds_change_live_on_kernel_sockets_too() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let a = day(dir.path(), "a", FEED_A, "UDPA", "20000", "5");
    let b = day(dir.path(), "b", FEED_B, "UDPB", "10000", "6");
    let token = arg(dir.path(), "token");
    std::fs::write(&token, TOKEN).unwrap();
    let summary = arg(dir.path(), "summary.json");
    let lab = Lab::new("ctu", 1);
    let run = start_run(
        &lab,
        &[
            "--mode",
            "udp",
            "--feed",
            FEED_A,
            "--grpc",
            GRPC,
            "--token-file",
            &token,
            "--summary-json",
            &summary,
        ],
    );
    assert_success(&send(&lab, &a).wait_with_output().unwrap());
    // Receive times from the kernel socket (SO_TIMESTAMPNS), one per packet.
    std::thread::sleep(Duration::from_millis(300));
    let stats: Value = serde_json::from_str(&ctl_ok(&lab, &["stats", "--json"])).unwrap();
    let w = stats["histograms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "wire_to_handler")
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(w["source"], "kernel_so_timestampns", "{stats}");
    assert_eq!(w["count"].as_u64(), Some(frames(&a)), "{stats}");
    assert_plausible(w);
    let started = Instant::now();
    let sub = ctl_ok(&lab, &["--token-file", &token, "subscribe", FEED_B]);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(sub.contains("(feed line 1)"), "{sub}");
    assert_success(&send(&lab, &b).wait_with_output().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let status: Value = serde_json::from_str(&ctl_ok(&lab, &["status", "--json"])).unwrap();
    assert_eq!(status["mode"], "udp");
    let b_session = status["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == "UDPB");
    assert_eq!(
        b_session.map(|s| s["next_seq"].clone()),
        Some(10_001.into()),
        "{status}"
    );
    ctl_ok(&lab, &["--token-file", &token, "unsubscribe", FEED_B]);
    let feeds: Value = serde_json::from_str(&ctl_ok(&lab, &["feeds", "--json"])).unwrap();
    assert_eq!(feeds.as_array().unwrap().len(), 1, "{feeds}");
    assert_success(&send(&lab, &b).wait_with_output().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let (stdout, stderr) = stop_run(run);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(
        s["messages"], 30_000,
        "B's second sending taken by none\n{s}\n{stdout}\n{stderr}"
    );
    assert_eq!(s["session"]["lost_messages"], 0, "{s}");
}
