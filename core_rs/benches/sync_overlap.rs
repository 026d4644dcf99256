//! Whether more than one `fdatasync` in flight beats group commit on the disk under test.
//!
//! A model of the journal's pipeline without the engine: commands of 96 bytes are due at
//! `i / rate`; one writer thread appends every due command to a preallocated, synced file as
//! soon as one of `k` sync threads is free, and hands that thread the write; each sync thread
//! has its own open file description (Linux reports a write-back error once per description).
//! A sync covers every write that completed before it began, so a command is acknowledged by
//! the first sync to end that started after its write. `k = 1` is group commit as the journal
//! does it. Before each run, 1,000 rounds of write + `fdatasync` measure the disk.
//!
//! Output: one JSON object per run on stdout.
//! `cargo bench --bench sync_overlap -- [--dir PATH] [--rates 10000,100000] [--seconds 3]
//! [--repeats 3] [--in-flight 1,2,3]`

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use timer_slack::sleep_on_time;

mod timer_slack;

const COMMAND_BYTES: usize = 96;
const FILE_BYTES: usize = 256 << 20;
const PROBE_ROUNDS: usize = 1_000;

struct Options {
    dir: PathBuf,
    rates: Vec<f64>,
    seconds: f64,
    repeats: usize,
    in_flight: Vec<usize>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let list = |text: String| text.split(',').map(|x| x.parse().expect("a number")).collect::<Vec<f64>>();
    Options {
        dir: arg("--dir").map_or_else(std::env::temp_dir, PathBuf::from),
        rates: arg("--rates").map_or_else(|| vec![10_000.0, 100_000.0], list),
        seconds: arg("--seconds").map_or(3.0, |s| s.parse().expect("seconds")),
        repeats: arg("--repeats").map_or(3, |r| r.parse().expect("a count")),
        in_flight: arg("--in-flight")
            .map_or_else(|| vec![1, 2, 3], |k| list(k).into_iter().map(|x| x as usize).collect()),
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn open(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(path).expect("opening the test file")
}

/// Write + `fdatasync` of one command at a time, overwriting the file's start (µs).
fn probe(path: &Path) -> Histogram<u64> {
    let file = open(path);
    let mut latency_us = histogram();
    for round in 0..PROBE_ROUNDS {
        let started = Instant::now();
        file.write_all_at(&[7u8; COMMAND_BYTES], (round * COMMAND_BYTES) as u64).expect("write");
        file.sync_data().expect("fdatasync");
        latency_us.record(started.elapsed().as_micros() as u64).expect("in range");
    }
    latency_us
}

/// A sync that ended: the last command its write held, when it ended, how long it took (µs).
type SyncEnd = (usize, Instant, u64);

struct Syncs {
    free: Mutex<usize>,
    freed: Condvar,
    ended: Mutex<Vec<SyncEnd>>,
}

/// One run at `rate`: acknowledgement latency (µs from each command's due time), sync latency.
fn run(path: &Path, in_flight: usize, rate: f64, seconds: f64) -> (Histogram<u64>, Histogram<u64>, usize) {
    let commands = (rate * seconds) as usize;
    assert!(commands * COMMAND_BYTES <= FILE_BYTES, "rate x seconds must fit the {FILE_BYTES}-byte test file");
    let syncs = Arc::new(Syncs { free: Mutex::new(in_flight), freed: Condvar::new(), ended: Mutex::new(Vec::new()) });
    let (hand, taken) = mpsc::channel::<usize>();
    let taken = Arc::new(Mutex::new(taken));
    let threads: Vec<_> = (0..in_flight)
        .map(|_| {
            let (file, syncs, taken) = (open(path), Arc::clone(&syncs), Arc::clone(&taken));
            std::thread::spawn(move || loop {
                let next = taken.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok(last_command) = next else { return };
                let started = Instant::now();
                file.sync_data().expect("fdatasync");
                let ended = Instant::now();
                let latency_us = (ended - started).as_micros() as u64;
                syncs.ended.lock().unwrap_or_else(PoisonError::into_inner).push((last_command, ended, latency_us));
                *syncs.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                syncs.freed.notify_one();
            })
        })
        .collect();
    let file = open(path);
    let start = Instant::now() + Duration::from_millis(10);
    let due = |i: usize| start + Duration::from_secs_f64(i as f64 / rate);
    let (mut written, mut offset, mut batch) = (0usize, 0u64, Vec::new());
    while written < commands {
        let now = Instant::now();
        if now < due(written) {
            std::thread::sleep(due(written) - now);
            continue;
        }
        let free = syncs.free.lock().unwrap_or_else(PoisonError::into_inner);
        *syncs.freed.wait_while(free, |free| *free == 0).unwrap_or_else(PoisonError::into_inner) -= 1;
        let arrived = ((start.elapsed().as_secs_f64() * rate) as usize + 1).clamp(written + 1, commands);
        batch.clear();
        batch.resize((arrived - written) * COMMAND_BYTES, 5);
        file.write_all_at(&batch, offset).expect("write");
        offset += batch.len() as u64;
        written = arrived;
        hand.send(arrived - 1).expect("a sync thread");
    }
    drop(hand);
    threads.into_iter().for_each(|t| t.join().expect("sync thread"));
    let mut ended = std::mem::take(&mut *syncs.ended.lock().unwrap_or_else(PoisonError::into_inner));
    ended.sort_by_key(|&(_, at, _)| at);
    let (mut ack_us, mut sync_us) = (histogram(), histogram());
    let mut acknowledged = 0usize;
    for &(last_command, at, latency_us) in &ended {
        sync_us.record(latency_us).expect("in range");
        while acknowledged <= last_command {
            ack_us.record(at.saturating_duration_since(due(acknowledged)).as_micros() as u64).expect("in range");
            acknowledged += 1;
        }
    }
    (ack_us, sync_us, ended.len())
}

fn main() {
    let Options { dir, rates, seconds, repeats, in_flight } = options();
    sleep_on_time(); // the writer (this thread) sleeps until each command's due time
    let path = dir.join("sync_overlap.dat");
    let file = File::create(&path).expect("creating the test file");
    file.write_all_at(&vec![0u8; FILE_BYTES], 0).expect("laying out the test file");
    file.sync_all().expect("syncing the test file");
    for repeat in 0..repeats {
        for &rate in &rates {
            for &k in &in_flight {
                let disk_us = probe(&path);
                let (ack_us, sync_us, sync_count) = run(&path, k, rate, seconds);
                let report = json!({
                    "repeat": repeat, "offered_per_s": rate, "syncs_in_flight_max": k,
                    "probe_fdatasync_us": {"p50": disk_us.value_at_quantile(0.5), "p99": disk_us.value_at_quantile(0.99)},
                    "ack_us": {"p50": ack_us.value_at_quantile(0.5), "p99": ack_us.value_at_quantile(0.99),
                               "p99_9": ack_us.value_at_quantile(0.999), "max": ack_us.max()},
                    "sync_us": {"p50": sync_us.value_at_quantile(0.5), "p99": sync_us.value_at_quantile(0.99)},
                    "commands_per_sync": (rate * seconds) / sync_count as f64,
                    "ack_p99_over_probe_p99": ack_us.value_at_quantile(0.99) as f64 / disk_us.value_at_quantile(0.99) as f64,
                });
                println!("{report}");
            }
        }
    }
    std::fs::remove_file(&path).expect("removing the test file");
}
