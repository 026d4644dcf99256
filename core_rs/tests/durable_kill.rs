//! A durable engine SIGKILLed mid-stream, again and again, on small segments that snapshots
//! retire and later rolls recycle: after every kill, recovery must hold every acknowledged
//! command, and its state must equal an in-memory engine fed the same commands.
//!
//! The test binary is its own child (`--child DIR`): it opens the engine on DIR and executes
//! the commands of a seeded stream from where the recovered engine stands, printing each
//! acknowledged seq. Command `seq` is a function of `seq` alone, so the parent knows what every
//! journaled command must be without reading the journal. `DURABLE_KILL_ITERATIONS` sets the
//! kills (default 5); `DURABLE_KILL_SEED` the seed.

mod common;
#[path = "journal_support/mod.rs"]
mod journal_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use common::{limit, spot_spec, BTC, ETH, USDT};
use core_rs::codes::{OrderType, Side};
use core_rs::command::{AssetSpec, Command};
use core_rs::durable::{DurableConfig, DurableEngine};
use core_rs::Engine;
use journal_support::Rng;

/// About 80 records a segment: a life of a few hundred commands rolls several times.
const SEGMENT_BYTES: u64 = 8 << 10;
const SNAPSHOT_EVERY_COMMANDS: u64 = 150;
const ACCOUNTS: u64 = 20;
/// The market: 3 assets, 2 instruments, then every account funded in every asset.
const SETUP_COMMANDS: u64 = 5 + ACCOUNTS * 3;
const ACKS_BEFORE_KILL_MIN: u64 = 30;
const ACKS_BEFORE_KILL_MAX: u64 = 600;
/// A command takes about one fsync here; the kill lands up to a few commands after the last ack.
const KILL_DELAY_US_MAX: u64 = 3_000;
/// Kills past the requested ones while none has landed in a recycled segment.
const EXTRA_KILLS_MAX: u64 = 40;

fn config(dir: &Path) -> DurableConfig {
    let mut config = DurableConfig::new(dir);
    config.journal.segment_bytes = SEGMENT_BYTES;
    config.journal.recycle_segments = true;
    config.snapshot_every_commands = SNAPSHOT_EVERY_COMMANDS;
    config
}

/// The command journaled with `seq` (and its timestamp, `seq` ns).
fn command(seq: u64) -> Command {
    let assets = ["USDT", "BTC", "ETH"];
    match seq {
        1..=3 => Command::AddAsset(AssetSpec { name: assets[seq as usize - 1].into(), decimals: 8 }),
        4 => Command::AddInstrument(spot_spec("BTC-USDT", BTC)),
        5 => Command::AddInstrument(spot_spec("ETH-USDT", ETH)),
        6..=SETUP_COMMANDS => {
            let n = seq - 6;
            Command::Deposit { account: 1 + n / 3, asset: [USDT, BTC, ETH][(n % 3) as usize], amount_units: 1 << 50 }
        }
        _ => {
            // Prices around 1,000 ticks on both sides, so about half the orders trade.
            let mut rng = Rng(seq);
            let side = if rng.below(2) == 0 { Side::Buy } else { Side::Sell };
            let mut place =
                limit(1 + rng.below(ACCOUNTS), rng.below(2) as u32, side, 990 + rng.below(21), 1 + rng.below(5));
            if let Command::Place(order) = &mut place {
                if rng.below(5) == 0 {
                    order.order_type = OrderType::Ioc;
                }
            }
            place
        }
    }
}

fn child(dir: &Path) {
    let (engine, _) = DurableEngine::open(config(dir)).expect("the child opens the engine");
    let mut seq = engine.read(Engine::seq) + 1;
    loop {
        engine.execute(seq as i64, &command(seq)).expect("executed and durable");
        assert_eq!(engine.read(Engine::seq), seq, "the engine sequenced the command elsewhere");
        println!("acked {seq}");
        seq += 1;
    }
}

/// Runs a child until it acknowledged `acks` commands, then SIGKILLs it `delay` later (mid-way
/// through a later command, a roll or a snapshot); the highest seq it acknowledged.
fn run_and_kill(dir: &Path, acks: u64, delay: Duration) -> u64 {
    let mut process = Process::new(std::env::current_exe().expect("the test binary"))
        .arg("--child")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the child starts");
    let mut lines = BufReader::new(process.stdout.take().expect("piped")).lines();
    let mut acked = 0;
    for _ in 0..acks {
        let line = lines.next().expect("the child acknowledges until killed").expect("a line");
        acked = line.strip_prefix("acked ").and_then(|s| s.parse().ok()).expect("an acked seq");
    }
    std::thread::sleep(delay);
    process.kill().expect("SIGKILL");
    process.wait().expect("reaped");
    acked
}

/// Recovers `dir` and checks it against the acknowledgements and an in-memory replay; the
/// recovered seq, and whether the journal's last segment was a recycled one (its file runs
/// past the records).
fn check_recovered(dir: &Path, acked: u64) -> (u64, bool) {
    let (engine, report) = DurableEngine::open(config(dir)).expect("recovery");
    let seq = engine.read(Engine::seq);
    assert!(seq >= acked, "acknowledged seq {acked} lost: recovered to {seq} ({report:?})");
    let mut replica = Engine::new();
    let mut events = Vec::new();
    for s in 1..=seq {
        replica.apply(s as i64, &command(s), &mut events).expect("the stream applies");
    }
    assert_eq!(engine.read(Engine::state_hash), replica.state_hash(), "recovered state differs from the replay");
    engine.read(Engine::check_invariants).expect("invariants hold after recovery");
    let position = engine.durable_position();
    let recycled = std::fs::metadata(&position.file).expect("the active segment").len() > position.offset;
    engine.close().expect("close");
    (seq, recycled)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = args.as_slice() {
        if flag == "--child" {
            return child(Path::new(dir));
        }
    }
    // `cargo test FILTER` passes FILTER on; run unless it names something else.
    let name = "kill_recycled_segments_lose_nothing";
    if args.iter().skip(1).any(|arg| !arg.starts_with('-') && !name.contains(arg.as_str())) {
        return;
    }
    let iterations: u64 = std::env::var("DURABLE_KILL_ITERATIONS").map_or(5, |v| v.parse().expect("a count"));
    let seed: u64 = std::env::var("DURABLE_KILL_SEED").map_or(20261122, |v| v.parse().expect("a seed"));
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut seq, mut recycled_lives, mut iteration) = (0, 0, 0);
    // A third to a half of the kills land in a recycled segment, so a short run may have none: it
    // then goes on until one does (the point of the test), within a bound.
    while iteration < iterations || (recycled_lives == 0 && iteration < iterations + EXTRA_KILLS_MAX) {
        let acks = ACKS_BEFORE_KILL_MIN + rng.below(ACKS_BEFORE_KILL_MAX - ACKS_BEFORE_KILL_MIN);
        let delay = Duration::from_micros(rng.below(KILL_DELAY_US_MAX));
        let acked = run_and_kill(dir.path(), acks, delay);
        assert!(acked > seq, "iteration {iteration}: the child acknowledged nothing new");
        let recycled;
        (seq, recycled) = check_recovered(dir.path(), acked);
        recycled_lives += u64::from(recycled);
        println!("{name}: kill {iteration}: acked {acked}, recovered {seq}, in a recycled segment: {recycled}");
        iteration += 1;
    }
    assert!(recycled_lives > 0, "no kill landed in a recycled segment; the test proves nothing about them");
    println!("test {name} ... ok ({iteration} kills, {recycled_lives} in recycled segments)");
}
