//! `ticklane doctor` on a veth pair in namespaces this test makes: what a
//! virtual device cannot have is said to not apply, what it can is probed
//! (native XDP attaches; zero-copy is refused), blockers set the exit
//! status, and an interface a running appliance holds is found busy.
//! Needs root.

use serde_json::Value;
use ticklane_e2e::{Lab, netns_available, serial, start_run, stop_run};

fn doctor(lab: &Lab, args: &[&str]) -> (Value, Option<i32>) {
    let out = lab
        .ticklane_in(&lab.b)
        .args(["doctor", "--json"])
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code())
}

fn finding<'a>(v: &'a Value, check: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {v}"))
}

#[test]
fn doctor_probes_a_veth_and_says_what_does_not_apply() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let lab = Lab::new("d", 2);
    let (v, code) = doctor(
        &lab,
        &[
            "--iface",
            &lab.vb,
            "--queue",
            "1",
            "--feed",
            "239.7.7.7:30001",
        ],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["blockers"], 0, "{v}");
    assert_eq!(
        finding(&v, "native XDP")["status"],
        "ok",
        "veth runs XDP natively"
    );
    assert_eq!(
        finding(&v, "zero-copy AF_XDP")["status"],
        "warn",
        "veth has no zero-copy"
    );
    assert_eq!(finding(&v, "IRQ affinity")["status"], "n/a");
    assert!(
        finding(&v, "queues")["found"]
            .as_str()
            .unwrap()
            .starts_with("2 receive queues")
    );
    assert_ne!(
        finding(&v, "flow steering")["status"],
        "ok",
        "no rule was made"
    );
    for check in v["checks"].as_array().unwrap() {
        if check["status"] == "warn" {
            assert!(
                check["fix"].is_string(),
                "every warning says what to do: {check}"
            );
        }
    }

    // Blockers: a queue the interface lacks, an interface that is not there.
    let (v, code) = doctor(&lab, &["--iface", &lab.vb, "--queue", "5"]);
    assert_eq!(code, Some(1));
    assert_eq!(finding(&v, "queues")["status"], "BLOCKER");
    let (v, code) = doctor(&lab, &["--iface", "nosuchif0"]);
    assert_eq!(code, Some(1));
    assert_eq!(finding(&v, "interface")["status"], "BLOCKER");

    // The probe attaches for real: an interface held by a running appliance
    // is found busy, and the appliance is left undisturbed.
    let run = start_run(&lab, &["--feed", "239.7.7.7:30001", "--mode", "xdp"]);
    let (v, code) = doctor(&lab, &["--iface", &lab.vb]);
    let (_, stderr) = stop_run(run);
    assert_eq!(code, Some(1), "{v}");
    let xdp = finding(&v, "native XDP");
    assert_eq!(xdp["status"], "BLOCKER");
    assert!(
        xdp["found"]
            .as_str()
            .unwrap()
            .contains("another XDP program"),
        "{xdp}"
    );
    assert!(!stderr.contains("error"), "{stderr}");
}
