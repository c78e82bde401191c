//! The live appliance on a veth pair in namespaces it builds: a generated
//! feed sent from one end arrives through XDP → AF_XDP (or the kernel UDP
//! fallback) at `ticklane run` on the other, all of it, parsed in place; the
//! tap equals `ticklane decode` of the same capture line for line; traffic
//! that is not subscribed still reaches the kernel; `kill -9` leaves no XDP
//! program behind. Needs root (see `netns_available`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;
use ticklane_e2e::{
    Lab, arg, assert_success, frames_of, gen_day, netns_available, serial, start_run, stop_run,
    ticklane_ok, write_frames,
};

/// Sends a generated feed at `pps` to `ticklane run --mode MODE` and checks
/// that every message arrived, per type, and (with `tap`) that the tap equals
/// `ticklane decode` and the books equal the generator's.
fn live_run(mode: &str, tag: &str, pps: &str, max_messages: &str, tap: bool) {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let gen_summary = arg(dir.path(), "g.json");
    let (feed, book) = gen_day(
        dir.path(),
        "f",
        "100000",
        "3",
        &[
            "--group",
            "239.7.7.7:30001",
            "--max-messages",
            max_messages,
            "--summary-json",
            &gen_summary,
        ],
    );
    let lab = Lab::new(tag, 1);
    let (summary, tap_path, book_out) = (
        arg(dir.path(), "s.json"),
        arg(dir.path(), "tap.jsonl"),
        arg(dir.path(), "out.book"),
    );
    let mut args = vec![
        "--feed",
        "239.7.7.7:30001",
        "--mode",
        mode,
        "--summary-json",
        &summary,
        "--book-out",
        &book_out,
        // The default rings: deep enough to ride out the scheduling stalls
        // of a 2-core machine that also runs the sender.
    ];
    if tap {
        args.extend_from_slice(&["--tap", &tap_path]);
    }
    let run = start_run(&lab, &args);
    let sent = lab
        .ticklane_in(&lab.a)
        .args(["send", &feed, "--iface", &lab.va, "--pps", pps])
        .output()
        .unwrap();
    assert_success(&sent);
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = stop_run(run);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let g: Value = serde_json::from_slice(&std::fs::read(&gen_summary).unwrap()).unwrap();
    assert_eq!(s["mode"], mode, "{stderr}");
    assert_eq!(
        s["messages"],
        100_000,
        "every message arrived: {s}\n{stderr}\nsender: {}",
        String::from_utf8_lossy(&sent.stdout)
    );
    assert_eq!(s["session"]["lost_messages"], 0);
    assert_eq!(
        s["by_type"], g["by_type"],
        "per-type counts equal the generator's"
    );
    assert_eq!(
        std::fs::read_to_string(&book_out).unwrap(),
        std::fs::read_to_string(&book).unwrap()
    );
    if tap {
        let decoded = ticklane_ok(&["decode", &feed]).stdout;
        assert!(
            std::fs::read_to_string(&tap_path).unwrap() == decoded,
            "the tap equals `ticklane decode`, line for line"
        );
    }
    if mode == "xdp" {
        let c = &s["xdp_counters"];
        assert_eq!(c["redirected"], s["packets"], "{s}");
        assert_eq!(c["matched"], c["redirected"]);
        assert_eq!(s["socket"]["rx_dropped"], 0);
        assert_eq!(s["socket"]["rx_ring_full"], 0);
        assert!(["native", "generic"].contains(&s["xdp_mode"].as_str().unwrap()));
        assert!(["copy", "zerocopy"].contains(&s["bind"].as_str().unwrap()));
    }
}

#[test]
fn xdp_path_delivers_every_message_and_the_tap_equals_decode() {
    // The tap formats JSON on the poller: a moderate rate.
    live_run("xdp", "x", "20000", "65534", true);
}

#[test]
fn udp_fallback_gives_the_same_result() {
    live_run("udp", "u", "20000", "65534", true);
}

#[test]
fn zero_loss_at_300_kpps_ten_runs_in_a_row() {
    // Small packets (4 messages each): 25 000 packets at 300 000 per second,
    // ten times, every one loss-free, with the default rings.
    for run in 0..10 {
        live_run("xdp", &format!("z{run}"), "300000", "4", false);
    }
}

#[test]
fn traffic_not_subscribed_still_reaches_the_kernel() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let lab = Lab::new("p", 1);
    let run = start_run(&lab, &["--feed", "239.7.7.8:30002", "--mode", "xdp"]);
    let b = lab.addr(true);
    let (udp_b, tcp_b) = (format!("{b}:5555"), format!("{b}:5556"));
    let (u, t) = (udp_b.clone(), tcp_b.clone());
    let receiver = lab.in_netns(&lab.b, move || {
        let udp = UdpSocket::bind(&u).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let tcp = TcpListener::bind(&t).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = udp
            .recv_from(&mut buf)
            .expect("the UDP datagram to another port arrived");
        let got_udp = buf[..n].to_vec();
        let (mut conn, _) = tcp.accept().unwrap();
        let mut got_tcp = Vec::new();
        conn.read_to_end(&mut got_tcp).unwrap();
        (got_udp, got_tcp)
    });
    std::thread::sleep(Duration::from_millis(300));
    lab.in_netns(&lab.a, move || {
        UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .send_to(b"not a feed", &udp_b)
            .unwrap();
        let mut c =
            TcpStream::connect_timeout(&tcp_b.parse().unwrap(), Duration::from_secs(10)).unwrap();
        c.write_all(b"tcp through xdp").unwrap();
    })
    .join()
    .unwrap();
    let (got_udp, got_tcp) = receiver.join().unwrap();
    assert_eq!(got_udp, b"not a feed");
    assert_eq!(got_tcp, b"tcp through xdp", "ARP and TCP pass untouched");
    let (_, stderr) = stop_run(run);
    assert!(stderr.contains("ready on"), "{stderr}");
}

#[test]
fn kill_9_leaves_no_xdp_program_behind() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let lab = Lab::new("k", 1);
    let show = || {
        let out = std::process::Command::new("ip")
            .args(["-n", &lab.b, "link", "show", &lab.vb])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let mut run = start_run(&lab, &["--feed", "239.7.7.9:30003", "--mode", "xdp"]);
    assert!(show().contains("xdp"), "attached while running: {}", show());
    run.child.0.kill().unwrap(); // SIGKILL: no clean shutdown
    run.child.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while show().contains("xdp") {
        assert!(
            Instant::now() < deadline,
            "the program stayed attached: {}",
            show()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the interface takes a new program at once.
    let again = start_run(&lab, &["--feed", "239.7.7.9:30003", "--mode", "xdp"]);
    stop_run(again);
}

#[test]
fn clear_errors_for_a_missing_interface_and_a_bad_feed() {
    let run = ticklane_e2e::ticklane(&[
        "run",
        "--iface",
        "tl-no-such-if",
        "--feed",
        "239.1.1.1:1",
        "--duration",
        "1",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("tl-no-such-if does not exist"),
        "{}",
        run.stderr
    );
    let run = ticklane_e2e::ticklane(&["run", "--iface", "lo", "--feed", "1.2.3.4:5"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("not a multicast group"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_socket_on_queue_1_of_a_two_queue_veth_receives_the_feed() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (feed, summary) = (arg(dir.path(), "f.pcap"), arg(dir.path(), "s.json"));
    ticklane_ok(&[
        "gen",
        "--messages",
        "20000",
        "--stocks",
        "10",
        "-o",
        &feed,
        "--group",
        "239.7.7.10:30004",
    ]);
    let lab = Lab::new("q", 2);
    let run = start_run(
        &lab,
        &[
            "--feed",
            "239.7.7.10:30004",
            "--mode",
            "xdp",
            "--queue",
            "1",
            "--summary-json",
            &summary,
        ],
    );
    // A veth delivers a frame on the receive queue matching the sender's
    // transmit queue. Map transmit queue 1 to CPU 1 (XPS) and send from
    // CPU 1, so that the frames arrive on queue 1.
    let xps = format!(
        "echo 1 > /sys/class/net/{va}/queues/tx-0/xps_cpus && echo 2 > /sys/class/net/{va}/queues/tx-1/xps_cpus",
        va = lab.va
    );
    let ok = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.a, "sh", "-c", &xps])
        .status()
        .unwrap();
    assert!(ok.success(), "configuring XPS on {}", lab.va);
    let sent = std::process::Command::new("taskset")
        .args(["-c", "1", "ip", "netns", "exec", &lab.a])
        .arg(ticklane_e2e::ticklane_bin())
        // Through AF_PACKET, which takes the queue XPS picks (an AF_XDP
        // socket sends on the queue it is bound to instead).
        .args([
            "send", &feed, "--iface", &lab.va, "--pps", "20000", "--via", "packet",
        ])
        .output()
        .unwrap();
    assert_success(&sent);
    std::thread::sleep(Duration::from_millis(300));
    let (_, stderr) = stop_run(run);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["messages"], 20_000, "{s}\n{stderr}");
    assert_eq!(
        s["xdp_counters"]["no_socket"], 0,
        "every matched frame found the queue-1 socket: {s}"
    );
}

#[test]
fn a_second_appliance_on_the_same_interface_is_refused_clearly() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let lab = Lab::new("e", 1);
    let first = start_run(&lab, &["--feed", "239.7.7.11:30005", "--mode", "xdp"]);
    let second = lab
        .ticklane_in(&lab.b)
        .args([
            "run",
            "--iface",
            &lab.vb,
            "--feed",
            "239.7.7.11:30005",
            "--mode",
            "xdp",
            "--duration",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another XDP program is attached"), "{err}");
    stop_run(first);
}

/// Byte offset of the price of an Add Order ('A') message.
const ADD_ORDER_PRICE: usize = 32;

/// How a forged copy of a genuine frame is made, and what must catch it.
struct Forgery {
    /// Lab tag.
    tag: &'static str,
    /// The forged copy of `frame`, whose price byte at `price` is already
    /// changed (so its UDP checksum is wrong), in a lab whose feed source
    /// address is `source`.
    forge: fn(frame: Vec<u8>, price: usize, lab: &Lab) -> Vec<u8>,
    /// Run with `--feed GROUP:PORT@SOURCE`.
    at_source: bool,
    /// The kind of `rejected` in the summary that must count it, and the
    /// XDP program's counter that must too (if it is the one that refuses).
    rejected: &'static str,
    xdp_counter: Option<&'static str>,
}

/// `frame`'s IPv4 and UDP checksums computed again (an untagged frame).
fn fix_checksums(mut frame: Vec<u8>, ip_at: usize) -> Vec<u8> {
    use ticklane_protocols::wire::{checksum, ipv4};
    let ip_end = ip_at + usize::from(u16::from_be_bytes([frame[ip_at + 2], frame[ip_at + 3]]));
    frame[ip_at + 10..ip_at + 12].fill(0);
    let sum = ipv4::checksum(&frame[ip_at..ip_at + 20]);
    frame[ip_at + 10..ip_at + 12].copy_from_slice(&sum.to_be_bytes());
    let (src, dst): ([u8; 4], [u8; 4]) = (
        frame[ip_at + 12..ip_at + 16].try_into().unwrap(),
        frame[ip_at + 16..ip_at + 20].try_into().unwrap(),
    );
    let udp = ip_at + 20;
    frame[udp + 6..udp + 8].fill(0);
    let sum = checksum::udp(src, dst, &frame[udp..ip_end]);
    frame[udp + 6..udp + 8].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// The genuine feed, from the lab's exchange side (its a-side address),
/// with a forged copy of one packet put on the wire just before the
/// genuine one: the packet holding the feed's last Add Order, its price one
/// tick off. Taken, the forgery would be delivered and the genuine copy
/// dropped as a duplicate, and the books would be wrong (checked on the
/// capture itself, which `ticklane book` takes whole). The live run must end
/// with every genuine message delivered, the generator's books, no
/// duplicate, and the forgery counted under its kind, and nothing else
/// rejected.
fn live_forgery(mode: &str, f: &Forgery) {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let lab = Lab::new(f.tag, 1);
    let source = lab.addr(false);
    let dir = tempfile::tempdir().unwrap();
    let attack = arg(dir.path(), "attack.pcap");
    let (feed, book) = gen_day(
        dir.path(),
        "f",
        "20000",
        "7",
        &["--group", "239.7.7.7:30001", "--source", &source],
    );
    let frames = frames_of(&feed);
    // The packet with the last Add Order, and that order's price offset.
    let (target, price) = frames
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, (_, frame))| {
            let udp = ticklane_protocols::wire::parse_ethernet_udp(frame).ok()?;
            let packet = ticklane_protocols::moldudp64::Packet::new_checked(udp.payload).ok()?;
            let at = packet
                .messages()
                .filter(|(_, m)| m.first() == Some(&b'A'))
                .last()
                .map(|(_, m)| m.as_ptr() as usize - frame.as_ptr() as usize)?;
            Some((i, at + ADD_ORDER_PRICE + 3))
        })
        .expect("the feed has Add Orders");
    // A forged copy of the target packet, just before the genuine one.
    let mut attacked = frames.clone();
    let mut forged = frames[target].1.clone();
    forged[price] = forged[price].wrapping_add(1);
    attacked.insert(target, (frames[target].0, (f.forge)(forged, price, &lab)));
    write_frames(&attack, &attacked);
    let expected = std::fs::read_to_string(&book).unwrap();
    let taken = ticklane_ok(&["book", &attack]).stdout;
    assert_ne!(
        taken, expected,
        "the forgery, if taken, makes the books wrong"
    );
    let feed_arg = if f.at_source {
        format!("239.7.7.7:30001@{source}")
    } else {
        "239.7.7.7:30001".to_owned()
    };
    if f.at_source {
        let filtered = ticklane_ok(&["book", &attack, "--feed", &feed_arg]).stdout;
        assert_eq!(filtered, expected, "a replay honours @SOURCE too");
    }

    let (summary, book_out) = (arg(dir.path(), "s.json"), arg(dir.path(), "out.book"));
    let run = start_run(
        &lab,
        &[
            "--feed",
            &feed_arg,
            "--mode",
            mode,
            "--summary-json",
            &summary,
            "--book-out",
            &book_out,
            "--rx-ring",
            "8192",
            "--fill-ring",
            "16384",
        ],
    );
    let sent = lab
        .ticklane_in(&lab.a)
        .args(["send", &attack, "--iface", &lab.va, "--pps", "20000"])
        .output()
        .unwrap();
    assert_success(&sent);
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = stop_run(run);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["mode"], mode, "{stderr}");
    assert_eq!(
        s["checksums"],
        if mode == "xdp" { "verified" } else { "kernel" }
    );
    assert_eq!(s["messages"], 20_000, "{s}\n{stderr}");
    assert_eq!(s["session"]["lost_messages"], 0);
    assert_eq!(
        s["session"]["duplicate_packets"], 0,
        "the genuine copy was not taken for a duplicate: {s}"
    );
    assert_eq!(
        std::fs::read_to_string(&book_out).unwrap(),
        expected,
        "the books equal the clean feed's"
    );
    let expected_rejections = u64::from(mode == "xdp");
    for (kind, n) in s["rejected"].as_object().unwrap() {
        let want = if kind == f.rejected {
            expected_rejections
        } else {
            0
        };
        assert_eq!(n.as_u64(), Some(want), "rejected.{kind}: {s}");
    }
    if mode == "xdp" {
        if let Some(c) = f.xdp_counter {
            assert_eq!(s["xdp_counters"][c], 1, "{s}");
        }
        assert!(
            stderr.contains(&format!("frames rejected ({} 1)", f.rejected)),
            "the operator is told: {stderr}"
        );
    }
}

const BAD_CHECKSUM: Forgery = Forgery {
    tag: "c",
    // The changed price byte, with the checksum left as it was.
    forge: |frame, _, _| frame,
    at_source: false,
    rejected: "udp_checksum",
    xdp_counter: None,
};

const VLAN_FORGERY: Forgery = Forgery {
    tag: "v",
    // Checksums right, tagged VLAN 7 on an interface without VLANs.
    forge: |frame, _, _| {
        let frame = fix_checksums(frame, 14);
        let mut tagged = frame[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&frame[12..]);
        tagged
    },
    at_source: false,
    rejected: "vlan",
    xdp_counter: Some("vlan_mismatch"),
};

const OTHER_SOURCE: Forgery = Forgery {
    tag: "s",
    // Checksums right, from 198.18.N.9 instead of the feed's 198.18.N.1.
    forge: |mut frame, _, lab| {
        frame[14 + 12..14 + 16].copy_from_slice(&[198, 18, lab.net, 9]);
        fix_checksums(frame, 14)
    },
    at_source: true,
    rejected: "source",
    xdp_counter: Some("wrong_source"),
};

#[test]
fn a_frame_with_a_wrong_udp_checksum_is_refused() {
    live_forgery("xdp", &BAD_CHECKSUM);
}

#[test]
fn a_vlan_tagged_forgery_on_an_untagged_interface_is_not_steered() {
    live_forgery("xdp", &VLAN_FORGERY);
}

#[test]
fn a_frame_from_another_source_than_the_feeds_is_not_steered() {
    live_forgery("xdp", &OTHER_SOURCE);
}

/// On kernel sockets, the source-specific join makes the kernel drop the
/// other source's datagram: it never reaches the appliance.
#[test]
fn a_source_specific_join_keeps_another_source_out_of_the_udp_path() {
    live_forgery("udp", &OTHER_SOURCE);
}
