//! `ticklane bench` as a user runs it: a quick report of two suites (every
//! figure beside its same-run baseline, plots that are SVG, the machine in
//! report.json), a user's capture replayed with its messages counted, and
//! the errors a user can make.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use ticklane_e2e::{arg, ticklane, ticklane_ok};

/// The root element of the XML file at `path` and how many elements of
/// each tag it holds, as Python's XML parser reads it (a file that is not
/// well-formed XML fails here).
fn svg_tags(path: &Path) -> (String, Value) {
    let script = "import sys, json, collections, xml.etree.ElementTree as E\n\
        r = E.parse(sys.argv[1]).getroot()\n\
        c = collections.Counter(e.tag.split('}')[-1] for e in r.iter())\n\
        print(json.dumps({'root': r.tag.split('}')[-1], 'tags': c}))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "{} is not well-formed XML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["root"].as_str().unwrap().to_owned(), v["tags"].clone())
}

#[test]
fn a_quick_report_has_every_figure_beside_its_baseline_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let run = ticklane_ok(&[
        "bench",
        "--suite",
        "parse,books",
        "--quick",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.stdout.contains("x the speed of itchy"),
        "{}",
        run.stdout
    );

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "# ticklane bench report",
        "same-run baseline",
        "## parse:",
        "## books-1: default mix",
        "## books-2: uniform mix",
        "| ticklane | ",
        "| ticklane books | ",
        "| baseline book | ",
        "![parse-throughput.svg](parse-throughput.svg)",
        "![books-1-latency-cdf.svg](books-1-latency-cdf.svg)",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    // Every contender's row names its baseline and gives a ratio.
    let ticklane_row = md.lines().find(|l| l.starts_with("| ticklane | ")).unwrap();
    let cells: Vec<&str> = ticklane_row.split('|').map(str::trim).collect();
    assert_eq!(cells[5], "itchy", "{ticklane_row}");
    let ratio: f64 = cells[7].trim_end_matches('x').parse().unwrap();
    assert!(ratio > 0.0, "{ticklane_row}");

    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let m = &report["machine"];
    for key in [
        "cpu_model",
        "kernel",
        "built_with",
        "git_commit",
        "started_utc",
    ] {
        assert!(
            m[key].as_str().is_some_and(|s| !s.is_empty()),
            "machine.{key}: {m}"
        );
    }
    assert!(m["cpus_online"].as_u64() > Some(0), "{m}");
    assert!(
        m["built_with"].as_str().unwrap().starts_with("rustc "),
        "{m}"
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(m["kernel"], kernel.trim(), "{m}");
    // Built from this checkout: the commit is baked in.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if head.status.success() {
        assert_eq!(
            m["git_commit"],
            String::from_utf8_lossy(&head.stdout).trim(),
            "{m}"
        );
    }
    let suites = report["suites"].as_array().unwrap();
    let ids: Vec<&str> = suites.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["parse", "books-1", "books-2"]);
    for s in suites {
        for t in s["timings"].as_array().unwrap() {
            assert!(t["ns_per_message"].as_f64() > Some(0.0), "{t}");
            if t["baseline"].is_string() {
                let base = s["timings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["name"] == t["baseline"])
                    .expect("the baseline ran in the same suite");
                let expected = base["ns_per_message"].as_f64().unwrap()
                    / t["ns_per_message"].as_f64().unwrap();
                let got = t["speedup_vs_baseline"].as_f64().unwrap();
                assert!((got - expected).abs() < 1e-9 * expected, "{t}");
            }
        }
        // Every message of the generated feed went through every contender.
        let messages = s["timings"][0]["messages"].as_u64().unwrap();
        assert!(messages >= 60_000, "{s}");
        for plot in s["plots"].as_array().unwrap() {
            let (root, tags) = svg_tags(&out.join(plot.as_str().unwrap()));
            assert_eq!(root, "svg", "{plot}");
            if plot.as_str().unwrap().ends_with("throughput.svg") {
                // One bar per contender, plus the background.
                let bars = tags["rect"].as_u64().unwrap_or(0);
                assert!(
                    bars > s["timings"].as_array().unwrap().len() as u64,
                    "{plot}: {tags}"
                );
            } else {
                assert!(tags["polyline"].as_u64() >= Some(2), "{plot}: {tags}");
            }
        }
    }
    let books = &suites[1];
    assert_eq!(books["distributions"].as_array().unwrap().len(), 2);
    assert!(
        books["distributions"][0]["p99"].as_f64() >= books["distributions"][0]["p50"].as_f64(),
        "{books}"
    );
}

#[test]
fn a_users_capture_is_replayed_and_its_messages_counted() {
    let dir = tempfile::tempdir().unwrap();
    let capture = arg(dir.path(), "day.pcapng");
    ticklane_ok(&[
        "gen",
        "--messages",
        "25000",
        "--stocks",
        "30",
        "-o",
        &capture,
    ]);
    let out = arg(dir.path(), "report");
    let run = ticklane_ok(&[
        "bench",
        "--capture",
        &capture,
        "--quick",
        "--out",
        &out,
        "--json",
    ]);
    let report: Value = serde_json::from_str(&run.stdout).expect("--json prints one object");
    let suite = &report["suites"][0];
    assert_eq!(suite["suite"], "capture", "{suite}");
    let pipeline = &suite["timings"][0];
    assert_eq!(pipeline["name"], "capture -> whole pipeline");
    assert_eq!(pipeline["messages"], 25_000, "{suite}");
    let ns = pipeline["ns_per_message"].as_f64().unwrap();
    let rate = pipeline["messages_per_second"].as_f64().unwrap();
    assert!(ns > 0.0 && rate > 0.0, "{pipeline}");
    assert!((ns * rate / 1e9 - 1.0).abs() < 1e-6, "{pipeline}");
    assert_eq!(pipeline["baseline"], "read the file");
    let md = std::fs::read_to_string(Path::new(&out).join("report.md")).unwrap();
    assert!(md.contains("25000 messages delivered"), "{md}");
    assert!(md.contains("your capture"), "{md}");
    // The other suites were not asked for.
    assert_eq!(report["suites"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_suites_and_captures_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = arg(dir.path(), "r");
    let bad = ticklane(&["bench", "--suite", "parse,bogus", "--out", &out]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("invalid value 'bogus'")
            && bad.stderr.contains("parse")
            && bad.stderr.contains("books"),
        "{}",
        bad.stderr
    );
    assert!(!Path::new(&out).exists(), "nothing written on a bad suite");

    let missing = arg(dir.path(), "missing.pcap");
    let bad = ticklane(&["bench", "--capture", &missing, "--out", &out]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("opening the capture") && bad.stderr.contains("missing.pcap"),
        "{}",
        bad.stderr
    );

    let garbage = arg(dir.path(), "garbage.pcap");
    std::fs::write(&garbage, b"not a capture at all").unwrap();
    let bad = ticklane(&["bench", "--capture", &garbage, "--quick", "--out", &out]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("ticklane: error:"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("panicked"), "{}", bad.stderr);

    // Suites the installed binary cannot run are reported, with why.
    let run = ticklane_ok(&["bench", "--suite", "send", "--out", &out, "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["skipped"][0]["suite"], "send", "{report}");
    assert!(
        report["skipped"][0]["why"]
            .as_str()
            .unwrap()
            .contains("cargo bench"),
        "{report}"
    );
}

#[test]
fn the_net_suite_measures_both_paths_on_its_own_veth_pair() {
    if !ticklane_e2e::netns_available() {
        return;
    }
    let _serial = ticklane_e2e::serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let run = ticklane_ok(&[
        "bench",
        "--suite",
        "net",
        "--quick",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["machine"]["interface"]["driver"], "veth", "{report}");
    let net = &report["suites"][0];
    assert_eq!(net["suite"], "net", "{report}");
    let names: Vec<&str> = net["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AF_XDP",
            "kernel UDP",
            "AF_XDP +threaded NAPI",
            "kernel UDP +threaded NAPI"
        ]
    );
    assert_eq!(net["timings"][0]["baseline"], "kernel UDP");
    // Every path received frames at the latency rate: a distribution each.
    for d in net["distributions"].as_array().unwrap() {
        assert!(d["samples"].as_u64() > Some(1000), "{d}");
        assert!(d["p50"].as_f64() > Some(0.0), "{d}");
    }
    let (root, tags) = svg_tags(&out.join("net-latency-cdf.svg"));
    assert_eq!(root, "svg");
    assert!(tags["polyline"].as_u64() >= Some(4), "{tags}");
    // The lab is gone.
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&netns.stdout).contains("tlbench"));
}
