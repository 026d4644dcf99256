//! The appending side: callers put frames into an in-memory pending buffer; one flusher thread
//! writes them out in batches, one `fdatasync` per batch (group commit), and publishes the
//! highest durable sequence number.
//!
//! Rules it keeps:
//! - `append` does no I/O: it checks the sequence number, encodes the frame into the pending
//!   buffer and wakes the flusher. The buffers are swapped, not reallocated, once warm.
//! - `durable_seq` only moves forward, and only after the sync covering it returned.
//! - On a write or sync error the flusher cuts the segment back to the last durable offset,
//!   keeps the batch in memory, turns the journal `Failing` (appends refused, waiters told),
//!   and retries the same bytes in the same order every `retry_interval_ms` until it works.
//! - A segment is rolled only at a batch boundary, once it has passed `segment_bytes`; the
//!   previous segment was synced with its last batch, and the directory is synced after the
//!   new segment is created, before any of its records count as durable.
//! - Segments retired by [`JournalWriter::remove_segments_before`] are recycled: the newest one
//!   is kept as the spare, and the next roll overwrites it instead of appending to a new file.
//!   An overwrite's `fdatasync` writes data only, while an append's must also commit the new
//!   file size to the filesystem's own journal (about twice the time on this project's VMs).
//!   The new header and first batch are written and synced under the spare's name before it
//!   is renamed, so a segment name never shows a stale header; every batch written inside the
//!   file is followed by an end marker, so the stale frames after it are never read.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::format::{self, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::scan::{list_segments, segments_before};
use super::{
    segments_dir, sync_dir, JournalError, RecordLocation, Recovery, GROUP_COMMIT_WINDOW_US_DEFAULT, PAYLOAD_BYTES_MAX,
    PENDING_BYTES_MAX_DEFAULT, RETRY_INTERVAL_MS_DEFAULT, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN,
};

/// A retired segment kept for the next roll, in `<dir>/journal/`. Not a segment name, so
/// recovery never reads it; a writer that opens deletes it (its frames could follow its own).
const SPARE_FILE_NAME: &str = "spare.recycled";

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The smallest of `values` that at least `percent`% of them do not exceed (numpy's
/// `inverted_cdf`); reorders `values`.
fn nearest_rank(values: &mut [u64], percent: usize) -> Option<u64> {
    let rank = (values.len() * percent).div_ceil(100).max(1);
    (!values.is_empty()).then(|| *values.select_nth_unstable(rank - 1).1)
}

/// Whether a batch counts as durable after `fdatasync` or merely after `write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    Fsync,
    /// Never syncs: a crash loses acknowledged records. For measuring everything but the disk.
    NoFsyncUnsafeBenchmarkOnly,
}

/// How a [`JournalWriter`] writes. [`JournalConfig::new`] gives the defaults of `journal`'s constants.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The data directory; segments live in `<dir>/journal/`.
    pub dir: PathBuf,
    pub segment_bytes: u64,
    /// How long the flusher may wait after the first pending record to gather more; 0: none.
    pub group_commit_window_us: u64,
    pub sync: SyncMode,
    pub retry_interval_ms: u64,
    /// Encoded bytes pending before `append` blocks until the flusher takes them.
    pub pending_bytes_max: u64,
    /// Keep a retired segment to overwrite at the next roll instead of deleting it.
    pub recycle_segments: bool,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            group_commit_window_us: GROUP_COMMIT_WINDOW_US_DEFAULT,
            sync: SyncMode::Fsync,
            retry_interval_ms: RETRY_INTERVAL_MS_DEFAULT,
            pending_bytes_max: PENDING_BYTES_MAX_DEFAULT,
            recycle_segments: true,
        }
    }

    fn check(&self) -> Result<(), JournalError> {
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            let reason = format!("segment_bytes {} is below {SEGMENT_BYTES_MIN}", self.segment_bytes);
            return Err(JournalError::Invalid { reason });
        }
        if self.pending_bytes_max < FRAME_HEADER_BYTES as u64 {
            let reason = format!("pending_bytes_max {} is below one frame header", self.pending_bytes_max);
            return Err(JournalError::Invalid { reason });
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalHealth {
    Healthy,
    /// The last write or sync failed for `reason`; appends are refused while it retries.
    Failing {
        reason: String,
    },
}

/// A writer's health and counters, as of one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalStatus {
    pub health: JournalHealth,
    /// The sequence number the next `append` must carry.
    pub next_seq: u64,
    pub durable_seq: u64,
    /// Batches written and synced.
    pub syncs: u64,
    pub records_durable: u64,
    pub bytes_durable: u64,
    /// Write plus sync of the last batch, and the largest so far.
    pub sync_latency_us_last: u64,
    pub sync_latency_us_max: u64,
    /// Write or sync attempts that failed.
    pub write_failures: u64,
}

/// One batch the flusher wrote and synced: when its write began and when its sync returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRound {
    pub started: Instant,
    pub ended: Instant,
    pub records: u64,
}

/// The group commits of the last seconds, summed up where the rounds are kept: no round is
/// copied out, so an operator's look costs the trading loop well under a millisecond.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncWindow {
    pub syncs: u64,
    pub records: u64,
    /// The nearest-rank p50 and p99 and the maximum of the rounds' write-and-sync times (µs),
    /// none without a round.
    pub sync_us_p50: Option<u64>,
    pub sync_us_p99: Option<u64>,
    pub sync_us_max: Option<u64>,
    /// The longest round that ended in each second of the window, oldest second first; 0 for a
    /// second without one.
    pub sync_us_max_by_s: Vec<u64>,
}

/// Sync rounds a writer remembers (the newest), for [`JournalWriter::recent_sync_rounds`]:
/// half a minute and more of group commits at this project's rates (a benchmark's step of 30 s
/// at 2,000 syncs a second).
pub const SYNC_ROUNDS_KEPT: usize = 1 << 16;

/// Everything the callers and the flusher share, under one mutex.
#[derive(Debug)]
struct State {
    next_seq: u64,
    pending: Vec<u8>,
    pending_records: u64,
    pending_since: Option<Instant>,
    failing: Option<String>,
    closing: bool,
    flusher_stopped: bool,
    durable_file: PathBuf,
    durable_offset: u64,
    spare: Spare,
    status: JournalStatus,
    /// The last `SYNC_ROUNDS_KEPT` sync rounds, oldest first.
    sync_rounds: VecDeque<SyncRound>,
    /// Callbacks waiting for a sync to cover their seq, in seq order.
    on_durable: DurableCallbacks,
}

/// What [`JournalWriter::on_durable`] calls: `Ok` once a sync covers the seq, `Closed` if the
/// flusher stopped first.
pub type DurableCallback = Box<dyn FnOnce(Result<(), JournalError>) + Send>;

#[derive(Default)]
struct DurableCallbacks(VecDeque<(u64, DurableCallback)>);

impl std::fmt::Debug for DurableCallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} callbacks", self.0.len())
    }
}

impl DurableCallbacks {
    /// Takes the callbacks whose seq is at most `durable_seq` (all of them for `u64::MAX`).
    fn take_covered(&mut self, durable_seq: u64) -> Vec<DurableCallback> {
        let covered = self.0.iter().take_while(|(seq, _)| *seq <= durable_seq).count();
        self.0.drain(..covered).map(|(_, callback)| callback).collect()
    }
}

/// The retired segment the next roll overwrites, renamed to [`SPARE_FILE_NAME`].
#[derive(Debug)]
enum Spare {
    Absent,
    Ready(File),
    /// The flusher is writing it under the spare's name: no other file may take that name.
    Writing,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The flusher waits here for pending records, a retry or closing.
    work: Condvar,
    /// `wait_durable` waits here for durable_seq to move, a failure or the flusher's end.
    durable: Condvar,
    /// `append` waits here while the pending buffer is full.
    space: Condvar,
    config: JournalConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends records to the journal and makes them durable in batches. Send + Sync: any thread
/// may append (in sequence order) and wait.
#[derive(Debug)]
pub struct JournalWriter {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<Result<(), JournalError>>>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JournalWriter>();
};

impl JournalWriter {
    /// Opens for appending after [`recover`](super::recover): the next record is
    /// `recovery.last_seq + 1`, or `first_seq_if_empty` when the journal holds no record.
    pub fn open(config: JournalConfig, recovery: &Recovery, first_seq_if_empty: u64) -> Result<Self, JournalError> {
        config.check()?;
        if config.sync == SyncMode::NoFsyncUnsafeBenchmarkOnly {
            eprintln!(
                "WARNING: journal {} opened WITHOUT fsync: acknowledged records are lost on a crash. Benchmarks only.",
                config.dir.display()
            );
        }
        let next_seq = if recovery.records > 0 { recovery.last_seq + 1 } else { first_seq_if_empty };
        if next_seq == 0 {
            return Err(JournalError::Invalid { reason: "sequence numbers start at 1".into() });
        }
        let active = ActiveSegment::open(&config, recovery, next_seq)?;
        let state = State {
            next_seq,
            pending: Vec::new(),
            pending_records: 0,
            pending_since: None,
            failing: None,
            closing: false,
            flusher_stopped: false,
            durable_file: active.path.clone(),
            durable_offset: active.offset,
            spare: Spare::Absent,
            status: JournalStatus {
                health: JournalHealth::Healthy,
                next_seq,
                durable_seq: next_seq - 1,
                syncs: 0,
                records_durable: 0,
                bytes_durable: 0,
                sync_latency_us_last: 0,
                sync_latency_us_max: 0,
                write_failures: 0,
            },
            sync_rounds: VecDeque::new(),
            on_durable: DurableCallbacks::default(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            durable: Condvar::new(),
            space: Condvar::new(),
            config,
        });
        let flusher_shared = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("journal-flusher".into())
            .spawn(move || Flusher::new(flusher_shared, active).run())
            .map_err(|e| JournalError::io("starting the flusher thread for", &shared.config.dir, e))?;
        Ok(JournalWriter { shared, flusher: Some(flusher) })
    }

    /// Appends a record to the pending buffer (no I/O here); `seq` must be exactly the next.
    /// Refused with `Failing` while the journal is failing; blocks while the buffer is full.
    pub fn append(&self, seq: u64, payload: &[u8]) -> Result<(), JournalError> {
        check_payload(payload)?;
        let header = format::encode_frame_header(seq, payload);
        let mut state = self.wait_for_room(payload.len())?;
        if seq != state.next_seq {
            return Err(JournalError::SeqOutOfOrder { expected_seq: state.next_seq, found_seq: seq });
        }
        self.push(&mut state, &header, payload);
        Ok(())
    }

    /// Appends a record with the next sequence number, which it returns. For callers that do
    /// not sequence records themselves (several threads sharing one journal).
    pub fn append_next(&self, payload: &[u8]) -> Result<u64, JournalError> {
        check_payload(payload)?;
        let mut state = self.wait_for_room(payload.len())?;
        let seq = state.next_seq;
        let header = format::encode_frame_header(seq, payload);
        self.push(&mut state, &header, payload);
        Ok(seq)
    }

    /// Appends consecutive records from `first_seq` on, as one `append` each would, but with
    /// their frames encoded before the lock is taken and moved into the pending buffer in runs
    /// of at most half of it. Returns how many records were appended, and the error that
    /// stopped the batch if any (the records before it stay appended).
    pub fn append_batch<'a>(
        &self,
        first_seq: u64,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> (u64, Result<(), JournalError>) {
        let run_bytes_max = (self.shared.config.pending_bytes_max / 2).max(1) as usize;
        let mut frames = Vec::new();
        // (end offset in `frames`, records) of each run.
        let mut runs: Vec<(usize, u64)> = Vec::new();
        let (mut run_start, mut run_records) = (0usize, 0u64);
        for (index, payload) in payloads.into_iter().enumerate() {
            if let Err(error) = check_payload(payload) {
                runs.push((frames.len(), run_records));
                return self.push_runs(first_seq, &frames, &runs, Some(error));
            }
            if run_records > 0 && frames.len() - run_start + FRAME_HEADER_BYTES + payload.len() > run_bytes_max {
                runs.push((frames.len(), run_records));
                (run_start, run_records) = (frames.len(), 0);
            }
            format::encode_frame(first_seq + index as u64, payload, &mut frames);
            run_records += 1;
        }
        runs.push((frames.len(), run_records));
        self.push_runs(first_seq, &frames, &runs, None)
    }

    fn push_runs(
        &self,
        first_seq: u64,
        frames: &[u8],
        runs: &[(usize, u64)],
        stopped_by: Option<JournalError>,
    ) -> (u64, Result<(), JournalError>) {
        let (mut start, mut appended) = (0usize, 0u64);
        for &(end, records) in runs.iter().filter(|(_, records)| *records > 0) {
            let mut state = match self.wait_for_room_frames((end - start) as u64) {
                Ok(state) => state,
                Err(error) => return (appended, Err(error)),
            };
            if state.next_seq != first_seq + appended {
                let error =
                    JournalError::SeqOutOfOrder { expected_seq: state.next_seq, found_seq: first_seq + appended };
                return (appended, Err(error));
            }
            self.push_frames(&mut state, &frames[start..end], records);
            (start, appended) = (end, appended + records);
        }
        (appended, stopped_by.map_or(Ok(()), Err))
    }

    fn wait_for_room(&self, payload_bytes: usize) -> Result<MutexGuard<'_, State>, JournalError> {
        self.wait_for_room_frames((FRAME_HEADER_BYTES + payload_bytes) as u64)
    }

    fn wait_for_room_frames(&self, frame_bytes: u64) -> Result<MutexGuard<'_, State>, JournalError> {
        let mut state = self.shared.lock();
        loop {
            if let Some(reason) = &state.failing {
                return Err(JournalError::Failing { reason: reason.clone() });
            }
            if state.closing || state.flusher_stopped {
                return Err(JournalError::Closed);
            }
            let pending_bytes = state.pending.len() as u64;
            if pending_bytes == 0 || pending_bytes + frame_bytes <= self.shared.config.pending_bytes_max {
                return Ok(state);
            }
            state = self.shared.space.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn push(&self, state: &mut State, header: &[u8; FRAME_HEADER_BYTES], payload: &[u8]) {
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(header);
        state.pending.extend_from_slice(payload);
        self.pushed(state, 1, was_empty);
    }

    fn push_frames(&self, state: &mut State, frames: &[u8], records: u64) {
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(frames);
        self.pushed(state, records, was_empty);
    }

    fn pushed(&self, state: &mut State, records: u64, was_empty: bool) {
        state.pending_records += records;
        state.next_seq += records;
        if was_empty {
            if self.shared.config.group_commit_window_us > 0 {
                state.pending_since = Some(Instant::now());
            }
            self.shared.work.notify_one();
        }
    }

    /// Blocks until a sync covers `seq`. `Failing` as soon as the flusher reports an error while
    /// `seq` is not durable; `Timeout` at the deadline; `Closed` if the flusher has stopped.
    pub fn wait_durable(&self, seq: u64, timeout: Duration) -> Result<(), JournalError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.status.durable_seq >= seq {
                return Ok(());
            }
            if let Some(reason) = &state.failing {
                return Err(JournalError::Failing { reason: reason.clone() });
            }
            if state.flusher_stopped {
                return Err(JournalError::Closed);
            }
            if seq >= state.next_seq {
                return Err(JournalError::Invalid { reason: format!("seq {seq} was never appended") });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(JournalError::Timeout);
            }
            state = self.shared.durable.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Calls `done` once a sync covers `seq`: at once if one has, else on the flusher's thread
    /// right after that sync (with no lock held; it must not block). A failing journal keeps it
    /// waiting while the flusher retries; `Closed` if the flusher stops first. Callbacks are
    /// called in the order of their seqs, which must not decrease from one call to the next.
    pub fn on_durable(&self, seq: u64, done: DurableCallback) {
        let mut state = self.shared.lock();
        if state.status.durable_seq >= seq {
            drop(state);
            done(Ok(()));
        } else if state.flusher_stopped {
            drop(state);
            done(Err(JournalError::Closed));
        } else {
            debug_assert!(state.on_durable.0.back().is_none_or(|(last, _)| *last <= seq), "seqs must not decrease");
            state.on_durable.0.push_back((seq, done));
        }
    }

    /// Deletes, oldest first, the segments whose records all precede `seq` (the next segment
    /// starts at or before `seq`; never the last segment), but keeps the newest of them as the
    /// spare the next roll overwrites (with `recycle_segments`, and when no spare is held).
    /// Returns how many segments it retired.
    pub fn remove_segments_before(&self, seq: u64) -> Result<usize, JournalError> {
        let dir = &self.shared.config.dir;
        let removable = segments_before(dir, seq)?;
        let Some((newest, older)) = removable.split_last() else { return Ok(0) };
        for segment in older {
            fs::remove_file(&segment.path).map_err(|e| JournalError::io("removing", &segment.path, e))?;
        }
        let mut state = self.shared.lock();
        if self.shared.config.recycle_segments && matches!(state.spare, Spare::Absent) {
            let spare_path = segments_dir(dir).join(SPARE_FILE_NAME);
            let file = open_read_write(&newest.path)?;
            fs::rename(&newest.path, &spare_path).map_err(|e| JournalError::io("renaming", &newest.path, e))?;
            state.spare = Spare::Ready(file);
        } else {
            fs::remove_file(&newest.path).map_err(|e| JournalError::io("removing", &newest.path, e))?;
        }
        drop(state);
        sync_dir(&segments_dir(dir))?;
        Ok(removable.len())
    }

    pub fn durable_seq(&self) -> u64 {
        self.shared.lock().status.durable_seq
    }

    /// The segment and byte offset up to which the journal is synced.
    pub fn durable_position(&self) -> RecordLocation {
        let state = self.shared.lock();
        RecordLocation { file: state.durable_file.clone(), offset: state.durable_offset }
    }

    /// The newest sync rounds (at most [`SYNC_ROUNDS_KEPT`]), oldest first: how long each
    /// group commit took and when, e.g. to tell the disk's share of an acknowledgement's
    /// latency from the engine's.
    pub fn recent_sync_rounds(&self) -> Vec<SyncRound> {
        self.shared.lock().sync_rounds.iter().copied().collect()
    }

    /// The rounds that ended within `seconds` before `now` (of the newest [`SYNC_ROUNDS_KEPT`]),
    /// summed up; one that ended exactly `seconds` ago counts in the window's first second.
    pub fn sync_window(&self, seconds: u32, now: Instant) -> SyncWindow {
        let window_us = u64::from(seconds) * 1_000_000;
        let mut window = SyncWindow { sync_us_max_by_s: vec![0; seconds as usize], ..SyncWindow::default() };
        let last_second = u64::from(seconds).checked_sub(1); // none in a window of 0 s
        let mut sync_us = Vec::new();
        {
            let state = self.shared.lock();
            sync_us.reserve(state.sync_rounds.len());
            for round in state.sync_rounds.iter().rev() {
                let age_us = micros(now.saturating_duration_since(round.ended));
                if age_us > window_us {
                    break;
                }
                let took_us = micros(round.ended.saturating_duration_since(round.started));
                sync_us.push(took_us);
                window.records += round.records;
                if let Some(last) = last_second {
                    let second = &mut window.sync_us_max_by_s[(last - (age_us / 1_000_000).min(last)) as usize];
                    *second = (*second).max(took_us);
                }
            }
        }
        window.syncs = sync_us.len() as u64;
        window.sync_us_max = sync_us.iter().copied().max();
        window.sync_us_p99 = nearest_rank(&mut sync_us, 99);
        window.sync_us_p50 = nearest_rank(&mut sync_us, 50);
        window
    }

    pub fn status(&self) -> JournalStatus {
        let state = self.shared.lock();
        let mut status = state.status.clone();
        status.next_seq = state.next_seq;
        status
    }

    /// Writes and syncs what is pending, stops the flusher and returns its verdict: `Failing`
    /// if records could not be made durable (one last attempt is made when failing).
    pub fn close(mut self) -> Result<(), JournalError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), JournalError> {
        let Some(flusher) = self.flusher.take() else { return Ok(()) };
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        flusher.join().unwrap_or_else(|_| Err(JournalError::Failing { reason: "the journal flusher panicked".into() }))
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            eprintln!("journal writer dropped without close: {error}");
        }
    }
}

fn check_payload(payload: &[u8]) -> Result<(), JournalError> {
    if payload.len() > PAYLOAD_BYTES_MAX as usize {
        return Err(JournalError::PayloadTooLarge { bytes: payload.len(), bytes_max: PAYLOAD_BYTES_MAX });
    }
    Ok(())
}

/// The segment being appended to, owned by the flusher. `offset` is where its durable data ends.
#[derive(Debug)]
struct ActiveSegment {
    segments_dir: PathBuf,
    path: PathBuf,
    file: File,
    offset: u64,
    /// The file's length: past `offset` lie zeros or a recycled segment's stale bytes.
    file_bytes: u64,
    segment_bytes: u64,
    sync: SyncMode,
}

impl ActiveSegment {
    /// The last segment, checked against the recovery; or a new one when there is none, or when
    /// the only segment is empty and starts elsewhere than `next_seq`.
    fn open(config: &JournalConfig, recovery: &Recovery, next_seq: u64) -> Result<Self, JournalError> {
        let segments_dir = segments_dir(&config.dir);
        fs::create_dir_all(&segments_dir).map_err(|e| JournalError::io("creating", &segments_dir, e))?;
        sync_dir(&config.dir)?;
        let spare_path = segments_dir.join(SPARE_FILE_NAME);
        match fs::remove_file(&spare_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(JournalError::io("removing", &spare_path, e))
            }
            _ => {}
        }
        let segments = list_segments(&config.dir)?;
        let Some(last) = segments.last() else {
            return Self::create(config, &segments_dir, next_seq);
        };
        let stale = |reason: String| JournalError::Invalid { reason: format!("{reason}; run recover before open") };
        let offset = match &recovery.end {
            Some(end) if end.file == last.path => end.offset,
            _ => return Err(stale(format!("the recovery does not end in {}", last.path.display()))),
        };
        let file = open_read_write(&last.path)?;
        let file_bytes = file.metadata().map_err(|e| JournalError::io("reading metadata of", &last.path, e))?.len();
        let empty = offset <= SEGMENT_HEADER_BYTES as u64;
        if recovery.records == 0 && (!empty || segments.len() > 1) {
            return Err(stale(format!("{} holds records but the recovery found none", last.path.display())));
        }
        if recovery.records == 0 && last.first_seq != next_seq {
            // An empty journal whose only segment starts elsewhere: no record is lost by replacing it.
            drop(file);
            fs::remove_file(&last.path).map_err(|e| JournalError::io("removing", &last.path, e))?;
            return Self::create(config, &segments_dir, next_seq);
        }
        let fits = if empty { last.first_seq == next_seq } else { last.first_seq < next_seq };
        if !fits {
            return Err(stale(format!("{} does not end before seq {next_seq}", last.path.display())));
        }
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut header, 0).map_err(|e| JournalError::io("reading the header of", &last.path, e))?;
        if format::decode_segment_header(&header) != Ok(last.first_seq) {
            return Err(stale(format!("bad segment header in {}", last.path.display())));
        }
        let path = last.path.clone();
        let segment = ActiveSegment {
            segments_dir,
            path,
            file,
            offset,
            file_bytes,
            segment_bytes: config.segment_bytes,
            sync: config.sync,
        };
        // A crash between a write and its sync leaves records in the page cache only; they
        // count as durable from here on (retries are answered from them), so sync them first.
        segment.sync_file()?;
        if segment.sync == SyncMode::Fsync {
            sync_dir(&segment.segments_dir)?;
        }
        Ok(segment)
    }

    /// Creates an empty, synced segment for records from `first_seq` on.
    fn create(config: &JournalConfig, segments_dir: &Path, first_seq: u64) -> Result<Self, JournalError> {
        let segment = Self::start(segments_dir, first_seq, config.segment_bytes, config.sync)?;
        segment.sync_file()?;
        if segment.sync == SyncMode::Fsync {
            sync_dir(segments_dir)?;
        }
        Ok(segment)
    }

    /// A new segment file holding only its header, not yet synced.
    fn start(segments_dir: &Path, first_seq: u64, segment_bytes: u64, sync: SyncMode) -> Result<Self, JournalError> {
        let path = format::segment_path(segments_dir, first_seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| JournalError::io("creating", &path, e))?;
        file.write_all_at(&format::encode_segment_header(first_seq), 0)
            .map_err(|e| JournalError::io("writing", &path, e))?;
        let segments_dir = segments_dir.to_path_buf();
        let offset = SEGMENT_HEADER_BYTES as u64;
        Ok(ActiveSegment { segments_dir, path, file, offset, file_bytes: offset, segment_bytes, sync })
    }

    /// The spare as the segment whose first record is `first_seq`, holding `batch` after its
    /// header, written and synced under the spare's name and then renamed (not yet the
    /// directory). On error the spare is deleted.
    fn recycle(&self, spare: File, first_seq: u64, batch: &[u8]) -> Result<Self, JournalError> {
        let spare_path = self.segments_dir.join(SPARE_FILE_NAME);
        let file_bytes = spare.metadata().map_err(|e| JournalError::io("reading metadata of", &spare_path, e))?.len();
        let mut next = ActiveSegment {
            segments_dir: self.segments_dir.clone(),
            path: spare_path.clone(),
            file: spare,
            offset: 0,
            file_bytes,
            segment_bytes: self.segment_bytes,
            sync: self.sync,
        };
        let path = format::segment_path(&self.segments_dir, first_seq);
        let result = next
            .file
            .write_all_at(&format::encode_segment_header(first_seq), 0)
            .map_err(|e| JournalError::io("writing", &spare_path, e))
            .and_then(|()| {
                next.offset = SEGMENT_HEADER_BYTES as u64;
                next.append_and_sync(batch)
            })
            .and_then(|()| fs::rename(&spare_path, &path).map_err(|e| JournalError::io("renaming", &spare_path, e)));
        if let Err(error) = result {
            let _ = fs::remove_file(&spare_path);
            return Err(error);
        }
        next.path = path;
        Ok(next)
    }

    fn sync_file(&self) -> Result<(), JournalError> {
        if self.sync == SyncMode::Fsync {
            self.file.sync_data().map_err(|e| JournalError::io("syncing", &self.path, e))?;
        }
        Ok(())
    }

    /// Writes and syncs one batch whose first record is `first_seq`, rolling to a new segment
    /// first if this one has passed its size: the spare if one is given, else a new file. On
    /// error nothing past the durable offset remains.
    fn write_batch(&mut self, batch: &[u8], first_seq: u64, spare: Option<File>) -> Result<(), JournalError> {
        if self.offset < self.segment_bytes {
            return self.append_and_sync(batch);
        }
        let next = match spare {
            Some(spare) => self.recycle(spare, first_seq, batch)?,
            None => self.create_holding(first_seq, batch)?,
        };
        if next.sync == SyncMode::Fsync {
            if let Err(error) = sync_dir(&next.segments_dir) {
                // Best effort: a leftover segment is replaced on the retry, and `recover`
                // removes one whose header is torn.
                let _ = fs::remove_file(&next.path);
                return Err(error);
            }
        }
        *self = next;
        Ok(())
    }

    /// A new file as the segment whose first record is `first_seq`, holding `batch`, synced
    /// (not yet the directory). On error the file is deleted.
    fn create_holding(&self, first_seq: u64, batch: &[u8]) -> Result<Self, JournalError> {
        let mut next = Self::start(&self.segments_dir, first_seq, self.segment_bytes, self.sync)?;
        if let Err(error) = next.append_and_sync(batch) {
            let _ = fs::remove_file(&next.path);
            return Err(error);
        }
        Ok(next)
    }

    /// Writes `batch` at the durable offset, followed by an end marker when older bytes lie
    /// after it, and syncs.
    fn append_and_sync(&mut self, batch: &[u8]) -> Result<(), JournalError> {
        let end = self.offset + batch.len() as u64;
        let marker =
            &[0u8; FRAME_HEADER_BYTES][..self.file_bytes.saturating_sub(end).min(FRAME_HEADER_BYTES as u64) as usize];
        let result = self
            .file
            .write_all_at(batch, self.offset)
            .and_then(|()| self.file.write_all_at(marker, end))
            .map_err(|e| JournalError::io("writing", &self.path, e))
            .and_then(|()| self.sync_file());
        match result {
            Ok(()) => {
                self.offset = end;
                self.file_bytes = self.file_bytes.max(end);
                Ok(())
            }
            Err(error) => {
                // Best effort: what stays past the durable offset is a torn tail for `recover`.
                let _ = self.file.set_len(self.offset);
                self.file_bytes = self.offset;
                Err(error)
            }
        }
    }
}

fn open_read_write(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|e| JournalError::io("opening", path, e))
}

/// The flusher thread: takes pending records, writes and syncs them, publishes durability.
#[derive(Debug)]
struct Flusher {
    shared: Arc<Shared>,
    segment: ActiveSegment,
    /// The batch being written; after a failure it holds the records until a retry works.
    batch: Vec<u8>,
    batch_records: u64,
    batch_last_seq: u64,
}

impl Flusher {
    fn new(shared: Arc<Shared>, segment: ActiveSegment) -> Self {
        let batch_last_seq = shared.lock().status.durable_seq;
        Flusher { shared, segment, batch: Vec::new(), batch_records: 0, batch_last_seq }
    }

    fn run(mut self) -> Result<(), JournalError> {
        let result = self.flush_until_closed();
        let mut state = self.shared.lock();
        state.flusher_stopped = true;
        let waiting = state.on_durable.take_covered(u64::MAX);
        drop(state);
        self.shared.durable.notify_all();
        self.shared.space.notify_all();
        for done in waiting {
            done(Err(JournalError::Closed));
        }
        result
    }

    fn flush_until_closed(&mut self) -> Result<(), JournalError> {
        loop {
            if !self.take_work() {
                return Ok(());
            }
            let first_seq = self.batch_last_seq + 1 - self.batch_records;
            let started = Instant::now();
            let spare = match self.segment.offset >= self.segment.segment_bytes {
                true => self.take_spare(),
                false => None,
            };
            let recycling = spare.is_some();
            let result = self.segment.write_batch(&self.batch, first_seq, spare);
            if recycling {
                self.shared.lock().spare = Spare::Absent;
            }
            match result {
                Ok(()) => self.publish(started, Instant::now()),
                Err(error) => {
                    if self.fail(&error) {
                        return Err(JournalError::Failing { reason: error.to_string() });
                    }
                }
            }
        }
    }

    /// Waits for something to write and moves it into the batch; false when closed and done.
    fn take_work(&mut self) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        if self.batch.is_empty() {
            state = shared
                .work
                .wait_while(state, |s| s.pending.is_empty() && !s.closing)
                .unwrap_or_else(PoisonError::into_inner);
            if state.pending.is_empty() {
                return false;
            }
            state = self.gather(state);
        } else {
            // Held after a failure: retry after the interval, or at once when closing.
            let interval = Duration::from_millis(shared.config.retry_interval_ms);
            state = shared
                .work
                .wait_timeout_while(state, interval, |s| !s.closing)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if self.batch.is_empty() {
            std::mem::swap(&mut self.batch, &mut state.pending);
        } else {
            self.batch.extend_from_slice(&state.pending);
            state.pending.clear();
        }
        self.batch_records += state.pending_records;
        self.batch_last_seq = state.next_seq - 1;
        state.pending_records = 0;
        state.pending_since = None;
        drop(state);
        shared.space.notify_all();
        true
    }

    /// The spare if one is ready, marked as being written.
    fn take_spare(&self) -> Option<File> {
        let mut state = self.shared.lock();
        match std::mem::replace(&mut state.spare, Spare::Absent) {
            Spare::Ready(file) => {
                state.spare = Spare::Writing;
                Some(file)
            }
            other => {
                state.spare = other;
                None
            }
        }
    }

    /// Waits out the group-commit window, if any, so that more records join the batch.
    fn gather<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let window = Duration::from_micros(self.shared.config.group_commit_window_us);
        let Some(since) = state.pending_since.filter(|_| !window.is_zero()) else { return state };
        let deadline = since + window;
        while !state.closing {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self.shared.work.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
        state
    }

    fn publish(&mut self, started: Instant, ended: Instant) {
        let latency_us = micros(ended - started);
        let mut state = self.shared.lock();
        if state.sync_rounds.len() == SYNC_ROUNDS_KEPT {
            state.sync_rounds.pop_front();
        }
        state.sync_rounds.push_back(SyncRound { started, ended, records: self.batch_records });
        debug_assert!(self.batch_last_seq > state.status.durable_seq);
        state.failing = None;
        state.durable_file.clone_from(&self.segment.path);
        state.durable_offset = self.segment.offset;
        let status = &mut state.status;
        status.health = JournalHealth::Healthy;
        status.durable_seq = self.batch_last_seq;
        status.syncs += 1;
        status.records_durable += self.batch_records;
        status.bytes_durable += self.batch.len() as u64;
        status.sync_latency_us_last = latency_us;
        status.sync_latency_us_max = status.sync_latency_us_max.max(latency_us);
        let covered = state.on_durable.take_covered(self.batch_last_seq);
        drop(state);
        self.shared.durable.notify_all();
        for done in covered {
            done(Ok(()));
        }
        self.batch.clear();
        self.batch_records = 0;
    }

    /// Marks the journal failing and wakes everyone; true when closing (no more retries).
    fn fail(&mut self, error: &JournalError) -> bool {
        let reason = error.to_string();
        let mut state = self.shared.lock();
        state.status.write_failures += 1;
        state.status.health = JournalHealth::Failing { reason: reason.clone() };
        state.failing = Some(reason);
        let closing = state.closing;
        drop(state);
        self.shared.durable.notify_all();
        self.shared.space.notify_all();
        closing
    }
}
