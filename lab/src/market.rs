//! A deterministic synthetic NASDAQ day: the feed simulator behind
//! `ticklane gen`, and the data every test and benchmark feeds from.
//!
//! Orders live, execute (E and C), shrink (X), get replaced (U) and die (D)
//! consistently: every reference a message names is an order that is resting
//! at that moment, with at least the shares the message takes. The body's mix
//! follows a real NASDAQ day (adds ≈ 44%, deletes ≈ 43%, replaces ≈ 9%,
//! executions ≈ 2%), and every one of the 23 message types appears once the
//! feed is a few dozen messages longer than its preamble. The live order set
//! is capped, so memory stays bounded however long the feed.
//!
//! Which live order a cancel, execution, delete or replace names is the
//! [`Mix`]: mostly the newest orders ([`Mix::Recent`], the default), or any
//! live order with equal odds ([`Mix::Uniform`], references stepping by 1–4,
//! the shape of an independently generated feed that defeats caches tuned to
//! young orders). A standing population ([`MarketConfig::resting`]) can be
//! placed before the mix starts, as a real day's book fills before the open.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use ticklane_protocols::itch::{self, Alpha, Char, Header, Message, U32, U64};

/// Largest ITCH message (NOII, 50 bytes).
pub const MAX_MESSAGE_LEN: usize = 50;

/// Nanoseconds since midnight at which the market opens (09:30).
const OPEN_NS: u64 = 34_200 * 1_000_000_000;
/// Length of regular trading hours (6.5 h).
const SESSION_NS: u64 = 23_400 * 1_000_000_000;
/// Preamble time (03:00).
const PREAMBLE_NS: u64 = 10_800 * 1_000_000_000;
/// How many of the newest orders count as "recent" for [`Market::pick_live`].
const RECENT_ORDERS: usize = 1024;
/// One cent in Price(4).
const TICK: u32 = 100;

/// Shape of the synthetic market.
#[derive(Debug, Clone, Copy)]
pub struct MarketConfig {
    /// Seed: the same seed gives the same feed, byte for byte.
    pub seed: u64,
    /// Number of instruments (locate codes 1..=stocks).
    pub stocks: u16,
    /// Messages in all, preamble and closing events included.
    pub messages: u64,
    /// Most orders resting at once; adds beyond it become deletes.
    pub max_live_orders: usize,
    /// Which live orders the order flow names.
    pub mix: Mix,
    /// Orders added before the mix starts (a standing population, capped by
    /// `max_live_orders`); 0 for none.
    pub resting: usize,
}

/// Which live orders cancels, executions, deletes and replaces name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mix {
    /// Four picks in five among the 1,024 newest orders, the rest uniform;
    /// references step by one.
    #[default]
    Recent,
    /// Every live order equally likely; references step by 1–4; a little
    /// fewer deletes and more executions (adds ≈ 44%, deletes ≈ 41%,
    /// replaces ≈ 9%, executions ≈ 3%).
    Uniform,
}

#[derive(Debug, Clone, Copy)]
struct Stock {
    symbol: Alpha<8>,
    mid: u32,
}

/// A resting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveOrder {
    /// Order reference number.
    pub reference: u64,
    /// Locate code of its stock.
    pub locate: u16,
    /// b'B' or b'S'.
    pub side: u8,
    /// Shares still resting.
    pub shares: u32,
    /// Limit price, Price(4).
    pub price: u32,
}

/// Body message kinds other than the order flow, emitted once each at the
/// start of the body so that every type is present, then at random.
const RARE: [u8; 14] = [
    b'X', b'P', b'Q', b'B', b'I', b'N', b'L', b'Y', b'K', b'J', b'h', b'O', b'W', b'C',
];

/// Weights (per 10 000) of the body's message kinds.
const MIX: [(u8, u32); 19] = [
    (b'A', 4000),
    (b'F', 400),
    (b'D', 4300),
    (b'U', 900),
    (b'E', 140),
    (b'C', 60),
    (b'X', 100),
    (b'P', 40),
    (b'Q', 5),
    (b'B', 5),
    (b'I', 20),
    (b'N', 10),
    (b'L', 5),
    (b'Y', 5),
    (b'K', 2),
    (b'J', 3),
    (b'h', 2),
    (b'O', 2),
    (b'H', 1),
];
/// Weights (per 10 000) of the uniform mix's message kinds: the default's,
/// with a little fewer deletes and more executions.
const UNIFORM_MIX: [(u8, u32); 19] =
    reweighted(MIX, [(b'A', 4050), (b'D', 4150), (b'E', 220), (b'C', 80)]);

/// `mix` with the weights of some kinds replaced.
const fn reweighted<const N: usize, const M: usize>(
    mut mix: [(u8, u32); N],
    changes: [(u8, u32); M],
) -> [(u8, u32); N] {
    let mut i = 0;
    while i < N {
        let mut j = 0;
        while j < M {
            if mix[i].0 == changes[j].0 {
                mix[i].1 = changes[j].1;
            }
            j += 1;
        }
        i += 1;
    }
    mix
}
const MIX_TOTAL: u32 = 10_000;

const fn total(mix: &[(u8, u32)]) -> u32 {
    let mut t = 0;
    let mut i = 0;
    while i < mix.len() {
        t += mix[i].1;
        i += 1;
    }
    t
}
const _: () = assert!(total(&MIX) == MIX_TOTAL && total(&UNIFORM_MIX) == MIX_TOTAL);

/// The synthetic market: call [`Market::next_message`] until it returns `None`.
#[derive(Debug)]
pub struct Market {
    cfg: MarketConfig,
    rng: Pcg64Mcg,
    stocks: Vec<Stock>,
    live: Vec<LiveOrder>,
    emitted: u64,
    next_reference: u64,
    next_match: u64,
    clock: u64,
    mean_step: u64,
    rare_done: usize,
    /// The standing population ([`MarketConfig::resting`]) is in place.
    built: bool,
}

/// Writes `m` into `out` and returns its length.
fn put<M: Message>(out: &mut [u8; MAX_MESSAGE_LEN], m: &M) -> usize {
    out[..M::LEN].copy_from_slice(m.as_bytes());
    M::LEN
}

/// A deterministic ticker for locate code `locate`: four letters, distinct
/// for every locate (7919 is coprime with 26⁴, so the map is a bijection).
fn symbol(locate: u16) -> Alpha<8> {
    let mut n = (u64::from(locate) * 7919 + 17) % (26 * 26 * 26 * 26);
    let mut s = [b' '; 8];
    for c in s[..4].iter_mut().rev() {
        *c = b'A' + (n % 26) as u8;
        n /= 26;
    }
    Alpha(s)
}

impl Market {
    /// A market in its pre-open state.
    pub fn new(cfg: MarketConfig) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed);
        let stocks = (1..=cfg.stocks)
            .map(|locate| Stock {
                symbol: symbol(locate),
                mid: rng.random_range(10..5_000) * TICK,
            })
            .collect();
        let body = cfg
            .messages
            .saturating_sub(Self::preamble_len(cfg.stocks) + 3)
            .max(1);
        Self {
            rng,
            stocks,
            live: Vec::with_capacity(cfg.max_live_orders.min(1 << 20)),
            emitted: 0,
            next_reference: 1,
            next_match: 1,
            clock: PREAMBLE_NS,
            mean_step: (SESSION_NS / body).max(1),
            rare_done: 0,
            built: cfg.resting == 0,
            cfg,
        }
    }

    fn preamble_len(stocks: u16) -> u64 {
        // S O, S S, R and H per stock, V, S Q.
        4 + 2 * u64::from(stocks)
    }

    /// Orders resting now.
    pub fn live_orders(&self) -> &[LiveOrder] {
        &self.live
    }

    /// The symbol of a locate code.
    pub fn symbol(&self, locate: u16) -> Option<Alpha<8>> {
        let i = usize::from(locate).checked_sub(1)?;
        Some(self.stocks.get(i)?.symbol)
    }

    /// The canonical book lines (`docs/formats.md`) of the orders resting
    /// now, aggregated independently of [`crate::book`]: the generator's own
    /// expectation of what `ticklane book` must print.
    pub fn expected_books(&self) -> Vec<u8> {
        use std::collections::BTreeMap;
        /// Shares by price.
        type Levels = BTreeMap<u32, u64>;
        // locate → (bids, asks)
        let mut books: BTreeMap<u16, (Levels, Levels)> = BTreeMap::new();
        for o in &self.live {
            let (bids, asks) = books.entry(o.locate).or_default();
            let side = if o.side == b'B' { bids } else { asks };
            *side.entry(o.price).or_default() += u64::from(o.shares);
        }
        let mut out = Vec::new();
        for (locate, (bids, asks)) in books {
            let symbol = self.symbol(locate).unwrap_or(Alpha([b'?'; 8]));
            ticklane_capture::canonical::write_book(
                &mut out,
                symbol.trimmed(),
                bids.into_iter().rev(),
                asks.into_iter(),
            );
        }
        out
    }

    /// Writes the next message into `out` and returns its length, or `None`
    /// once the configured number of messages was produced.
    pub fn next_message(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> Option<usize> {
        if self.emitted >= self.cfg.messages {
            return None;
        }
        let i = self.emitted;
        self.emitted += 1;
        let left = self.cfg.messages - i;
        let n = u64::from(self.cfg.stocks);
        Some(if left <= 3 {
            self.clock = self.clock.max(OPEN_NS + SESSION_NS) + 1_000_000;
            let code = [b'C', b'E', b'M'][(left - 1) as usize];
            self.system_event(out, code)
        } else if i == 0 {
            self.system_event(out, b'O')
        } else if i == 1 {
            self.system_event(out, b'S')
        } else if i < 2 + n {
            self.stock_directory(out, (i - 1) as u16)
        } else if i < 2 + 2 * n {
            self.trading_action(out, (i - 1 - n) as u16, b'T')
        } else if i == 2 + 2 * n {
            self.mwcb_levels(out)
        } else if i == 3 + 2 * n {
            self.clock = OPEN_NS;
            self.system_event(out, b'Q')
        } else {
            self.clock += self.rng.random_range(0..=2 * self.mean_step);
            self.body(out)
        })
    }

    fn header(&mut self, tag: u8, locate: u16) -> Header {
        let tracking = if self.rng.random_ratio(1, 8) {
            self.rng.random_range(1..16)
        } else {
            0
        };
        Header::new(tag, locate, tracking, self.clock)
    }

    fn random_locate(&mut self) -> u16 {
        self.rng.random_range(1..=self.cfg.stocks.max(1))
    }

    fn stock(&self, locate: u16) -> Stock {
        self.stocks[usize::from(locate) - 1]
    }

    fn body(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        self.built |= self.live.len() >= self.cfg.resting.min(self.cfg.max_live_orders);
        let kind = if let Some(&k) = RARE.get(self.rare_done) {
            self.rare_done += 1;
            k
        } else if !self.built {
            b'A'
        } else {
            // Walk the cumulative weights to the kind the roll falls in.
            let mut roll = self.rng.random_range(0..MIX_TOTAL);
            let mut kind = b'A';
            let mix = match self.cfg.mix {
                Mix::Recent => &MIX,
                Mix::Uniform => &UNIFORM_MIX,
            };
            for &(k, weight) in mix {
                if roll < weight {
                    kind = k;
                    break;
                }
                roll -= weight;
            }
            kind
        };
        let needs_order = matches!(kind, b'D' | b'U' | b'E' | b'C' | b'X');
        let kind = if needs_order && self.live.is_empty() {
            b'A'
        } else if matches!(kind, b'A' | b'F') && self.live.len() >= self.cfg.max_live_orders {
            b'D'
        } else if kind == b'B' && self.next_match == 1 {
            b'P'
        } else {
            kind
        };
        if self.stocks.is_empty() {
            return self.system_event(out, b'Q');
        }
        match kind {
            b'A' | b'F' => self.add(out, kind == b'F'),
            b'D' => self.delete(out),
            b'U' => self.replace(out),
            b'E' | b'C' => self.execute(out, kind == b'C'),
            b'X' => self.cancel(out),
            b'P' => self.hidden_trade(out),
            b'Q' => self.cross(out),
            b'B' => self.broken(out),
            b'I' => self.noii(out),
            b'N' => self.rpii(out),
            b'L' => self.participant(out),
            b'Y' => self.reg_sho(out),
            b'K' => self.ipo(out),
            b'J' => self.luld(out),
            b'h' => self.operational_halt(out),
            b'O' => self.dlcr(out),
            b'W' => self.mwcb_status(out),
            _ => {
                let locate = self.random_locate();
                self.trading_action(out, locate, b'T')
            }
        }
    }

    fn quote_price(&mut self, locate: u16, side: u8) -> u32 {
        let stock = &mut self.stocks[usize::from(locate) - 1];
        if self.rng.random_ratio(1, 20) {
            stock.mid = if self.rng.random_bool(0.5) {
                stock.mid + TICK
            } else {
                (stock.mid - TICK).max(10 * TICK)
            };
        }
        let offset = self.rng.random_range(1..=10) * TICK;
        if side == b'B' {
            stock.mid - offset.min(stock.mid - TICK)
        } else {
            stock.mid + offset
        }
    }

    fn random_shares(&mut self) -> u32 {
        if self.rng.random_ratio(1, 10) {
            self.rng.random_range(1..100)
        } else {
            100 * self.rng.random_range(1..=20)
        }
    }

    /// An order to execute, cancel, replace or delete. Most orders on a
    /// real book are fleeting: cancelled or hit within moments of their
    /// arrival. In the recent mix, four picks in five go to one of the most
    /// recent orders, the rest to any live order, so that old orders also
    /// age out; in the uniform mix every pick is uniform.
    fn pick_live(&mut self) -> usize {
        let n = self.live.len();
        if self.cfg.mix == Mix::Recent && self.rng.random_ratio(4, 5) {
            n - 1 - self.rng.random_range(0..n.min(RECENT_ORDERS))
        } else {
            self.rng.random_range(0..n)
        }
    }

    fn add(&mut self, out: &mut [u8; MAX_MESSAGE_LEN], with_mpid: bool) -> usize {
        let locate = self.random_locate();
        let side = if self.rng.random_bool(0.5) {
            b'B'
        } else {
            b'S'
        };
        let price = self.quote_price(locate, side);
        let shares = self.random_shares();
        let reference = self.new_reference();
        self.live.push(LiveOrder {
            reference,
            locate,
            side,
            shares,
            price,
        });
        let add = itch::AddOrder {
            header: self.header(itch::AddOrder::TYPE, locate),
            order_reference_number: U64::new(reference),
            buy_sell_indicator: Char(side),
            shares: U32::new(shares),
            stock: self.stock(locate).symbol,
            price: U32::new(price),
        };
        if with_mpid {
            let mut m = itch::AddOrderMpid {
                header: add.header,
                order_reference_number: add.order_reference_number,
                buy_sell_indicator: add.buy_sell_indicator,
                shares: add.shares,
                stock: add.stock,
                price: add.price,
                attribution: Alpha(
                    *[b"GSCO", b"MSCO", b"NITE", b"VIRT"][self.rng.random_range(0..4)],
                ),
            };
            m.header.message_type = itch::AddOrderMpid::TYPE;
            put(out, &m)
        } else {
            put(out, &add)
        }
    }

    fn delete(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let i = self.pick_live();
        let o = self.live.swap_remove(i);
        let m = itch::OrderDelete {
            header: self.header(itch::OrderDelete::TYPE, o.locate),
            order_reference_number: U64::new(o.reference),
        };
        put(out, &m)
    }

    fn replace(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let i = self.pick_live();
        let old = self.live[i];
        let price = self.quote_price(old.locate, old.side);
        let shares = self.random_shares();
        let reference = self.new_reference();
        self.live[i] = LiveOrder {
            reference,
            shares,
            price,
            ..old
        };
        let m = itch::OrderReplace {
            header: self.header(itch::OrderReplace::TYPE, old.locate),
            original_order_reference_number: U64::new(old.reference),
            new_order_reference_number: U64::new(reference),
            shares: U32::new(shares),
            price: U32::new(price),
        };
        put(out, &m)
    }

    /// The next order reference: one more than the last, or 1–4 more in
    /// the uniform mix.
    fn new_reference(&mut self) -> u64 {
        let reference = self.next_reference;
        self.next_reference += match self.cfg.mix {
            Mix::Recent => 1,
            Mix::Uniform => self.rng.random_range(1..=4),
        };
        reference
    }

    fn next_match(&mut self) -> u64 {
        let m = self.next_match;
        self.next_match += 1;
        m
    }

    fn execute(&mut self, out: &mut [u8; MAX_MESSAGE_LEN], with_price: bool) -> usize {
        let i = self.pick_live();
        let o = self.live[i];
        let executed = self.rng.random_range(1..=o.shares);
        if executed == o.shares {
            self.live.swap_remove(i);
        } else {
            self.live[i].shares -= executed;
        }
        let header = self.header(itch::OrderExecuted::TYPE, o.locate);
        let match_number = U64::new(self.next_match());
        if with_price {
            let m = itch::OrderExecutedWithPrice {
                header: Header {
                    message_type: itch::OrderExecutedWithPrice::TYPE,
                    ..header
                },
                order_reference_number: U64::new(o.reference),
                executed_shares: U32::new(executed),
                match_number,
                printable: Char(if self.rng.random_ratio(1, 4) {
                    b'N'
                } else {
                    b'Y'
                }),
                execution_price: U32::new(o.price + self.rng.random_range(0..3) * TICK),
            };
            put(out, &m)
        } else {
            let m = itch::OrderExecuted {
                header,
                order_reference_number: U64::new(o.reference),
                executed_shares: U32::new(executed),
                match_number,
            };
            put(out, &m)
        }
    }

    fn cancel(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let i = self.pick_live();
        let o = self.live[i];
        if o.shares < 2 {
            return self.delete(out);
        }
        let cancelled = self.rng.random_range(1..o.shares);
        self.live[i].shares -= cancelled;
        let m = itch::OrderCancel {
            header: self.header(itch::OrderCancel::TYPE, o.locate),
            order_reference_number: U64::new(o.reference),
            cancelled_shares: U32::new(cancelled),
        };
        put(out, &m)
    }

    fn hidden_trade(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let side = if self.rng.random_bool(0.5) {
            b'B'
        } else {
            b'S'
        };
        let price = self.stock(locate).mid;
        let m = itch::Trade {
            header: self.header(itch::Trade::TYPE, locate),
            order_reference_number: U64::new(0),
            buy_sell_indicator: Char(side),
            shares: U32::new(self.random_shares()),
            stock: self.stock(locate).symbol,
            price: U32::new(price),
            match_number: U64::new(self.next_match()),
        };
        put(out, &m)
    }

    fn cross(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let m = itch::CrossTrade {
            header: self.header(itch::CrossTrade::TYPE, locate),
            shares: U64::new(self.rng.random_range(0..1_000_000)),
            stock: self.stock(locate).symbol,
            cross_price: U32::new(self.stock(locate).mid),
            match_number: U64::new(self.next_match()),
            cross_type: Char([b'O', b'C', b'H', b'I'][self.rng.random_range(0..4)]),
        };
        put(out, &m)
    }

    fn broken(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let m = itch::BrokenTrade {
            header: self.header(itch::BrokenTrade::TYPE, locate),
            match_number: U64::new(self.rng.random_range(1..self.next_match)),
        };
        put(out, &m)
    }

    fn noii(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let mid = self.stock(locate).mid;
        let m = itch::Noii {
            header: self.header(itch::Noii::TYPE, locate),
            paired_shares: U64::new(self.rng.random_range(0..100_000)),
            imbalance_shares: U64::new(self.rng.random_range(0..10_000)),
            imbalance_direction: Char([b'B', b'S', b'N', b'O'][self.rng.random_range(0..4)]),
            stock: self.stock(locate).symbol,
            far_price: U32::new(mid),
            near_price: U32::new(mid + TICK),
            current_reference_price: U32::new(mid),
            cross_type: Char([b'O', b'C', b'H'][self.rng.random_range(0..3)]),
            price_variation_indicator: Char(b'L'),
        };
        put(out, &m)
    }

    fn rpii(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let m = itch::Rpii {
            header: self.header(itch::Rpii::TYPE, locate),
            stock: self.stock(locate).symbol,
            interest_flag: Char([b'B', b'S', b'A', b'N'][self.rng.random_range(0..4)]),
        };
        put(out, &m)
    }

    fn participant(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let m = itch::MarketParticipantPosition {
            header: self.header(itch::MarketParticipantPosition::TYPE, locate),
            mpid: Alpha(*[b"GSCO", b"MSCO", b"NITE", b"VIRT"][self.rng.random_range(0..4)]),
            stock: self.stock(locate).symbol,
            primary_market_maker: Char(if self.rng.random_bool(0.2) {
                b'Y'
            } else {
                b'N'
            }),
            market_maker_mode: Char(b'N'),
            market_participant_state: Char(b'A'),
        };
        put(out, &m)
    }

    fn reg_sho(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let m = itch::RegShoRestriction {
            header: self.header(itch::RegShoRestriction::TYPE, locate),
            stock: self.stock(locate).symbol,
            reg_sho_action: Char([b'0', b'1', b'2'][self.rng.random_range(0..3)]),
        };
        put(out, &m)
    }

    fn ipo(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let m = itch::IpoQuotingPeriodUpdate {
            header: self.header(itch::IpoQuotingPeriodUpdate::TYPE, locate),
            stock: self.stock(locate).symbol,
            ipo_quotation_release_time: U32::new(36_000),
            ipo_quotation_release_qualifier: Char(b'A'),
            ipo_price: U32::new(self.stock(locate).mid),
        };
        put(out, &m)
    }

    fn luld(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let mid = self.stock(locate).mid;
        let m = itch::LuldAuctionCollar {
            header: self.header(itch::LuldAuctionCollar::TYPE, locate),
            stock: self.stock(locate).symbol,
            auction_collar_reference_price: U32::new(mid),
            upper_auction_collar_price: U32::new(mid + mid / 10),
            lower_auction_collar_price: U32::new(mid - mid / 10),
            auction_collar_extension: U32::new(self.rng.random_range(0..3)),
        };
        put(out, &m)
    }

    fn operational_halt(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let m = itch::OperationalHalt {
            header: self.header(itch::OperationalHalt::TYPE, locate),
            stock: self.stock(locate).symbol,
            market_code: Char([b'Q', b'B', b'X'][self.rng.random_range(0..3)]),
            operational_halt_action: Char(if self.rng.random_bool(0.5) {
                b'H'
            } else {
                b'T'
            }),
        };
        put(out, &m)
    }

    fn dlcr(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let locate = self.random_locate();
        let mid = self.stock(locate).mid;
        let m = itch::DlcrPriceDiscovery {
            header: self.header(itch::DlcrPriceDiscovery::TYPE, locate),
            stock: self.stock(locate).symbol,
            open_eligibility_status: Char(if self.rng.random_bool(0.5) {
                b'Y'
            } else {
                b'N'
            }),
            minimum_allowable_price: U32::new(mid - mid / 5),
            maximum_allowable_price: U32::new(mid + mid / 5),
            near_execution_price: U32::new(mid),
            near_execution_time: U64::new(self.clock),
            lower_price_range_collar: U32::new(mid - mid / 10),
            upper_price_range_collar: U32::new(mid + mid / 10),
        };
        put(out, &m)
    }

    fn mwcb_status(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let m = itch::MwcbStatus {
            header: self.header(itch::MwcbStatus::TYPE, 0),
            breached_level: Char(b'1'),
        };
        put(out, &m)
    }

    fn mwcb_levels(&mut self, out: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
        let m = itch::MwcbDeclineLevel {
            header: self.header(itch::MwcbDeclineLevel::TYPE, 0),
            level1: U64::new(5_123_456_000_000),
            level2: U64::new(4_765_432_000_000),
            level3: U64::new(4_123_000_000_000),
        };
        put(out, &m)
    }

    fn system_event(&mut self, out: &mut [u8; MAX_MESSAGE_LEN], code: u8) -> usize {
        let m = itch::SystemEvent {
            header: self.header(itch::SystemEvent::TYPE, 0),
            event_code: Char(code),
        };
        put(out, &m)
    }

    fn stock_directory(&mut self, out: &mut [u8; MAX_MESSAGE_LEN], locate: u16) -> usize {
        let etp = self.rng.random_ratio(1, 10);
        let m = itch::StockDirectory {
            header: self.header(itch::StockDirectory::TYPE, locate),
            stock: self.stock(locate).symbol,
            market_category: Char([b'Q', b'G', b'S', b'N'][self.rng.random_range(0..4)]),
            financial_status_indicator: Char(b'N'),
            round_lot_size: U32::new(100),
            round_lots_only: Char(b'N'),
            issue_classification: Char(if etp { b'Q' } else { b'C' }),
            issue_sub_type: Alpha(*b"Z "),
            authenticity: Char(b'P'),
            short_sale_threshold_indicator: Char(b'N'),
            ipo_flag: Char(b' '),
            luld_reference_price_tier: Char(b'1'),
            etp_flag: Char(if etp { b'Y' } else { b'N' }),
            etp_leverage_factor: U32::new(u32::from(etp)),
            inverse_indicator: Char(b'N'),
        };
        put(out, &m)
    }

    fn trading_action(&mut self, out: &mut [u8; MAX_MESSAGE_LEN], locate: u16, state: u8) -> usize {
        let m = itch::StockTradingAction {
            header: self.header(itch::StockTradingAction::TYPE, locate),
            stock: self.stock(locate).symbol,
            trading_state: Char(state),
            reserved: Char(b' '),
            reason: Alpha(*b"    "),
        };
        put(out, &m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn feed(cfg: MarketConfig) -> Vec<Vec<u8>> {
        let mut m = Market::new(cfg);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        std::iter::from_fn(|| m.next_message(&mut buf).map(|n| buf[..n].to_vec())).collect()
    }

    const CFG: MarketConfig = MarketConfig {
        seed: 7,
        stocks: 20,
        messages: 20_000,
        max_live_orders: 2_000,
        mix: Mix::Recent,
        resting: 0,
    };

    #[test]
    fn same_seed_same_feed_other_seed_other_feed() {
        assert_eq!(feed(CFG), feed(CFG));
        assert_ne!(feed(CFG), feed(MarketConfig { seed: 8, ..CFG }));
    }

    /// Share of all messages by type tag.
    fn shares(msgs: &[Vec<u8>]) -> impl Fn(&[u8]) -> f64 {
        let mut by_type: HashMap<u8, usize> = HashMap::new();
        for m in msgs {
            itch::parse(m).expect("valid message");
            *by_type.entry(m[0]).or_default() += 1;
        }
        for t in itch::MESSAGE_TYPES {
            assert!(
                by_type.contains_key(&t.tag),
                "type {} missing",
                char::from(t.tag)
            );
        }
        let n = msgs.len() as f64;
        move |tags: &[u8]| {
            tags.iter()
                .map(|t| by_type.get(t).copied().unwrap_or(0))
                .sum::<usize>() as f64
                / n
        }
    }

    #[test]
    fn every_type_appears_and_the_mix_is_realistic() {
        let msgs = feed(CFG);
        assert_eq!(msgs.len(), 20_000);
        let share = shares(&msgs);
        assert!(
            (0.40..0.48).contains(&share(b"AF")),
            "adds {}",
            share(b"AF")
        );
        assert!(
            (0.39..0.47).contains(&share(b"D")),
            "deletes {}",
            share(b"D")
        );
        assert!(
            (0.07..0.11).contains(&share(b"U")),
            "replaces {}",
            share(b"U")
        );
        assert!(
            (0.01..0.03).contains(&share(b"EC")),
            "executions {}",
            share(b"EC")
        );
    }

    const UNIFORM: MarketConfig = MarketConfig {
        mix: Mix::Uniform,
        max_live_orders: 20_000,
        ..CFG
    };

    /// The shape of the issue's independently generated feed: the mix, and
    /// references that step by 1 to 4.
    #[test]
    fn uniform_mix_has_the_independent_feeds_shape() {
        let msgs = feed(UNIFORM);
        let share = shares(&msgs);
        for (tags, range) in [
            (&b"AF"[..], 0.42..0.47),
            (b"D", 0.38..0.44),
            (b"U", 0.07..0.11),
            (b"EC", 0.02..0.04),
        ] {
            assert!(range.contains(&share(tags)), "{tags:?}: {}", share(tags));
        }
        let mut references: Vec<u64> = msgs
            .iter()
            .filter_map(|m| match itch::parse(m).unwrap() {
                itch::MessageRef::AddOrder(a) => Some(a.order_reference_number()),
                itch::MessageRef::AddOrderMpid(a) => Some(a.order_reference_number()),
                itch::MessageRef::OrderReplace(u) => Some(u.new_order_reference_number()),
                _ => None,
            })
            .collect();
        let steps: Vec<u64> = references.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(steps.iter().all(|s| (1..=4).contains(s)));
        assert!((1..=4).all(|s| steps.contains(&s)), "every step occurs");
        references.dedup();
        assert_eq!(references.len(), steps.len() + 1);
    }

    /// The standing population is placed first, then the mix runs.
    #[test]
    fn resting_orders_are_placed_before_the_mix() {
        let cfg = MarketConfig {
            resting: 3_000,
            max_live_orders: 5_000,
            ..CFG
        };
        let mut m = Market::new(cfg);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let mut most = 0;
        while m.next_message(&mut buf).is_some() {
            most = most.max(m.live_orders().len());
        }
        assert!(most >= 3_000, "{most}");
        assert!(m.live_orders().len() > 2_000, "most stay resting");
    }

    type Book = HashMap<u64, (u16, u32, u32)>;

    fn take(book: &mut Book, reference: u64, shares: u32) {
        let o = book.get_mut(&reference).expect("names a live order");
        assert!(o.1 >= shares, "never takes more than rests");
        o.1 -= shares;
        if o.1 == 0 {
            book.remove(&reference);
        }
    }

    /// Replaying the order flow against a plain map proves consistency: every
    /// reference named is live, never over-executed, and the market's own
    /// live set equals the replay's at the end.
    #[test]
    fn order_flow_is_consistent() {
        for cfg in [
            CFG,
            UNIFORM,
            MarketConfig {
                resting: 1_000,
                ..UNIFORM
            },
        ] {
            order_flow_is_consistent_in(cfg);
        }
    }

    fn order_flow_is_consistent_in(cfg: MarketConfig) {
        let mut m = Market::new(cfg);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let mut book = Book::new();
        let mut last_ts = 0;
        while let Some(n) = m.next_message(&mut buf) {
            let msg = itch::parse(&buf[..n]).unwrap();
            assert!(msg.header().timestamp() >= last_ts, "time never goes back");
            last_ts = msg.header().timestamp();
            match msg {
                itch::MessageRef::AddOrder(a) => {
                    assert!(
                        book.insert(
                            a.order_reference_number(),
                            (a.header.stock_locate(), a.shares(), a.price())
                        )
                        .is_none()
                    );
                }
                itch::MessageRef::AddOrderMpid(a) => {
                    assert!(
                        book.insert(
                            a.order_reference_number(),
                            (a.header.stock_locate(), a.shares(), a.price())
                        )
                        .is_none()
                    );
                }
                itch::MessageRef::OrderExecuted(e) => {
                    take(&mut book, e.order_reference_number(), e.executed_shares())
                }
                itch::MessageRef::OrderExecutedWithPrice(e) => {
                    take(&mut book, e.order_reference_number(), e.executed_shares())
                }
                itch::MessageRef::OrderCancel(x) => {
                    let o = book[&x.order_reference_number()];
                    assert!(x.cancelled_shares() < o.1, "a cancel leaves shares");
                    take(&mut book, x.order_reference_number(), x.cancelled_shares());
                }
                itch::MessageRef::OrderDelete(d) => {
                    assert!(book.remove(&d.order_reference_number()).is_some());
                }
                itch::MessageRef::OrderReplace(u) => {
                    let (locate, _, _) = book
                        .remove(&u.original_order_reference_number())
                        .expect("live");
                    assert!(
                        book.insert(
                            u.new_order_reference_number(),
                            (locate, u.shares(), u.price())
                        )
                        .is_none()
                    );
                }
                _ => {}
            }
        }
        let mut expected: Vec<_> = m
            .live_orders()
            .iter()
            .map(|o| (o.reference, (o.locate, o.shares, o.price)))
            .collect();
        let mut got: Vec<_> = book.into_iter().collect();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert!(m.live_orders().len() <= cfg.max_live_orders);
    }

    #[test]
    fn symbols_are_distinct() {
        let mut seen: Vec<Alpha<8>> = (1..=5000).map(symbol).collect();
        seen.sort_unstable_by_key(|a| a.0);
        seen.dedup();
        assert_eq!(seen.len(), 5000);
    }
}
