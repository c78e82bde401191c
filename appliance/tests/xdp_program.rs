//! The XDP program run by the kernel itself (BPF_PROG_TEST_RUN) on crafted
//! frames: truncated at every header, VLAN-tagged, fragmented, to other ports,
//! IPv6, ARP, on feeds that expect VLAN tags or a source address, with the
//! wrong tags and from the wrong source. Every verdict and every counter is
//! checked. (The kernel refuses
//! test runs on frames shorter than an Ethernet header, which no NIC
//! delivers, so the first truncation tested is inside the VLAN tag.)
//!
//! Needs root (CAP_BPF); fails loudly without it unless TICKLANE_SKIP_BPF=1.

use std::net::Ipv4Addr;

use ticklane_appliance::source::steering::Steering;
use ticklane_capture::feed::Feed;
use ticklane_protocols::wire::{UdpFrameSpec, write_udp_frame};
use ticklane_xdp::{Counter, Vlan};

const XDP_PASS: u32 = 2;

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("TICKLANE_SKIP_BPF").as_deref() == Ok("1") {
        eprintln!("\n*** SKIPPED: loading BPF needs root (TICKLANE_SKIP_BPF=1) ***\n");
        return false;
    }
    panic!(
        "this test loads BPF and needs root (CI runs it as root); TICKLANE_SKIP_BPF=1 skips it knowingly"
    );
}

const SOURCE: [u8; 4] = [198, 18, 0, 1];

fn frame_from(source: [u8; 4], group: [u8; 4], port: u16) -> Vec<u8> {
    let spec = UdpFrameSpec::multicast([2, 0, 0, 0, 0, 1], source, group, port);
    let mut buf = vec![0u8; 128];
    let n = write_udp_frame(&mut buf, &spec, b"payload-bytes").unwrap();
    buf.truncate(n);
    buf
}

fn frame(group: [u8; 4], port: u16) -> Vec<u8> {
    frame_from(SOURCE, group, port)
}

/// `f` with a VLAN tag (`tpid`, then the TCI: priority bits and ID) pushed
/// in front of its EtherType, outside the tags it has.
fn tagged(f: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    let mut v = f[..12].to_vec();
    v.extend_from_slice(&tpid.to_be_bytes());
    v.extend_from_slice(&tci.to_be_bytes());
    v.extend_from_slice(&f[12..]);
    v
}

fn feed(group: [u8; 4], source: Option<[u8; 4]>) -> Feed {
    Feed {
        group: Ipv4Addr::from(group),
        port: 26477,
        source: source.map(Ipv4Addr::from),
    }
}

/// Runs every case once and checks its verdict (always XDP_PASS: no socket
/// is bound) and the counters it moved: seen, passed, its own, and matched
/// exactly for the frames of a subscribed group:port.
fn check(s: &mut Steering, cases: &[(&str, Vec<u8>, Counter)]) {
    for (name, bytes, expected) in cases {
        let before = s.counters().unwrap();
        let verdict = s.test_run(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let after = s.counters().unwrap();
        assert_eq!(
            verdict, XDP_PASS,
            "{name}: never dropped, and no socket is bound"
        );
        let delta = |c: Counter| after.get(c) - before.get(c);
        assert_eq!(delta(Counter::Seen), 1, "{name}");
        assert_eq!(delta(Counter::Passed), 1, "{name}");
        assert_eq!(delta(*expected), 1, "{name}: {expected:?}");
        let matched = matches!(
            expected,
            Counter::NoSocket | Counter::Vlan | Counter::Source
        );
        assert_eq!(
            delta(Counter::Matched),
            u64::from(matched),
            "{name}: matched"
        );
        for other in [Counter::NoSocket, Counter::Vlan, Counter::Source] {
            if other != *expected {
                assert_eq!(delta(other), 0, "{name}: {other:?}");
            }
        }
    }
}

#[test]
fn verdicts_and_counters_on_crafted_frames() {
    if !can_run() {
        return;
    }
    let mut s = Steering::load().expect("the verifier accepts the program");
    let subscribed = feed([239, 1, 1, 1], None);
    s.subscribe(&subscribed, Vlan::Untagged).unwrap();
    let sub = frame([239, 1, 1, 1], 26477);
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "subscribed, no socket bound",
            sub.clone(),
            Counter::NoSocket,
        ),
        ("other port", frame([239, 1, 1, 1], 26478), Counter::Passed),
        ("other group", frame([239, 1, 1, 2], 26477), Counter::Passed),
        (
            "other group behind 802.1Q",
            tagged(&frame([239, 1, 1, 2], 26477), 0x8100, 100),
            Counter::Passed,
        ),
        (
            "ARP",
            {
                let mut f = sub.clone();
                f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
                f
            },
            Counter::Passed,
        ),
        (
            "IPv6",
            {
                let mut f = sub.clone();
                f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                f
            },
            Counter::Passed,
        ),
        (
            "TCP",
            {
                let mut f = sub.clone();
                f[14 + 9] = 6;
                f
            },
            Counter::Passed,
        ),
        (
            "fragment",
            {
                let mut f = sub.clone();
                f[14 + 6] = 0x20;
                f
            },
            Counter::Fragment,
        ),
        (
            "truncated IPv4",
            sub[..14 + 19].to_vec(),
            Counter::Malformed,
        ),
        (
            "truncated UDP",
            sub[..14 + 20 + 7].to_vec(),
            Counter::Malformed,
        ),
        (
            "truncated VLAN tag",
            tagged(&sub, 0x8100, 100)[..17].to_vec(),
            Counter::Malformed,
        ),
    ];
    check(&mut s, &cases);
    s.unsubscribe(&subscribed).unwrap();
    let before = s.counters().unwrap();
    s.test_run(&sub).unwrap();
    let after = s.counters().unwrap();
    assert_eq!(
        after.get(Counter::Matched),
        before.get(Counter::Matched),
        "unsubscribed at runtime"
    );
}

/// A feed's frames are steered only with the interface's VLAN tags and,
/// when the feed names one, from its source; the others are counted and
/// passed to the kernel.
#[test]
fn vlan_tags_and_sources_are_enforced_per_feed() {
    if !can_run() {
        return;
    }
    let mut s = Steering::load().expect("the verifier accepts the program");
    let (plain, one, qinq, ssm) = (
        [239, 1, 1, 1],
        [239, 1, 1, 2],
        [239, 1, 1, 3],
        [239, 1, 1, 4],
    );
    s.subscribe(&feed(plain, None), Vlan::Untagged).unwrap();
    s.subscribe(&feed(one, None), Vlan::Tagged(100)).unwrap();
    s.subscribe(&feed(qinq, None), Vlan::QinQ(100, 200))
        .unwrap();
    s.subscribe(&feed(ssm, Some(SOURCE)), Vlan::Untagged)
        .unwrap();
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "untagged interface: untagged",
            frame(plain, 26477),
            Counter::NoSocket,
        ),
        (
            "untagged interface: 802.1Q forgery",
            tagged(&frame(plain, 26477), 0x8100, 100),
            Counter::Vlan,
        ),
        (
            "untagged interface: QinQ forgery",
            tagged(&tagged(&frame(plain, 26477), 0x8100, 200), 0x88a8, 100),
            Counter::Vlan,
        ),
        (
            "untagged interface: a priority tag (ID 0) is untagged",
            tagged(&frame(plain, 26477), 0x8100, 0xa000),
            Counter::NoSocket,
        ),
        (
            "VLAN 100: its tag",
            tagged(&frame(one, 26477), 0x8100, 100),
            Counter::NoSocket,
        ),
        (
            "VLAN 100: its tag with priority bits",
            tagged(&frame(one, 26477), 0x8100, 0xe000 | 100),
            Counter::NoSocket,
        ),
        (
            "VLAN 100: another VLAN",
            tagged(&frame(one, 26477), 0x8100, 200),
            Counter::Vlan,
        ),
        ("VLAN 100: untagged", frame(one, 26477), Counter::Vlan),
        (
            "VLAN 100: a priority tag is not VLAN 100",
            tagged(&frame(one, 26477), 0x8100, 0),
            Counter::Vlan,
        ),
        (
            "VLAN 100: inside another tag",
            tagged(&tagged(&frame(one, 26477), 0x8100, 100), 0x88a8, 300),
            Counter::Vlan,
        ),
        (
            "QinQ 100.200: its tags",
            tagged(&tagged(&frame(qinq, 26477), 0x8100, 200), 0x88a8, 100),
            Counter::NoSocket,
        ),
        (
            "QinQ 100.200: swapped",
            tagged(&tagged(&frame(qinq, 26477), 0x8100, 100), 0x88a8, 200),
            Counter::Vlan,
        ),
        (
            "QinQ 100.200: the outer tag alone",
            tagged(&frame(qinq, 26477), 0x88a8, 100),
            Counter::Vlan,
        ),
        (
            "source 198.18.0.1: from it",
            frame_from(SOURCE, ssm, 26477),
            Counter::NoSocket,
        ),
        (
            "source 198.18.0.1: from another",
            frame_from([198, 18, 0, 9], ssm, 26477),
            Counter::Source,
        ),
        (
            "source 198.18.0.1: from it, on a VLAN",
            tagged(&frame_from(SOURCE, ssm, 26477), 0x8100, 100),
            Counter::Vlan,
        ),
        (
            "any source: from another",
            frame_from([198, 18, 0, 9], plain, 26477),
            Counter::NoSocket,
        ),
    ];
    check(&mut s, &cases);
}
