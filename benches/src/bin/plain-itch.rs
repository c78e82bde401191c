//! The plain baseline of the whole-process benchmark (`benches/process.rs`):
//! what a first program over a capture would be. It reads the whole file
//! into memory, walks a little-endian Ethernet/IPv4/UDP pcap (what `ticklane
//! gen` writes) to the MoldUDP64 message blocks, parses them with `itchy`,
//! and either keeps books (a `HashMap` of orders, `BTreeMap` levels) and
//! prints them as `ticklane book` does, or counts messages by type as
//! `ticklane decode --summary` does. No sequencing, no checks beyond what it
//! needs not to crash: it does less than ticklane.
//!
//! Usage: plain-itch book FILE | plain-itch summary FILE

use std::collections::BTreeMap;
use std::io::Write;

use ticklane_benches::baseline::BaselineBooks;

/// Calls `f` with the MoldUDP64 message blocks (u16 length + message, back
/// to back) of every UDP frame of a legacy pcap, the messages itchy cannot
/// parse (`h`, `O`) left out.
fn for_each_blocks(pcap: &[u8], mut f: impl FnMut(&[u8])) {
    let mut at = 24;
    let mut run = Vec::new();
    while let Some(record) = pcap.get(at..at + 16) {
        let len = u32::from_le_bytes([record[8], record[9], record[10], record[11]]) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        let Some(&vihl) = frame.get(14) else { continue };
        let udp = 14 + usize::from(vihl & 0x0f) * 4;
        let Some(mold) = frame.get(udp + 8..) else {
            continue;
        };
        let Some(mut blocks) = mold.get(20..) else {
            continue;
        };
        run.clear();
        while blocks.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([blocks[0], blocks[1]]));
            let Some(block) = blocks.get(..2 + n) else {
                break;
            };
            if !matches!(block.get(2), Some(b'h' | b'O')) {
                run.extend_from_slice(block);
            }
            blocks = &blocks[2 + n..];
        }
        f(&run);
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: plain-itch book|summary FILE");
        std::process::exit(2);
    };
    let pcap = std::fs::read(path)?;
    let mut out = Vec::new();
    match mode.as_str() {
        "book" => {
            let mut books = BaselineBooks::default();
            let mut names: BTreeMap<u16, String> = BTreeMap::new();
            for_each_blocks(&pcap, |blocks| {
                for m in itchy::MessageStream::from_reader(blocks).flatten() {
                    match &m.body {
                        itchy::Body::StockDirectory(d) => {
                            names.insert(m.stock_locate, d.stock.trim().to_owned());
                        }
                        itchy::Body::AddOrder(a) => {
                            names
                                .entry(m.stock_locate)
                                .or_insert_with(|| a.stock.trim().to_owned());
                        }
                        _ => {}
                    }
                    books.apply_itchy(&m);
                }
            });
            for (locate, bids, asks) in books.canonical() {
                let name = names.get(&locate).map_or("", String::as_str);
                ticklane_capture::canonical::write_book(
                    &mut out,
                    name.as_bytes(),
                    bids.into_iter(),
                    asks.into_iter(),
                );
            }
        }
        "summary" => {
            let mut by_type: BTreeMap<u8, u64> = BTreeMap::new();
            for_each_blocks(&pcap, |blocks| {
                for m in itchy::MessageStream::from_reader(blocks).flatten() {
                    *by_type.entry(m.tag).or_default() += 1;
                }
            });
            for (tag, n) in by_type {
                writeln!(out, "{} {n}", char::from(tag))?;
            }
        }
        other => {
            eprintln!("plain-itch: unknown mode {other}: book or summary");
            std::process::exit(2);
        }
    }
    std::io::stdout().lock().write_all(&out)
}
