//! `deploy/`: the systemd unit passes `systemd-analyze verify` and runs the
//! appliance as a user with ambient capabilities, its command line (with
//! the example environment file) is one `ticklane run` accepts, and the
//! queue set-up script, on a veth pair in namespaces of its own, prints its
//! plan with --dry-run and changes nothing, then applies what applies to a
//! veth and reports what does not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ticklane_e2e::{Lab, netns_available, ticklane_bin};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_unit_verifies_and_runs_unprivileged_with_capabilities() {
    let unit = std::fs::read_to_string(deploy("ticklane.service")).unwrap();
    // systemd-analyze checks that the commands exist: point them at the
    // built binary and the script in the tree.
    let dir = tempfile::tempdir().unwrap();
    let local = unit
        .replace("/usr/local/bin/ticklane", ticklane_bin().to_str().unwrap())
        .replace(
            "/usr/local/lib/ticklane/nic-setup.sh",
            deploy("nic-setup.sh").to_str().unwrap(),
        );
    let path = dir.path().join("ticklane.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package) runs");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warns:\n{stderr}");

    let keys: BTreeMap<&str, &str> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    assert_eq!(keys["User"], "ticklane", "not root");
    for cap in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
    ] {
        assert!(keys["AmbientCapabilities"].contains(cap), "{cap}");
        assert!(keys["CapabilityBoundingSet"].contains(cap), "{cap}");
    }
    assert!(!keys["CapabilityBoundingSet"].contains("CAP_SYS_ADMIN"));
    assert_eq!(keys["LimitMEMLOCK"], "infinity");
    assert_eq!(keys["Restart"], "on-failure");
    assert!(!keys["CPUAffinity"].is_empty());
    assert!(keys["ExecStartPre"].starts_with("+"), "set-up as root");
}

/// The example environment file's variables.
fn env_file() -> BTreeMap<String, String> {
    std::fs::read_to_string(deploy("ticklane.env"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_units_command_line_is_one_ticklane_run_accepts() {
    if !netns_available() {
        return;
    }
    let unit = std::fs::read_to_string(deploy("ticklane.service")).unwrap();
    let env = env_file();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    // systemd's expansion: ${VAR} one word, $VAR split on spaces.
    let mut args: Vec<String> = Vec::new();
    for word in exec.split_whitespace().skip(1) {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            args.push(env[name].clone());
        } else if let Some(name) = word.strip_prefix('$') {
            args.extend(env[name].split_whitespace().map(str::to_owned));
        } else {
            args.push(word.to_owned());
        }
    }
    assert_eq!(args[0], "run");
    // In a namespace of its own the interface does not exist: ticklane
    // must get as far as looking for it (exit 1), not refuse the options
    // (exit 2).
    let lab = Lab::new("du", 1);
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.b])
        .arg(ticklane_bin())
        .args(&args)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("Usage:"), "{stderr}");
}

fn nic_setup(lab: &Lab, args: &[&str], hugepages: u64) -> (Option<i32>, String, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.b, "bash"])
        .arg(deploy("nic-setup.sh"))
        .args(args)
        .env("TICKLANE_HUGEPAGES", hugepages.to_string())
        .env_remove("TICKLANE_FEEDS")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

fn sysfs(lab: &Lab, file: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.b, "cat"])
        .arg(format!("/sys/class/net/{}/{file}", lab.vb))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn hugepages() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn nic_setup_plans_then_applies_what_applies_on_a_veth() {
    if !netns_available() {
        return;
    }
    let lab = Lab::new("nic", 1);
    let vb = lab.vb.as_str();
    let feeds = ["239.1.1.1:26477", "239.1.1.2:26477@198.18.0.9"];
    let before = (
        sysfs(&lab, "gro_flush_timeout"),
        sysfs(&lab, "napi_defer_hard_irqs"),
    );
    let pages = hugepages();

    // The plan: every command, nothing changed (not even the huge pages it
    // would reserve).
    let mut args = vec!["--dry-run", "--threaded-napi", vb, "0", "3"];
    args.extend(feeds);
    let (code, plan, stderr) = nic_setup(&lab, &args, pages + 64);
    assert_eq!(code, Some(0), "{plan}{stderr}");
    for line in [
        format!("nic-setup: {vb} (driver veth), queue 0 of 1, poller on CPU 3: dry run"),
        format!("plan: ntuple filters on: ethtool -K {vb} ntuple on"),
        format!(
            "plan: steer 239.1.1.1:26477 to queue 0: ethtool -N {vb} flow-type udp4 dst-ip \
             239.1.1.1 dst-port 26477 action 0"
        ),
        format!(
            "plan: steer 239.1.1.2:26477 from 198.18.0.9 to queue 0: ethtool -N {vb} flow-type \
             udp4 src-ip 198.18.0.9 dst-ip 239.1.1.2 dst-port 26477 action 0"
        ),
        format!("plan: VLAN stripping off: ethtool -K {vb} rxvlan off"),
        format!("echo 2 > /sys/class/net/{vb}/napi_defer_hard_irqs"),
        format!("echo 200000 > /sys/class/net/{vb}/gro_flush_timeout"),
        format!("plan: threaded NAPI: echo 1 > /sys/class/net/{vb}/threaded"),
        format!("echo {} > /proc/sys/vm/nr_hugepages", pages + 64),
        "not applicable: IRQ affinity".to_owned(),
        "dry run: nothing changed".to_owned(),
    ] {
        assert!(plan.contains(&line), "the plan lacks {line:?}:\n{plan}");
    }
    assert!(!plan.contains("done:"), "{plan}");
    assert_eq!(
        (
            sysfs(&lab, "gro_flush_timeout"),
            sysfs(&lab, "napi_defer_hard_irqs")
        ),
        before
    );
    assert_eq!(hugepages(), pages);

    // A real run on the veth: the busy-poll settings apply; a veth has no
    // ntuple filters (so no steering rules) and no interrupts, and NAPI
    // threads only with an XDP program attached: each is reported.
    let mut args = vec!["--threaded-napi", vb, "0", "3"];
    args.extend(feeds);
    let (code, report, stderr) = nic_setup(&lab, &args, pages);
    assert_eq!(code, Some(0), "{report}{stderr}");
    for line in [
        "done: VLAN stripping off",
        "done: busy poll: defer hard IRQs twice",
        "done: busy poll: GRO flush timeout 200 us",
        "not applied: ntuple filters on",
        "not applicable: flow steering: without ntuple filters",
        "not applicable: IRQ affinity",
        "not applied: threaded NAPI",
        "huge pages reserved already",
        "3 steps applied, 4 not applied or not applicable",
    ] {
        assert!(
            report.contains(line),
            "the report lacks {line:?}:\n{report}"
        );
    }
    assert_eq!(sysfs(&lab, "gro_flush_timeout"), "200000");
    assert_eq!(sysfs(&lab, "napi_defer_hard_irqs"), "2");
    assert_eq!(hugepages(), pages, "the host's huge pages are untouched");

    // What cannot work at all is an error that says why.
    let (code, _, stderr) = nic_setup(&lab, &[vb, "3", "1"], pages);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("there is no queue 3"), "{stderr}");
    let (code, _, stderr) = nic_setup(&lab, &["nosuchif0", "0", "1"], pages);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no interface nosuchif0"), "{stderr}");
    let (code, _, stderr) = nic_setup(&lab, &[vb, "first", "1"], pages);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("QUEUE 'first' is not a number"), "{stderr}");
}
