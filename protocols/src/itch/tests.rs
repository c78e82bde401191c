//! Hand-built vectors from the specification's layouts.

use super::*;

/// An add order built byte by byte from ITCH50.md's table.
fn add_order_bytes() -> [u8; 36] {
    let mut b = [0u8; 36];
    b[0] = b'A';
    b[1..3].copy_from_slice(&12u16.to_be_bytes());
    b[3..5].copy_from_slice(&7u16.to_be_bytes());
    b[5..11].copy_from_slice(&34_200_000_012_345u64.to_be_bytes()[2..]);
    b[11..19].copy_from_slice(&1001u64.to_be_bytes());
    b[19] = b'B';
    b[20..24].copy_from_slice(&300u32.to_be_bytes());
    b[24..32].copy_from_slice(b"AAPL    ");
    b[32..36].copy_from_slice(&1_923_400u32.to_be_bytes());
    b
}

#[test]
fn add_order_fields_read_in_place() {
    let bytes = add_order_bytes();
    let MessageRef::AddOrder(m) = parse(&bytes).unwrap() else {
        panic!("not an add order")
    };
    assert_eq!(m.header.stock_locate(), 12);
    assert_eq!(m.header.tracking_number(), 7);
    assert_eq!(m.header.timestamp(), 34_200_000_012_345);
    assert_eq!(m.order_reference_number(), 1001);
    assert_eq!(m.buy_sell_indicator(), b'B');
    assert_eq!(m.shares(), 300);
    assert_eq!(m.stock().trimmed(), b"AAPL");
    assert_eq!(m.price(), 1_923_400);
    assert_eq!(
        core::ptr::from_ref(m).cast::<u8>(),
        bytes.as_ptr(),
        "a view, not a copy"
    );
}

#[test]
fn building_a_message_gives_the_same_bytes() {
    let built = AddOrder {
        header: Header::new(AddOrder::TYPE, 12, 7, 34_200_000_012_345),
        order_reference_number: U64::new(1001),
        buy_sell_indicator: Char(b'B'),
        shares: U32::new(300),
        stock: Alpha::padded(b"AAPL").unwrap(),
        price: U32::new(1_923_400),
    };
    assert_eq!(built.as_bytes(), &add_order_bytes()[..]);
}

#[test]
fn executions_cancels_deletes_and_replaces() {
    let mut e = [0u8; 31];
    e[0] = b'E';
    e[11..19].copy_from_slice(&99u64.to_be_bytes());
    e[19..23].copy_from_slice(&25u32.to_be_bytes());
    e[23..31].copy_from_slice(&255_547u64.to_be_bytes());
    let MessageRef::OrderExecuted(m) = parse(&e).unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            m.order_reference_number(),
            m.executed_shares(),
            m.match_number()
        ),
        (99, 25, 255_547)
    );

    let mut c = [0u8; 36];
    c[0] = b'C';
    c[31] = b'Y';
    c[32..36].copy_from_slice(&1234u32.to_be_bytes());
    let MessageRef::OrderExecutedWithPrice(m) = parse(&c).unwrap() else {
        panic!()
    };
    assert_eq!((m.printable(), m.execution_price()), (b'Y', 1234));

    let mut x = [0u8; 23];
    x[0] = b'X';
    x[19..23].copy_from_slice(&40u32.to_be_bytes());
    let MessageRef::OrderCancel(m) = parse(&x).unwrap() else {
        panic!()
    };
    assert_eq!(m.cancelled_shares(), 40);

    let mut d = [0u8; 19];
    d[0] = b'D';
    d[11..19].copy_from_slice(&5u64.to_be_bytes());
    let MessageRef::OrderDelete(m) = parse(&d).unwrap() else {
        panic!()
    };
    assert_eq!(m.order_reference_number(), 5);

    let mut u = [0u8; 35];
    u[0] = b'U';
    u[11..19].copy_from_slice(&5u64.to_be_bytes());
    u[19..27].copy_from_slice(&6u64.to_be_bytes());
    u[27..31].copy_from_slice(&100u32.to_be_bytes());
    u[31..35].copy_from_slice(&548_800u32.to_be_bytes());
    let MessageRef::OrderReplace(m) = parse(&u).unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            m.original_order_reference_number(),
            m.new_order_reference_number(),
            m.shares(),
            m.price()
        ),
        (5, 6, 100, 548_800)
    );
}

#[test]
fn mwcb_levels_are_u64_price8() {
    let mut v = [0u8; 35];
    v[0] = b'V';
    v[11..19].copy_from_slice(&1u64.to_be_bytes());
    v[19..27].copy_from_slice(&2u64.to_be_bytes());
    v[27..35].copy_from_slice(&(u64::MAX - 3).to_be_bytes());
    let MessageRef::MwcbDeclineLevel(m) = parse(&v).unwrap() else {
        panic!()
    };
    assert_eq!((m.level1(), m.level2(), m.level3()), (1, 2, u64::MAX - 3));
}

#[test]
fn errors_are_typed() {
    assert_eq!(parse(&[]), Err(ItchError::Empty));
    assert_eq!(parse(b"Z123"), Err(ItchError::UnknownType(b'Z')));
    let bytes = add_order_bytes();
    assert_eq!(
        parse(&bytes[..35]),
        Err(ItchError::Length {
            message_type: b'A',
            expected: 36,
            actual: 35
        })
    );
    let mut longer = [0u8; 37];
    longer[..36].copy_from_slice(&bytes);
    assert_eq!(
        dispatch(&longer, &mut Counter::default()),
        Err(ItchError::Length {
            message_type: b'A',
            expected: 36,
            actual: 37
        })
    );
}

#[derive(Default)]
struct Counter {
    adds: u32,
    shares: u64,
    deletes: u32,
}

impl Handler for Counter {
    fn on_add_order(&mut self, m: &AddOrder) {
        self.adds += 1;
        self.shares += u64::from(m.shares());
    }
    fn on_order_delete(&mut self, _: &OrderDelete) {
        self.deletes += 1;
    }
}

#[test]
fn dispatch_calls_only_the_overridden_methods() {
    let mut h = Counter::default();
    assert_eq!(dispatch(&add_order_bytes(), &mut h), Ok(b'A'));
    let mut d = [0u8; 19];
    d[0] = b'D';
    assert_eq!(dispatch(&d, &mut h), Ok(b'D'));
    let mut b = [0u8; 19];
    b[0] = b'B';
    assert_eq!(dispatch(&b, &mut h), Ok(b'B'));
    assert_eq!((h.adds, h.shares, h.deletes), (1, 300, 1));
    let bytes = add_order_bytes();
    parse(&bytes).unwrap().dispatch(&mut h);
    assert_eq!(
        (h.adds, h.shares),
        (2, 600),
        "a parsed message dispatches like raw bytes"
    );
}

#[test]
fn the_table_has_all_23_types_with_distinct_tags() {
    assert_eq!(MESSAGE_TYPES.len(), 23);
    for (i, t) in MESSAGE_TYPES.iter().enumerate() {
        assert_eq!(type_index(t.tag), Some(i));
    }
    assert_eq!(type_index(b'Z'), None);
    for tag in 0..=u8::MAX {
        let linear = MESSAGE_TYPES.iter().position(|t| t.tag == tag);
        assert_eq!(type_index(tag), linear, "type byte {tag}");
    }
}

#[test]
fn alpha_fields_trim_only_trailing_spaces() {
    let mut h = [b' '; 25];
    h[0] = b'H';
    h[11..19].copy_from_slice(b" AMC    ");
    h[19] = b'T';
    let MessageRef::StockTradingAction(m) = parse(&h).unwrap() else {
        panic!()
    };
    let mut texts: [&[u8]; 4] = [b""; 4];
    let mut i = 0;
    m.for_each_field(|_, v| {
        if let FieldValue::Text(t) = v {
            texts[i] = t;
            i += 1;
        }
    });
    assert_eq!(texts, [&b" AMC"[..], b"T", b"", b""]);
}
