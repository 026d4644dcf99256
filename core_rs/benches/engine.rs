//! The pure-Rust engine benchmark: throughput and open-loop latency on a recorded workload.
//!
//! Input: a workload written by `bench/run.py` (see `workload/mod.rs`).
//! Throughput: the timed records applied through `apply_records` in chunks (decode and
//! validation included), best and median of several fresh runs. Latency: each command has
//! a planned send time at a fixed offered rate; latency is measured from that planned time
//! (not from when the loop got to it), so a stall counts against every command queued
//! behind it — no coordinated omission; the first tenth of the workload is a warm-up. The
//! same open loop then runs again with an empty service (no engine call): what this machine
//! alone adds to a latency at that rate (its interrupts, the hypervisor), the floor under the
//! engine's figures. Each fresh engine allocates and touches its memory before timing
//! (`Engine::preallocate`). Output: one JSON object on stdout.
//!
//! `cargo bench --bench engine -- --workload PATH [--rates 1000000,5000000] [--runs 5]`

use std::time::{Duration, Instant};

mod workload;

use core_rs::command::Command;
use core_rs::wire::EventRecord;
use core_rs::Engine;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use workload::{load, Workload};

const CHUNK_RECORDS: usize = 4_096;
/// Latency runs apply the first 1/10 of the workload unmeasured: the book fills up and
/// caches, branch predictors and page tables warm up, as in a running exchange.
const WARMUP_DIVISOR: usize = 10;
/// Live orders the engine's memory is allocated for before timing (as at a deployment's start).
const PREALLOCATED_LIVE_ORDERS: usize = 1 << 16;

fn fresh_engine(workload: &Workload) -> Engine {
    let mut engine = Engine::new();
    let mut out = Vec::new();
    for command in workload.configuration() {
        engine.apply(0, &command, &mut out).expect("configuration");
    }
    engine.apply_records(&workload.records[..workload.prefix], &mut out).expect("setup records");
    engine.preallocate(PREALLOCATED_LIVE_ORDERS);
    engine
}

/// Seconds to apply the timed records, and how many events they produced.
fn throughput_run(workload: &Workload) -> (f64, usize) {
    let mut engine = fresh_engine(workload);
    let mut out: Vec<EventRecord> = Vec::with_capacity(CHUNK_RECORDS * 8);
    let mut events = 0;
    let start = Instant::now();
    for chunk in workload.records[workload.prefix..].chunks(CHUNK_RECORDS) {
        out.clear();
        engine.apply_records(chunk, &mut out).expect("records apply");
        events += out.len();
    }
    let seconds = start.elapsed().as_secs_f64();
    engine.check_invariants().expect("invariants after the run");
    (seconds, events)
}

fn latency_run(workload: &Workload, rate_per_s: f64) -> Value {
    let mut engine = fresh_engine(workload);
    let records = &workload.records[workload.prefix..];
    let (warmup, timed) = records.split_at(records.len() / WARMUP_DIVISOR);
    let mut out = Vec::new();
    engine.apply_records(warmup, &mut out).expect("warm-up applies");
    let commands: Vec<Command> = timed.iter().map(|r| r.decode().expect("valid record")).collect();
    out = Vec::with_capacity(64);
    let (achieved_per_s, engine_latency) = open_loop(timed.len(), rate_per_s, |i| {
        out.clear();
        engine.apply(timed[i].ts_ns, &commands[i], &mut out).expect("applies");
    });
    let (_, empty_latency) = open_loop(timed.len(), rate_per_s, |i| {
        std::hint::black_box(i);
    });
    let mut report = percentiles(&engine_latency);
    report["offered_per_s"] = json!(rate_per_s);
    report["achieved_per_s"] = json!(achieved_per_s);
    report["empty_service"] = percentiles(&empty_latency);
    report
}

/// Calls `service(i)` for `i` in `0..count` at planned times `rate_per_s` apart, each
/// latency measured from its planned time. Returns the achieved rate and the latencies.
fn open_loop(count: usize, rate_per_s: f64, mut service: impl FnMut(usize)) -> (f64, Histogram<u64>) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let interval_ns = 1e9 / rate_per_s;
    let start = Instant::now();
    for i in 0..count {
        let planned = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        while Instant::now() < planned {
            std::hint::spin_loop();
        }
        service(i);
        let latency_ns = Instant::now().saturating_duration_since(planned).as_nanos() as u64;
        histogram.record(latency_ns.max(1)).expect("in range");
    }
    (count as f64 / start.elapsed().as_secs_f64(), histogram)
}

fn percentiles(histogram: &Histogram<u64>) -> Value {
    json!({
        "p50_ns": histogram.value_at_quantile(0.5),
        "p99_ns": histogram.value_at_quantile(0.99),
        "p999_ns": histogram.value_at_quantile(0.999),
        "p9999_ns": histogram.value_at_quantile(0.9999),
        "max_ns": histogram.max(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let Some(path) = arg("--workload") else {
        // `cargo bench` with no workload (e.g. the whole workspace's benches): nothing to do.
        eprintln!("usage: --workload PATH [--rates R1,R2] [--runs N]; see bench/run.py");
        return;
    };
    let runs: usize = arg("--runs").map_or(5, |r| r.parse().expect("--runs N"));
    let rates: Vec<f64> =
        arg("--rates").map_or_else(Vec::new, |r| r.split(',').map(|x| x.parse().expect("rate")).collect());
    let workload = load(&path);
    let timed = workload.records.len() - workload.prefix;
    let mut seconds: Vec<f64> = Vec::new();
    let mut events = 0;
    for _ in 0..runs {
        let (s, e) = throughput_run(&workload);
        seconds.push(s);
        events = e;
    }
    seconds.sort_by(f64::total_cmp);
    let latency: Vec<Value> = rates.iter().map(|&rate| latency_run(&workload, rate)).collect();
    let report = json!({
        "commands": timed,
        "events": events,
        "runs": runs,
        "best_per_s": timed as f64 / seconds[0],
        "median_per_s": timed as f64 / seconds[seconds.len() / 2],
        "latency": latency,
    });
    println!("{report}");
}
