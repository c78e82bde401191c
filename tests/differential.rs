//! Differential test: the same generated feed parsed by ticklane and by the
//! independent `itchy` crate (nom-based) must agree field for field. itchy
//! lacks 'h' and 'O', so those two types are left out of its stream.

use itchy::Body;
use ticklane_lab::market::{MAX_MESSAGE_LEN, Market, MarketConfig};
use ticklane_protocols::binaryfile;
use ticklane_protocols::itch::{self, MessageRef};

fn text<const N: usize>(a: &itch::Alpha<N>) -> String {
    String::from_utf8(a.trimmed().to_vec()).unwrap()
}

fn side(b: u8) -> itchy::Side {
    if b == b'B' {
        itchy::Side::Buy
    } else {
        itchy::Side::Sell
    }
}

#[test]
fn ticklane_and_itchy_agree_on_a_generated_day() {
    let mut market = Market::new(MarketConfig {
        seed: 99,
        stocks: 60,
        messages: 200_000,
        max_live_orders: 20_000,
        mix: ticklane_lab::market::Mix::Recent,
        resting: 0,
    });
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let mut stream = Vec::new();
    let mut ours = Vec::new();
    while let Some(n) = market.next_message(&mut buf) {
        if matches!(buf[0], b'h' | b'O') {
            continue;
        }
        let mut block = [0u8; MAX_MESSAGE_LEN + 2];
        let len = binaryfile::write_block(&mut block, &buf[..n]).unwrap();
        stream.extend_from_slice(&block[..len]);
        ours.push(buf[..n].to_vec());
    }
    let theirs: Vec<itchy::Message> = itchy::MessageStream::from_reader(&stream[..])
        .map(|m| m.expect("itchy parses it"))
        .collect();
    assert_eq!(theirs.len(), ours.len());
    let mut compared_bodies = 0;
    for (bytes, t) in ours.iter().zip(&theirs) {
        let m = itch::parse(bytes).unwrap();
        let h = m.header();
        assert_eq!(
            (
                h.message_type,
                h.stock_locate(),
                h.tracking_number(),
                h.timestamp()
            ),
            (t.tag, t.stock_locate, t.tracking_number, t.timestamp)
        );
        let agreed = match (m, &t.body) {
            (MessageRef::AddOrder(a), Body::AddOrder(b)) => {
                assert_eq!(
                    (
                        a.order_reference_number(),
                        side(a.buy_sell_indicator()),
                        a.shares(),
                        text(&a.stock),
                        a.price()
                    ),
                    (
                        b.reference,
                        b.side,
                        b.shares,
                        b.stock.trim_end().to_string(),
                        b.price.raw()
                    )
                );
                assert!(b.mpid.is_none());
                true
            }
            (MessageRef::AddOrderMpid(a), Body::AddOrder(b)) => {
                assert_eq!(
                    (
                        a.order_reference_number(),
                        a.shares(),
                        a.price(),
                        Some(text(&a.attribution))
                    ),
                    (
                        b.reference,
                        b.shares,
                        b.price.raw(),
                        b.mpid.map(|s| s.trim_end().to_string())
                    )
                );
                true
            }
            (
                MessageRef::OrderExecuted(a),
                Body::OrderExecuted {
                    reference,
                    executed,
                    match_number,
                },
            ) => {
                assert_eq!(
                    (
                        a.order_reference_number(),
                        a.executed_shares(),
                        a.match_number()
                    ),
                    (*reference, *executed, *match_number)
                );
                true
            }
            (
                MessageRef::OrderExecutedWithPrice(a),
                Body::OrderExecutedWithPrice {
                    reference,
                    executed,
                    match_number,
                    printable,
                    price,
                },
            ) => {
                assert_eq!(
                    (
                        a.order_reference_number(),
                        a.executed_shares(),
                        a.match_number(),
                        a.printable() == b'Y',
                        a.execution_price()
                    ),
                    (
                        *reference,
                        *executed,
                        *match_number,
                        *printable,
                        price.raw()
                    )
                );
                true
            }
            (
                MessageRef::OrderCancel(a),
                Body::OrderCancelled {
                    reference,
                    cancelled,
                },
            ) => {
                assert_eq!(
                    (a.order_reference_number(), a.cancelled_shares()),
                    (*reference, *cancelled)
                );
                true
            }
            (MessageRef::OrderDelete(a), Body::DeleteOrder { reference }) => {
                assert_eq!(a.order_reference_number(), *reference);
                true
            }
            (MessageRef::OrderReplace(a), Body::ReplaceOrder(b)) => {
                assert_eq!(
                    (
                        a.original_order_reference_number(),
                        a.new_order_reference_number(),
                        a.shares(),
                        a.price()
                    ),
                    (b.old_reference, b.new_reference, b.shares, b.price.raw())
                );
                true
            }
            (MessageRef::Trade(a), Body::NonCrossTrade(b)) => {
                assert_eq!(
                    (
                        a.order_reference_number(),
                        side(a.buy_sell_indicator()),
                        a.shares(),
                        text(&a.stock),
                        a.price(),
                        a.match_number()
                    ),
                    (
                        b.reference,
                        b.side,
                        b.shares,
                        b.stock.trim_end().to_string(),
                        b.price.raw(),
                        b.match_number
                    )
                );
                true
            }
            (MessageRef::CrossTrade(a), Body::CrossTrade(b)) => {
                assert_eq!(
                    (
                        a.shares(),
                        text(&a.stock),
                        a.cross_price(),
                        a.match_number()
                    ),
                    (
                        b.shares,
                        b.stock.trim_end().to_string(),
                        b.cross_price.raw(),
                        b.match_number
                    )
                );
                true
            }
            (MessageRef::BrokenTrade(a), Body::BrokenTrade { match_number }) => {
                assert_eq!(a.match_number(), *match_number);
                true
            }
            (MessageRef::Noii(a), Body::Imbalance(b)) => {
                assert_eq!(
                    (
                        a.paired_shares(),
                        a.imbalance_shares(),
                        text(&a.stock),
                        a.far_price(),
                        a.near_price(),
                        a.current_reference_price()
                    ),
                    (
                        b.paired_shares,
                        b.imbalance_shares,
                        b.stock.trim_end().to_string(),
                        b.far_price.raw(),
                        b.near_price.raw(),
                        b.current_ref_price.raw()
                    )
                );
                true
            }
            (
                MessageRef::MwcbDeclineLevel(a),
                Body::MwcbDeclineLevel {
                    level1,
                    level2,
                    level3,
                },
            ) => {
                assert_eq!(
                    (a.level1(), a.level2(), a.level3()),
                    (level1.raw(), level2.raw(), level3.raw())
                );
                true
            }
            (
                MessageRef::LuldAuctionCollar(a),
                Body::LULDAuctionCollar {
                    stock,
                    ref_price,
                    upper_price,
                    lower_price,
                    extension,
                },
            ) => {
                assert_eq!(
                    (
                        text(&a.stock),
                        a.auction_collar_reference_price(),
                        a.upper_auction_collar_price(),
                        a.lower_auction_collar_price(),
                        a.auction_collar_extension()
                    ),
                    (
                        stock.trim_end().to_string(),
                        ref_price.raw(),
                        upper_price.raw(),
                        lower_price.raw(),
                        *extension
                    )
                );
                true
            }
            (MessageRef::StockDirectory(a), Body::StockDirectory(b)) => {
                assert_eq!(
                    (text(&a.stock), a.round_lot_size()),
                    (b.stock.trim_end().to_string(), b.round_lot_size)
                );
                true
            }
            (MessageRef::StockTradingAction(a), Body::TradingAction { stock, .. }) => {
                assert_eq!(text(&a.stock), stock.trim_end().to_string());
                true
            }
            (MessageRef::RegShoRestriction(a), Body::RegShoRestriction { stock, .. }) => {
                assert_eq!(text(&a.stock), stock.trim_end().to_string());
                true
            }
            (MessageRef::MarketParticipantPosition(a), Body::ParticipantPosition(b)) => {
                assert_eq!(
                    (text(&a.mpid), text(&a.stock)),
                    (
                        b.mpid.trim_end().to_string(),
                        b.stock.trim_end().to_string()
                    )
                );
                true
            }
            (MessageRef::IpoQuotingPeriodUpdate(a), Body::IpoQuotingPeriod(b)) => {
                assert_eq!(
                    (
                        text(&a.stock),
                        a.ipo_quotation_release_time(),
                        a.ipo_price()
                    ),
                    (
                        b.stock.trim_end().to_string(),
                        b.release_time,
                        b.price.raw()
                    )
                );
                true
            }
            (MessageRef::Rpii(a), Body::RetailPriceImprovementIndicator(b)) => {
                assert_eq!(text(&a.stock), b.stock.trim_end().to_string());
                true
            }
            (MessageRef::SystemEvent(_), Body::SystemEvent { .. })
            | (MessageRef::MwcbStatus(_), Body::Breach(_)) => true,
            (ours, theirs) => panic!("the parsers disagree on the kind: {ours:?} vs {theirs:?}"),
        };
        compared_bodies += usize::from(agreed);
    }
    assert_eq!(compared_bodies, ours.len());
}
