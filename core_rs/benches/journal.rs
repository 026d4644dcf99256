//! The journal benchmark: what the disk's `fdatasync` costs, and what group commit makes of it.
//!
//! - `fdatasync`: append 128 bytes to a file and `sync_data`, one at a time, as the journal
//!   does for a lone record; latency percentiles from an HdrHistogram (µs).
//! - Journal throughput, each in a fresh journal of 80-byte payloads:
//!   `lone_waiter` appends one record and waits for it, again and again (the latency one
//!   client sees); `big_appender` appends as fast as it can and waits once at the end;
//!   `bursts` appends bursts of 1,000 and waits for each; `threads_N` has N threads each
//!   appending one record and waiting for it (append-to-durable latency per record);
//!   `threads_16_bursts_100` has 16 threads each appending 100 and waiting for the last.
//!   `big_appender_no_fsync` is the same without syncing. It is not a ceiling: a flusher that
//!   never waits for the disk takes the lock for tiny batches as fast as it can, so it shows
//!   what appender/flusher contention costs rather than what the disk does.
//! - `read_from`: streaming the big appender's journal back, records per second.
//!
//! Output: one JSON object on stdout. `cargo bench --bench journal -- [--dir PATH] [--quick]`
//! (`--dir` on the disk to measure; default the system temp directory).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use core_rs::journal::{read_from, recover, JournalConfig, JournalWriter, SyncMode};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const PAYLOAD_BYTES: usize = 80;
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Options {
    dir: PathBuf,
    quick: bool,
}

fn options() -> Options {
    let mut options = Options { dir: std::env::temp_dir(), quick: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => options.dir = PathBuf::from(args.next().expect("--dir PATH")),
            "--quick" => options.quick = true,
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    options
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

fn percentiles_us(histogram: &Histogram<u64>) -> Value {
    json!({
        "count": histogram.len(),
        "p50": histogram.value_at_quantile(0.50),
        "p99": histogram.value_at_quantile(0.99),
        "p99_9": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
    })
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX).max(1)
}

fn fdatasync_latency(dir: &Path, iterations: usize) -> Value {
    use std::io::Write;
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let mut latency = histogram();
    let block = [0x5au8; 128];
    for iteration in 0..iterations + iterations / 10 {
        let started = Instant::now();
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        if iteration >= iterations / 10 {
            latency.record(elapsed_us(started)).expect("record");
        }
    }
    drop(file);
    std::fs::remove_file(&path).expect("remove probe");
    percentiles_us(&latency)
}

fn open_writer(dir: &Path, sync: SyncMode) -> JournalWriter {
    let mut config = JournalConfig::new(dir);
    config.sync = sync;
    JournalWriter::open(config, &recover(dir).expect("recover"), 1).expect("open")
}

fn summary(writer: JournalWriter, records: u64, started: Instant, latency: Option<&Histogram<u64>>) -> Value {
    let seconds = started.elapsed().as_secs_f64();
    let status = writer.status();
    writer.close().expect("close");
    let mut out = json!({
        "records": records,
        "seconds": seconds,
        "records_per_s": (records as f64 / seconds).round(),
        "syncs": status.syncs,
        "records_per_sync": (records as f64 / status.syncs.max(1) as f64 * 10.0).round() / 10.0,
    });
    if let Some(latency) = latency {
        out["append_to_durable_us"] = percentiles_us(latency);
    }
    out
}

fn lone_waiter(dir: &Path, records: u64) -> Value {
    let writer = open_writer(dir, SyncMode::Fsync);
    let payload = [7u8; PAYLOAD_BYTES];
    let mut latency = histogram();
    let started = Instant::now();
    for seq in 1..=records {
        let appended = Instant::now();
        writer.append(seq, &payload).expect("append");
        writer.wait_durable(seq, WAIT).expect("durable");
        latency.record(elapsed_us(appended)).expect("record");
    }
    summary(writer, records, started, Some(&latency))
}

fn big_appender(dir: &Path, records: u64, burst: u64, sync: SyncMode) -> Value {
    let writer = open_writer(dir, sync);
    let payload = [7u8; PAYLOAD_BYTES];
    let started = Instant::now();
    for seq in 1..=records {
        writer.append(seq, &payload).expect("append");
        if seq % burst == 0 {
            writer.wait_durable(seq, WAIT).expect("durable");
        }
    }
    writer.wait_durable(records, WAIT).expect("durable");
    summary(writer, records, started, None)
}

/// `threads` threads each appending `burst` records and waiting for the last, until `duration`.
fn threads(dir: &Path, threads: usize, burst: u64, duration: Duration) -> Value {
    let writer = Arc::new(open_writer(dir, SyncMode::Fsync));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (writer, stop, start) = (Arc::clone(&writer), Arc::clone(&stop), Arc::clone(&start));
            std::thread::spawn(move || {
                let payload = [7u8; PAYLOAD_BYTES];
                let mut latency = histogram();
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let appended = Instant::now();
                    let mut seq = 0;
                    for _ in 0..burst {
                        seq = writer.append_next(&payload).expect("append");
                    }
                    writer.wait_durable(seq, WAIT).expect("durable");
                    latency.record(elapsed_us(appended)).expect("record");
                }
                latency
            })
        })
        .collect();
    start.wait();
    let started = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut latency = histogram();
    for handle in handles {
        latency.add(handle.join().expect("thread")).expect("merge");
    }
    let writer = Arc::into_inner(writer).expect("sole owner");
    let records = writer.durable_seq();
    summary(writer, records, started, Some(&latency))
}

fn read_back(dir: &Path) -> Value {
    let started = Instant::now();
    let mut bytes = 0u64;
    let records = read_from(dir, 0, |_, payload, _| {
        bytes += payload.len() as u64;
        Ok::<(), ()>(())
    })
    .expect("read");
    let seconds = started.elapsed().as_secs_f64();
    json!({ "records": records, "bytes": bytes, "seconds": seconds, "records_per_s": (records as f64 / seconds).round() })
}

fn fresh(base: &Path) -> tempfile::TempDir {
    tempfile::tempdir_in(base).expect("tempdir")
}

fn main() {
    let options = options();
    let scale = if options.quick { 10 } else { 1 };
    let run_for = Duration::from_millis(if options.quick { 300 } else { 2_000 });
    let mut results = serde_json::Map::new();
    results.insert("dir".into(), json!(options.dir.display().to_string()));
    results.insert("payload_bytes".into(), json!(PAYLOAD_BYTES));
    results.insert("fdatasync_us".into(), fdatasync_latency(&options.dir, 3_000 / scale));
    results.insert("lone_waiter".into(), lone_waiter(fresh(&options.dir).path(), 2_000 / scale as u64));
    let big = fresh(&options.dir);
    let big_records = 2_000_000 / scale as u64;
    results.insert("big_appender".into(), big_appender(big.path(), big_records, u64::MAX, SyncMode::Fsync));
    results.insert("read_from".into(), read_back(big.path()));
    drop(big);
    results.insert(
        "bursts_1000".into(),
        big_appender(fresh(&options.dir).path(), big_records / 4, 1_000, SyncMode::Fsync),
    );
    for count in [4, 16, 64] {
        results.insert(format!("threads_{count}"), threads(fresh(&options.dir).path(), count, 1, run_for));
    }
    results.insert("threads_16_bursts_100".into(), threads(fresh(&options.dir).path(), 16, 100, run_for));
    let ceiling = big_appender(fresh(&options.dir).path(), big_records, u64::MAX, SyncMode::NoFsyncUnsafeBenchmarkOnly);
    results.insert("big_appender_no_fsync".into(), ceiling);
    println!("{}", serde_json::to_string_pretty(&Value::Object(results)).expect("json"));
}
