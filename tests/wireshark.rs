//! Interoperability: the captures `ticklane gen` writes open in Wireshark.
//! Debian's `tshark` (scripts/deps.sh installs it) decodes them with its
//! own MoldUDP64 dissector (`-d udp.port==P,moldudp64`) and its NASDAQ
//! ITCH dissector on the message blocks; every packet's session, sequence
//! number and message count, and every message's sequence number and type,
//! must be what `ticklane decode` says: on a pcap, a pcapng, a damaged copy
//! and two sessions merged in one file.
//!
//! Wireshark 4.0's ITCH dissector knows the ITCH versions before 5.0: of a
//! 5.0 message it decodes the type byte right (the first byte in every
//! version), not the later fields, so the type is what is compared.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use ticklane_e2e::{arg, frames_of, ticklane_ok, write_frames};

/// One MoldUDP64 packet as tshark dissected it.
#[derive(Debug)]
struct Dissected {
    session: String,
    sequence: u64,
    count: u64,
    /// (sequence number, ITCH type) of every message block.
    messages: Vec<(u64, String)>,
}

fn tshark(file: &str, ports: &[u16]) -> Vec<Dissected> {
    let mut c = Command::new("tshark");
    c.args(["-n", "-r", file]);
    for p in ports {
        c.args(["-d", &format!("udp.port=={p},moldudp64")]);
    }
    c.args(["-d", "moldudp64.payload,nasdaq_itch", "-T", "fields"]);
    for f in [
        "moldudp64.session",
        "moldudp64.sequence",
        "moldudp64.count",
        "moldudp64.msgseq",
        "nasdaq-itch.message_type",
    ] {
        c.args(["-e", f]);
    }
    c.args([
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-E",
        "separator=/t",
    ]);
    let out = c.output().unwrap_or_else(|e| {
        panic!("tshark does not run ({e}): scripts/deps.sh installs Debian's tshark")
    });
    assert!(
        out.status.success(),
        "tshark on {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                cols.len(),
                5,
                "a frame tshark did not see as MoldUDP64: {line}"
            );
            let list = |s: &str| -> Vec<String> {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(|x| x.trim_matches('\'').to_owned())
                    .collect()
            };
            let seqs: Vec<u64> = list(cols[3]).iter().map(|s| s.parse().unwrap()).collect();
            let types = list(cols[4]);
            assert_eq!(seqs.len(), types.len(), "{line}");
            Dissected {
                session: cols[0].trim_end().to_owned(),
                sequence: cols[1].parse().unwrap(),
                count: cols[2].parse().unwrap(),
                messages: seqs.into_iter().zip(types).collect(),
            }
        })
        .collect()
}

/// Every message ticklane decodes: (session, seq, type), in file order.
fn ticklane_messages(file: &str) -> Vec<(String, u64, String)> {
    ticklane_ok(&["decode", file])
        .stdout
        .lines()
        .map(|l| {
            let m: Value = serde_json::from_str(l).unwrap();
            (
                m["session"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
                m["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Checks tshark's reading of `file` against ticklane's.
fn agree(file: &str, ports: &[u16]) {
    let packets = tshark(file, ports);
    let summary: Value =
        serde_json::from_str(&ticklane_ok(&["decode", "--summary", "--json", file]).stdout)
            .unwrap();
    assert_eq!(packets.len() as u64, summary["packets"], "{file}: packets");

    // Every message, in order: session, sequence number, type.
    let theirs: Vec<(String, u64, String)> = packets
        .iter()
        .flat_map(|p| {
            p.messages
                .iter()
                .map(|(q, t)| (p.session.clone(), *q, t.clone()))
        })
        .collect();
    let ours = ticklane_messages(file);
    assert_eq!(theirs.len(), ours.len(), "{file}: message counts");
    assert_eq!(theirs, ours, "{file}: messages");
    assert_eq!(summary["messages"], ours.len() as u64);

    // Per session: heartbeats (count 0), ends of session (count 0xFFFF),
    // message packets, and the sequence numbers they cover.
    let mut per: BTreeMap<&str, (u64, u64, u64, u64, u64)> = BTreeMap::new();
    for p in &packets {
        let e = per.entry(&p.session).or_insert((0, 0, 0, u64::MAX, 0));
        match p.count {
            0 => e.0 += 1,
            0xFFFF => e.1 += 1,
            n => {
                e.2 += 1;
                assert_eq!(p.messages.len() as u64, n, "{file}: {p:?}");
                assert_eq!(p.messages[0].0, p.sequence, "{file}: {p:?}");
                e.3 = e.3.min(p.sequence);
                e.4 = e.4.max(p.sequence + n - 1);
            }
        }
    }
    let sessions = summary["sessions"].as_array().unwrap();
    assert_eq!(per.len(), sessions.len(), "{file}: sessions");
    for s in sessions {
        let name = s["session"].as_str().unwrap();
        let (heartbeats, ends, data, first, last) = per[name];
        assert_eq!(s["heartbeats"], heartbeats, "{file} {name}");
        assert_eq!(s["end_of_session_packets"], ends, "{file} {name}");
        assert_eq!(s["packets"], data, "{file} {name}");
        assert_eq!(s["first_seq"], first, "{file} {name}");
        assert_eq!(s["last_seq"], last, "{file} {name}");
    }
}

#[test]
fn tshark_reads_what_gen_writes_as_ticklane_does() {
    let dir = tempfile::tempdir().unwrap();
    let feed = |name: &str, extra: &[&str]| {
        let path = arg(dir.path(), name);
        let mut args = vec![
            "gen",
            "--messages",
            "4000",
            "--stocks",
            "12",
            "--heartbeat-every",
            "9",
            "--max-messages",
            "17",
            "-o",
            &path,
        ];
        args.extend_from_slice(extra);
        ticklane_ok(&args);
        path
    };
    let pcap = feed(
        "a.pcap",
        &["--group", "239.7.7.1:30071", "--session", "WSHARKA"],
    );
    agree(&pcap, &[30071]);
    let pcapng = feed(
        "b.pcapng",
        &["--group", "239.7.7.2:30072", "--session", "WSHARKB"],
    );
    agree(&pcapng, &[30072]);

    let damaged = arg(dir.path(), "damaged.pcap");
    feed(
        "c.pcap",
        &[
            "--damaged",
            &damaged,
            "--drop",
            "0.05",
            "--dup",
            "0.03",
            "--reorder",
            "0.03",
        ],
    );
    agree(&damaged, &[26477]);

    // Two sessions on two ports, interleaved in one file.
    let (a, b) = (frames_of(&pcap), frames_of(&pcapng));
    let mut both = Vec::new();
    for i in 0..a.len().max(b.len()) {
        both.extend(a.get(i).cloned());
        both.extend(b.get(i).cloned());
    }
    let merged = arg(dir.path(), "merged.pcap");
    write_frames(&merged, &both);
    agree(&merged, &[30071, 30072]);
}
