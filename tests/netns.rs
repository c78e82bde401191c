//! The re-request server across a real network: in one network namespace,
//! with the replaying appliance (or a flood) in another, joined by a veth
//! pair these tests create (198.18.0.0/15 addresses) and remove, also on
//! failure.
//!
//! Needs root and iproute2 (see `netns_available`).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use ticklane_e2e::{
    DAMAGE, Lab, arg, assert_success, ip, netns_available, start_retrans_server,
    start_retrans_server_with, ticklane_ok,
};
use ticklane_lab::retrans::RetransStore;
use ticklane_protocols::moldudp64::{Packet, Request, Session};

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
    ticklane_ok(
        &[
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
        ]
        .iter()
        .chain(&DAMAGE)
        .copied()
        .collect::<Vec<_>>(),
    );
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

/// Requests sent in each flood.
const FLOOD: u64 = 200;

/// A socket in the current namespace bound to `addr`, reading with a
/// short timeout.
fn bound(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind((addr, 0)).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Sends `FLOOD` requests for 65,535 messages from 1 on; a pause of 1 ms
/// every 20 keeps them within the server's socket buffer, so that what the
/// server counts is what was sent.
fn flood(socket: &UdpSocket, server: SocketAddr, session: Session) {
    let request = Request {
        session,
        sequence_number: 1,
        message_count: u16::MAX,
    }
    .encode();
    for i in 0..FLOOD {
        socket.send_to(&request, server).unwrap();
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Reads until 500 ms pass without a datagram: the payload bytes received
/// and the sequence numbers of the messages in them.
fn drain(socket: &UdpSocket) -> (u64, Vec<u64>) {
    let (mut bytes, mut seqs, mut buf) = (0u64, Vec::new(), [0u8; 2048]);
    while let Ok(n) = socket.recv(&mut buf) {
        bytes += n as u64;
        let p = Packet::new_checked(&buf[..n]).expect("answers are downstream packets");
        seqs.extend(p.messages().map(|(seq, _)| seq));
    }
    (bytes, seqs)
}

/// What the clients in namespace b saw.
struct Seen {
    unlisted_bytes: u64,
    listed_seqs: Vec<u64>,
    flood_bytes: u64,
    flood_secs: f64,
}

#[test]
fn a_flood_of_oversized_requests_from_an_unlisted_address_is_refused_and_counted() {
    if !netns_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let feed = arg(dir.path(), "f.pcap");
    ticklane_ok(&[
        "gen",
        "--messages",
        "20000",
        "--stocks",
        "10",
        "--seed",
        "5",
        "-o",
        &feed,
    ]);
    let session = RetransStore::load(Path::new(&feed)).unwrap().session();
    let lab = Lab::new("x", 1);
    let (listed, unlisted) = (lab.addr(true), format!("198.18.{}.3", lab.net));
    ip(&[
        "-n",
        &lab.b,
        "addr",
        "add",
        &format!("{unlisted}/24"),
        "dev",
        &lab.vb,
    ]);
    let server_addr: SocketAddr = format!("{}:9000", lab.addr(false)).parse().unwrap();
    let (summary, log) = (arg(dir.path(), "s.json"), dir.path().join("server.log"));
    let (burst, rate) = (60_000u64, 50_000u64);
    let mut server = start_retrans_server_with(
        lab.ticklane_in(&lab.a),
        &feed,
        &server_addr.to_string(),
        &[
            "--allow",
            &format!("{listed}/32"),
            "--client-burst",
            &burst.to_string(),
            "--client-rate",
            &rate.to_string(),
            "--summary-json",
            &summary,
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let addrs = (listed, unlisted.clone());
    let seen = lab
        .in_netns(&lab.b, move || {
            let (listed, unlisted) = addrs;
            let stranger = bound(&unlisted);
            flood(&stranger, server_addr, session);
            let (unlisted_bytes, _) = drain(&stranger);

            let client = bound(&listed);
            let request = Request {
                session,
                sequence_number: 1,
                message_count: 10,
            };
            client.send_to(&request.encode(), server_addr).unwrap();
            let (_, listed_seqs) = drain(&client);

            let start = Instant::now();
            flood(&client, server_addr, session);
            let (flood_bytes, _) = drain(&client);
            Seen {
                unlisted_bytes,
                listed_seqs,
                flood_bytes,
                flood_secs: start.elapsed().as_secs_f64(),
            }
        })
        .join()
        .unwrap();
    assert!(server.interrupt().success());
    let log = std::fs::read_to_string(&log).unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();

    assert_eq!(
        seen.unlisted_bytes, 0,
        "nothing answered to {unlisted}\n{log}"
    );
    assert_eq!(
        v["refused"]["unlisted"], FLOOD,
        "every unlisted request counted\n{v}"
    );
    assert_eq!(
        seen.listed_seqs,
        (1..=10).collect::<Vec<_>>(),
        "the listed client is served"
    );
    let bound = burst + (rate as f64 * seen.flood_secs) as u64;
    assert!(
        seen.flood_bytes > 0 && seen.flood_bytes <= bound,
        "a flood in a listed client's name gets at most burst + rate × time: {} > {bound}",
        seen.flood_bytes
    );
    assert!(v["refused"]["rate_limited"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["received"], 2 * FLOOD + 1, "{v}");
    assert_eq!(
        v["refused"]["total"].as_u64().unwrap() + v["answered"].as_u64().unwrap(),
        2 * FLOOD + 1,
        "{v}"
    );

    // The log samples: a few refusals line by line, the rest counted, none lost.
    let one_by_one = log.lines().filter(|l| l.contains(": refused ")).count() as u64;
    let held_back: u64 = log
        .lines()
        .filter_map(|l| {
            l.split("... and ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(held_back > 0, "{log}");
    assert_eq!(one_by_one + held_back, v["refused"]["total"], "{log}");
    println!(
        "flood of {FLOOD} oversized requests: unlisted got {} bytes; listed got {} payload bytes ({:.1}x the {} request bytes) in {:.2} s",
        seen.unlisted_bytes,
        seen.flood_bytes,
        seen.flood_bytes as f64 / (FLOOD * 20) as f64,
        FLOOD * 20,
        seen.flood_secs
    );
}
