//! The durable engine's benchmark (issue #3), in one run:
//! - the disk's own `fdatasync` latency (append 96 bytes, sync; the physical limit);
//! - durable throughput and acknowledgement latency at fixed offered loads: command `i` is
//!   planned at `i / rate`; client threads each take every command whose time has come (a
//!   batch), submit it through `DurableEngine::execute_records` and wait for it to be durable;
//!   a command's latency runs from its planned time to its acknowledgement, so a slow fsync
//!   counts against every command queued behind it (no coordinated omission);
//! - recovery: a journal of `--recovery-commands` commands (written without fsync to save
//!   time; recovery reads the same bytes either way) opened from scratch: commands replayed
//!   per second.
//!
//! Output: one JSON object. `cargo bench --bench durable -- [--dir PATH] [--rates R1,R2]
//! [--seconds S] [--clients N] [--recovery-commands N]`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use core_rs::codes::{OrderType, Side, Stp};
use core_rs::command::{AssetSpec, Command, InstrumentSpec, PlaceOrder, NO_CLIENT_ORDER_ID};
use core_rs::durable::{DurableConfig, DurableEngine};
use core_rs::journal::SyncMode;
use core_rs::wire::CommandRecord;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const ACCOUNTS: u64 = 1_000;

#[derive(Debug)]
struct Options {
    dir: PathBuf,
    rates: Vec<u64>,
    seconds: u64,
    clients: usize,
    recovery_commands: u64,
}

fn options() -> Options {
    let mut options = Options {
        dir: std::env::temp_dir(),
        rates: vec![10_000, 100_000, 500_000, 1_000_000, 2_000_000],
        seconds: 3,
        clients: 4,
        recovery_commands: 10_000_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => options.dir = PathBuf::from(value()),
            "--rates" => options.rates = value().split(',').map(|r| r.parse().expect("a rate")).collect(),
            "--seconds" => options.seconds = value().parse().expect("seconds"),
            "--clients" => options.clients = value().parse().expect("clients"),
            "--recovery-commands" => options.recovery_commands = value().parse().expect("a count"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn percentiles(histogram: &Histogram<u64>) -> Value {
    json!({
        "p50": histogram.value_at_quantile(0.50),
        "p99": histogram.value_at_quantile(0.99),
        "p99_9": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
    })
}

fn fdatasync_latency_us(dir: &Path, samples: usize) -> Value {
    let path = dir.join("fdatasync-probe");
    let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&path).expect("probe file");
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..samples {
        file.write_all(&[7u8; 96]).expect("write");
        let started = Instant::now();
        file.sync_data().expect("fdatasync");
        histogram.record(started.elapsed().as_micros() as u64).expect("in range");
    }
    std::fs::remove_file(&path).expect("remove probe");
    percentiles(&histogram)
}

/// An engine with one instrument and funded accounts, in a fresh data directory.
fn open_market(dir: &Path, sync: SyncMode) -> DurableEngine {
    let _ = std::fs::remove_dir_all(dir);
    let mut config = DurableConfig::new(dir);
    config.journal.sync = sync;
    config.snapshot_every_commands = 0;
    let (engine, _) = DurableEngine::open(config).expect("open");
    for name in ["USDT", "BTC"] {
        engine.execute(0, &Command::AddAsset(AssetSpec { name: name.into(), decimals: 8 })).expect("asset");
    }
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
    engine.execute(0, &Command::AddInstrument(spec)).expect("instrument");
    let deposits: Vec<CommandRecord> = (1..=ACCOUNTS)
        .flat_map(|account| [0, 1].map(|asset| Command::Deposit { account, asset, amount_units: 1 << 50 }))
        .map(|command| CommandRecord::from_command(0, &command).expect("a trading command"))
        .collect();
    engine.execute_records(&deposits).expect("deposits");
    engine
}

/// A seeded stream of places around a mid price and cancels of recent orders (ids are
/// guessed from the count of places: most cancels find their order, some miss).
fn workload(commands: usize, seed: u64) -> Vec<CommandRecord> {
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

/// Open-loop run at `rate` commands per second; latency from planned time to durable.
fn offered_load(dir: &Path, rate: u64, seconds: u64, clients: usize) -> Value {
    let commands = workload((rate * seconds) as usize, rate);
    let engine = open_market(dir, SyncMode::Fsync);
    let syncs_before = engine.journal_status().syncs;
    let cursor = AtomicUsize::new(0);
    let histogram = Mutex::new(Histogram::<u64>::new(3).expect("histogram"));
    let planned = |i: usize| Duration::from_nanos((i as u128 * 1_000_000_000 / u128::from(rate)) as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let mut local = Histogram::<u64>::new(3).expect("histogram");
                loop {
                    let elapsed = started.elapsed();
                    let due =
                        ((elapsed.as_nanos() * u128::from(rate) / 1_000_000_000) as usize + 1).min(commands.len());
                    let first = cursor.load(Ordering::Acquire);
                    if first >= commands.len() {
                        break;
                    }
                    if first >= due {
                        let wait = planned(first).saturating_sub(elapsed);
                        std::thread::sleep(wait.min(Duration::from_micros(50)));
                        continue;
                    }
                    if cursor.compare_exchange(first, due, Ordering::AcqRel, Ordering::Acquire).is_err() {
                        continue;
                    }
                    engine.execute_records(&commands[first..due]).expect("durable");
                    let acked = started.elapsed();
                    for i in first..due {
                        local.record(acked.saturating_sub(planned(i)).as_micros() as u64).expect("in range");
                    }
                }
                histogram.lock().expect("histogram lock").add(&local).expect("same bounds");
            });
        }
    });
    let elapsed = started.elapsed();
    let syncs = engine.journal_status().syncs - syncs_before;
    engine.close().expect("close");
    let histogram = histogram.into_inner().expect("histogram");
    json!({
        "offered_per_s": rate,
        "achieved_per_s": (commands.len() as f64 / elapsed.as_secs_f64()).round(),
        "commands": commands.len(),
        "fsyncs": syncs,
        "commands_per_fsync": (commands.len() as f64 / syncs.max(1) as f64 * 10.0).round() / 10.0,
        "ack_latency_us": percentiles(&histogram),
    })
}

/// Writes `commands` commands without fsync, then times a recovery from the journal alone.
fn recovery(dir: &Path, commands: u64) -> Value {
    let engine = open_market(dir, SyncMode::NoFsyncUnsafeBenchmarkOnly);
    let stream = workload(1 << 20, 42);
    let mut written = 0u64;
    while written < commands {
        let chunk = &stream[..((commands - written) as usize).min(stream.len())];
        engine.execute_records(chunk).expect("journal");
        written += chunk.len() as u64;
    }
    let expected = engine.read(core_rs::Engine::state_hash);
    engine.close().expect("close");
    let started = Instant::now();
    let (reopened, report) = DurableEngine::open(DurableConfig::new(dir)).expect("recover");
    let elapsed = started.elapsed();
    assert_eq!(reopened.read(core_rs::Engine::state_hash), expected, "recovery reproduces the state");
    reopened.close().expect("close");
    json!({
        "commands": report.replayed,
        "seconds": elapsed.as_secs_f64(),
        "replayed_per_s": (report.replayed as f64 / elapsed.as_secs_f64()).round(),
    })
}

fn main() {
    let options = options();
    let dir = options.dir.join(format!("pyexchange-durable-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let fsync = fdatasync_latency_us(&dir, 2_000);
    let loads: Vec<Value> = options
        .rates
        .iter()
        .map(|&rate| offered_load(&dir.join("load"), rate, options.seconds, options.clients))
        .collect();
    let recovered = recovery(&dir.join("recovery"), options.recovery_commands);
    std::fs::remove_dir_all(&dir).expect("clean up");
    let report = json!({
        "dir": options.dir,
        "clients": options.clients,
        "fdatasync_latency_us": fsync,
        "offered_loads": loads,
        "recovery": recovered,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
