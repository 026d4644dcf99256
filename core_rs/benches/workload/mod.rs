//! A workload recorded by `bench/run.py`: `PATH` holds raw command records
//! (`wire::CommandRecord`, 80 bytes each) and `PATH.json` the setup (assets, instruments,
//! and how many leading records are setup deposits, applied before timing).

use core_rs::command::{AssetSpec, Command, InstrumentSpec};
use core_rs::wire::{command_records, CommandRecord};
use serde_json::Value;

pub struct Workload {
    pub setup: Value,
    /// Leading records that are setup (deposits), applied before timing.
    pub prefix: usize,
    pub records: Vec<CommandRecord>,
}

pub fn load(path: &str) -> Workload {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let records = command_records(&bytes).expect("whole records");
    let setup: Value =
        serde_json::from_slice(&std::fs::read(format!("{path}.json")).expect("setup json")).expect("json");
    let prefix = setup["prefix_records"].as_u64().expect("prefix_records") as usize;
    Workload { setup, prefix, records }
}

fn field(value: &Value, name: &str) -> u64 {
    value[name].as_u64().unwrap_or_else(|| panic!("setup field {name}"))
}

impl Workload {
    /// The assets and instruments of the setup, as commands.
    pub fn configuration(&self) -> Vec<Command> {
        let assets = self.setup["assets"].as_array().expect("assets").iter().map(|asset| {
            let name = asset["name"].as_str().expect("name").into();
            Command::AddAsset(AssetSpec { name, decimals: field(asset, "decimals") as u8 })
        });
        let instruments = self.setup["instruments"].as_array().expect("instruments").iter().map(|inst| {
            Command::AddInstrument(InstrumentSpec {
                symbol: inst["symbol"].as_str().expect("symbol").into(),
                base_asset: field(inst, "base_asset") as u32,
                quote_asset: field(inst, "quote_asset") as u32,
                lot_units: field(inst, "lot_units"),
                quote_units_per_tick_lot: field(inst, "quote_units_per_tick_lot"),
                min_size_lots: field(inst, "min_size_lots"),
                maker_fee_bps: field(inst, "maker_fee_bps") as u16,
                taker_fee_bps: field(inst, "taker_fee_bps") as u16,
                market_protection_bps: field(inst, "market_protection_bps") as u16,
            })
        });
        assets.chain(instruments).collect()
    }
}
