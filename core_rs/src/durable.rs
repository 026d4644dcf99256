//! The durable engine: the single-zone sequencer in front of the engine. It stamps each
//! command with its sequence number and a timestamp that never goes back, journals it,
//! applies it, and answers only once the journal has synced it.
//!
//! Rules it keeps:
//! - A command is appended to the journal before it is applied, under one lock, so the
//!   journal's order is the engine's order; it is checked first (`Engine::check`), so a
//!   command the engine would refuse is never journaled, and one the journal refuses (it is
//!   failing: disk full, I/O error) is never applied.
//! - An answer (events) is given only after a sync covers its command. If the journal fails
//!   first, the caller gets `NotDurable`: the command is applied and held, and becomes
//!   durable when the journal recovers, or is lost with the process, never acknowledged;
//!   a retry with the same client order id learns which.
//! - A retry (`Engine::place_retry`) is answered with the original acceptance once that is
//!   durable, without a new command.
//! - One engine per data directory (a lock file).
//! - Recovery is the newest valid snapshot plus the journal after it (`open`). Snapshots come
//!   from a shadow engine (`shadow.rs`) on a thread of its own, fed the records applied:
//!   it serializes the state at the seq the snapshot was due at, and order entry does not
//!   wait. A background thread restores the body (for its state hash) and writes it once its
//!   sequence number is durable. Only while the shadow is out of step (it fell far behind)
//!   does a snapshot copy the state under the lock.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::command::Command;
use crate::engine::{Engine, EngineError};
use crate::journal::{
    self, DurableCallback, JournalConfig, JournalError, JournalStatus, JournalWriter, Recovery, SkippedSnapshot,
    SnapshotStore, TailRepair,
};
use crate::shadow::{shadow_of, ShadowFeed};
use crate::spare::SpareEngine;
use crate::wire::{decode_command, encode_command, CommandRecord, EventRecord, COMMAND_RECORD_BYTES};

/// Commands between automatic snapshots by default.
pub const SNAPSHOT_EVERY_COMMANDS_DEFAULT: u64 = 1_000_000;
/// How long a caller waits for its command to become durable before `NotDurable`.
pub const ACK_TIMEOUT_MS_DEFAULT: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct DurableConfig {
    pub journal: JournalConfig,
    /// Take a snapshot after this many commands since the last one (0: only on demand).
    pub snapshot_every_commands: u64,
    /// Keep every journal segment, even those older than the oldest snapshot kept (the
    /// gateway rebuilds its order and trade history from the whole journal).
    pub retain_journal: bool,
    pub ack_timeout: Duration,
}

impl DurableConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DurableConfig {
            journal: JournalConfig::new(dir),
            snapshot_every_commands: SNAPSHOT_EVERY_COMMANDS_DEFAULT,
            retain_journal: false,
            ack_timeout: Duration::from_millis(ACK_TIMEOUT_MS_DEFAULT),
        }
    }
}

#[derive(Debug)]
pub enum DurableError {
    /// The engine refuses the command itself (a caller's bug); nothing was journaled.
    Engine(EngineError),
    /// The journal is failing; the command was neither journaled nor applied.
    Unavailable {
        reason: String,
    },
    /// The command (the last of a batch: `seq`) was applied but is not durable yet, for
    /// `reason`; it will be if the journal recovers before the process ends.
    NotDurable {
        seq: u64,
        reason: String,
    },
    /// Opening or recovering the data directory failed.
    Recovery(String),
    Journal(JournalError),
}

impl std::fmt::Display for DurableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurableError::Engine(error) => error.fmt(f),
            DurableError::Unavailable { reason } => {
                write!(f, "not accepted, nothing applied: the journal cannot write ({reason})")
            }
            DurableError::NotDurable { seq, reason } => write!(
                f,
                "outcome unknown: command {seq} is applied but not yet durable ({reason}); it is held and written \
                 when the journal recovers — retry with the same client order id to learn its outcome"
            ),
            DurableError::Recovery(message) => write!(f, "recovery failed: {message}"),
            DurableError::Journal(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for DurableError {}

impl From<crate::wire::WireError> for DurableError {
    fn from(error: crate::wire::WireError) -> Self {
        DurableError::Engine(EngineError::Wire(error))
    }
}

/// What `open` found and did.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// The snapshot recovery started from: (seq, file).
    pub snapshot: Option<(u64, PathBuf)>,
    /// Newer snapshots that failed their checks and were passed over.
    pub snapshots_skipped: Vec<SkippedSnapshot>,
    /// Journal records applied after the snapshot.
    pub replayed: u64,
    pub tail_repaired: Option<TailRepair>,
    pub recovery_time: Duration,
}

/// A background snapshot write: its seq and file when done.
type SnapshotThread = JoinHandle<Result<(u64, PathBuf), DurableError>>;

#[derive(Debug)]
struct Sequencer {
    engine: Engine,
    payload: Vec<u8>,
    seq_of_last_snapshot: u64,
    /// What periodic snapshots are taken from (none when snapshots are only on demand).
    shadow: Option<ShadowFeed>,
}

/// Where a snapshot's state comes from.
enum SnapshotSource {
    /// The shadow's serialization of the state at the snapshot's seq.
    Shadow(mpsc::Receiver<Vec<u8>>),
    /// A copy taken under the lock.
    Copy(Box<Engine>),
}

#[derive(Debug)]
pub struct DurableEngine {
    /// Held (an exclusive lock on `<dir>/LOCK`) while the engine is open: one writer per
    /// data directory.
    _lock: std::fs::File,
    sequencer: Mutex<Sequencer>,
    /// Shared with the background snapshot writer, which waits on it.
    writer: Arc<JournalWriter>,
    snapshots: Arc<SnapshotStore>,
    /// The background snapshot writer, if one is running or finished unjoined.
    snapshot_thread: Mutex<Option<SnapshotThread>>,
    /// Memory for the copies of the state a snapshot takes while the shadow is out of step,
    /// and for the shadow's resyncs.
    spare: SpareEngine,
    config: DurableConfig,
}

/// The engine of the newest valid snapshot (a new one if there is none) and that snapshot's
/// body.
fn restore_newest_snapshot(
    store: &SnapshotStore,
    report: &mut OpenReport,
) -> Result<(Engine, Option<Vec<u8>>), DurableError> {
    let Some(loaded) = store.load_newest_valid().map_err(DurableError::Journal)? else {
        return Ok((Engine::new(), None));
    };
    let engine = Engine::restore(&loaded.body)
        .map_err(|e| DurableError::Recovery(format!("snapshot {}: {e}", loaded.path.display())))?;
    if engine.state_digest() != loaded.state_hash || engine.seq() != loaded.seq {
        let message = format!("snapshot {}: restored state does not match its hash or seq", loaded.path.display());
        return Err(DurableError::Recovery(message));
    }
    report.snapshot = Some((loaded.seq, loaded.path));
    report.snapshots_skipped = loaded.skipped;
    Ok((engine, Some(loaded.body)))
}

/// Trading records replayed per `apply_records` call.
const REPLAY_CHUNK_RECORDS: usize = 4_096;
/// Chunks read ahead of the one being applied.
const REPLAY_CHUNKS_AHEAD: usize = 4;

/// What the reading thread of a replay hands the applying thread.
enum Replayed {
    /// Consecutive trading records from `first_seq`, the first at `location`.
    Records { first_seq: u64, location: journal::RecordLocation, records: Vec<CommandRecord> },
    /// A configuration command's payload.
    Configuration { seq: u64, location: journal::RecordLocation, payload: Vec<u8> },
}

/// Recovers the journal and applies its records after the engine's seq, in one pass over the
/// files and two threads: one reads and checks the journal (CRCs, sequence, the torn tail)
/// and groups trading records into chunks, the other applies them through the batch path.
/// Returns what the journal held and how many records were applied. What is applied goes to
/// `shadow` too.
fn recover_and_replay(
    dir: &Path,
    engine: &mut Engine,
    shadow: Option<&mut ShadowFeed>,
) -> Result<(Recovery, u64), DurableError> {
    let from = engine.seq() + 1;
    let (chunks, chunks_to_apply) = std::sync::mpsc::sync_channel::<Replayed>(REPLAY_CHUNKS_AHEAD);
    let (spent, spent_to_refill) = std::sync::mpsc::channel::<Vec<CommandRecord>>();
    let (recovery, replayed) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_for_replay(dir, from, &chunks, &spent_to_refill));
        let applied = apply_replayed(engine, shadow, &chunks_to_apply, &spent);
        // An apply error drops the receiver, which stops the reader at its next send.
        drop(chunks_to_apply);
        let read = reader.join().expect("the replay reader does not panic");
        applied.and_then(|replayed| read.map(|recovery| (recovery, replayed)))
    })?;
    if recovery.records > 0 && recovery.first_seq > from {
        return Err(DurableError::Recovery(format!(
            "the journal starts at seq {} but the state (snapshot) ends at {}: commands {from}..{} are missing",
            recovery.first_seq,
            from - 1,
            recovery.first_seq - 1
        )));
    }
    if recovery.records > 0 && recovery.last_seq < from - 1 {
        return Err(DurableError::Recovery(format!(
            "the journal ends at seq {} but the newest snapshot is at {}: the journal lost records the snapshot \
             holds; move the damaged journal aside to continue from the snapshot",
            recovery.last_seq,
            from - 1
        )));
    }
    Ok((recovery, replayed))
}

fn read_for_replay(
    dir: &Path,
    from: u64,
    chunks: &std::sync::mpsc::SyncSender<Replayed>,
    spent: &std::sync::mpsc::Receiver<Vec<CommandRecord>>,
) -> Result<Recovery, DurableError> {
    let fresh = || spent.try_recv().unwrap_or_else(|_| Vec::with_capacity(REPLAY_CHUNK_RECORDS));
    let mut pending: Option<Replayed> = None;
    // The applying thread has stopped (on an error it reports itself).
    let stopped = || DurableError::Recovery("replay stopped".into());
    let recovery = journal::recover_reading(dir, from, |seq, payload, location| {
        let trading_record = (payload.len() == COMMAND_RECORD_BYTES).then(|| CommandRecord::read(payload)).flatten();
        match (trading_record, &mut pending) {
            (Some(record), Some(Replayed::Records { records, .. })) if records.len() < REPLAY_CHUNK_RECORDS => {
                records.push(record);
                return Ok(());
            }
            (Some(record), _) => {
                let mut records = fresh();
                records.clear();
                records.push(record);
                let next = Replayed::Records { first_seq: seq, location: location.clone(), records };
                if let Some(full) = pending.replace(next) {
                    chunks.send(full).map_err(|_| stopped())?;
                }
            }
            (None, _) => {
                if let Some(chunk) = pending.take() {
                    chunks.send(chunk).map_err(|_| stopped())?;
                }
                let configuration =
                    Replayed::Configuration { seq, location: location.clone(), payload: payload.to_vec() };
                chunks.send(configuration).map_err(|_| stopped())?;
            }
        }
        Ok(())
    })
    .map_err(|e| match e {
        journal::ReadError::Journal(error) => DurableError::Journal(error),
        journal::ReadError::Visitor(error) => error,
    })?;
    if let Some(chunk) = pending {
        chunks.send(chunk).map_err(|_| stopped())?;
    }
    Ok(recovery)
}

/// Applies what the reader sends; returns how many records it applied.
fn apply_replayed(
    engine: &mut Engine,
    mut shadow: Option<&mut ShadowFeed>,
    chunks: &std::sync::mpsc::Receiver<Replayed>,
    spent: &std::sync::mpsc::Sender<Vec<CommandRecord>>,
) -> Result<u64, DurableError> {
    let (mut events, first) = (Vec::new(), engine.seq());
    for chunk in chunks {
        let (seq, location) = match &chunk {
            Replayed::Records { first_seq, location, .. } => (*first_seq, location),
            Replayed::Configuration { seq, location, .. } => (*seq, location),
        };
        let failed = |message: String| {
            let (file, offset) = (location.file.display(), location.offset);
            DurableError::Recovery(format!("{file} offset {offset} seq {seq}: {message}"))
        };
        if seq != engine.seq() + 1 {
            return Err(failed(format!("expected seq {}", engine.seq() + 1)));
        }
        events.clear();
        match &chunk {
            Replayed::Records { records, .. } => {
                let applied = engine.apply_records(records, &mut events);
                applied.map_err(|e| failed(format!("in the {} records from here: {e}", records.len())))?;
                if let Some(shadow) = shadow.as_deref_mut() {
                    shadow.records(records.clone());
                }
            }
            Replayed::Configuration { payload, .. } => {
                let (ts_ns, command) = decode_command(payload).map_err(&failed)?;
                engine.apply(ts_ns, &command, &mut events).map_err(|e| failed(e.to_string()))?;
                if let Some(shadow) = shadow.as_deref_mut() {
                    shadow.command(ts_ns, command);
                }
            }
        }
        if let Replayed::Records { records, .. } = chunk {
            // The reader may be done already; then the buffer is simply dropped.
            let _ = spent.send(records);
        }
    }
    Ok(engine.seq() - first)
}

impl DurableEngine {
    /// Opens the data directory, recovering from its newest valid snapshot and journal.
    pub fn open(config: DurableConfig) -> Result<(DurableEngine, OpenReport), DurableError> {
        let started = Instant::now();
        let dir = config.journal.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| DurableError::Recovery(format!("creating {}: {e}", dir.display())))?;
        let lock = lock_data_dir(&dir)?;
        let snapshots = Arc::new(SnapshotStore::new(&dir));
        let mut report = OpenReport::default();
        let (mut engine, snapshot_body) = restore_newest_snapshot(&snapshots, &mut report)?;
        let spare = SpareEngine::default();
        let mut shadow = (config.snapshot_every_commands > 0).then(|| start_shadow(snapshot_body, &spare));
        let (recovery, replayed) = recover_and_replay(&dir, &mut engine, shadow.as_mut())?;
        report.tail_repaired = recovery.tail_repaired.clone();
        report.replayed = replayed;
        if engine.seq() < recovery.last_seq {
            return Err(DurableError::Recovery(format!(
                "replay stopped at seq {} before the journal's last record {}",
                engine.seq(),
                recovery.last_seq
            )));
        }
        let writer =
            JournalWriter::open(config.journal.clone(), &recovery, engine.seq() + 1).map_err(DurableError::Journal)?;
        report.recovery_time = started.elapsed();
        let seq_of_last_snapshot = report.snapshot.as_ref().map_or(0, |(seq, _)| *seq);
        let sequencer = Sequencer { engine, payload: Vec::new(), seq_of_last_snapshot, shadow };
        let durable = DurableEngine {
            _lock: lock,
            sequencer: Mutex::new(sequencer),
            writer: Arc::new(writer),
            snapshots,
            snapshot_thread: Mutex::new(None),
            spare,
            config,
        };
        Ok((durable, report))
    }

    fn lock(&self) -> MutexGuard<'_, Sequencer> {
        self.sequencer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the engine under the sequencer's lock (queries).
    pub fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        f(&self.lock().engine)
    }

    /// Sequences, journals and applies one command, stamped at least `ts_ns` (never before
    /// the last command), and returns its events once it is durable.
    pub fn execute(&self, ts_ns: i64, command: &Command) -> Result<Vec<EventRecord>, DurableError> {
        let mut events = Vec::new();
        let seq = {
            let mut guard = self.lock();
            let s = &mut *guard;
            if let Command::Place(place) = command {
                if let Some(accepted) = s.engine.place_retry(place) {
                    drop(guard);
                    self.wait_durable(accepted.seq)?;
                    return Ok(vec![accepted]);
                }
            }
            let ts_ns = ts_ns.max(s.engine.ts_ns());
            s.engine.check(ts_ns, command).map_err(DurableError::Engine)?;
            s.payload.clear();
            encode_command(ts_ns, command, &mut s.payload);
            let seq = s.engine.seq() + 1;
            self.writer.append(seq, &s.payload).map_err(unavailable)?;
            s.engine.apply(ts_ns, command, &mut events).expect("checked above");
            if let Some(shadow) = &mut s.shadow {
                shadow.command(ts_ns, command.clone());
            }
            self.snapshot_if_due(s);
            seq
        };
        self.wait_durable(seq)?;
        Ok(events)
    }

    /// Sequences, journals and applies a batch of command records (their timestamps as
    /// given; they must not go back) and returns their events once all are durable. A bad
    /// record refuses the whole batch with nothing applied. Events are appended to `out`.
    pub fn execute_records(&self, records: &[CommandRecord], out: &mut Vec<EventRecord>) -> Result<(), DurableError> {
        let last_seq = self.sequence_records(records, out)?;
        self.wait_durable(last_seq)
    }

    /// The first half of `execute_records`, for pipelined callers: sequences, journals and
    /// applies the batch, appends its events to `out` and returns its last seq, without
    /// waiting. The events must not reach anyone before `wait_durable(last seq)` returns.
    pub fn sequence_records(&self, records: &[CommandRecord], out: &mut Vec<EventRecord>) -> Result<u64, DurableError> {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.engine.check_records(records).map_err(DurableError::Engine)?;
        let (journaled, appended) =
            self.writer.append_batch(s.engine.seq() + 1, records.iter().map(CommandRecord::as_bytes));
        let journaled = journaled as usize;
        let failure = appended.err().map(unavailable);
        s.engine.apply_checked_records(&records[..journaled], out);
        if let Some(shadow) = s.shadow.as_mut().filter(|_| journaled > 0) {
            shadow.records(records[..journaled].to_vec());
        }
        self.snapshot_if_due(s);
        match failure {
            None => Ok(s.engine.seq()),
            Some(_) if journaled == 0 => Err(failure.expect("a failure")),
            Some(DurableError::Unavailable { reason }) => {
                let reason = format!("{reason}; only the first {journaled} of {} commands were applied", records.len());
                Err(DurableError::NotDurable { seq: s.engine.seq(), reason })
            }
            Some(other) => Err(other),
        }
    }

    /// Waits until the journal has synced `seq` (the acknowledgement point).
    pub fn wait_durable(&self, seq: u64) -> Result<(), DurableError> {
        self.writer.wait_durable(seq, self.config.ack_timeout).map_err(|error| match error {
            JournalError::Timeout => {
                DurableError::NotDurable { seq, reason: format!("no sync within {:?}", self.config.ack_timeout) }
            }
            other => DurableError::NotDurable { seq, reason: other.to_string() },
        })
    }

    /// Whether applying `commands` more commands now would start a snapshot, which copies the
    /// engine before `sequence_records` returns if the shadow is out of step: for a caller that
    /// must not wait that long on its own thread (an event loop).
    pub fn snapshot_due_within(&self, commands: u64) -> bool {
        let every = self.config.snapshot_every_commands;
        let s = self.lock();
        every > 0 && s.engine.seq() + commands - s.seq_of_last_snapshot >= every
    }

    fn snapshot_if_due(&self, s: &mut Sequencer) {
        let every = self.config.snapshot_every_commands;
        if every > 0 && s.engine.seq() - s.seq_of_last_snapshot >= every {
            let mut running = self.snapshot_thread.lock().unwrap_or_else(PoisonError::into_inner);
            if running.as_ref().is_none_or(JoinHandle::is_finished) {
                if let Some(finished) = running.take() {
                    // A failed periodic snapshot is retried at the next due point; recovery then
                    // replays a longer journal tail, nothing is lost.
                    let _ = finished.join();
                }
                *running = Some(self.start_snapshot(s));
            }
        }
    }

    /// Snapshots the state now: the shadow serializes it, or order entry waits for a copy
    /// (see `snapshot_source`); a background thread writes it once its seq is durable.
    fn start_snapshot(&self, s: &mut Sequencer) -> SnapshotThread {
        let seq = s.engine.seq();
        let source = self.snapshot_source(s);
        s.seq_of_last_snapshot = seq;
        let store = Arc::clone(&self.snapshots);
        let writer = Arc::clone(&self.writer);
        let spare = self.spare.clone();
        let ack_timeout = self.config.ack_timeout;
        let retain_journal = self.config.retain_journal;
        std::thread::spawn(move || {
            crate::threads::give_way_to_order_entry();
            let body = match source {
                SnapshotSource::Shadow(body) => body.recv().map_err(|_| {
                    DurableError::Recovery(format!("snapshot {seq}: the shadow engine ended before it serialized"))
                })?,
                SnapshotSource::Copy(copy) => {
                    let body = copy.snapshot();
                    spare.keep(*copy);
                    body
                }
            };
            // The state hash comes from the body restored: it proves the body restores before
            // it is trusted.
            let restored =
                Engine::restore(&body).map_err(|e| DurableError::Recovery(format!("snapshot {seq}: {e}")))?;
            let digest = restored.state_digest();
            drop(restored);
            writer.wait_durable(seq, ack_timeout).map_err(DurableError::Journal)?;
            let path = store.write(seq, digest, &body).map_err(DurableError::Journal)?;
            // The journal before the oldest snapshot kept is no longer needed for recovery,
            // even to fall back on.
            if !retain_journal {
                if let Some(oldest) = store.seqs().map_err(DurableError::Journal)?.first() {
                    writer.remove_segments_before(oldest + 1).map_err(DurableError::Journal)?;
                }
            }
            Ok((seq, path))
        })
    }

    /// The state now, for a snapshot: the shadow serializes it once it got there; while it is
    /// out of step and still catching up, or with no shadow (snapshots only on demand), a
    /// copy under the lock, which order entry waits for. A shadow out of step that caught up
    /// is resynced first (a copy too).
    fn snapshot_source(&self, s: &mut Sequencer) -> SnapshotSource {
        if let Some(shadow) = &mut s.shadow {
            let (body, taken) = mpsc::sync_channel(1);
            if shadow.resync(&s.engine) && shadow.visit(move |engine| drop(body.send(engine.snapshot()))) {
                return SnapshotSource::Shadow(taken);
            }
        }
        SnapshotSource::Copy(Box::new(self.spare.copy_of(&s.engine)))
    }

    /// Takes a snapshot now and waits until it is written; returns its seq and file.
    pub fn snapshot(&self) -> Result<(u64, PathBuf), DurableError> {
        let handle = {
            let mut guard = self.lock();
            let mut running = self.snapshot_thread.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(previous) = running.take() {
                let _ = previous.join();
            }
            self.start_snapshot(&mut guard)
        };
        handle.join().map_err(|_| DurableError::Recovery("the snapshot thread panicked".into()))?
    }

    pub fn journal_status(&self) -> JournalStatus {
        self.writer.status()
    }

    /// The journal's newest group commits (see [`JournalWriter::recent_sync_rounds`]).
    pub fn recent_sync_rounds(&self) -> Vec<journal::SyncRound> {
        self.writer.recent_sync_rounds()
    }

    /// The journal's group commits of the last `seconds` (see [`JournalWriter::sync_window`]).
    pub fn sync_window(&self, seconds: u32) -> journal::SyncWindow {
        self.writer.sync_window(seconds, Instant::now())
    }

    /// Calls `done` once a sync covers `seq` (see [`JournalWriter::on_durable`]): for callers of
    /// `sequence_records` that do not wait in `wait_durable`.
    pub fn on_durable(&self, seq: u64, done: DurableCallback) {
        self.writer.on_durable(seq, done);
    }

    /// The segment and offset up to which the journal is synced.
    pub fn durable_position(&self) -> journal::RecordLocation {
        self.writer.durable_position()
    }

    /// Waits for a running snapshot, then syncs and closes the journal.
    pub fn close(self) -> Result<(), DurableError> {
        let running = self.snapshot_thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = running {
            let _ = handle.join();
        }
        let writer = Arc::try_unwrap(self.writer).expect("no snapshot thread holds the writer after its join");
        writer.close().map_err(DurableError::Journal)
    }
}

/// The shadow periodic snapshots are taken from, on a thread of its own: it restores the
/// snapshot recovery started from (`snapshot_body`; none: a new engine) beside the replay,
/// then takes what the replay and order entry apply, so opening waits for no copy. It ends
/// when its feed is dropped, with the engine. A shadow whose thread did not start is gone
/// from the first item on: snapshots then copy the state.
fn start_shadow(snapshot_body: Option<Vec<u8>>, spare: &SpareEngine) -> ShadowFeed {
    let (feed, mut shadow, work) = shadow_of(Engine::new(), spare);
    let keep = move || {
        crate::threads::give_way_to_order_entry();
        if let Some(body) = snapshot_body {
            // Opening restored this body already; should it fail here, the shadow is gone.
            let Ok(engine) = Engine::restore(&body) else { return };
            drop(body);
            shadow.start_from(engine);
        }
        for item in work {
            let _no_checkpoints_here = shadow.take(item);
        }
    };
    let _gone_if_not_started = std::thread::Builder::new().name("durable-shadow".into()).spawn(keep);
    feed
}

/// Takes the data directory's lock, or says who must be holding it.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, DurableError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DurableError::Recovery(format!("opening {}: {e}", path.display())))?;
    file.try_lock().map_err(|_| {
        DurableError::Recovery(format!("{} is locked: another engine has this data directory open", dir.display()))
    })?;
    Ok(file)
}

fn unavailable(error: JournalError) -> DurableError {
    match error {
        JournalError::Failing { reason } => DurableError::Unavailable { reason },
        other => DurableError::Unavailable { reason: other.to_string() },
    }
}
