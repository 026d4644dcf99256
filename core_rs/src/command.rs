//! Commands: the only way engine state changes. Each is applied with the sequence number and
//! timestamp the sequencer gave it; the engine never reads a clock.

use crate::codes::{MarketState, OrderType, Side, Stp};
use crate::limits::CLIENT_ORDER_ID_BYTES;

/// A client order id, zero-padded; all zeros means none was given.
pub type ClientOrderId = [u8; CLIENT_ORDER_ID_BYTES];

/// The client order id of an order placed without one.
pub const NO_CLIENT_ORDER_ID: ClientOrderId = [0; CLIENT_ORDER_ID_BYTES];

/// An asset the ledger can hold, with the number of decimals of its minor unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetSpec {
    pub name: String,
    pub decimals: u8,
}

/// A spot instrument in integer units (see `SEMANTICS.md`, Units).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrumentSpec {
    pub symbol: String,
    pub base_asset: u32,
    pub quote_asset: u32,
    /// Base minor units in one lot.
    pub lot_units: u64,
    /// Quote minor units that one tick of price times one lot is worth.
    pub quote_units_per_tick_lot: u64,
    pub min_size_lots: u64,
    pub maker_fee_bps: u16,
    pub taker_fee_bps: u16,
    pub market_protection_bps: u16,
}

/// A new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaceOrder {
    pub account: u64,
    pub instrument: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub stp: Stp,
    /// The limit price; ignored for market orders.
    pub price_ticks: u64,
    pub size_lots: u64,
    pub client_order_id: ClientOrderId,
}

/// A change of a resting order; zero means unchanged. The size is the new total size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmendOrder {
    pub account: u64,
    pub instrument: u32,
    pub order_id: u64,
    pub new_price_ticks: u64,
    pub new_size_lots: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    AddAsset(AssetSpec),
    AddInstrument(InstrumentSpec),
    Deposit {
        account: u64,
        asset: u32,
        amount_units: u64,
    },
    Place(PlaceOrder),
    Cancel {
        account: u64,
        instrument: u32,
        order_id: u64,
    },
    Amend(AmendOrder),
    /// Cancels every live order of the account, in one instrument or (`None`) in all.
    CancelAll {
        account: u64,
        instrument: Option<u32>,
    },
    /// Moves an instrument to a market state. Entering `Continuous` with a crossed book
    /// (after a call auction) uncrosses it first, if the uncross price lies within
    /// `auction_band_bps` of the reference price; otherwise the state does not change.
    SetMarketState {
        instrument: u32,
        state: MarketState,
        auction_band_bps: u16,
    },
}
