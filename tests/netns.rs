//! Gap recovery across a real network: a re-request server in one network
//! namespace, the replaying appliance in another, joined by a veth pair this
//! test creates (198.18.0.0/15 addresses) and removes, also on failure.
//!
//! Needs root and iproute2. Where they are missing the test fails loudly,
//! unless TICKLANE_SKIP_NETNS=1 says to skip it (CI runs it as root).

use std::process::{Child, Command, Stdio};

use serde_json::Value;
use ticklane_e2e::{arg, ticklane_bin, ticklane_ok};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Lab {
    a: String,
    b: String,
}

impl Lab {
    fn new(tag: &str) -> Self {
        let id = std::process::id() % 10_000;
        let lab = Self {
            a: format!("tl{tag}{id}a"),
            b: format!("tl{tag}{id}b"),
        };
        ip(&["netns", "add", &lab.a]);
        ip(&["netns", "add", &lab.b]);
        let (va, vb) = (format!("v{tag}{id}a"), format!("v{tag}{id}b"));
        ip(&[
            "link", "add", &va, "netns", &lab.a, "type", "veth", "peer", "name", &vb, "netns",
            &lab.b,
        ]);
        ip(&["-n", &lab.a, "addr", "add", "198.18.7.1/24", "dev", &va]);
        ip(&["-n", &lab.b, "addr", "add", "198.18.7.2/24", "dev", &vb]);
        for (ns, dev) in [(&lab.a, &va), (&lab.b, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "mtu", "1500", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn exec(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(ticklane_bin());
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if root && has_ip {
        return true;
    }
    if std::env::var("TICKLANE_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!(
            "\n*** SKIPPED: network-namespace test needs root and iproute2 (TICKLANE_SKIP_NETNS=1) ***\n"
        );
        return false;
    }
    panic!(
        "this test needs root and iproute2 (CI has both); set TICKLANE_SKIP_NETNS=1 to skip it knowingly"
    );
}

#[test]
fn a_damaged_feed_is_repaired_from_a_server_across_namespaces() {
    if !can_run() {
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
    let lab = Lab::new("r");
    let _server = Killed(
        lab.exec(&lab.a)
            .args([
                "retrans-server",
                &clean,
                "--listen",
                "198.18.7.1:9000",
                "--duration",
                "120",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = lab
        .exec(&lab.b)
        .args(["replay", "--json", "--retrans", "198.18.7.1:9000", &damaged])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["session"]["lost_messages"], 0, "{v}");
    assert_eq!(v["messages"], 50_000);
    let out = lab
        .exec(&lab.b)
        .args(["book", "--retrans", "198.18.7.1:9000", &damaged])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(&book).unwrap()
    );
}
