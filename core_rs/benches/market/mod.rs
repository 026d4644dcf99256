//! The commands the engine benchmarks drive: a recorded workload or a seeded synthetic
//! stream, with the configuration and deposits they need.

use core_rs::codes::{OrderType, Side, Stp};
use core_rs::command::{AssetSpec, Command, InstrumentSpec, PlaceOrder, NO_CLIENT_ORDER_ID};
use core_rs::wire::CommandRecord;

use crate::workload;

pub const ACCOUNTS: u64 = 1_000;

/// The commands of a run: configuration, setup records (deposits), and the timed stream.
pub struct Commands {
    pub configuration: Vec<Command>,
    pub setup: Vec<CommandRecord>,
    pub stream: Vec<CommandRecord>,
}

impl Commands {
    #[allow(dead_code)] // a bench that only needs the synthetic stream
    pub fn recorded(path: &str) -> Commands {
        let recorded = workload::load(path);
        let zeroed = |records: &[CommandRecord]| records.iter().map(|r| CommandRecord { ts_ns: 0, ..*r }).collect();
        Commands {
            configuration: recorded.configuration(),
            setup: zeroed(&recorded.records[..recorded.prefix]),
            stream: zeroed(&recorded.records[recorded.prefix..]),
        }
    }

    /// One instrument, 1,000 funded accounts, `commands` places and cancels.
    pub fn synthetic(commands: usize) -> Commands {
        let spec = InstrumentSpec {
            symbol: "BTC-USDT".into(),
            base_asset: 1,
            quote_asset: 0,
            lot_units: 1_000,
            quote_units_per_tick_lot: 10,
            min_size_lots: 1,
            maker_fee_bps: 2,
            taker_fee_bps: 5,
            market_protection_bps: 500,
        };
        let mut configuration: Vec<Command> =
            ["USDT", "BTC"].map(|name| Command::AddAsset(AssetSpec { name: name.into(), decimals: 8 })).into();
        configuration.push(Command::AddInstrument(spec));
        let setup = (1..=ACCOUNTS)
            .flat_map(|account| [0, 1].map(|asset| Command::Deposit { account, asset, amount_units: 1 << 50 }))
            .map(|command| CommandRecord::from_command(0, &command).expect("a trading command"))
            .collect();
        Commands { configuration, setup, stream: synthetic_stream(commands, 42) }
    }

    /// The first `count` commands of the stream, cycling through it as often as needed.
    pub fn cycled(&self, count: usize) -> Vec<CommandRecord> {
        self.stream.iter().cycle().take(count).copied().collect()
    }
}

/// A seeded stream of places around a mid price and cancels of recent orders (ids are
/// guessed from the count of places: most cancels find their order, some miss).
fn synthetic_stream(commands: usize, seed: u64) -> Vec<CommandRecord> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut places = 0u64;
    (0..commands)
        .map(|_| {
            let roll = next();
            let account = 1 + roll % ACCOUNTS;
            let command = if places > 10 && roll % 4 == 0 {
                let order_id = places.saturating_sub(next() % 10).max(1);
                Command::Cancel { account, instrument: 0, order_id }
            } else {
                places += 1;
                let side = if roll & (1 << 20) == 0 { Side::Buy } else { Side::Sell };
                Command::Place(PlaceOrder {
                    account,
                    instrument: 0,
                    side,
                    order_type: OrderType::Limit,
                    stp: Stp::None,
                    price_ticks: 10_000 + next() % 40 - if side == Side::Buy { 22 } else { 18 },
                    size_lots: 1 + next() % 20,
                    client_order_id: NO_CLIENT_ORDER_ID,
                })
            };
            CommandRecord::from_command(0, &command).expect("a trading command")
        })
        .collect()
}
