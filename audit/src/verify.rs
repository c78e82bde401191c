//! Comparing the audit with what was sent: every expected message present
//! exactly once with the same bytes, nothing else, or the differences as
//! exact ranges.

use std::collections::BTreeMap;

/// Ranges of sequence numbers of one session, `from..=to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Session, trimmed.
    pub session: Vec<u8>,
    /// First.
    pub from: u64,
    /// Last (inclusive).
    pub to: u64,
}

/// The differences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Differences {
    /// Expected, not in the audit.
    pub missing: Vec<Range>,
    /// In the audit, not expected.
    pub extra: Vec<Range>,
    /// In both, with other bytes.
    pub differing: Vec<Range>,
    /// Messages the audit holds in common.
    pub matched: u64,
}

impl Differences {
    /// True when the audit equals the expectation.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.differing.is_empty()
    }
}

fn push(ranges: &mut Vec<Range>, session: &[u8], seq: u64) {
    if let Some(last) = ranges.last_mut()
        && last.session == session
        && last.to + 1 == seq
    {
        last.to = seq;
    } else {
        ranges.push(Range {
            session: session.to_vec(),
            from: seq,
            to: seq,
        });
    }
}

/// Compares `expected` with `actual`, given in (session, seq) order with
/// no repeats.
pub fn compare(
    expected: &BTreeMap<(Vec<u8>, u64), Vec<u8>>,
    actual: impl IntoIterator<Item = ((Vec<u8>, u64), Vec<u8>)>,
) -> Differences {
    let mut d = Differences::default();
    let mut exp = expected.iter().peekable();
    for ((session, seq), raw) in actual {
        while let Some(((s, q), _)) = exp.next_if(|((s, q), _)| (s, *q) < (&session, seq)) {
            push(&mut d.missing, s, *q);
        }
        match exp.next_if(|((s, q), _)| *s == session && *q == seq) {
            Some((_, bytes)) if *bytes == raw => d.matched += 1,
            Some(_) => push(&mut d.differing, &session, seq),
            None => push(&mut d.extra, &session, seq),
        }
    }
    for ((s, q), _) in exp {
        push(&mut d.missing, s, *q);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&[u8], u64, &[u8])]) -> BTreeMap<(Vec<u8>, u64), Vec<u8>> {
        items
            .iter()
            .map(|(s, q, b)| ((s.to_vec(), *q), b.to_vec()))
            .collect()
    }

    #[test]
    fn exact_ranges_of_every_kind_of_difference() {
        let mut exp = Vec::new();
        for q in 1..=10u64 {
            exp.push((&b"A"[..], q, &b"x"[..]));
        }
        exp.push((b"B", 1, b"y"));
        let expected = map(&exp);
        let mut actual = expected.clone();
        actual.remove(&(b"A".to_vec(), 3));
        actual.remove(&(b"A".to_vec(), 4));
        actual.remove(&(b"B".to_vec(), 1));
        actual.insert((b"A".to_vec(), 7), b"z".to_vec());
        actual.insert((b"A".to_vec(), 11), b"x".to_vec());
        actual.insert((b"A".to_vec(), 12), b"x".to_vec());
        let d = compare(&expected, actual);
        let r = |s: &[u8], from, to| Range {
            session: s.to_vec(),
            from,
            to,
        };
        assert_eq!(d.missing, vec![r(b"A", 3, 4), r(b"B", 1, 1)]);
        assert_eq!(d.differing, vec![r(b"A", 7, 7)]);
        assert_eq!(d.extra, vec![r(b"A", 11, 12)]);
        assert_eq!(d.matched, 7);
        assert!(!d.is_empty());
        assert!(compare(&expected, expected.clone()).is_empty());
    }
}
