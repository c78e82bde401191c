//! The canonical decode format of `docs/formats.md`: one JSON object per
//! message, `session`, `seq`, `type`, the header fields, then every field in
//! wire order; integers raw, alpha fields trimmed.

use ticklane_protocols::itch::{FieldValue, MessageRef};

/// Appends the canonical JSON line (with its `\n`) of one message to `out`.
pub fn write_message(out: &mut Vec<u8>, session: &[u8], seq: u64, message: &MessageRef<'_>) {
    let header = message.header();
    out.extend_from_slice(b"{\"session\":");
    write_text(out, session);
    out.extend_from_slice(b",\"seq\":");
    write_int(out, seq);
    out.extend_from_slice(b",\"type\":");
    write_text(out, &[header.message_type]);
    out.extend_from_slice(b",\"stock_locate\":");
    write_int(out, u64::from(header.stock_locate()));
    out.extend_from_slice(b",\"tracking_number\":");
    write_int(out, u64::from(header.tracking_number()));
    out.extend_from_slice(b",\"timestamp\":");
    write_int(out, header.timestamp());
    message.for_each_field(|name, value| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            FieldValue::Int(v) => write_int(out, v),
            FieldValue::Text(t) => write_text(out, t),
        }
    });
    out.extend_from_slice(b"}\n");
}

/// Appends the canonical book line (with its `\n`) of one stock:
/// `{"stock":"AAPL","bids":[[price,shares],…],"asks":[…]}`, levels best first.
pub fn write_book(
    out: &mut Vec<u8>,
    stock: &[u8],
    bids: impl Iterator<Item = (u32, u64)>,
    asks: impl Iterator<Item = (u32, u64)>,
) {
    out.extend_from_slice(b"{\"stock\":");
    write_text(out, stock);
    out.extend_from_slice(b",\"bids\":");
    write_levels(out, bids);
    out.extend_from_slice(b",\"asks\":");
    write_levels(out, asks);
    out.extend_from_slice(b"}\n");
}

fn write_levels(out: &mut Vec<u8>, levels: impl Iterator<Item = (u32, u64)>) {
    out.push(b'[');
    for (i, (price, shares)) in levels.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        write_int(out, u64::from(price));
        out.push(b',');
        write_int(out, shares);
        out.push(b']');
    }
    out.push(b']');
}

fn write_int(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A JSON string of raw wire bytes: printable ASCII as is (with `"` and `\`
/// escaped), every other byte as `\u00XX`, so that the output is valid JSON
/// whatever the feed carries.
fn write_text(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticklane_protocols::itch::{self, Alpha, Char, Header, Message, U32, U64};

    #[test]
    fn the_example_of_the_specification() {
        let m = itch::AddOrder {
            header: Header::new(itch::AddOrder::TYPE, 12, 0, 34_200_000_012_345),
            order_reference_number: U64::new(1001),
            buy_sell_indicator: Char(b'B'),
            shares: U32::new(300),
            stock: Alpha::padded(b"AAPL").unwrap(),
            price: U32::new(1_923_400),
        };
        let r = MessageRef::AddOrder(&m);
        assert_eq!(r.as_bytes().len(), 36);
        let mut out = Vec::new();
        write_message(&mut out, b"S123456789", 17, &r);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"session\":\"S123456789\",\"seq\":17,\"type\":\"A\",\"stock_locate\":12,\
             \"tracking_number\":0,\"timestamp\":34200000012345,\"order_reference_number\":1001,\
             \"buy_sell_indicator\":\"B\",\"shares\":300,\"stock\":\"AAPL\",\"price\":1923400}\n"
        );
    }

    #[test]
    fn the_book_example_of_the_specification() {
        let mut out = Vec::new();
        write_book(
            &mut out,
            b"AAPL",
            [(1_923_400, 500), (1_923_300, 1200)].into_iter(),
            [(1_923_500, 300)].into_iter(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"stock\":\"AAPL\",\"bids\":[[1923400,500],[1923300,1200]],\"asks\":[[1923500,300]]}\n"
        );
        let mut out = Vec::new();
        write_book(&mut out, b"X", std::iter::empty(), std::iter::empty());
        assert_eq!(out, b"{\"stock\":\"X\",\"bids\":[],\"asks\":[]}\n");
    }

    #[test]
    fn hostile_bytes_stay_valid_json() {
        let mut out = Vec::new();
        write_text(&mut out, b"a\"b\\c\x01\xff");
        assert_eq!(out, b"\"a\\\"b\\\\c\\u0001\\u00ff\"");
        let parsed: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\u{1}\u{ff}");
    }
}
