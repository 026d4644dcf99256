//! The three-zone cluster's benchmark (issue #5), in one run, on loopback, every member in
//! this process (each with its own runtime, journal and TCP server):
//! - committed throughput and commit latency at fixed offered loads, for the three-zone
//!   group and, as the baseline of the same run, the single-zone durable engine: command `i`
//!   is planned at `i / rate`; a dispatcher hands every command whose time has come to the
//!   next free proposer as one batch (one Raft entry, or one `execute_records`), and a
//!   command's latency runs from its planned time until the leader has applied it after a
//!   majority fsync'd it (no coordinated omission);
//! - unplanned failover: the leader is stopped (`--kills` times); the time from the stop to
//!   the first proposal applied by the new leader; the stopped member then restarts on its
//!   data and catches up before the next kill;
//! - planned transfer (`--transfers` times): from asking the leader to hand over until the
//!   new leader applies a proposal.
//!
//! The process-level figures (SIGKILL of a zone process under an order load through the
//! gateways) come from `pyexchange drill`; `bench/failover.py` runs them.
//!
//! Output: one JSON object. `cargo bench --bench replication -- [--dir PATH] [--rates R1,R2]
//! [--seconds S] [--kills N] [--transfers N] [--proposers N] [--checkpoint-interval-ms MS]
//! [--snapshot-every-entries N] [--no-fsync-unsafe-benchmark-only]`. The last is a
//! diagnostic: every journal (the three members' and the single zone's) skips its syncs, so
//! the run shows what is left without the disk (the members in this process share one disk,
//! where zones would each have their own).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod market;
mod workload;

use core_rs::durable::{DurableConfig, DurableEngine};
use core_rs::journal::SyncMode;
use core_rs::replication::node::{NodeConfig, ZoneNode};
use core_rs::replication::{Proposal, ZoneId};
use core_rs::wire::{command_bytes, encode_command, CommandRecord};
use hdrhistogram::Histogram;
use market::Commands;
use serde_json::{json, Value};

const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands in one proposal at most (one Raft entry; one batch of the durable engine).
const BATCH_RECORDS_MAX: usize = 8_192;
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Options {
    dir: PathBuf,
    rates: Vec<u64>,
    seconds: u64,
    kills: usize,
    transfers: usize,
    proposers: usize,
    /// Replicas compare state digests once per this much exchange time (0: never).
    checkpoint_interval_ms: u64,
    snapshot_every_entries: u64,
    sync: SyncMode,
}

fn options() -> Options {
    let mut options = Options {
        dir: std::env::temp_dir().join("pyexchange-bench-replication"),
        rates: vec![50_000, 100_000, 200_000, 400_000],
        seconds: 3,
        kills: 20,
        transfers: 20,
        proposers: 4,
        checkpoint_interval_ms: core_rs::replication::node::CHECKPOINT_INTERVAL_MS_DEFAULT,
        snapshot_every_entries: core_rs::replication::node::SNAPSHOT_EVERY_ENTRIES_DEFAULT,
        sync: SyncMode::Fsync,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => options.dir = PathBuf::from(value()),
            "--rates" => options.rates = value().split(',').map(|r| r.parse().expect("a rate")).collect(),
            "--seconds" => options.seconds = value().parse().expect("seconds"),
            "--kills" => options.kills = value().parse().expect("a count"),
            "--transfers" => options.transfers = value().parse().expect("a count"),
            "--proposers" => options.proposers = value().parse().expect("a count"),
            "--checkpoint-interval-ms" => options.checkpoint_interval_ms = value().parse().expect("ms"),
            "--snapshot-every-entries" => options.snapshot_every_entries = value().parse().expect("a count"),
            "--no-fsync-unsafe-benchmark-only" => options.sync = SyncMode::NoFsyncUnsafeBenchmarkOnly,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn percentiles_us(histogram: &Histogram<u64>) -> Value {
    json!({
        "p50": histogram.value_at_quantile(0.50),
        "p99": histogram.value_at_quantile(0.99),
        "max": histogram.max(),
    })
}

fn percentiles_ms(samples: &mut [f64]) -> Value {
    if samples.is_empty() {
        return json!({"n": 0}); // `--kills 0` or `--transfers 0`
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    json!({"n": samples.len(), "p50": at(0.5), "p99": at(0.99), "max": samples[samples.len() - 1]})
}

/// Three members on free loopback ports under `dir`, configured by the bench's options.
struct Group<'a> {
    dir: PathBuf,
    members: BTreeMap<ZoneId, String>,
    nodes: BTreeMap<ZoneId, ZoneNode>,
    options: &'a Options,
}

impl<'a> Group<'a> {
    fn start(dir: &Path, options: &'a Options) -> Group<'a> {
        let _ = std::fs::remove_dir_all(dir);
        let listeners: Vec<_> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a port")).collect();
        let members = (1..=3).zip(listeners.iter().map(|l| l.local_addr().expect("bound").to_string())).collect();
        drop(listeners);
        let mut group = Group { dir: dir.to_path_buf(), members, nodes: BTreeMap::new(), options };
        for zone in 1..=3 {
            group.start_member(zone);
        }
        group
    }

    fn start_member(&mut self, zone: ZoneId) {
        let mut config = NodeConfig::new(zone, self.dir.join(format!("zone-{zone}")), self.members.clone());
        config.bootstrap = true;
        config.checkpoint_interval_ms = self.options.checkpoint_interval_ms;
        config.sync = self.options.sync;
        config.snapshot_every_entries = self.options.snapshot_every_entries;
        self.nodes.insert(zone, ZoneNode::start(config).expect("a member starts"));
    }

    fn leader(&self) -> ZoneId {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<_> =
                self.nodes.values().filter(|n| n.status().role == "leader").map(ZoneNode::zone).collect();
            if let [leader] = leaders[..] {
                return leader;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Proposes until some leader applies it; the index.
    fn propose(&self, proposal: &Proposal) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.leader();
            if let Ok((index, applied)) = self.nodes[&leader].propose(proposal.clone(), PROPOSE_TIMEOUT) {
                assert_eq!(applied.refused, None);
                return index;
            }
            assert!(Instant::now() < deadline, "no leader applied the proposal");
        }
    }

    fn caught_up(&self, index: u64) {
        for node in self.nodes.values() {
            assert!(node.replica().wait_applied(index, WAIT), "zone {} catches up", node.zone());
        }
    }

    fn shutdown(self) {
        for (_, node) in self.nodes {
            node.shutdown();
        }
    }
}

fn records(batch: &[CommandRecord]) -> Proposal {
    Proposal::Records(bytes::Bytes::copy_from_slice(command_bytes(batch)))
}

fn set_up(group: &Group, commands: &Commands) -> u64 {
    for command in &commands.configuration {
        let mut payload = Vec::new();
        encode_command(0, command, &mut payload);
        group.propose(&Proposal::Configuration(payload.into()));
    }
    group.propose(&records(&commands.setup))
}

/// Open loop at `rate` for `seconds`: command `i` is due at `i / rate`; each of `proposers`
/// threads, when free, takes every command due and not yet taken (at most `BATCH_RECORDS_MAX`)
/// and submits them as one batch, so batches grow with load as a gateway's sequencer does.
fn offered_load(
    commands: &Commands,
    rate: u64,
    seconds: u64,
    proposers: usize,
    submit: &(dyn Fn(&[CommandRecord]) + Sync),
) -> Value {
    let stream = commands.cycled((rate * seconds) as usize);
    let histogram = Mutex::new(Histogram::<u64>::new(3).expect("histogram"));
    let (taken, done) = (Mutex::new(0usize), AtomicUsize::new(0));
    let started = Instant::now();
    let planned = |i: usize| started + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
    std::thread::scope(|scope| {
        for _ in 0..proposers {
            scope.spawn(|| loop {
                let (from, to) = {
                    let mut next = taken.lock().expect("taken");
                    if *next >= stream.len() {
                        return;
                    }
                    let due = ((started.elapsed().as_nanos() * u128::from(rate)) / 1_000_000_000) as usize;
                    let to = due.min(stream.len()).min(*next + BATCH_RECORDS_MAX);
                    if to <= *next {
                        drop(next);
                        std::thread::sleep(
                            planned(*taken.lock().expect("taken")).saturating_duration_since(Instant::now()),
                        );
                        continue;
                    }
                    let from = std::mem::replace(&mut *next, to);
                    (from, to)
                };
                submit(&stream[from..to]);
                let acked = Instant::now();
                let mut histogram = histogram.lock().expect("histogram");
                for i in from..to {
                    let latency = acked.saturating_duration_since(planned(i));
                    histogram.record(latency.as_micros() as u64).expect("in range");
                }
                done.fetch_add(to - from, Ordering::Relaxed);
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let histogram = histogram.into_inner().expect("histogram");
    json!({
        "offered_per_s": rate,
        "achieved_per_s": (done.load(Ordering::Relaxed) as f64 / elapsed).round(),
        "latency_us": percentiles_us(&histogram),
    })
}

fn throughput(options: &Options, commands: &Commands) -> Value {
    let mut rows = Vec::new();
    for &rate in &options.rates {
        let group = Group::start(&options.dir.join("group"), options);
        set_up(&group, commands);
        let leader = group.leader();
        let cluster = offered_load(commands, rate, options.seconds, options.proposers, &|batch| {
            // Stamped with the leader's clock, as the gateway's proposals are.
            group.nodes[&leader].propose_records(batch, PROPOSE_TIMEOUT).expect("the leader applies it");
        });
        group.shutdown();
        let single_dir = options.dir.join("single");
        let _ = std::fs::remove_dir_all(&single_dir);
        let mut config = DurableConfig::new(&single_dir);
        config.journal.sync = options.sync;
        let (durable, _) = DurableEngine::open(config).expect("open");
        for command in &commands.configuration {
            durable.execute(0, command).expect("configuration");
        }
        durable.execute_records(&commands.setup, &mut Vec::new()).expect("setup");
        let single = offered_load(commands, rate, options.seconds, options.proposers, &|batch| {
            durable.execute_records(batch, &mut Vec::new()).expect("durable");
        });
        durable.close().expect("close");
        let ratio =
            cluster["achieved_per_s"].as_f64().unwrap_or(0.0) / single["achieved_per_s"].as_f64().unwrap_or(1.0);
        eprintln!("rate {rate}: three zones {cluster}, one zone {single}");
        rows.push(
            json!({"three_zones": cluster, "one_zone": single, "throughput_ratio": (ratio * 1000.0).round() / 1000.0}),
        );
    }
    Value::Array(rows)
}

/// A small proposal the failover measurements wait on.
fn probe(commands: &Commands) -> Proposal {
    records(&commands.stream[..1])
}

fn failovers(options: &Options, commands: &Commands) -> Value {
    let mut group = Group::start(&options.dir.join("failover"), options);
    let mut index = set_up(&group, commands);
    let mut unplanned = Vec::new();
    for _ in 0..options.kills {
        group.caught_up(index);
        let leader = group.leader();
        let stopped = Instant::now();
        group.nodes.remove(&leader).expect("the leader runs").shutdown();
        index = group.propose(&probe(commands));
        unplanned.push(stopped.elapsed().as_secs_f64() * 1000.0);
        group.start_member(leader);
    }
    let mut planned = Vec::new();
    for n in 0..options.transfers {
        group.caught_up(index);
        let leader = group.leader();
        let to = group.members.keys().copied().filter(|zone| *zone != leader).nth(n % 2).expect("a follower");
        let asked = Instant::now();
        group.nodes[&leader].transfer_leader(to).expect("transfer");
        while group.nodes[&to].status().role != "leader" {
            assert!(asked.elapsed() < WAIT, "zone {to} takes the lead");
            std::thread::sleep(Duration::from_micros(200));
        }
        index = group.propose(&probe(commands));
        planned.push(asked.elapsed().as_secs_f64() * 1000.0);
    }
    group.shutdown();
    json!({
        "unplanned_failover_ms": percentiles_ms(&mut unplanned),
        "planned_transfer_ms": percentiles_ms(&mut planned),
    })
}

fn main() {
    let options = options();
    let commands = Commands::synthetic(1 << 20);
    let throughput = throughput(&options, &commands);
    let failover = failovers(&options, &commands);
    let _ = std::fs::remove_dir_all(&options.dir);
    let report = json!({
        "heartbeat_ms": core_rs::replication::node::HEARTBEAT_MS_DEFAULT,
        "election_timeout_ms": [core_rs::replication::node::ELECTION_TIMEOUT_MIN_MS_DEFAULT,
                                core_rs::replication::node::ELECTION_TIMEOUT_MAX_MS_DEFAULT],
        "proposers": options.proposers,
        "checkpoint_interval_ms": options.checkpoint_interval_ms,
        "fsync": options.sync == SyncMode::Fsync,
        "snapshot_every_entries": options.snapshot_every_entries,
        "throughput": throughput,
        "failover": failover,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
