//! Hostile and unlucky traffic on the live path: a namespace lab (XDP →
//! AF_XDP, native on veth), raw frames sent from the exchange side with the
//! feed's own source address. Every forgery below would, before the
//! defences, have wrecked a session or rested in a book; each run ends with
//! the books equal to the clean feed's (or the loss reported exactly) and
//! the counter that names the attack raised. Needs root.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use ticklane_e2e::{
    Frames, Lab, arg, assert_success, frames_of, gen_day, netns_available, serial,
    start_retrans_server, start_run, stop_run, write_frames,
};
use ticklane_protocols::moldudp64::{self, END_OF_SESSION, Packet, PacketBuilder, Session};
use ticklane_protocols::wire::{self, UdpFrameSpec};

const FEED: &str = "239.7.7.7:30001";
const FEED_B: &str = "239.7.7.8:30002";

fn payload(frame: &[u8]) -> &[u8] {
    wire::parse_ethernet_udp(frame).unwrap().payload
}

/// A frame with the addressing of `genuine` (the feed's own source, group
/// and ports), valid checksums, carrying `payload`.
fn reframe(genuine: &[u8], payload: &[u8]) -> Vec<u8> {
    let udp = wire::parse_ethernet_udp(genuine).unwrap();
    let spec = UdpFrameSpec {
        source_port: udp.source_port,
        ..UdpFrameSpec::multicast(
            genuine[6..12].try_into().unwrap(),
            udp.source,
            udp.destination,
            udp.destination_port,
        )
    };
    let mut buf = vec![0u8; 2048];
    let n = wire::write_udp_frame(&mut buf, &spec, payload).unwrap();
    buf.truncate(n);
    buf
}

/// The first Add Order of the feed, turned into a new order (its own
/// reference number, a price no genuine order has): if any book takes it,
/// the book differs from the clean feed's.
fn forged_order(frames: &Frames) -> Vec<u8> {
    for (_, f) in frames {
        let Ok(p) = Packet::new_checked(payload(f)) else {
            continue;
        };
        if let Some((_, m)) = p.messages().find(|(_, m)| m.first() == Some(&b'A')) {
            let mut m = m.to_vec();
            m[11..19].copy_from_slice(&0x7fff_ffff_ffff_fff0u64.to_be_bytes());
            m[32..36].copy_from_slice(&1_234_500u32.to_be_bytes());
            return m;
        }
    }
    panic!("the feed has an Add Order");
}

/// A MoldUDP64 packet of `session` numbered `seq` holding `messages`.
fn mold(session: Session, seq: u64, messages: &[&[u8]]) -> Vec<u8> {
    let mut buf = vec![0u8; 1400];
    let mut b = PacketBuilder::new(&mut buf, session, seq).unwrap();
    for m in messages {
        b.push(m).unwrap();
    }
    b.finish().to_vec()
}

/// Writes `frames` with `forged` (a payload, sent as the feed's own
/// source) inserted before frame `at`; returns the capture's path.
fn with_forgery(dir: &Path, name: &str, frames: &Frames, at: usize, forged: &[u8]) -> String {
    let mut attacked = frames.clone();
    let genuine = &frames[at.min(frames.len() - 1)];
    attacked.insert(at, (genuine.0, reframe(&genuine.1, forged)));
    let path = arg(dir, &format!("{name}.pcap"));
    write_frames(&path, &attacked);
    path
}

/// Index and packet of the frame in the middle of the feed.
fn middle(frames: &Frames) -> (usize, u64, u64, Session) {
    let i = frames.len() / 2;
    let p = Packet::new_checked(payload(&frames[i].1)).unwrap();
    (
        i,
        p.sequence_number(),
        p.next_sequence_number(),
        p.session(),
    )
}

/// A generated day on `group` (100k messages, 20 stocks): its capture and
/// the books it leads to.
fn day(dir: &Path, name: &str, group: &str) -> (String, String) {
    gen_day(dir, name, "100000", "3", &["--group", group])
}

/// What one attacked run showed.
struct Outcome {
    summary: Value,
    stdout: String,
    stderr: String,
    books_equal: bool,
}

/// Sends `captures` (one sender each, started `lag` apart, at 20 kpps) to
/// `ticklane run --mode xdp` on the lines `feeds`, with `extra` options and,
/// if `server` names a capture, a re-request server answering from it.
fn attacked_run(
    tag: &str,
    captures: &[&str],
    feeds: &[&str],
    expected_book: &str,
    server: Option<&str>,
    lag: Duration,
) -> Outcome {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(tag, 1);
    let (summary, book_out) = (arg(dir.path(), "s.json"), arg(dir.path(), "out.book"));
    let server_addr = format!("{}:9000", lab.addr(false));
    let _server =
        server.map(|clean| start_retrans_server(lab.ticklane_in(&lab.a), clean, &server_addr));
    let mut args = vec![
        "--mode",
        "xdp",
        "--summary-json",
        &summary,
        "--book-out",
        &book_out,
    ];
    for f in feeds {
        args.extend(["--feed", f]);
    }
    if server.is_some() {
        args.extend(["--retrans", &server_addr]);
    }
    let run = start_run(&lab, &args);
    let mut senders = Vec::new();
    for (i, c) in captures.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(lag);
        }
        senders.push(
            lab.ticklane_in(&lab.a)
                .args(["send", c, "--iface", &lab.va, "--pps", "20000"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for s in senders {
        assert_success(&s.wait_with_output().unwrap());
    }
    std::thread::sleep(Duration::from_millis(700));
    let (stdout, stderr) = stop_run(run);
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let books_equal = std::fs::read_to_string(&book_out).unwrap()
        == std::fs::read_to_string(expected_book).unwrap();
    Outcome {
        summary,
        stdout,
        stderr,
        books_equal,
    }
}

/// What every attack starts from: the clean day, its books, its frames and
/// a forged order to slip in; `None` where namespaces cannot be made.
struct Setup {
    dir: tempfile::TempDir,
    clean: String,
    book: String,
    frames: Frames,
    order: Vec<u8>,
}

fn setup() -> Option<Setup> {
    if !netns_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (clean, book) = day(dir.path(), "c", FEED);
    let frames = frames_of(&clean);
    let order = forged_order(&frames);
    Some(Setup {
        dir,
        clean,
        book,
        frames,
        order,
    })
}

/// Checks the run delivered the whole clean day, books and all.
fn assert_whole_day(o: &Outcome) {
    let s = &o.summary;
    assert_eq!(s["messages"], 100_000, "{s}\n{}", o.stderr);
    assert_eq!(s["session"]["lost_messages"], 0, "{s}");
    assert_eq!(s["session"]["complete"], true, "{s}");
    assert!(o.books_equal, "the books equal the clean feed's\n{s}");
}

#[test]
fn a_packet_numbered_2_63_changes_nothing_as_message_heartbeat_or_end() {
    let Some(Setup {
        dir,
        clean: _,
        book,
        frames,
        order,
    }) = setup()
    else {
        return;
    };
    let (i, _, _, session) = middle(&frames);
    let far = 1u64 << 63;
    for (kind, forged) in [
        ("message", mold(session, far, &[&order])),
        ("heartbeat", moldudp64::header(session, far, 0).to_vec()),
        (
            "end",
            moldudp64::header(session, far, END_OF_SESSION).to_vec(),
        ),
    ] {
        let path = with_forgery(dir.path(), kind, &frames, i, &forged);
        let o = attacked_run("f", &[&path], &[FEED], &book, None, Duration::ZERO);
        assert_whole_day(&o);
        assert_eq!(o.summary["session"]["suspect_packets"], 1, "{kind}");
        assert_eq!(o.summary["session"]["confirmed_jumps"], 0, "{kind}");
    }
}

#[test]
fn a_packet_of_a_foreign_session_changes_nothing() {
    let Some(Setup {
        dir,
        clean: _,
        book,
        frames,
        order,
    }) = setup()
    else {
        return;
    };
    let (i, seq, _, _) = middle(&frames);
    let forged = mold(Session::from_name(b"FORGED").unwrap(), seq, &[&order]);
    let path = with_forgery(dir.path(), "a", &frames, i, &forged);
    let o = attacked_run("s", &[&path], &[FEED], &book, None, Duration::ZERO);
    assert_whole_day(&o);
    assert_eq!(o.summary["foreign_session_packets"], 1, "{}", o.summary);
    assert_eq!(o.summary["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(o.summary["session"]["session_changes"], 0);
}

#[test]
fn a_packet_forged_ahead_of_the_horizon_never_replaces_the_real_one() {
    let Some(Setup {
        dir,
        clean,
        book,
        frames,
        order,
    }) = setup()
    else {
        return;
    };
    let (i, _, end, session) = middle(&frames);
    let forged = mold(session, end + 5_000, &[&order]);
    let path = with_forgery(dir.path(), "a", &frames, i + 1, &forged);
    for server in [None, Some(clean.as_str())] {
        let o = attacked_run("h", &[&path], &[FEED], &book, server, Duration::ZERO);
        assert_whole_day(&o);
        assert_eq!(
            o.summary["session"]["unconfirmed_packets"],
            1,
            "with a server: {}\n{}",
            server.is_some(),
            o.summary
        );
    }
}

#[test]
fn a_line_lagging_by_40_ms_fills_what_the_other_lost_without_a_server() {
    if !netns_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (clean_a, book) = day(dir.path(), "a", FEED);
    let (clean_b, _) = day(dir.path(), "b", FEED_B);
    // Line A loses one packet in 89, line B one in 97, never the same one.
    let lossy = |path: &str, every: usize, at: usize, out: &str| {
        let mut frames = frames_of(path);
        let total = frames.len();
        let mut n = 0;
        frames.retain(|_| {
            n += 1;
            n % every != at || n == total
        });
        write_frames(out, &frames);
        total
    };
    let (a, b) = (arg(dir.path(), "la.pcap"), arg(dir.path(), "lb.pcap"));
    let total = lossy(&clean_a, 89, 5, &a);
    lossy(&clean_b, 97, 50, &b);
    assert!((1..total).all(|n| n % 89 != 5 || n % 97 != 50));
    let o = attacked_run(
        "l",
        &[&a, &b],
        &[FEED, FEED_B],
        &book,
        None,
        Duration::from_millis(40),
    );
    assert_whole_day(&o);
    // A leads: its holes were filled later by B; B's own were already filled.
    let lines = &o.summary["sessions"][0]["lines"];
    assert!(lines[0]["gaps"].as_u64().unwrap() >= 20, "{lines}");
    assert!(
        lines[1]["gaps_covered_by_other"].as_u64().unwrap() >= 20,
        "{lines}"
    );
}

#[test]
fn a_feed_cut_before_its_end_is_reported_incomplete() {
    let Some(Setup {
        dir,
        book,
        mut frames,
        ..
    }) = setup()
    else {
        return;
    };
    // The last 500 packets never arrive, the end of session with them.
    frames.truncate(frames.len() - 500);
    let last_seq = Packet::new_checked(payload(&frames[frames.len() - 1].1))
        .unwrap()
        .next_sequence_number()
        - 1;
    let path = arg(dir.path(), "cut.pcap");
    write_frames(&path, &frames);
    let o = attacked_run("t", &[&path], &[FEED], &book, None, Duration::ZERO);
    let s = &o.summary;
    assert!(!o.books_equal);
    assert_eq!(s["session"]["complete"], false, "{s}");
    let session = &s["sessions"][0];
    assert_eq!(session["end_of_session_seen"], false);
    assert_eq!(session["highest_known_seq"], last_seq);
    assert_eq!(
        session["tail"],
        format!("unknown after sequence number {last_seq}")
    );
    assert!(o.stdout.contains("INCOMPLETE"), "{}", o.stdout);
    assert!(
        o.stderr.contains("no end of session was seen"),
        "{}",
        o.stderr
    );
}
