//! Checks the generated ITCH layouts against the specification table in
//! `shared/ITCH50.md` itself (read at test time, not copied), and checks that
//! no input, however hostile, makes any parser panic.
//!
//! The specification is looked for at `$TICKLANE_SPEC` when that is set, else
//! at `../shared/ITCH50.md` beside the repository. When it is not there, the
//! two checks against it print a SKIPPED line to stderr and pass; the other
//! checks always run.

use proptest::prelude::*;
use ticklane_protocols::binaryfile;
use ticklane_protocols::itch::{self, FieldValue, MESSAGE_TYPES};
use ticklane_protocols::moldudp64::{Packet, PacketBuilder, Request, Session};
use ticklane_protocols::wire;

/// (tag, length, [(field name, size, is_integer)]) for every row of the table.
type SpecRow = (u8, usize, Vec<(String, usize, bool)>);

/// The rows of the specification's table, or `None` (after a loud SKIPPED
/// line on stderr naming `test`) when the specification is not available.
fn spec_rows(test: &str) -> Option<Vec<SpecRow>> {
    let path = std::env::var_os("TICKLANE_SPEC").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/ITCH50.md"),
        std::path::PathBuf::from,
    );
    if !path.exists() {
        eprintln!(
            "SKIPPED {test}: {} not found (../shared/ITCH50.md beside the repository, \
             or TICKLANE_SPEC); the layout check against the independent specification did not run",
            path.display()
        );
        return None;
    }
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: the specification cannot be read", path.display()));
    let mut rows: Vec<SpecRow> = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 5 {
            continue;
        }
        let Ok(len) = cells[2].parse::<usize>() else {
            continue;
        };
        let tag = cells[1].as_bytes()[0];
        let mut fields = Vec::new();
        for item in cells[3].split(", ") {
            if let Some(base) = item.strip_prefix("as ") {
                let base = base.as_bytes()[0];
                let row = rows
                    .iter()
                    .find(|r| r.0 == base)
                    .expect("'as X' names an earlier row");
                fields.extend(row.2.iter().cloned());
                continue;
            }
            let item = item.strip_prefix("then ").unwrap_or(item);
            let (name, kind) = item.split_once(" (").expect("field (kind)");
            let kind = kind.trim_end_matches(')');
            let (size, int) = match kind {
                "u16" => (2, true),
                "u32" => (4, true),
                "u64" => (8, true),
                alpha => (
                    alpha
                        .trim_end_matches(" alpha")
                        .trim_end_matches('a')
                        .parse()
                        .expect("Na"),
                    false,
                ),
            };
            fields.push((name.to_string(), size, int));
        }
        rows.push((tag, len, fields));
    }
    Some(rows)
}

#[test]
fn the_table_matches_the_specification() {
    let Some(rows) = spec_rows("the_table_matches_the_specification") else {
        return;
    };
    assert_eq!(rows.len(), 23, "ITCH50.md lists 23 message types");
    for (tag, len, fields) in &rows {
        let t = MESSAGE_TYPES
            .iter()
            .find(|t| t.tag == *tag)
            .expect("every spec type is generated");
        assert_eq!(t.len, *len, "length of {}", char::from(*tag));
        assert_eq!(
            11 + fields.iter().map(|f| f.1).sum::<usize>(),
            *len,
            "spec row adds up"
        );
    }
}

fn check_against_spec(row: &SpecRow, body: &[u8]) -> Result<(), TestCaseError> {
    let (tag, len, fields) = row;
    let mut bytes = vec![*tag];
    bytes.extend_from_slice(&body[..len - 1]);
    let m = itch::parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(m.as_bytes(), &bytes[..]);
    let h = m.header();
    prop_assert_eq!(h.stock_locate(), u16::from_be_bytes([bytes[1], bytes[2]]));
    prop_assert_eq!(
        h.tracking_number(),
        u16::from_be_bytes([bytes[3], bytes[4]])
    );
    let mut ts = [0u8; 8];
    ts[2..].copy_from_slice(&bytes[5..11]);
    prop_assert_eq!(h.timestamp(), u64::from_be_bytes(ts));
    let mut seen = Vec::new();
    m.for_each_field(|name, value| seen.push((name, value)));
    prop_assert_eq!(seen.len(), fields.len());
    let mut at = 11;
    for ((name, value), (spec_name, size, int)) in seen.iter().zip(fields) {
        prop_assert_eq!(*name, spec_name.as_str());
        let raw = &bytes[at..at + size];
        let expected = if *int {
            FieldValue::Int(raw.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
        } else {
            let end = raw.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
            FieldValue::Text(&raw[..end])
        };
        prop_assert_eq!(*value, expected, "field {}", spec_name);
        at += size;
    }
    Ok(())
}

/// Every type decodes arbitrary field bytes exactly as the specification
/// lays them out, and re-encodes to the same bytes.
#[test]
fn every_type_decodes_per_spec() {
    let Some(rows) = spec_rows("every_type_decodes_per_spec") else {
        return;
    };
    proptest!(ProptestConfig::with_cases(512), |(body in proptest::collection::vec(any::<u8>(), 49..50))| {
        for row in &rows {
            check_against_spec(row, &body)?;
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn itch_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = itch::parse(&bytes);
    }

    #[test]
    fn mold_and_frame_walkers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = Packet::new_checked(&bytes[..]) {
            let n = p.messages().inspect(|(_, m)| { let _ = itch::parse(m); }).count();
            prop_assert_eq!(n, usize::from(p.messages_len()));
        }
        let _ = wire::parse_ethernet_udp(&bytes);
        let _ = wire::parse_ipv4_udp(&bytes);
        let _ = Request::decode(&bytes);
        prop_assert!(binaryfile::Messages::new(&bytes).count() <= bytes.len() / 2 + 1);
    }

    /// Packets built from arbitrary messages walk back to the same messages
    /// with consecutive sequence numbers, inside a frame too.
    #[test]
    fn mold_round_trip(
        seq in 1u64..u64::MAX / 2,
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..60), 0..20),
    ) {
        let session = Session::from_name(b"PROP").unwrap();
        let mut buf = [0u8; 1500];
        let mut b = PacketBuilder::new(&mut buf, session, seq).unwrap();
        for m in &messages {
            b.push(m).unwrap();
        }
        let packet = b.finish().to_vec();
        let spec = wire::UdpFrameSpec::multicast([2, 0, 0, 0, 0, 1], [198, 18, 0, 1], [239, 1, 1, 1], 26477);
        let mut frame = [0u8; 1600];
        let n = wire::write_udp_frame(&mut frame, &spec, &packet).unwrap();
        let udp = wire::parse_ethernet_udp(&frame[..n]).unwrap();
        let p = Packet::new_checked(udp.payload).unwrap();
        prop_assert_eq!(p.session(), session);
        let walked: Vec<(u64, Vec<u8>)> = p.messages().map(|(s, m)| (s, m.to_vec())).collect();
        let expected: Vec<(u64, Vec<u8>)> =
            messages.iter().enumerate().map(|(i, m)| (seq + i as u64, m.clone())).collect();
        prop_assert_eq!(walked, expected);
    }
}
