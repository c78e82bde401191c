//! The 23 ITCH 5.0 messages, defined once.
//!
//! Each row of the table below names the type byte, the struct, its wire
//! length, the [`Handler`] method it dispatches to, and its fields after the
//! common [`Header`] in wire order. From it the macro generates:
//!
//! - a `#[repr(C)]` zerocopy struct with public wire fields and a getter per
//!   field returning the native value, its size asserted at compile time;
//! - its [`Message`] impl (type byte, length, field names, field walker);
//! - [`MessageRef`], [`parse`], [`Handler`] and [`dispatch`];
//! - [`MESSAGE_TYPES`] and [`type_index`], for per-type counters.

use super::fields::{Alpha, Char, Field, FieldValue, Header, U32, U64};
use super::{ItchError, Message, MessageType};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

macro_rules! itch_messages {
    ($(
        $(#[$doc:meta])*
        $tag:literal $name:ident $len:literal $method:ident {
            $($field:ident: $ty:ty),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug)]
            #[repr(C)]
            pub struct $name {
                /// The common header.
                pub header: Header,
                $(
                    #[doc = concat!("`", stringify!($field), "` as it lies on the wire.")]
                    pub $field: $ty,
                )*
            }

            const _: () = assert!(size_of::<$name>() == $len);

            impl $name {
                $(
                    #[doc = concat!("`", stringify!($field), "` as a native value.")]
                    #[inline]
                    pub fn $field(&self) -> <$ty as Field>::Value {
                        self.$field.value()
                    }
                )*
            }

            impl Message for $name {
                const TYPE: u8 = $tag;
                const LEN: usize = $len;
                const NAME: &'static str = stringify!($name);
                const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

                #[inline]
                fn header(&self) -> &Header {
                    &self.header
                }

                fn for_each_field<'a>(&'a self, mut f: impl FnMut(&'static str, FieldValue<'a>)) {
                    $(f(stringify!($field), self.$field.show());)*
                }
            }
        )*

        /// A parsed message of any type, borrowing the bytes it was read from.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum MessageRef<'a> {
            $(
                #[doc = concat!("Type '", stringify!($tag), "'.")]
                $name(&'a $name),
            )*
        }

        impl MessageRef<'_> {
            /// The common header.
            pub fn header(&self) -> &Header {
                match self {
                    $(Self::$name(m) => &m.header,)*
                }
            }

            /// The message's bytes, exactly as read.
            pub fn as_bytes(&self) -> &[u8] {
                match self {
                    $(Self::$name(m) => IntoBytes::as_bytes(*m),)*
                }
            }

            /// The fields after the header, in wire order (see [`Message::for_each_field`]).
            pub fn for_each_field<'b>(&'b self, f: impl FnMut(&'static str, FieldValue<'b>)) {
                match self {
                    $(Self::$name(m) => m.for_each_field(f),)*
                }
            }

            /// Calls the handler method for this message.
            #[inline]
            pub fn dispatch<H: Handler + ?Sized>(&self, handler: &mut H) {
                match self {
                    $(Self::$name(m) => handler.$method(m),)*
                }
            }
        }

        /// Parses one message: checks the type byte and the exact length.
        #[inline]
        pub fn parse(bytes: &[u8]) -> Result<MessageRef<'_>, ItchError> {
            match *bytes.first().ok_or(ItchError::Empty)? {
                $($tag => $name::view(bytes).map(MessageRef::$name),)*
                other => Err(ItchError::UnknownType(other)),
            }
        }

        /// Receives messages by type. Every method defaults to doing nothing,
        /// so a handler implements only the types it cares about, and
        /// [`dispatch`] compiles the rest away.
        pub trait Handler {
            $(
                #[doc = concat!("A `", stringify!($name), "` ('", stringify!($tag), "') message.")]
                #[inline]
                fn $method(&mut self, message: &$name) {
                    let _ = message;
                }
            )*
        }

        /// Parses one message and calls the matching method of `handler`.
        ///
        /// Generic over the handler: the match on the type byte becomes a
        /// jump straight into the handler's code, with no `dyn` and no table.
        #[inline]
        pub fn dispatch<H: Handler + ?Sized>(bytes: &[u8], handler: &mut H) -> Result<u8, ItchError> {
            match *bytes.first().ok_or(ItchError::Empty)? {
                $($tag => handler.$method($name::view(bytes)?),)*
                other => return Err(ItchError::UnknownType(other)),
            }
            Ok(bytes[0])
        }

        /// Every message type, in the order of the specification's table.
        pub const MESSAGE_TYPES: [MessageType; [$($tag),*].len()] = [
            $(MessageType { tag: $tag, name: stringify!($name), len: $len },)*
        ];

        /// Position + 1 of each type byte in [`MESSAGE_TYPES`] (0: not a
        /// type), built at compile time so the lookup is one load.
        const TYPE_INDEX: [u8; 256] = {
            let mut table = [0u8; 256];
            let mut i = 0;
            while i < MESSAGE_TYPES.len() {
                table[MESSAGE_TYPES[i].tag as usize] = i as u8 + 1;
                i += 1;
            }
            table
        };

        /// Position of a type byte in [`MESSAGE_TYPES`], for per-type counters:
        /// one table load, no search.
        #[inline]
        pub fn type_index(tag: u8) -> Option<usize> {
            usize::from(TYPE_INDEX[usize::from(tag)]).checked_sub(1)
        }
    };
}

itch_messages! {
    /// System event: start and end of messages, system hours and market hours.
    b'S' SystemEvent 12 on_system_event {
        event_code: Char,
    }
    /// Stock directory: one per instrument at the start of the day.
    b'R' StockDirectory 39 on_stock_directory {
        stock: Alpha<8>,
        market_category: Char,
        financial_status_indicator: Char,
        round_lot_size: U32,
        round_lots_only: Char,
        issue_classification: Char,
        issue_sub_type: Alpha<2>,
        authenticity: Char,
        short_sale_threshold_indicator: Char,
        ipo_flag: Char,
        luld_reference_price_tier: Char,
        etp_flag: Char,
        etp_leverage_factor: U32,
        inverse_indicator: Char,
    }
    /// Stock trading action: halted, paused, quotation only, trading.
    b'H' StockTradingAction 25 on_stock_trading_action {
        stock: Alpha<8>,
        trading_state: Char,
        reserved: Char,
        reason: Alpha<4>,
    }
    /// Reg SHO short sale price test restriction.
    b'Y' RegShoRestriction 20 on_reg_sho_restriction {
        stock: Alpha<8>,
        reg_sho_action: Char,
    }
    /// Market participant position.
    b'L' MarketParticipantPosition 26 on_market_participant_position {
        mpid: Alpha<4>,
        stock: Alpha<8>,
        primary_market_maker: Char,
        market_maker_mode: Char,
        market_participant_state: Char,
    }
    /// Market-wide circuit breaker decline levels (Price(8)).
    b'V' MwcbDeclineLevel 35 on_mwcb_decline_level {
        level1: U64,
        level2: U64,
        level3: U64,
    }
    /// Market-wide circuit breaker breached.
    b'W' MwcbStatus 12 on_mwcb_status {
        breached_level: Char,
    }
    /// IPO quoting period update.
    b'K' IpoQuotingPeriodUpdate 28 on_ipo_quoting_period_update {
        stock: Alpha<8>,
        ipo_quotation_release_time: U32,
        ipo_quotation_release_qualifier: Char,
        ipo_price: U32,
    }
    /// Limit up / limit down auction collar.
    b'J' LuldAuctionCollar 35 on_luld_auction_collar {
        stock: Alpha<8>,
        auction_collar_reference_price: U32,
        upper_auction_collar_price: U32,
        lower_auction_collar_price: U32,
        auction_collar_extension: U32,
    }
    /// Operational halt.
    b'h' OperationalHalt 21 on_operational_halt {
        stock: Alpha<8>,
        market_code: Char,
        operational_halt_action: Char,
    }
    /// Add order without MPID attribution.
    b'A' AddOrder 36 on_add_order {
        order_reference_number: U64,
        buy_sell_indicator: Char,
        shares: U32,
        stock: Alpha<8>,
        price: U32,
    }
    /// Add order with MPID attribution.
    b'F' AddOrderMpid 40 on_add_order_mpid {
        order_reference_number: U64,
        buy_sell_indicator: Char,
        shares: U32,
        stock: Alpha<8>,
        price: U32,
        attribution: Alpha<4>,
    }
    /// Part or all of a resting order executed at its price.
    b'E' OrderExecuted 31 on_order_executed {
        order_reference_number: U64,
        executed_shares: U32,
        match_number: U64,
    }
    /// Part or all of a resting order executed at another price.
    b'C' OrderExecutedWithPrice 36 on_order_executed_with_price {
        order_reference_number: U64,
        executed_shares: U32,
        match_number: U64,
        printable: Char,
        execution_price: U32,
    }
    /// Part of a resting order cancelled.
    b'X' OrderCancel 23 on_order_cancel {
        order_reference_number: U64,
        cancelled_shares: U32,
    }
    /// A resting order removed.
    b'D' OrderDelete 19 on_order_delete {
        order_reference_number: U64,
    }
    /// A resting order replaced by a new one (same side and stock).
    b'U' OrderReplace 35 on_order_replace {
        original_order_reference_number: U64,
        new_order_reference_number: U64,
        shares: U32,
        price: U32,
    }
    /// Trade against a non-displayed order.
    b'P' Trade 44 on_trade {
        order_reference_number: U64,
        buy_sell_indicator: Char,
        shares: U32,
        stock: Alpha<8>,
        price: U32,
        match_number: U64,
    }
    /// Cross trade (opening, closing, halt, IPO).
    b'Q' CrossTrade 40 on_cross_trade {
        shares: U64,
        stock: Alpha<8>,
        cross_price: U32,
        match_number: U64,
        cross_type: Char,
    }
    /// An earlier execution broken.
    b'B' BrokenTrade 19 on_broken_trade {
        match_number: U64,
    }
    /// Net order imbalance indicator.
    b'I' Noii 50 on_noii {
        paired_shares: U64,
        imbalance_shares: U64,
        imbalance_direction: Char,
        stock: Alpha<8>,
        far_price: U32,
        near_price: U32,
        current_reference_price: U32,
        cross_type: Char,
        price_variation_indicator: Char,
    }
    /// Retail price improvement indicator.
    b'N' Rpii 20 on_rpii {
        stock: Alpha<8>,
        interest_flag: Char,
    }
    /// Direct listing with capital raise price discovery.
    b'O' DlcrPriceDiscovery 48 on_dlcr_price_discovery {
        stock: Alpha<8>,
        open_eligibility_status: Char,
        minimum_allowable_price: U32,
        maximum_allowable_price: U32,
        near_execution_price: U32,
        near_execution_time: U64,
        lower_price_range_collar: U32,
        upper_price_range_collar: U32,
    }
}
