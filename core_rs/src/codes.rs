//! The closed sets of codes that commands and events use. Each code is a small integer on the
//! wire and has one name, the same in Rust, Python and the API docs. Reject and expiry
//! reasons are named by the subsystem that decided them.

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:expr => $text:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name { $($variant = $value),+ }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The variant with this wire code, if any.
            pub fn from_code(code: u8) -> Option<Self> {
                match code { $($value => Some($name::$variant),)+ _ => None }
            }

            /// The wire code.
            pub fn code(self) -> u8 { self as u8 }

            /// The one name of this variant, as the Python face and the API docs spell it.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

code_enum!(
    /// Which side of the book an order is on.
    Side { Buy = 0 => "buy", Sell = 1 => "sell" }
);

code_enum!(
    /// Order types, with OKX's names. `Limit` is good till cancelled.
    OrderType {
        Limit = 0 => "limit",
        Market = 1 => "market",
        Ioc = 2 => "ioc",
        Fok = 3 => "fok",
        PostOnly = 4 => "post_only",
    }
);

code_enum!(
    /// Self-trade prevention, decided by the taker's mode. `CancelMaker` is the default.
    Stp {
        CancelMaker = 0 => "cancel_maker",
        CancelTaker = 1 => "cancel_taker",
        CancelBoth = 2 => "cancel_both",
        None = 3 => "none",
    }
);

code_enum!(
    /// What an event reports.
    EventKind {
        Accepted = 1 => "accepted",
        Rejected = 2 => "rejected",
        Fill = 3 => "fill",
        Canceled = 4 => "canceled",
        Expired = 5 => "expired",
        Amended = 6 => "amended",
        Deposited = 7 => "deposited",
        MarketState = 8 => "market_state",
        Auction = 9 => "auction",
        Uncross = 10 => "uncross",
    }
);

code_enum!(
    /// Why a command was refused or an order ended without a request, by subsystem.
    Reason {
        None = 0 => "",
        InstrumentUnknown = 1 => "instrument_unknown",
        InstrumentSizeInvalid = 2 => "instrument_size_invalid",
        InstrumentPriceInvalid = 3 => "instrument_price_invalid",
        MatchingNoLiquidity = 4 => "matching_no_liquidity",
        MatchingPostOnlyWouldCross = 5 => "matching_post_only_would_cross",
        MatchingBookFull = 6 => "matching_book_full",
        MatchingUnknownOrder = 7 => "matching_unknown_order",
        MatchingAmendNoChange = 8 => "matching_amend_no_change",
        MatchingAmendSizeNotAboveFilled = 9 => "matching_amend_size_not_above_filled",
        MatchingFokNotFillable = 10 => "matching_fok_not_fillable",
        MatchingSelfTradePrevented = 11 => "matching_self_trade_prevented",
        MatchingImmediateRemainder = 12 => "matching_immediate_remainder",
        LedgerInsufficientFunds = 13 => "ledger_insufficient_funds",
        LedgerReservedAccount = 14 => "ledger_reserved_account",
        LedgerUnknownAsset = 15 => "ledger_unknown_asset",
        LedgerAmountInvalid = 16 => "ledger_amount_invalid",
        OrderClientOrderIdInUse = 17 => "order_client_order_id_in_use",
        MarketHalted = 18 => "market_halted",
        MarketCancelOnly = 19 => "market_cancel_only",
        MarketPreOpen = 20 => "market_pre_open",
        MarketCallAuction = 21 => "market_call_auction",
        AuctionPriceOutsideBand = 22 => "auction_price_outside_band",
    }
);

code_enum!(
    /// The life of an order, with OKX's names.
    OrderState {
        Live = 0 => "live",
        PartiallyFilled = 1 => "partially_filled",
        Filled = 2 => "filled",
        Canceled = 3 => "canceled",
    }
);

code_enum!(
    /// The trading phase of an instrument (see `SEMANTICS.md`, Market states). A new
    /// instrument is `Continuous`; every other state forbids some commands, and a command a
    /// state forbids is rejected with the state's reason.
    MarketState {
        Continuous = 0 => "continuous",
        Halted = 1 => "halted",
        CancelOnly = 2 => "cancel_only",
        PreOpen = 3 => "pre_open",
        CallAuction = 4 => "call_auction",
    }
);

impl MarketState {
    /// The reason a command this state forbids is rejected with.
    pub fn forbids(self) -> Reason {
        match self {
            MarketState::Continuous => Reason::None,
            MarketState::Halted => Reason::MarketHalted,
            MarketState::CancelOnly => Reason::MarketCancelOnly,
            MarketState::PreOpen => Reason::MarketPreOpen,
            MarketState::CallAuction => Reason::MarketCallAuction,
        }
    }
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

impl OrderType {
    /// Whether a remainder of this type rests in the book after matching.
    pub fn rests(self) -> bool {
        matches!(self, OrderType::Limit | OrderType::PostOnly)
    }
}
