//! Gap recovery across a real network: a re-request server in one network
//! namespace, the replaying appliance in another, joined by a veth pair this
//! test creates (198.18.0.0/15 addresses) and removes, also on failure.
//!
//! Needs root and iproute2 (see `netns_available`).

use serde_json::Value;
use ticklane_e2e::{Lab, arg, assert_success, netns_available, start_retrans_server, ticklane_ok};

#[test]
fn a_damaged_feed_is_repaired_from_a_server_across_namespaces() {
    if !netns_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (clean, damaged, book) = (
        arg(dir.path(), "c.pcap"),
        arg(dir.path(), "d.pcap"),
        arg(dir.path(), "c.book"),
    );
    ticklane_ok(&[
        "gen",
        "--messages",
        "50000",
        "--stocks",
        "20",
        "--seed",
        "9",
        "-o",
        &clean,
        "--expect-book",
        &book,
        "--damaged",
        &damaged,
        "--drop",
        "0.03",
        "--dup",
        "0.01",
        "--reorder",
        "0.02",
    ]);
    let lab = Lab::new("r", 1);
    let server_addr = format!("{}:9000", lab.addr(false));
    let _server = start_retrans_server(lab.ticklane_in(&lab.a), &clean, &server_addr);
    let out = lab
        .ticklane_in(&lab.b)
        .args(["replay", "--json", "--retrans", &server_addr, &damaged])
        .output()
        .unwrap();
    assert_success(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["session"]["lost_messages"], 0, "{v}");
    assert_eq!(v["messages"], 50_000);
    let out = lab
        .ticklane_in(&lab.b)
        .args(["book", "--retrans", &server_addr, &damaged])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(&book).unwrap()
    );
}
