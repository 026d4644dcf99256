//! One zone's member of a Raft group: its runtime, its Raft, its RPC server, and blocking
//! calls for callers outside the runtime (the Python binding, tests, benchmarks).
//!
//! Rules it keeps:
//! - Only the leader proposes. It stamps trading records with its clock (never going back
//!   while it leads); apply clamps timestamps again, so a new leader whose clock is behind
//!   cannot make time go back.
//! - A proposal's caller learns one of three things: applied (with the events), not leader
//!   (nothing was appended here: retrying elsewhere is safe), or unknown (appended, but the
//!   leader changed or the deadline passed before it was applied: it may yet commit, so a
//!   retry must be idempotent, which `client_order_id` makes it).
//! - A member that starts with an empty disk and is not bootstrapping the group waits two
//!   election timeouts before it answers any vote: a vote it gave before losing its disk
//!   has then expired with its term, so it cannot vote twice in one term (no split brain).
//! - Replicas take a checkpoint in each `checkpoint_interval_ms` of exchange time; the leader
//!   proposes its newest checkpoint digest every `checkpoint_interval_ms` of its clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::Instant;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};

use super::log_store::LogStore;
use super::network::{serve, NetworkFactory};
use super::state_machine::{Replica, StateMachine};
use super::{Applied, Proposal, Raft, ZoneId};
use crate::journal::{JournalConfig, SyncMode};
use crate::wire::{command_bytes, CommandRecord};

/// Defaults for zones of one region: heartbeats in tens of ms, elections in a few hundred.
pub const HEARTBEAT_MS_DEFAULT: u64 = 30;
pub const ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 150;
pub const ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 300;
/// Entries between snapshots, and entries kept in the log behind a snapshot (so a follower a
/// little behind catches up from the log rather than by a snapshot).
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 20_000;
pub const ENTRIES_KEPT_AFTER_SNAPSHOT_DEFAULT: u64 = 5_000;
/// Entries between state digests compared across replicas, and how often the leader sends its.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Entries sent in one AppendEntries: each entry is a batch of commands already.
const PAYLOAD_ENTRIES_MAX: u64 = 64;

/// How one member runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub zone: ZoneId,
    pub dir: PathBuf,
    /// Where this member listens for the other zones.
    pub listen_addr: String,
    /// Every member's address as the group records it (this one's included).
    pub members: BTreeMap<ZoneId, String>,
    /// Addresses this member dials instead of the recorded ones (a fault-injecting proxy).
    pub dial: BTreeMap<ZoneId, String>,
    /// Set when the group is created: an empty member then initializes it.
    pub bootstrap: bool,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub entries_kept_after_snapshot: u64,
    pub checkpoint_interval_ms: u64,
    pub sync: SyncMode,
    /// Queue what each applied entry did from the start (see `Replica::take_applied`).
    pub follow: bool,
}

impl NodeConfig {
    pub fn new(zone: ZoneId, dir: impl Into<PathBuf>, members: BTreeMap<ZoneId, String>) -> NodeConfig {
        let listen_addr = members.get(&zone).cloned().unwrap_or_default();
        NodeConfig {
            zone,
            dir: dir.into(),
            listen_addr,
            members,
            dial: BTreeMap::new(),
            bootstrap: false,
            heartbeat_ms: HEARTBEAT_MS_DEFAULT,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            entries_kept_after_snapshot: ENTRIES_KEPT_AFTER_SNAPSHOT_DEFAULT,
            checkpoint_interval_ms: CHECKPOINT_INTERVAL_MS_DEFAULT,
            sync: SyncMode::Fsync,
            follow: false,
        }
    }

    fn raft_config(&self) -> Result<Config, String> {
        let config = Config {
            cluster_name: "pyexchange".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            // A member back from a pause or a partition must not depose a healthy leader.
            enable_pre_vote: Some(true),
            max_payload_entries: PAYLOAD_ENTRIES_MAX,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.entries_kept_after_snapshot,
            ..Config::default()
        };
        config.validate().map_err(|e| format!("raft configuration: {e}"))
    }
}

/// Why a proposal was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Nothing was appended here; the leader, if known (id and address).
    NotLeader { leader: Option<(ZoneId, String)> },
    /// Appended, then the leader changed or the deadline passed: it may still commit.
    Unknown { reason: String },
    /// The member stopped (a storage error, or shut down).
    Stopped { reason: String },
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some((zone, addr)) } => {
                write!(f, "not the leader; zone {zone} ({addr}) is")
            }
            ProposeError::NotLeader { leader: None } => write!(f, "not the leader, and no leader is known (election)"),
            ProposeError::Unknown { reason } => write!(f, "outcome unknown: {reason}"),
            ProposeError::Stopped { reason } => write!(f, "this zone's replica stopped: {reason}"),
        }
    }
}

/// A member's view of its group at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub zone: ZoneId,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<ZoneId>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// On the leader: each member's last matched index.
    pub matched: BTreeMap<ZoneId, Option<u64>>,
    /// On the leader: ms since a quorum last acknowledged it.
    pub quorum_ack_ms_ago: Option<u64>,
    pub diverged: Option<String>,
    pub stopped: Option<String>,
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// One zone's running member.
#[derive(Debug)]
pub struct ZoneNode {
    config: NodeConfig,
    runtime: tokio::runtime::Runtime,
    raft: Raft,
    replica: Arc<Replica>,
    /// The leader's clock for stamping records: never goes back.
    last_ts_ns: Mutex<i64>,
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl ZoneNode {
    /// Opens the member's data directory, starts its Raft and serves the other zones.
    pub fn start(config: NodeConfig) -> Result<ZoneNode, String> {
        let raft_config = Arc::new(config.raft_config()?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("zone-{}", config.zone))
            .enable_all()
            .build()
            .map_err(|e| format!("starting the runtime: {e}"))?;
        std::fs::create_dir_all(&config.dir).map_err(|e| format!("creating {}: {e}", config.dir.display()))?;
        let mut journal = JournalConfig::new(&config.dir);
        journal.sync = config.sync;
        let state_machine = StateMachine::open(config.zone, &config.dir, config.checkpoint_interval_ms, config.follow)
            .map_err(|e| format!("opening the replica in {}: {e}", config.dir.display()))?;
        let replica = Arc::clone(state_machine.replica());
        let (raft, pristine) = runtime.block_on(async {
            let log_store = LogStore::open(journal).map_err(|e| format!("opening the log: {e}"))?;
            let network = NetworkFactory::new(config.dial.clone());
            let raft = Raft::new(config.zone, raft_config, network, log_store, state_machine)
                .await
                .map_err(|e| format!("starting raft: {e}"))?;
            let initialized = raft.is_initialized().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((raft, !initialized))
        })?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&config.listen_addr))
            .map_err(|e| format!("listening on {}: {e}", config.listen_addr))?;
        if pristine && config.bootstrap {
            let members: BTreeMap<ZoneId, BasicNode> =
                config.members.iter().map(|(zone, addr)| (*zone, BasicNode { addr: addr.clone() })).collect();
            // Every member of a new group initializes it alike; the first to be elected wins.
            let _ = runtime.block_on(raft.initialize(members));
        }
        let quarantine = if pristine && !config.bootstrap {
            Duration::from_millis(2 * config.election_timeout_max_ms)
        } else {
            Duration::ZERO
        };
        let server_raft = raft.clone();
        runtime.spawn(async move {
            tokio::time::sleep(quarantine).await;
            serve(listener, server_raft).await;
        });
        runtime.spawn(propose_checkpoints(raft.clone(), Arc::clone(&replica), config.checkpoint_interval_ms));
        Ok(ZoneNode { config, runtime, raft, replica, last_ts_ns: Mutex::new(0) })
    }

    pub fn zone(&self) -> ZoneId {
        self.config.zone
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// Proposes trading records, stamped with this leader's clock, as one entry and waits
    /// until they are applied or `timeout` passes. Returns the entry's index and what applying
    /// it gave.
    pub fn propose_records(
        &self,
        records: &[CommandRecord],
        timeout: Duration,
    ) -> Result<(u64, Applied), ProposeError> {
        let mut records = records.to_vec();
        self.stamp(&mut records);
        self.propose(Proposal::Records(bytes::Bytes::copy_from_slice(command_bytes(&records))), timeout)
    }

    fn stamp(&self, records: &mut [CommandRecord]) {
        let mut last = self.last_ts_ns.lock().unwrap_or_else(PoisonError::into_inner);
        let ts_ns = now_ns().max(*last);
        *last = ts_ns;
        for record in records {
            record.ts_ns = ts_ns;
        }
    }

    /// Proposes an entry and waits until it is applied or `timeout` passes.
    pub fn propose(&self, proposal: Proposal, timeout: Duration) -> Result<(u64, Applied), ProposeError> {
        let raft = self.raft.clone();
        let outcome =
            self.runtime.block_on(async move { tokio::time::timeout(timeout, raft.client_write(proposal)).await });
        match outcome {
            Ok(Ok(response)) => Ok((response.log_id.index, response.data)),
            Ok(Err(error)) => Err(self.propose_error(error)),
            Err(_) => Err(ProposeError::Unknown { reason: format!("not applied within {timeout:?}") }),
        }
    }

    fn propose_error(
        &self,
        error: openraft::errors::RaftError<super::ZoneRaft, openraft::errors::ClientWriteError<super::ZoneRaft>>,
    ) -> ProposeError {
        use openraft::errors::{ClientWriteError, RaftError};
        let leader_of = |forward: &openraft::errors::ForwardToLeader<super::ZoneRaft>| {
            forward.leader_id.map(|zone| {
                let addr = forward.leader_node.as_ref().map(|node| node.addr.clone()).unwrap_or_default();
                (zone, addr)
            })
        };
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                ProposeError::NotLeader { leader: leader_of(&forward) }
            }
            RaftError::APIError(other) => ProposeError::Unknown { reason: other.to_string() },
            RaftError::Fatal(fatal) => ProposeError::Stopped { reason: fatal.to_string() },
        }
    }

    /// Moves leadership to `to` (planned maintenance); returns once asked, not once moved.
    pub fn transfer_leader(&self, to: ZoneId) -> Result<(), String> {
        let raft = self.raft.clone();
        self.runtime.block_on(async move { raft.trigger().transfer_leader(to).await }).map_err(|e| e.to_string())
    }

    pub fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let index = |id: &Option<super::LogId>| id.as_ref().map(|id| id.index);
        let matched = metrics
            .replication
            .as_ref()
            .map(|replication| replication.iter().map(|(zone, id)| (*zone, index(id))).collect())
            .unwrap_or_default();
        NodeStatus {
            zone: self.config.zone,
            role: role_name(metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            committed_index: index(&metrics.local_committed),
            applied_index: index(&metrics.last_applied),
            snapshot_index: index(&metrics.snapshot),
            matched,
            quorum_ack_ms_ago: metrics.last_quorum_acked.as_ref().map(|at| at.elapsed().as_millis() as u64),
            diverged: self.replica.diverged(),
            stopped: metrics.running_state.as_ref().err().map(ToString::to_string),
        }
    }

    /// Takes a snapshot now (and lets Raft purge the log behind it).
    pub fn snapshot(&self) -> Result<(), String> {
        let raft = self.raft.clone();
        self.runtime.block_on(async move { raft.trigger().snapshot().await }).map_err(|e| e.to_string())
    }

    /// Stops the member: Raft, the server and the runtime.
    pub fn shutdown(self) {
        let raft = self.raft.clone();
        let _ = self.runtime.block_on(async move { raft.shutdown().await });
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

async fn propose_checkpoints(raft: Raft, replica: Arc<Replica>, interval_ms: u64) {
    if interval_ms == 0 {
        return;
    }
    let mut proposed = None;
    loop {
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        let leading = raft.metrics().borrow_watched().state == ServerState::Leader;
        let Some((index, state_digest)) = replica.newest_checkpoint() else { continue };
        if leading && proposed < Some(index) {
            // A failed proposal (leadership lost) is simply retried by the next leader.
            if raft.client_write(Proposal::Checkpoint { index, state_digest }).await.is_ok() {
                proposed = Some(index);
            }
        }
    }
}
