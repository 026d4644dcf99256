//! Shared setup for the engine tests: a small market with funded accounts.
#![allow(dead_code)] // each test crate that includes this module uses a part of it

use core_rs::codes::{OrderType, Side, Stp};
use core_rs::command::{AssetSpec, Command, InstrumentSpec, PlaceOrder};
use core_rs::wire::EventRecord;
use core_rs::Engine;

pub const USDT: u32 = 0;
pub const BTC: u32 = 1;
pub const ETH: u32 = 2;

pub fn apply(engine: &mut Engine, command: &Command) -> Vec<EventRecord> {
    let mut out = Vec::new();
    engine.apply(0, command, &mut out).expect("command applies");
    out
}

/// Two instruments sharing USDT (tick × lot = 10 units, lot = 1000 units, 2/5 bps fees) and
/// `accounts` accounts funded with `funds_units` of every asset.
pub fn market(accounts: u64, funds_units: u64) -> Engine {
    let mut engine = Engine::new();
    for name in ["USDT", "BTC", "ETH"] {
        apply(&mut engine, &Command::AddAsset(AssetSpec { name: name.into(), decimals: 8 }));
    }
    for (symbol, base) in [("BTC-USDT", BTC), ("ETH-USDT", ETH)] {
        apply(&mut engine, &Command::AddInstrument(spot_spec(symbol, base)));
    }
    for account in 1..=accounts {
        for asset in [USDT, BTC, ETH] {
            apply(&mut engine, &Command::Deposit { account, asset, amount_units: funds_units });
        }
    }
    engine
}

/// A spot instrument quoted in USDT: tick × lot = 10 units, lot = 1000 units, 2/5 bps fees.
pub fn spot_spec(symbol: &str, base_asset: u32) -> InstrumentSpec {
    InstrumentSpec {
        symbol: symbol.into(),
        base_asset,
        quote_asset: USDT,
        lot_units: 1_000,
        quote_units_per_tick_lot: 10,
        min_size_lots: 1,
        maker_fee_bps: 2,
        taker_fee_bps: 5,
        market_protection_bps: 500,
    }
}

pub fn limit(account: u64, instrument: u32, side: Side, price_ticks: u64, size_lots: u64) -> Command {
    Command::Place(PlaceOrder {
        account,
        instrument,
        side,
        order_type: OrderType::Limit,
        stp: Stp::CancelMaker,
        price_ticks,
        size_lots,
        client_order_id: [0; 32],
    })
}
