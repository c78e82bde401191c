//! Golden tests: every real NASDAQ/BX capture in tests/data/ decodes to its
//! expected canonical JSON Lines, byte for byte.

use ticklane_e2e::{captures_dir, ticklane_ok};

#[test]
fn real_captures_decode_exactly() {
    let mut checked = 0;
    for entry in std::fs::read_dir(captures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "pcap") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected.jsonl")).unwrap();
        let run = ticklane_ok(&["decode", path.to_str().unwrap()]);
        assert_eq!(run.stdout, expected, "{}", path.display());
        assert_eq!(
            run.stderr,
            "",
            "{}: nothing to complain about",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 10,
        "expected the 10 shipped captures, found {checked}"
    );
}

#[test]
fn several_files_decode_in_order() {
    let dir = captures_dir();
    let a = dir.join("Nasdaq-OrderDeleteMessage.pcap");
    let b = dir.join("Bx-OrderDeleteMessage.pcap");
    let run = ticklane_ok(&["decode", a.to_str().unwrap(), b.to_str().unwrap()]);
    let expected = std::fs::read_to_string(a.with_extension("expected.jsonl")).unwrap()
        + &std::fs::read_to_string(b.with_extension("expected.jsonl")).unwrap();
    assert_eq!(run.stdout, expected);
}

/// A real capture that begins in the middle of the day: its first packet is
/// where the feed is, so its order rests in the book, the day before it is
/// reported lost, and the missing end of session is said, not hidden.
#[test]
fn a_real_mid_day_capture_builds_its_book_and_says_what_it_lacks() {
    let path = captures_dir().join("Nasdaq-AddOrderNoMpidAttributionMessage.pcap");
    let run = ticklane_ok(&["book", path.to_str().unwrap()]);
    assert_eq!(
        run.stdout,
        "{\"stock\":\"IVOO\",\"bids\":[[873900,1600]],\"asks\":[]}\n"
    );
    assert!(
        run.stderr.contains("14757720 messages lost"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("no end of session was seen"),
        "{}",
        run.stderr
    );
}
