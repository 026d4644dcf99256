//! The engine as a Raft state machine: a hot replica of the exchange in every zone.
//!
//! Rules it keeps:
//! - Applying is deterministic: a batch of records is checked whole and applied whole or
//!   refused whole; timestamps are clamped so they never go back (leaders' clocks differ);
//!   the engine numbers the commands. Every replica that applied the same entries has the same
//!   state hash.
//! - A checkpoint is the entry whose exchange time (the leader's stamps, as applied) first
//!   enters a new period of `checkpoint_interval_ms`: every replica finds the same entries,
//!   one a period whatever the load, none while nothing trades. There each replica records
//!   its state digest. Its shadow (`shadow.rs`), a second engine on its own thread that
//!   applies what the replica applied, hashes itself there, so applying never waits for a
//!   copy or a hash of the whole state. The leader later proposes its own digest for that
//!   index; a replica whose digest differs marks itself diverged, names the index, and its
//!   zone stops taking orders (the zone's status says so; the orchestrator halts the
//!   markets). A leader's digest that arrives before the replica's own waits for it.
//! - A snapshot is the engine's snapshot behind a header (the Raft metadata and the state
//!   digest), in the data directory's snapshot store; the shadow takes it at the entry Raft
//!   asked at (apply copies the state only while the shadow is out of step). Installing one
//!   checks the digest of the restored engine before it replaces anything.
//! - What each applied entry did can be followed ([`Replica::take_applied`]): the gateway of
//!   every zone keeps its views from it, so a zone that becomes leader has them hot.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use super::{Applied, Entry, LogId, Proposal, SnapshotMeta, StoredMembership, ZoneId, ZoneRaft};
use crate::codec::hex;
use crate::journal::SnapshotStore;
use crate::shadow::{shadow_of, Shadow, ShadowFeed, ShadowWork};
use crate::spare::SpareEngine;
use crate::wire::{command_bytes, command_records, decode_command, event_bytes, CommandRecord, EventRecord};
use crate::Engine;

/// State digests a replica remembers for comparison with the leader's checkpoints.
const CHECKPOINTS_KEPT: usize = 8;
/// Entries the follow queue holds before the oldest are dropped (the follower then resyncs).
pub const FOLLOW_ENTRIES_MAX: usize = 1 << 16;

pub type SnapshotData = io::Cursor<Vec<u8>>;
pub type ZoneSnapshot = openraft::alias::SnapshotOf<ZoneRaft, SnapshotData>;

/// What a snapshot file holds before the engine's own snapshot bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMeta,
    state_digest: [u8; 32],
}

/// One applied entry as the gateway follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Followed {
    /// Commands applied (or refused): the records as applied (timestamps clamped) and events.
    Commands {
        index: u64,
        first_seq: u64,
        last_seq: u64,
        records: bytes::Bytes,
        events: bytes::Bytes,
        refused: Option<String>,
    },
    /// The state was replaced by a snapshot (installed from the leader, or the queue
    /// overflowed): views must be rebuilt from the engine.
    Reset { index: u64, seq: u64 },
}

#[derive(Debug)]
struct ReplicaState {
    engine: Engine,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// (entry index, state digest after it), newest last.
    checkpoints: VecDeque<(u64, [u8; 32])>,
    /// What the shadow applies and hashes.
    shadow: ShadowFeed,
    /// The newest checkpoint handed to the shadow to hash.
    checkpoint_sent: Option<u64>,
    /// The leader's digest for a checkpoint whose own digest is still being computed.
    leader_checkpoint_waiting: Option<(u64, [u8; 32])>,
    diverged: Option<String>,
    follow: Option<VecDeque<Followed>>,
    /// For the copies of the state that snapshots and shadow resyncs take (apply waits for a
    /// copy into laid-out memory, not into fresh pages).
    spare: SpareEngine,
}

/// The replica shared by the state machine (Raft's side) and the node's readers.
#[derive(Debug)]
pub struct Replica {
    zone: ZoneId,
    /// The checkpoint period in ns of exchange time (0: no checkpoints).
    checkpoint_interval_ns: u64,
    state: Mutex<ReplicaState>,
    /// Signalled when an entry is applied (for `wait_applied` and followers of the queue).
    applied: Condvar,
    snapshots: SnapshotStore,
}

impl Replica {
    fn lock(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the engine (queries run here, on the replica's own state).
    pub fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        f(&self.lock().engine)
    }

    /// Why this replica diverged from the leader, if it did.
    pub fn diverged(&self) -> Option<String> {
        self.lock().diverged.clone()
    }

    /// The newest checkpoint this replica recorded: (entry index, state digest).
    pub fn newest_checkpoint(&self) -> Option<(u64, [u8; 32])> {
        self.lock().checkpoints.back().copied()
    }

    /// Takes what was applied since the last call, waiting up to `timeout` for something.
    pub fn take_applied(&self, timeout: Duration) -> Vec<Followed> {
        let mut state = self.lock();
        if state.follow.as_ref().is_some_and(VecDeque::is_empty) {
            state = self.applied.wait_timeout(state, timeout).unwrap_or_else(PoisonError::into_inner).0;
        }
        state.follow.as_mut().map(|queue| queue.drain(..).collect()).unwrap_or_default()
    }

    /// Waits until the entry at `index` is applied; false at the deadline.
    pub fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.last_applied.as_ref().is_some_and(|applied| applied.index >= index) {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.applied.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl ReplicaState {
    fn apply_entry(&mut self, zone: ZoneId, checkpoint_interval_ns: u64, entry: &Entry) -> Applied {
        let index = entry.index();
        let period_before = self.checkpoint_period(checkpoint_interval_ns);
        let (applied, records) = match &entry.payload {
            EntryPayload::Blank => (self.nothing_applied(None), Vec::new()),
            EntryPayload::Normal(proposal) => self.apply_proposal(zone, proposal),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id()), membership.clone());
                (self.nothing_applied(None), Vec::new())
            }
        };
        self.last_applied = Some(entry.log_id());
        self.queue_followed(index, &applied, &records);
        if !records.is_empty() {
            self.shadow.records(records);
        }
        // A checkpoint the shadow skips (it is catching up, or a later one overtook it) goes
        // uncompared; a divergence persists, so the next checkpoint compared finds it.
        if checkpoint_interval_ns > 0 && self.checkpoint_period(checkpoint_interval_ns) > period_before {
            if self.shadow.checkpoint(index, &self.engine) {
                self.checkpoint_sent = Some(index);
            } else if self.shadow.gone() {
                self.record_checkpoint(zone, index, self.engine.state_digest());
            }
        }
        applied
    }

    /// Which checkpoint period the engine's exchange time is in.
    fn checkpoint_period(&self, checkpoint_interval_ns: u64) -> u64 {
        (self.engine.ts_ns().max(0) as u64).checked_div(checkpoint_interval_ns).unwrap_or(0)
    }

    fn nothing_applied(&self, refused: Option<String>) -> Applied {
        let seq = self.engine.seq();
        Applied { first_seq: seq + 1, last_seq: seq, events: bytes::Bytes::new(), refused }
    }

    /// Applies a proposal; returns its outcome and the records as applied (timestamps clamped).
    fn apply_proposal(&mut self, zone: ZoneId, proposal: &Proposal) -> (Applied, Vec<CommandRecord>) {
        let first_seq = self.engine.seq() + 1;
        let mut events = Vec::new();
        let outcome = match proposal {
            Proposal::Records(bytes) => self.apply_records(bytes, &mut events),
            Proposal::Configuration(payload) => self.apply_configuration(payload, &mut events),
            Proposal::Checkpoint { index, state_digest } => {
                self.compare_checkpoint(zone, *index, state_digest);
                Ok(Vec::new())
            }
        };
        match outcome {
            Ok(records) => {
                let events = bytes::Bytes::copy_from_slice(event_bytes(&events));
                (Applied { first_seq, last_seq: self.engine.seq(), events, refused: None }, records)
            }
            Err(reason) => (self.nothing_applied(Some(reason)), Vec::new()),
        }
    }

    fn apply_records(&mut self, bytes: &[u8], events: &mut Vec<EventRecord>) -> Result<Vec<CommandRecord>, String> {
        let mut records = command_records(bytes).map_err(|e| e.to_string())?;
        let mut ts_ns = self.engine.ts_ns();
        for record in &mut records {
            ts_ns = ts_ns.max(record.ts_ns);
            record.ts_ns = ts_ns;
        }
        self.engine.check_records(&records).map_err(|e| e.to_string())?;
        self.engine.apply_checked_records(&records, events);
        Ok(records)
    }

    fn apply_configuration(
        &mut self,
        payload: &[u8],
        events: &mut Vec<EventRecord>,
    ) -> Result<Vec<CommandRecord>, String> {
        let (ts_ns, command) = decode_command(payload)?;
        let ts_ns = ts_ns.max(self.engine.ts_ns());
        let outcome = self.engine.apply(ts_ns, &command, events);
        self.shadow.command(ts_ns, command);
        outcome.map_err(|e| e.to_string())?;
        Ok(Vec::new())
    }

    /// Compares the leader's digest for checkpoint `index` with this replica's, now or (while
    /// its own is being computed) once it is recorded. A checkpoint this replica skipped, or
    /// older than those kept, is not compared.
    fn compare_checkpoint(&mut self, zone: ZoneId, index: u64, leader_digest: &[u8; 32]) {
        let newest_recorded = self.checkpoints.back().map(|&(at, _)| at);
        match self.checkpoints.iter().find(|(at, _)| *at == index) {
            Some(&(_, own)) => self.check_digest(zone, index, &own, leader_digest),
            None if newest_recorded < Some(index) && Some(index) <= self.checkpoint_sent => {
                self.leader_checkpoint_waiting = Some((index, *leader_digest))
            }
            None => {}
        }
    }

    /// Records this replica's digest at checkpoint `index` and compares it with the leader's,
    /// if that came first.
    /// A waiting leader's digest for an earlier checkpoint (one the shadow skipped) is dropped.
    fn record_checkpoint(&mut self, zone: ZoneId, index: u64, digest: [u8; 32]) {
        if self.checkpoints.len() == CHECKPOINTS_KEPT {
            self.checkpoints.pop_front();
        }
        self.checkpoints.push_back((index, digest));
        if let Some((at, leader_digest)) = self.leader_checkpoint_waiting.take_if(|(at, _)| *at <= index) {
            if at == index {
                self.check_digest(zone, index, &digest, &leader_digest);
            }
        }
    }

    fn check_digest(&mut self, zone: ZoneId, index: u64, own: &[u8; 32], leader_digest: &[u8; 32]) {
        if own != leader_digest && self.diverged.is_none() {
            let message = format!(
                "zone {zone} diverged from the leader at entry {index}: state hash {} here, {} on the leader",
                hex(own),
                hex(leader_digest)
            );
            eprintln!("REPLICA DIVERGED: {message}");
            self.diverged = Some(message);
        }
    }

    fn queue_followed(&mut self, index: u64, applied: &Applied, records: &[CommandRecord]) {
        let seq = self.engine.seq();
        let Some(queue) = self.follow.as_mut() else { return };
        if queue.len() >= FOLLOW_ENTRIES_MAX {
            queue.clear();
            queue.push_back(Followed::Reset { index, seq });
            return;
        }
        if records.is_empty() && applied.refused.is_none() {
            return; // blank, membership or checkpoint entries: nothing for the views
        }
        queue.push_back(Followed::Commands {
            index,
            first_seq: applied.first_seq,
            last_seq: applied.last_seq,
            records: bytes::Bytes::copy_from_slice(command_bytes(records)),
            events: applied.events.clone(),
            refused: applied.refused.clone(),
        });
    }
}

/// Raft's handle on the replica.
#[derive(Clone, Debug)]
pub struct StateMachine {
    replica: Arc<Replica>,
}

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// A snapshot's bytes and the state digest they restore to.
type TakenSnapshot = (Vec<u8>, [u8; 32]);

/// A snapshot of `engine` for the Raft snapshot `meta` describes: its bytes (the header's
/// length, the header, then the engine's bytes, written after the header in the one buffer)
/// and the state digest.
fn snapshot_bytes(engine: &Engine, meta: SnapshotMeta) -> io::Result<TakenSnapshot> {
    let state_digest = engine.state_digest();
    let head = postcard::to_stdvec(&SnapshotHeader { meta, state_digest }).map_err(io_error)?;
    let mut bytes = Vec::with_capacity(4 + head.len());
    bytes.extend_from_slice(&(head.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&head);
    Ok((engine.snapshot_after(bytes), state_digest))
}

/// A snapshot's header and the engine snapshot bytes after it.
fn decode_snapshot_header(bytes: &[u8]) -> io::Result<(SnapshotHeader, &[u8])> {
    let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| io_error("snapshot shorter than its header"))?;
    let length = u32::from_le_bytes(*length) as usize;
    let head = rest.get(..length).ok_or_else(|| io_error("snapshot header cut short"))?;
    Ok((postcard::from_bytes(head).map_err(io_error)?, &rest[length..]))
}

/// The header and the engine a snapshot's bytes hold, the engine checked against the digest.
fn decode_snapshot(bytes: &[u8]) -> io::Result<(SnapshotHeader, Engine)> {
    let (header, body) = decode_snapshot_header(bytes)?;
    let engine = Engine::restore(body).map_err(io_error)?;
    if engine.state_digest() != header.state_digest {
        return Err(io_error("the restored snapshot does not match its state hash"));
    }
    Ok((header, engine))
}

impl StateMachine {
    /// Opens the replica of `dir`: its newest valid snapshot, or an empty engine.
    pub fn open(zone: ZoneId, dir: &Path, checkpoint_interval_ms: u64, follow: bool) -> io::Result<StateMachine> {
        let snapshots = SnapshotStore::new(dir);
        let (engine, last_applied, membership) = match snapshots.load_newest_valid().map_err(io_error)? {
            Some(loaded) => {
                let (header, engine) = decode_snapshot(&loaded.body)?;
                (engine, header.meta.last_log_id, header.meta.last_membership)
            }
            None => (Engine::new(), None, StoredMembership::default()),
        };
        let spare = SpareEngine::default();
        let (feed, shadow, work) = shadow_of(spare.copy_of(&engine), &spare);
        let state = ReplicaState {
            engine,
            last_applied,
            membership,
            checkpoints: VecDeque::new(),
            shadow: feed,
            checkpoint_sent: None,
            leader_checkpoint_waiting: None,
            diverged: None,
            follow: follow.then(VecDeque::new),
            spare,
        };
        let replica = Arc::new(Replica {
            zone,
            checkpoint_interval_ns: checkpoint_interval_ms * 1_000_000,
            state: Mutex::new(state),
            applied: Condvar::new(),
            snapshots,
        });
        let weak = Arc::downgrade(&replica);
        std::thread::Builder::new()
            .name(format!("zone-{zone}-shadow"))
            .spawn(move || keep_shadow(shadow, &work, &weak))?;
        Ok(StateMachine { replica })
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }
}

/// The shadow thread: applies what the replica applied and records the digest of each
/// checkpoint it hashes (comparing it with the leader's if that came first). Ends with the
/// replica (the channel closes).
fn keep_shadow(mut shadow: Shadow, work: &mpsc::Receiver<ShadowWork>, replica: &Weak<Replica>) {
    crate::threads::give_way_to_order_entry();
    for item in work {
        if let Some((index, digest)) = shadow.take(item) {
            let Some(replica) = replica.upgrade() else { return };
            replica.lock().record_checkpoint(replica.zone, index, digest);
        }
    }
}

/// Where a snapshot's state comes from.
#[derive(Debug)]
enum SnapshotSource {
    /// The shadow's answer (it serializes the state at the entry the builder was made at).
    Shadow(tokio::sync::oneshot::Receiver<io::Result<TakenSnapshot>>),
    /// A copy taken under the replica's lock (the shadow was out of step).
    Copy(Box<Engine>),
}

/// The state the replica has now, for the Raft snapshot `meta` describes: the shadow serializes
/// it once it got there, or, while the shadow is out of step, a copy.
fn snapshot_source(state: &mut ReplicaState, meta: SnapshotMeta) -> SnapshotSource {
    let (reply, taken) = tokio::sync::oneshot::channel();
    // Nobody waits any more if the builder was dropped: nothing to do then.
    let serialize = move |engine: &Engine| drop(reply.send(snapshot_bytes(engine, meta)));
    if state.shadow.visit(serialize) {
        SnapshotSource::Shadow(taken)
    } else {
        SnapshotSource::Copy(Box::new(state.spare.copy_of(&state.engine)))
    }
}

/// Builds a snapshot of the state at the entry it was made at; serializing and writing happen
/// off the Raft task (on the shadow's thread, or a blocking thread for a copy).
#[derive(Debug)]
pub struct SnapshotBuilder {
    source: Option<SnapshotSource>,
    meta: SnapshotMeta,
    store: SnapshotStore,
    /// Where a copied engine goes once serialized (the replica's spare).
    spare: SpareEngine,
}

/// The snapshot store names a snapshot by the journal seq of its last entry (index + 1).
fn snapshot_seq(meta: &SnapshotMeta) -> u64 {
    meta.last_log_id.as_ref().map_or(0, |id| id.index + 1)
}

impl RaftSnapshotBuilder<ZoneRaft> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<ZoneSnapshot, io::Error> {
        let source = self.source.take().ok_or_else(|| io_error("this builder already built its snapshot"))?;
        let (meta, store, spare) = (self.meta.clone(), self.store.clone(), self.spare.clone());
        let (bytes, state_digest) = match source {
            SnapshotSource::Shadow(taken) => {
                taken.await.map_err(|_| io_error("the shadow engine ended before it took the snapshot"))??
            }
            SnapshotSource::Copy(engine) => {
                let meta = meta.clone();
                tokio::task::spawn_blocking(move || {
                    let taken = snapshot_bytes(&engine, meta);
                    spare.keep(*engine);
                    taken
                })
                .await
                .map_err(io_error)??
            }
        };
        tokio::task::spawn_blocking(move || {
            store.write(snapshot_seq(&meta), state_digest, &bytes).map_err(io_error)?;
            Ok(Snapshot { meta, snapshot: io::Cursor::new(bytes) })
        })
        .await
        .map_err(io_error)?
    }
}

impl RaftStateMachine<ZoneRaft> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.replica.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<ZoneRaft>, io::Error>> + Unpin + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = {
                let replica = &self.replica;
                let mut state = replica.lock();
                state.apply_entry(replica.zone, replica.checkpoint_interval_ns, &entry)
            };
            self.replica.applied.notify_all();
            if let Some(responder) = responder {
                responder.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let mut state = self.replica.lock();
        let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone() };
        SnapshotBuilder {
            source: Some(snapshot_source(&mut state, meta.clone())),
            meta,
            store: self.replica.snapshots.clone(),
            spare: state.spare.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let bytes = snapshot.into_inner();
        let (store, expected) = (self.replica.snapshots.clone(), meta.clone());
        let engine = tokio::task::spawn_blocking(move || {
            let (header, engine) = decode_snapshot(&bytes)?;
            if header.meta.last_log_id != expected.last_log_id {
                return Err(io_error("the snapshot's own metadata names another log position"));
            }
            store.write(snapshot_seq(&header.meta), header.state_digest, &bytes).map_err(io_error)?;
            Ok(engine)
        })
        .await
        .map_err(io_error)??;
        let mut state = self.replica.lock();
        state.engine = engine;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.checkpoints.clear();
        state.leader_checkpoint_waiting = None;
        let ReplicaState { shadow, engine, .. } = &mut *state;
        shadow.reset(engine);
        let (index, seq) = (snapshot_seq(meta).saturating_sub(1), state.engine.seq());
        if let Some(queue) = state.follow.as_mut() {
            queue.clear();
            queue.push_back(Followed::Reset { index, seq });
        }
        drop(state);
        self.replica.applied.notify_all();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<ZoneSnapshot>, io::Error> {
        let store = self.replica.snapshots.clone();
        tokio::task::spawn_blocking(move || {
            let Some(loaded) = store.load_newest_valid().map_err(io_error)? else { return Ok(None) };
            let (header, _) = decode_snapshot_header(&loaded.body)?;
            Ok(Some(Snapshot { meta: header.meta, snapshot: io::Cursor::new(loaded.body) }))
        })
        .await
        .map_err(io_error)?
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::command::{AssetSpec, Command};
    use crate::wire::{encode_command, CommandRecord};

    const ZONE: ZoneId = 2;
    /// Checkpoints every 5 ms of exchange time; entry `i` is stamped `i` ms.
    const INTERVAL_NS: u64 = 5_000_000;

    fn log_id(index: u64) -> LogId {
        LogId::new(openraft::vote::leader_id_adv::CommittedLeaderId::new(1, 1), index)
    }

    /// A replica state whose shadow the test runs (`run_shadow`), not a thread.
    fn state() -> (ReplicaState, Shadow, mpsc::Receiver<ShadowWork>) {
        let engine = Engine::new();
        let spare = SpareEngine::default();
        let (feed, shadow, work) = shadow_of(spare.copy_of(&engine), &spare);
        let state = ReplicaState {
            engine,
            last_applied: None,
            membership: StoredMembership::default(),
            checkpoints: VecDeque::new(),
            shadow: feed,
            checkpoint_sent: None,
            leader_checkpoint_waiting: None,
            diverged: None,
            follow: None,
            spare,
        };
        (state, shadow, work)
    }

    /// Lets the shadow take everything queued, recording its digests as its thread does.
    fn run_shadow(state: &mut ReplicaState, shadow: &mut Shadow, work: &mpsc::Receiver<ShadowWork>) {
        while let Ok(item) = work.try_recv() {
            if let Some((index, digest)) = shadow.take(item) {
                state.record_checkpoint(ZONE, index, digest);
            }
        }
    }

    /// Entry 1 adds an asset; every later one deposits into account `index`. Entry `i` is
    /// stamped `i` ms, so entries 5, 10, 15, ... start checkpoint periods.
    fn apply_entries(state: &mut ReplicaState, indexes: std::ops::RangeInclusive<u64>) {
        apply_entries_every(state, indexes, INTERVAL_NS);
    }

    /// `apply_entries` with a checkpoint period of `interval_ns`.
    fn apply_entries_every(state: &mut ReplicaState, indexes: std::ops::RangeInclusive<u64>, interval_ns: u64) {
        for index in indexes {
            let ts_ns = index as i64 * 1_000_000;
            let proposal = if index == 1 {
                let mut payload = Vec::new();
                let asset = Command::AddAsset(AssetSpec { name: "USDT".into(), decimals: 8 });
                encode_command(ts_ns, &asset, &mut payload);
                Proposal::Configuration(payload.into())
            } else {
                let deposit = Command::Deposit { account: index, asset: 0, amount_units: index };
                let record = CommandRecord::from_command(ts_ns, &deposit).expect("a trading command");
                Proposal::Records(bytes::Bytes::copy_from_slice(command_bytes(&[record])))
            };
            let applied = state.apply_entry(ZONE, interval_ns, &Entry::new_normal(log_id(index), proposal));
            assert_eq!(applied.refused, None);
        }
    }

    fn leader_digest(state: &mut ReplicaState, at: u64, index: u64, state_digest: [u8; 32]) {
        let proposal = Proposal::Checkpoint { index, state_digest };
        state.apply_entry(ZONE, INTERVAL_NS, &Entry::new_normal(log_id(at), proposal));
    }

    /// The checkpoints this replica recorded.
    fn recorded(state: &ReplicaState) -> Vec<u64> {
        state.checkpoints.iter().map(|&(at, _)| at).collect()
    }

    #[test]
    fn the_shadow_records_the_replicas_digest_where_exchange_time_enters_a_new_period() {
        let (mut state, mut shadow, work) = state();
        apply_entries(&mut state, 1..=4);
        run_shadow(&mut state, &mut shadow, &work);
        assert!(state.checkpoints.is_empty(), "entries 1-4 are in the first period");
        apply_entries(&mut state, 5..=5);
        let at_5 = state.engine.state_digest();
        run_shadow(&mut state, &mut shadow, &work);
        // Entries that do not move time (a blank one, a leader's digest) start no period.
        state.apply_entry(ZONE, INTERVAL_NS, &Entry::new_blank(log_id(6)));
        leader_digest(&mut state, 7, 5, at_5);
        apply_entries(&mut state, 8..=10);
        let at_10 = state.engine.state_digest();
        assert_ne!(at_5, at_10);
        run_shadow(&mut state, &mut shadow, &work);
        assert_eq!(Vec::from(state.checkpoints.clone()), vec![(5, at_5), (10, at_10)]);
        assert!(state.diverged.is_none());
    }

    /// The leader's digest for checkpoint 5 arrives before the shadow hashed it; then the
    /// shadow runs. Whether the replica ends diverged.
    fn leader_digest_first(wrong: bool) -> bool {
        let (mut replayed, _, _) = state();
        apply_entries(&mut replayed, 1..=5);
        let mut digest = replayed.engine.state_digest();
        digest[0] ^= u8::from(wrong);
        let (mut state, mut shadow, work) = state();
        apply_entries(&mut state, 1..=7);
        leader_digest(&mut state, 8, 5, digest);
        assert!(state.diverged.is_none(), "nothing to compare with yet");
        run_shadow(&mut state, &mut shadow, &work);
        state.diverged.is_some()
    }

    #[test]
    fn a_leader_digest_that_comes_first_is_compared_once_the_shadow_hashed() {
        assert!(leader_digest_first(true), "a differing digest marks the replica diverged");
        assert!(!leader_digest_first(false), "an equal digest does not");
    }

    #[test]
    fn a_checkpoint_overtaken_in_the_shadows_queue_is_not_hashed_nor_compared() {
        let (mut state, mut shadow, work) = state();
        apply_entries(&mut state, 1..=10);
        leader_digest(&mut state, 11, 5, [7; 32]);
        run_shadow(&mut state, &mut shadow, &work);
        assert_eq!(recorded(&state), vec![10]);
        assert!(state.diverged.is_none(), "checkpoint 5 has no digest here to compare");
        assert_eq!(state.leader_checkpoint_waiting, None);
        let own = state.checkpoints[0].1;
        leader_digest(&mut state, 12, 10, own);
        assert!(state.diverged.is_none());
        leader_digest(&mut state, 13, 10, [7; 32]);
        assert!(state.diverged.is_some(), "checkpoint 10 is compared");
    }

    #[test]
    fn the_shadow_takes_a_snapshot_of_the_state_the_replica_had_when_it_asked() {
        let (mut state, mut shadow, work) = state();
        apply_entries(&mut state, 1..=3);
        let asked_at = state.engine.state_digest();
        let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone() };
        let SnapshotSource::Shadow(taken) = snapshot_source(&mut state, meta.clone()) else {
            panic!("the shadow is in step: it takes the snapshot");
        };
        apply_entries(&mut state, 4..=6);
        run_shadow(&mut state, &mut shadow, &work);
        let (bytes, digest) = taken.blocking_recv().expect("the shadow answered").expect("the snapshot encodes");
        assert_eq!(digest, asked_at);
        let (header, engine) = decode_snapshot(&bytes).expect("the bytes decode, the engine checked");
        assert_eq!((header.meta, header.state_digest), (meta, asked_at));
        assert_eq!(engine.state_digest(), asked_at);
        assert_ne!(state.engine.state_digest(), asked_at, "the replica moved on meanwhile");
    }

    #[test]
    fn a_replica_whose_shadow_thread_ended_hashes_its_checkpoints_itself() {
        let (mut state, shadow, work) = state();
        drop((shadow, work));
        apply_entries(&mut state, 1..=5);
        assert_eq!(Vec::from(state.checkpoints.clone()), vec![(5, state.engine.state_digest())]);
    }

    #[test]
    fn a_shadow_that_fell_behind_is_resynced_by_a_copy_at_the_first_checkpoint_after_it_caught_up() {
        // Entry i is stamped i ms: a period of `period` ms outlasts the shadow's queue.
        let period = crate::shadow::QUEUED_MAX as u64 + 100;
        let (mut state, mut shadow, work) = state();
        let interval_ns = period * 1_000_000;
        apply_entries_every(&mut state, 1..=period, interval_ns);
        assert_eq!(state.checkpoint_sent, None, "the shadow is out of step, its queue full");
        let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone() };
        let source = snapshot_source(&mut state, meta);
        assert!(matches!(source, SnapshotSource::Copy(_)), "a snapshot is then copied, not asked of the shadow");
        run_shadow(&mut state, &mut shadow, &work);
        assert!(state.checkpoints.is_empty());
        apply_entries_every(&mut state, period + 1..=2 * period, interval_ns);
        assert_eq!(state.checkpoint_sent, Some(2 * period), "its queue drained: a copy, then the checkpoint");
        run_shadow(&mut state, &mut shadow, &work);
        assert_eq!(Vec::from(state.checkpoints.clone()), vec![(2 * period, state.engine.state_digest())]);
    }
}
