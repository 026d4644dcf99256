//! Three zone members in one process on loopback: commands proposed to the leader reach every
//! replica, a killed leader is replaced, a zone that comes back (with its disk or without it)
//! catches up, and every replica ends with the same state hash.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use core_rs::codes::Side;
use core_rs::command::{AssetSpec, Command};
use core_rs::replication::node::{NodeConfig, ProposeError, ZoneNode};
use core_rs::replication::{Proposal, ZoneId};
use core_rs::wire::{encode_command, CommandRecord};

const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(20);
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

fn free_addrs(count: usize) -> Vec<String> {
    let listeners: Vec<_> =
        (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("bound").to_string()).collect()
}

struct Cluster {
    root: tempfile::TempDir,
    members: BTreeMap<ZoneId, String>,
    nodes: BTreeMap<ZoneId, ZoneNode>,
}

impl Cluster {
    fn new() -> Cluster {
        let members: BTreeMap<ZoneId, String> = (1..=3).zip(free_addrs(3)).collect();
        let mut cluster = Cluster { root: tempfile::tempdir().expect("a temp dir"), members, nodes: BTreeMap::new() };
        for zone in 1..=3 {
            cluster.start(zone, true);
        }
        cluster
    }

    fn dir(&self, zone: ZoneId) -> std::path::PathBuf {
        self.root.path().join(format!("zone-{zone}"))
    }

    fn start(&mut self, zone: ZoneId, bootstrap: bool) {
        let mut config = NodeConfig::new(zone, self.dir(zone), self.members.clone());
        config.bootstrap = bootstrap;
        config.snapshot_every_entries = 50;
        config.entries_kept_after_snapshot = 10;
        config.checkpoint_interval_ms = CHECKPOINT_INTERVAL.as_millis() as u64;
        self.nodes.insert(zone, ZoneNode::start(config).expect("the zone starts"));
    }

    fn kill(&mut self, zone: ZoneId) {
        self.nodes.remove(&zone).expect("running").shutdown();
    }

    fn leader(&self) -> ZoneId {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<ZoneId> =
                self.nodes.values().filter(|node| node.status().role == "leader").map(ZoneNode::zone).collect();
            if let [leader] = leaders[..] {
                return leader;
            }
            assert!(Instant::now() < deadline, "no single leader among {:?}", self.nodes.keys());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Proposes to whichever zone leads, retrying through an election.
    fn propose(&self, proposal: &Proposal) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = &self.nodes[&self.leader()];
            match leader.propose(proposal.clone(), PROPOSE_TIMEOUT) {
                Ok((index, applied)) => {
                    assert_eq!(applied.refused, None, "the proposal applies");
                    return index;
                }
                Err(error) => assert!(Instant::now() < deadline, "no leader took the proposal: {error}"),
            }
        }
    }

    /// Waits until every running replica has applied `index`, then returns their digests.
    fn digests_after(&self, index: u64) -> BTreeMap<ZoneId, [u8; 32]> {
        self.nodes
            .iter()
            .map(|(zone, node)| {
                assert!(node.replica().wait_applied(index, WAIT), "zone {zone} applies entry {index}");
                (*zone, node.replica().read(|engine| engine.state_digest()))
            })
            .collect()
    }

    fn assert_agree(&self, index: u64) {
        let digests = self.digests_after(index);
        let first = digests.values().next().expect("a zone");
        assert!(digests.values().all(|digest| digest == first), "replicas differ: {digests:?}");
        for node in self.nodes.values() {
            node.replica().read(|engine| engine.check_invariants()).expect("invariants hold");
            assert_eq!(node.status().diverged, None);
        }
    }
}

fn configuration(command: &Command) -> Proposal {
    let mut payload = Vec::new();
    encode_command(0, command, &mut payload);
    Proposal::Configuration(payload.into())
}

/// Trading records stamped with this machine's clock, as a leader stamps them (checkpoints
/// come with exchange time).
fn records(commands: &[Command]) -> Proposal {
    let ts_ns = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i64;
    let bytes: Vec<u8> = commands
        .iter()
        .flat_map(|command| CommandRecord::from_command(ts_ns, command).expect("a trading command").as_bytes().to_vec())
        .collect();
    Proposal::Records(bytes.into())
}

/// Assets, one instrument and four funded accounts; returns the last index.
fn set_up_market(cluster: &Cluster) -> u64 {
    for name in ["USDT", "BTC"] {
        cluster.propose(&configuration(&Command::AddAsset(AssetSpec { name: name.into(), decimals: 8 })));
    }
    cluster.propose(&configuration(&Command::AddInstrument(common::spot_spec("BTC-USDT", common::BTC))));
    let deposits: Vec<Command> = (1..=4)
        .flat_map(|account| {
            [common::USDT, common::BTC].map(|asset| Command::Deposit {
                account,
                asset,
                amount_units: 1_000_000_000_000,
            })
        })
        .collect();
    cluster.propose(&records(&deposits))
}

/// Crossing orders between the accounts, in batches; returns the last index.
fn trade(cluster: &Cluster, batches: u64, from_price: u64) -> u64 {
    let mut last = 0;
    for batch in 0..batches {
        let commands: Vec<Command> = (0..10)
            .map(|i| {
                let account = 1 + (batch + i) % 4;
                let side = if (batch + i) % 2 == 0 { Side::Buy } else { Side::Sell };
                common::limit(account, 0, side, from_price + (batch * 7 + i * 3) % 20, 1 + i % 3)
            })
            .collect();
        last = cluster.propose(&records(&commands));
    }
    last
}

#[test]
fn replicas_agree_and_a_killed_leader_is_replaced() {
    let mut cluster = Cluster::new();
    set_up_market(&cluster);
    let index = trade(&cluster, 20, 1_000);
    cluster.assert_agree(index);

    let old_leader = cluster.leader();
    let killed = Instant::now();
    cluster.kill(old_leader);
    let index = trade(&cluster, 1, 1_000);
    eprintln!("leader {old_leader} killed: the next proposal applied after {:?}", killed.elapsed());
    assert_ne!(cluster.leader(), old_leader);
    let index = index.max(trade(&cluster, 20, 1_010));
    cluster.assert_agree(index);

    cluster.start(old_leader, true); // with its disk: it is not pristine, so it does not initialize
    let index = trade(&cluster, 5, 1_005);
    cluster.assert_agree(index);
}

#[test]
fn a_follower_is_told_who_leads() {
    let cluster = Cluster::new();
    set_up_market(&cluster);
    let leader = cluster.leader();
    let follower = cluster.nodes.keys().copied().find(|zone| *zone != leader).expect("a follower");
    let refused = cluster.nodes[&follower].propose(records(&[]), PROPOSE_TIMEOUT);
    assert_eq!(refused, Err(ProposeError::NotLeader { leader: Some((leader, cluster.members[&leader].clone())) }));
}

#[test]
fn a_zone_that_lost_its_disk_catches_up_by_snapshot() {
    let mut cluster = Cluster::new();
    set_up_market(&cluster);
    let index = trade(&cluster, 10, 1_000);
    cluster.assert_agree(index);
    let leader = cluster.leader();
    let follower = cluster.nodes.keys().copied().find(|zone| *zone != leader).expect("a follower");
    cluster.kill(follower);
    // Past the snapshot interval, so the leader's log no longer starts at the beginning.
    let index = trade(&cluster, 120, 1_000);
    let leader_status = cluster.nodes[&cluster.leader()].status();
    assert!(leader_status.snapshot_index.is_some(), "the leader took a snapshot: {leader_status:?}");
    std::fs::remove_dir_all(cluster.dir(follower)).expect("the follower's disk is wiped");
    assert!(!Path::new(&cluster.dir(follower)).exists());
    cluster.start(follower, false);
    let index = index.max(trade(&cluster, 5, 1_003));
    cluster.assert_agree(index);
    let rejoined = cluster.nodes[&follower].status();
    assert!(rejoined.snapshot_index.is_some(), "the wiped zone installed a snapshot: {rejoined:?}");
}

/// `probe()` once it gives something, or None after `WAIT`.
fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_checkpoint_that_differs_marks_the_replicas_diverged_and_names_the_entry() {
    let cluster = Cluster::new();
    set_up_market(&cluster);
    let index = trade(&cluster, 12, 1_000); // the first trades start a checkpoint period
    cluster.assert_agree(index);
    // Digests are computed off the apply path: the leader's is there a moment later.
    let leader = &cluster.nodes[&cluster.leader()];
    let checkpoint = eventually(|| leader.replica().newest_checkpoint()).expect("a checkpoint");
    let mut wrong = checkpoint.1;
    wrong[0] ^= 1;
    let index = cluster.propose(&Proposal::Checkpoint { index: checkpoint.0, state_digest: wrong });
    for node in cluster.nodes.values() {
        assert!(node.replica().wait_applied(index, WAIT));
        // A replica whose own digest was still being computed compares once it is.
        let diverged = eventually(|| node.status().diverged).expect("the replica reports the divergence");
        assert!(diverged.contains(&format!("zone {} diverged", node.zone())), "{diverged}");
        assert!(diverged.contains(&format!("at entry {}", checkpoint.0)), "{diverged}");
    }
}

#[test]
fn every_replica_checks_the_leaders_checkpoints() {
    let cluster = Cluster::new();
    set_up_market(&cluster);
    trade(&cluster, 25, 1_000);
    // Entries are stamped with the clock: one proposed after a whole period's pause starts a
    // checkpoint period of its own, whatever the machine's speed, and the leader proposes its
    // digest for it a moment later.
    std::thread::sleep(2 * CHECKPOINT_INTERVAL);
    let index = trade(&cluster, 1, 1_000);
    cluster.assert_agree(index);
    let proposed = eventually(|| {
        let last = cluster.nodes[&cluster.leader()].status().last_log_index.expect("a log");
        (last > index).then_some(last)
    })
    .expect("the leader proposed the digest of the checkpoint the last trade started");
    cluster.assert_agree(proposed); // agreeing replicas stay clean
}
