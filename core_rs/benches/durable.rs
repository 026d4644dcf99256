//! The durable engine's benchmark (issue #3), in one run:
//! - the disk's own `fdatasync` latency (96 bytes appended, or overwritten, then synced);
//! - durable throughput and acknowledgement latency at fixed offered loads: command `i` is
//!   planned at `i / rate`; a dispatcher sequences every command whose time has come (a
//!   batch) and an acknowledger waits for each batch to be durable (see `offered_load`); a
//!   command's latency runs from its planned time to its acknowledgement, so a slow fsync
//!   counts against every command queued behind it (no coordinated omission). Beside it,
//!   the journal's own sync rounds during the load and the latency an ideal group commit
//!   would have had on them (see `on_these_syncs`): the disk's share of the latency. The engine
//!   runs with its defaults (64 MB segments, a snapshot every 1,000,000 commands), primed so
//!   that each load starts in a segment that follows a retirement (see `prime`); each rate
//!   runs twice, segments recycled and, as the baseline, new segment files;
//! - the pause a snapshot costs order entry, with 100,000 and 1,000,000 resting orders;
//! - recovery: a journal of `--recovery-commands` commands (written without fsync to save
//!   time; recovery reads the same bytes either way) opened from scratch: commands replayed
//!   per second.
//!
//! The commands: a workload recorded by `bench/run.py` (`--workload PATH`, e.g. the
//! exchange-core mix; its timestamps are zeroed, since client threads interleave batches), or
//! else a seeded stream of places and cancels over 1,000 accounts.
//!
//! Output: one JSON object. `cargo bench --bench durable -- [--workload PATH] [--dir PATH]
//! [--rates R1,R2] [--seconds S] [--snapshot-every N] [--recovery-commands N] [--recovery-only]`.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod market;
mod timer_slack;
mod workload;

use market::{Commands, ACCOUNTS};
use timer_slack::sleep_on_time;

use core_rs::codes::{OrderType, Side, Stp};
use core_rs::command::{Command, PlaceOrder, NO_CLIENT_ORDER_ID};
use core_rs::durable::{DurableConfig, DurableEngine};
use core_rs::journal::{SyncMode, SyncRound};
use core_rs::wire::CommandRecord;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

#[derive(Debug)]
struct Options {
    dir: PathBuf,
    rates: Vec<u64>,
    seconds: u64,
    /// Snapshots during the offered loads; the engine's default unless told.
    snapshot_every_commands: u64,
    recovery_commands: u64,
    workload: Option<String>,
    /// Only the recovery measurement (for a long journal of the synthetic stream).
    recovery_only: bool,
}

fn options() -> Options {
    let mut options = Options {
        dir: std::env::temp_dir(),
        rates: vec![10_000, 100_000, 500_000, 1_000_000, 2_000_000],
        seconds: 3,
        snapshot_every_commands: DurableConfig::new(".").snapshot_every_commands,
        recovery_commands: 10_000_000,
        workload: None,
        recovery_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => options.dir = PathBuf::from(value()),
            "--rates" => options.rates = value().split(',').map(|r| r.parse().expect("a rate")).collect(),
            "--seconds" => options.seconds = value().parse().expect("seconds"),
            "--snapshot-every" => options.snapshot_every_commands = value().parse().expect("a count"),
            "--recovery-commands" => options.recovery_commands = value().parse().expect("a count"),
            "--workload" => options.workload = Some(value()),
            "--recovery-only" => options.recovery_only = true,
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

/// `fdatasync` after each 96-byte write: appended to a fresh file, or overwriting a file
/// written and synced first (no size change for the filesystem to commit: a recycled segment).
/// Besides the syncs' latency, the acknowledgement latency an ideal group commit would get
/// from the same syncs (see `ideal_group_commit_us`).
fn fdatasync_latency_us(dir: &Path, samples: usize, overwrite: bool) -> Value {
    let path = dir.join("fdatasync-probe");
    let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path).expect("probe file");
    let record = [7u8; 96];
    if overwrite {
        file.write_all_at(&vec![1u8; samples * record.len()], 0).expect("prefill");
        file.sync_all().expect("sync");
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let clock = Instant::now();
    let mut rounds = Vec::with_capacity(samples); // (write started, sync ended), µs on `clock`
    for sample in 0..samples {
        let written = clock.elapsed();
        file.write_all_at(&record, (sample * record.len()) as u64).expect("write");
        let started = Instant::now();
        file.sync_data().expect("fdatasync");
        histogram.record(started.elapsed().as_micros() as u64).expect("in range");
        rounds.push((written.as_micros() as u64, clock.elapsed().as_micros() as u64));
    }
    std::fs::remove_file(&path).expect("remove probe");
    let mut report = percentiles(&histogram);
    report["ideal_group_commit_ack_us"] = percentiles(&ideal_group_commit_us(&rounds));
    report
}

/// The physical limit of group commit on this disk, from a closed loop of write + sync
/// rounds (start of the write, end of the sync): a command arriving while round `i` runs is
/// written by round `i + 1` and acknowledged when its sync ends, so its latency is the rest
/// of round `i` plus all of round `i + 1`, with no CPU cost counted. Arrivals are spread
/// evenly in time (one a microsecond), so a slow sync weighs as long as it lasts, as it does
/// for an engine's commands. With syncs of one constant length the p99 is just under 2× a
/// sync; any spread puts it above.
fn ideal_group_commit_us(rounds: &[(u64, u64)]) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for pair in rounds.windows(2) {
        let (arrivals_from, arrivals_until, acked) = (pair[0].0, pair[1].0, pair[1].1);
        for arrival in arrivals_from..arrivals_until {
            histogram.record(acked - arrival).expect("in range");
        }
    }
    histogram
}

fn ratio(numerator: u64, denominator: &Value) -> f64 {
    let denominator = denominator.as_u64().expect("a count of µs").max(1);
    (numerator as f64 / denominator as f64 * 100.0).round() / 100.0
}

/// A durable engine in a fresh data directory, configured and set up.
fn open_market(dir: &Path, sync: SyncMode, commands: &Commands) -> DurableEngine {
    let mut config = DurableConfig::new(dir);
    config.journal.sync = sync;
    config.snapshot_every_commands = 0;
    open_configured(config, commands)
}

fn open_configured(config: DurableConfig, commands: &Commands) -> DurableEngine {
    let _ = std::fs::remove_dir_all(&config.journal.dir);
    let (engine, _) = DurableEngine::open(config).expect("open");
    for command in &commands.configuration {
        engine.execute(0, command).expect("configuration");
    }
    engine.execute_records(&commands.setup, &mut Vec::new()).expect("setup");
    engine
}

/// Commands executed at a time while priming (see `prime`).
const PRIME_CHUNK_COMMANDS: usize = 1 << 16;
/// Commands available for priming: well past two 64 MB segments of 96-byte records.
const PRIME_COMMANDS_MAX: usize = 3_000_000;
/// The disk's syncs sampled just before each load (well under a second here).
const PROBE_SAMPLES_PER_LOAD: usize = 1_000;

/// Open-loop run at `rate` commands per second, pipelined as a gateway would drive the
/// engine: a dispatcher thread sequences every command whose planned time has come
/// (`sequence_records`, which does not wait), and an acknowledger thread waits for each
/// batch to be durable, in order, and records each command's latency from its planned time.
/// One offered load: `rate` commands per second for `seconds`, a snapshot every
/// `snapshot_every_commands` (0: none), segments recycled or new files.
#[derive(Clone, Copy, Debug)]
struct Load {
    rate: u64,
    seconds: u64,
    snapshot_every_commands: u64,
    recycle_segments: bool,
}

/// The journal runs with its defaults, primed (see `prime`); with
/// `recycle_segments` the segments snapshots retire are overwritten by later rolls, else
/// deleted and every new segment appended to (the baseline).
fn offered_load(dir: &Path, source: &Commands, load: Load) -> Value {
    let Load { rate, seconds, snapshot_every_commands, recycle_segments } = load;
    let all = source.cycled(PRIME_COMMANDS_MAX + (rate * seconds) as usize);
    let mut config = DurableConfig::new(dir);
    config.journal.recycle_segments = recycle_segments;
    config.snapshot_every_commands = snapshot_every_commands;
    let engine = open_configured(config, source);
    let primed = prime(&engine, &all[..PRIME_COMMANDS_MAX]);
    // The disk drifts over minutes here: its syncs measured again just before the load, in
    // the way this load's segments are written (overwritten when recycled, else appended).
    let disk = fdatasync_latency_us(dir, PROBE_SAMPLES_PER_LOAD, recycle_segments);
    let start = engine.durable_position();
    let start_file_bytes = std::fs::metadata(&start.file).expect("the active segment").len();
    let commands = &all[primed..primed + (rate * seconds) as usize];
    let syncs_before = engine.journal_status().syncs;
    let planned = |i: usize| Duration::from_nanos((i as u128 * 1_000_000_000 / u128::from(rate)) as u64);
    // (first command index, end index, last seq) of each batch, in order.
    let (batches, acknowledger_batches) = std::sync::mpsc::channel::<(usize, usize, u64)>();
    sleep_on_time(); // the dispatcher (this thread) sleeps until each command's planned time
    let started = Instant::now();
    let histogram = std::thread::scope(|scope| {
        let acknowledger = scope.spawn(|| {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            for (first, end, last_seq) in acknowledger_batches {
                engine.wait_durable(last_seq).expect("durable");
                let acked = started.elapsed();
                for i in first..end {
                    histogram.record(acked.saturating_sub(planned(i)).as_micros() as u64).expect("in range");
                }
            }
            histogram
        });
        let (mut first, mut events) = (0, Vec::new());
        while first < commands.len() {
            let elapsed = started.elapsed();
            let due = ((elapsed.as_nanos() * u128::from(rate) / 1_000_000_000) as usize + 1).min(commands.len());
            if due <= first {
                std::thread::sleep(planned(first).saturating_sub(elapsed).min(Duration::from_micros(20)));
                continue;
            }
            events.clear();
            let last_seq = engine.sequence_records(&commands[first..due], &mut events).expect("sequenced");
            batches.send((first, due, last_seq)).expect("acknowledger runs");
            first = due;
        }
        drop(batches);
        acknowledger.join().expect("acknowledger")
    });
    let elapsed = started.elapsed();
    let status = engine.journal_status();
    let syncs = status.syncs - syncs_before;
    let rounds: Vec<SyncRound> =
        engine.recent_sync_rounds().into_iter().filter(|round| round.started >= started).collect();
    engine.close().expect("close");
    let (sync_us, ideal_us, commands_in_ideal) = on_these_syncs(&rounds, started, commands.len(), planned);
    json!({
        "segments": if recycle_segments { "recycled" } else { "new files (baseline)" },
        "offered_per_s": rate,
        "snapshot_every_commands": snapshot_every_commands,
        "achieved_per_s": (commands.len() as f64 / elapsed.as_secs_f64()).round(),
        "commands": commands.len(),
        "primed_commands": primed,
        "started_in_a_recycled_segment": start_file_bytes > start.offset,
        "fsyncs": syncs,
        "commands_per_fsync": (commands.len() as f64 / syncs.max(1) as f64 * 10.0).round() / 10.0,
        "sync_latency_us_max": status.sync_latency_us_max,
        "ack_latency_us": percentiles(&histogram),
        "fdatasync_just_before_us": disk,
        "ack_p99_over_fdatasync_p99": ratio(histogram.value_at_quantile(0.99), &disk["p99"]),
        "ack_p99_over_ideal_group_commit_p99": ratio(
            histogram.value_at_quantile(0.99),
            &disk["ideal_group_commit_ack_us"]["p99"]
        ),
        "journal_sync_us": percentiles(&sync_us),
        "ideal_ack_us_on_these_syncs": percentiles(&ideal_us),
        "commands_in_ideal_on_these_syncs": commands_in_ideal,
        "ack_p99_over_ideal_on_these_syncs_p99": ratio(histogram.value_at_quantile(0.99), &json!(ideal_us.value_at_quantile(0.99))),
    })
}

/// The disk's share of a load's acknowledgement latency, from the journal's own sync rounds
/// during the load (write plus `fdatasync` of each group commit): their latencies, and the
/// latency an ideal group commit with no CPU cost would give each command on those very
/// rounds. A command planned at `a` cannot be in a round that started before `a`; the first
/// round that started after it, `k + 1`, could at best have started once both `a` had come
/// and round `k` had ended, and taken as long as it did: ideal acknowledgement at
/// `max(a, end of k) + duration of k + 1`. So the disk's slow syncs stay where they were in
/// time, while any gap the engine left between rounds is not counted against the disk. The
/// engine's own latency can only be higher; how much higher is what the engine adds.
/// Commands planned before the oldest round kept (see `SYNC_ROUNDS_KEPT`) are left out; the
/// count says how many are in.
fn on_these_syncs(
    rounds: &[SyncRound],
    load_started: Instant,
    commands: usize,
    planned: impl Fn(usize) -> Duration,
) -> (Histogram<u64>, Histogram<u64>, usize) {
    let mut sync_us = Histogram::<u64>::new(3).expect("histogram");
    let mut ideal_us = Histogram::<u64>::new(3).expect("histogram");
    for round in rounds {
        sync_us.record((round.ended - round.started).as_micros() as u64).expect("in range");
    }
    let Some(oldest) = rounds.first() else { return (sync_us, ideal_us, 0) };
    let mut next = 0;
    for arrival in (0..commands).map(|i| load_started + planned(i)).filter(|&arrival| arrival >= oldest.started) {
        next += rounds[next..].partition_point(|round| round.started < arrival);
        let round = rounds.get(next).expect("every command was synced by a later round");
        let disk_free = if next == 0 { arrival } else { arrival.max(rounds[next - 1].ended) };
        let acked = disk_free + (round.ended - round.started);
        ideal_us.record((acked - arrival).as_micros() as u64).expect("in range");
    }
    let commands_in_ideal = ideal_us.len() as usize;
    (sync_us, ideal_us, commands_in_ideal)
}

/// Brings the journal to the start of a segment that follows a retirement: executes
/// `commands` in chunks, unpaced, until the journal rolls; takes a snapshot, which retires the
/// first segment (kept as the spare when recycling); executes on until the next roll. A
/// recycling journal then takes the load in a recycled segment, the baseline in a new file.
/// Returns how many commands it executed.
fn prime(engine: &DurableEngine, commands: &[CommandRecord]) -> usize {
    let (mut primed, mut events) = (0, Vec::new());
    let mut chunks = commands.chunks(PRIME_CHUNK_COMMANDS);
    for roll in 0..2 {
        let file = engine.durable_position().file;
        while engine.durable_position().file == file {
            let chunk = chunks.next().unwrap_or_else(|| panic!("{primed} commands did not roll the journal twice"));
            events.clear();
            engine.execute_records(chunk, &mut events).expect("priming");
            primed += chunk.len();
        }
        if roll == 0 {
            engine.snapshot().expect("snapshot");
        }
    }
    primed
}

/// The pause a snapshot costs order entry, on a book of `live_orders` resting orders with
/// client order ids and a full ring of closed orders: a periodic one, which the shadow engine
/// serializes (the batch of one command that starts it, against the batch of one before it);
/// and a copy of the state under the sequencer's lock, as a snapshot takes while the shadow is
/// out of step, into fresh memory, into memory laid out by `Engine::preallocate` and into the
/// spare a copy left. Then the whole snapshot (serialize, restore to hash, write, fsync, rename).
fn snapshot_pause(dir: &Path, live_orders: u64) -> Value {
    let commands = Commands::synthetic(0);
    let closed = core_rs::limits::ORDERS_CLOSED_RETAINED_MAX as u64;
    let mut config = DurableConfig::new(dir);
    config.journal.sync = SyncMode::NoFsyncUnsafeBenchmarkOnly;
    // Due at the second command after the book is built.
    let built = (commands.configuration.len() + commands.setup.len()) as u64 + live_orders + 2 * closed;
    config.snapshot_every_commands = built + 2;
    let engine = open_configured(config, &commands);
    let place = |i: u64, side: Side, price_ticks: u64| {
        let mut client_order_id = NO_CLIENT_ORDER_ID;
        client_order_id[..8].copy_from_slice(&i.to_le_bytes());
        let place = PlaceOrder {
            account: 1 + i % ACCOUNTS,
            instrument: 0,
            side,
            order_type: OrderType::Limit,
            stp: Stp::None,
            price_ticks,
            size_lots: 1 + i % 7,
            client_order_id,
        };
        CommandRecord::from_command(0, &Command::Place(place)).expect("a trading command")
    };
    let resting: Vec<CommandRecord> =
        (0..live_orders)
            .map(|i| {
                if i % 2 == 0 {
                    place(i, Side::Buy, 5_000 - i % 3_000)
                } else {
                    place(i, Side::Sell, 15_000 + i % 3_000)
                }
            })
            .collect();
    for chunk in resting.chunks(1 << 16) {
        engine.execute_records(chunk, &mut Vec::new()).expect("resting orders");
    }
    // Orders placed and canceled at once fill the ring of retained closed orders.
    let first_closed_id = live_orders + 1;
    let churn: Vec<CommandRecord> = (0..closed)
        .flat_map(|i| {
            let cancel = Command::Cancel {
                account: 1 + (live_orders + i) % ACCOUNTS,
                instrument: 0,
                order_id: first_closed_id + i,
            };
            [place(live_orders + i, Side::Buy, 4_000), CommandRecord::from_command(0, &cancel).expect("trading")]
        })
        .collect();
    for chunk in churn.chunks(1 << 16) {
        engine.execute_records(chunk, &mut Vec::new()).expect("closed orders");
    }
    assert_eq!(engine.read(core_rs::Engine::live_orders) as u64, live_orders, "every resting order rests");
    assert_eq!(engine.read(core_rs::Engine::seq), built, "no snapshot due yet");
    let body_bytes = engine.read(|e| e.snapshot().len());
    let one_batch = |i: u64| {
        let started = Instant::now();
        engine.execute_records(&[place(live_orders + closed + i, Side::Buy, 4_000)], &mut Vec::new()).expect("one");
        started.elapsed()
    };
    let (before_shadow_snapshot, shadow_snapshot) = (one_batch(0), one_batch(1));
    let started = Instant::now();
    let copy = engine.read(core_rs::Engine::clone);
    let pause = started.elapsed();
    drop(copy);
    // Into memory laid out by `preallocate`.
    let mut laid_out = core_rs::Engine::default();
    laid_out.preallocate(live_orders as usize);
    let started = Instant::now();
    engine.read(|e| laid_out.clone_from(e));
    let pause_into_laid_out = started.elapsed();
    drop(laid_out);
    // Into the memory of an earlier copy (here a restored engine).
    let mut spare = core_rs::Engine::restore(&engine.read(core_rs::Engine::snapshot)).expect("the body restores");
    let started = Instant::now();
    engine.read(|e| spare.clone_from(e));
    let pause_into_spare = started.elapsed();
    let started = Instant::now();
    let digest = spare.state_digest();
    let digest_elapsed = started.elapsed();
    assert_eq!(digest, engine.read(core_rs::Engine::state_digest), "a copy hashes as its original");
    drop(spare);
    let started = Instant::now();
    engine.snapshot().expect("snapshot");
    let whole = started.elapsed();
    engine.close().expect("close");
    json!({
        "live_orders": live_orders,
        "closed_orders": closed,
        "body_bytes": body_bytes,
        "shadow_snapshot_batch_ms": shadow_snapshot.as_secs_f64() * 1e3,
        "batch_before_ms": before_shadow_snapshot.as_secs_f64() * 1e3,
        "pause_ms": pause.as_secs_f64() * 1e3,
        "pause_into_spare_ms": pause_into_spare.as_secs_f64() * 1e3,
        "pause_into_laid_out_ms": pause_into_laid_out.as_secs_f64() * 1e3,
        "state_digest_ms": digest_elapsed.as_secs_f64() * 1e3,
        "snapshot_total_ms": whole.as_secs_f64() * 1e3,
    })
}

/// Writes `commands` commands without fsync, then times a recovery from the journal alone.
fn recovery(dir: &Path, source: &Commands, commands: u64) -> Value {
    let engine = open_market(dir, SyncMode::Fsync, source);
    let stream = source.cycled(commands as usize);
    for chunk in stream.chunks(1 << 16) {
        engine.execute_records(chunk, &mut Vec::new()).expect("journal");
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
    let source = match &options.workload {
        Some(path) => Commands::recorded(path),
        None => Commands::synthetic((options.recovery_commands as usize).max(1 << 20)),
    };
    if options.recovery_only {
        let recovered = recovery(&dir.join("recovery"), &source, options.recovery_commands);
        std::fs::remove_dir_all(&dir).expect("clean up");
        println!("{}", serde_json::to_string_pretty(&json!({ "recovery": recovered })).expect("json"));
        return;
    }
    let fsync = fdatasync_latency_us(&dir, 2_000, false);
    let fsync_overwrite = fdatasync_latency_us(&dir, 2_000, true);
    // Each rate twice in a row: new segment files (the baseline), then recycled segments.
    let loads: Vec<Value> = options
        .rates
        .iter()
        .flat_map(|&rate| {
            [false, true].map(|recycle_segments| Load {
                rate,
                seconds: options.seconds,
                snapshot_every_commands: options.snapshot_every_commands,
                recycle_segments,
            })
        })
        .map(|load| offered_load(&dir.join("load"), &source, load))
        .collect();
    let recovered = recovery(&dir.join("recovery"), &source, options.recovery_commands);
    std::fs::remove_dir_all(dir.join("recovery")).expect("clean up");
    let pauses: Vec<Value> = [100_000, 1_000_000].map(|live| snapshot_pause(&dir.join("snapshot"), live)).into();
    std::fs::remove_dir_all(&dir).expect("clean up");
    let report = json!({
        "dir": options.dir,
        "workload": options.workload.as_deref().unwrap_or("synthetic places and cancels"),
        "fdatasync_latency_us": fsync,
        "fdatasync_overwrite_latency_us": fsync_overwrite,
        "offered_loads": loads,
        "recovery": recovered,
        "snapshot_pause": pauses,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
