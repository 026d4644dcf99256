//! The Raft log of one member, kept in the journal of its data directory.
//!
//! - Entry `i` is the journal record with seq `i + 1` (the journal's seqs start at 1, Raft's
//!   indexes at 0); its payload is the entry encoded with postcard.
//! - `append` hands the records to the journal writer and returns; the journal's flusher
//!   reports them stored (the `IOFlushed` callback) right after the fsync that covers them, on
//!   its own thread (a notifier thread between them cost each sync a wake-up). Callbacks fire
//!   in order. While the journal is failing (disk full, I/O error) they wait: the writer
//!   retries, and nothing is reported stored that is not.
//! - The vote and the last purged log id live in `<dir>/raft/state`, rewritten atomically
//!   (temp file, fsync, rename, directory fsync) and checked by CRC32C on reading. Every write
//!   holds one lock and writes the latest of both.
//! - Entries after the last purged one stay in memory too (replication reads them from there);
//!   a snapshot lets Raft purge them. Raft waits for `purge`, so its file work (the state file's
//!   three syncs, then deleting the journal segments wholly before the purge point) runs on a
//!   blocking thread: done inline, it stopped appends and replication on every zone for 7-10 ms
//!   after each snapshot (traced in the three-zone bench). Until it is written the file keeps the previous purge point,
//!   whose entries are all still on disk, so a crash in between leaves no hole in the log.
//! - Truncation (a follower dropping entries a new leader overrode) waits until everything
//!   appended is durable, closes the writer, cuts the journal and reopens it.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::Duration;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::RaftLogReader;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{Entry, LogId, Vote, ZoneRaft};
use crate::journal::{self, JournalConfig, JournalError, JournalWriter};

/// How long a truncation waits on one sync before looking again (a failing journal retries).
const DURABLE_POLL: Duration = Duration::from_millis(200);

/// The vote and the purge point: the small state Raft needs besides the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RaftState {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("raft").join("state")
}

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

fn read_state(dir: &Path) -> io::Result<RaftState> {
    let path = state_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RaftState::default()),
        Err(e) => return Err(e),
    };
    let corrupt = |why: &str| io_error(format!("{}: {why}", path.display()));
    let (crc, body) = bytes.split_first_chunk::<4>().ok_or_else(|| corrupt("shorter than its CRC"))?;
    if u32::from_le_bytes(*crc) != crc32c::crc32c(body) {
        return Err(corrupt("CRC mismatch"));
    }
    postcard::from_bytes(body).map_err(|e| corrupt(&e.to_string()))
}

fn write_state(dir: &Path, state: &RaftState) -> io::Result<()> {
    let path = state_path(dir);
    let parent = path.parent().expect("the state file has a directory");
    std::fs::create_dir_all(parent)?;
    let body = postcard::to_stdvec(state).map_err(io_error)?;
    let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let temp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&temp)?;
        io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, &path)?;
    std::fs::File::open(parent)?.sync_all()
}

/// The vote and the purge point as Raft last set them, and the file that keeps them.
#[derive(Debug)]
struct StateFile {
    dir: PathBuf,
    latest: std::sync::Mutex<RaftState>,
    /// Held while the file is written, so that writes happen one at a time, each with the
    /// latest state: a purge point written late never writes back an older vote.
    writing: std::sync::Mutex<()>,
}

impl StateFile {
    fn latest(&self) -> RaftState {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Changes the state in memory only (`write` makes it durable).
    fn change(&self, change: impl FnOnce(&mut RaftState)) {
        change(&mut self.latest.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Writes the latest state durably, `change` applied first.
    fn write(&self, change: impl FnOnce(&mut RaftState)) -> io::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let state = {
            let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut latest);
            latest.clone()
        };
        write_state(&self.dir, &state)
    }
}

/// Makes the purge point durable, then deletes the journal segments wholly before it (off the
/// Raft task; see the module's notes).
fn write_purge_point(state: &StateFile, writer: &JournalWriter, purged: LogId) {
    let result =
        state.write(|_| {}).and_then(|()| writer.remove_segments_before(purged.index + 2).map(drop).map_err(io_error));
    if let Err(error) = result {
        // The segments stay until a later purge succeeds: more log on disk, nothing lost.
        eprintln!("raft log in {}: purging up to entry {}: {error}", state.dir.display(), purged.index);
    }
}

#[derive(Debug)]
struct Inner {
    config: JournalConfig,
    writer: Option<Arc<JournalWriter>>,
    /// Entries after `state.last_purged`, consecutive, the first at index `first_index`.
    entries: VecDeque<Entry>,
    first_index: u64,
    state: Arc<StateFile>,
    /// The last purge's file work, awaited before the next purge or a truncation starts.
    purging: Option<tokio::task::JoinHandle<()>>,
}

/// The log store and its readers share one `Inner`.
#[derive(Clone, Debug)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

impl LogStore {
    /// Opens the log in `config.dir`, recovering the journal (a torn tail is cut, damage
    /// before it is an error naming the file and offset) and reading its entries.
    pub fn open(config: JournalConfig) -> io::Result<LogStore> {
        let dir = config.dir.clone();
        let state = read_state(&dir)?;
        let mut entries = VecDeque::new();
        let from_seq = state.last_purged.as_ref().map_or(1, |purged| purged.index + 2);
        let recovery = journal::recover_reading(&dir, from_seq, |seq, payload, location| {
            let entry: Entry = postcard::from_bytes(payload)
                .map_err(|e| format!("{} offset {}: entry {}: {e}", location.file.display(), location.offset, seq))?;
            if entry.index() + 1 != seq {
                return Err(format!("{}: record seq {seq} holds entry {}", location.file.display(), entry.index()));
            }
            entries.push_back(entry);
            Ok(())
        })
        .map_err(io_error)?;
        let first_index = from_seq - 1;
        if let Some(first) = entries.front() {
            if first.index() != first_index {
                let reason =
                    format!("the log starts at entry {} but entries up to {first_index} are missing", first.index());
                return Err(io_error(reason));
            }
        }
        let next_seq = first_index + entries.len() as u64 + 1;
        let recovery = if recovery.records > 0 && recovery.last_seq + 1 < next_seq {
            // Every record precedes the purge point (a crash between a snapshot install's purge
            // and the journal's restart): finish the restart.
            journal::clear(&dir).map_err(io_error)?;
            journal::recover(&dir).map_err(io_error)?
        } else {
            recovery
        };
        let writer = JournalWriter::open(config.clone(), &recovery, next_seq).map_err(io_error)?;
        let state =
            Arc::new(StateFile { dir, latest: std::sync::Mutex::new(state), writing: std::sync::Mutex::new(()) });
        let inner = Inner { config, writer: Some(Arc::new(writer)), entries, first_index, state, purging: None };
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)) })
    }
}

impl Inner {
    fn writer(&self) -> &Arc<JournalWriter> {
        self.writer.as_ref().expect("the writer is open except during a truncation")
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|entry| entry.log_id()).or_else(|| self.state.latest().last_purged)
    }

    fn range(&self, range: impl RangeBounds<u64>) -> Vec<Entry> {
        let end_index = self.first_index + self.entries.len() as u64;
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => self.first_index,
        }
        .max(self.first_index);
        let end = match range.end_bound() {
            Bound::Included(&i) => i + 1,
            Bound::Excluded(&i) => i,
            Bound::Unbounded => end_index,
        }
        .min(end_index);
        if start >= end {
            return Vec::new();
        }
        let (from, to) = ((start - self.first_index) as usize, (end - self.first_index) as usize);
        self.entries.range(from..to).cloned().collect()
    }

    /// Waits for the last purge's file work (it holds the writer while it deletes segments).
    async fn purged(&mut self) -> io::Result<()> {
        match self.purging.take() {
            Some(purging) => purging.await.map_err(io_error),
            None => Ok(()),
        }
    }

    /// Closes the writer once every record appended is durable. Only a purge's file work
    /// shares the writer, and the callers wait for it first.
    fn close_writer(&mut self) -> io::Result<()> {
        let writer = self.writer.take().expect("the writer is open");
        let last_seq = writer.status().next_seq - 1;
        loop {
            match writer.wait_durable(last_seq, DURABLE_POLL) {
                Ok(()) => break,
                Err(JournalError::Timeout | JournalError::Failing { .. }) => continue,
                Err(other) => return Err(io_error(other)),
            }
        }
        let writer = Arc::try_unwrap(writer).map_err(|_| io_error("the journal writer is still shared"))?;
        writer.close().map_err(io_error)
    }

    fn reopen_writer(&mut self) -> io::Result<()> {
        let recovery = journal::recover(&self.config.dir).map_err(io_error)?;
        let next_seq = self.first_index + self.entries.len() as u64 + 1;
        let writer = JournalWriter::open(self.config.clone(), &recovery, next_seq).map_err(io_error)?;
        self.writer = Some(Arc::new(writer));
        Ok(())
    }
}

impl RaftLogReader<ZoneRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.inner.lock().await.range(range))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.inner.lock().await.state.latest().vote)
    }
}

impl RaftLogStorage<ZoneRaft> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<ZoneRaft>, io::Error> {
        let inner = self.inner.lock().await;
        Ok(LogState { last_purged_log_id: inner.state.latest().last_purged, last_log_id: inner.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let inner = self.inner.lock().await;
        inner.state.write(|state| state.vote = Some(*vote))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<ZoneRaft>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().await;
        let mut payload = Vec::new();
        let mut last_seq = None;
        for entry in entries {
            let expected = inner.first_index + inner.entries.len() as u64;
            if entry.index() != expected {
                return Err(io_error(format!("append of entry {} where entry {expected} is next", entry.index())));
            }
            payload.clear();
            payload = postcard::to_extend(&entry, payload).map_err(io_error)?;
            let seq = entry.index() + 1;
            inner.writer().append(seq, &payload).map_err(io_error)?;
            inner.entries.push_back(entry);
            last_seq = Some(seq);
        }
        match last_seq {
            Some(seq) => {
                inner.writer().on_durable(seq, Box::new(move |stored| callback.io_completed(stored.map_err(io_error))))
            }
            None => callback.io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        let keep_until = last_log_id.map_or(0, |id| id.index + 1); // entries below this index stay
        if keep_until >= inner.first_index + inner.entries.len() as u64 {
            return Ok(());
        }
        inner.purged().await?;
        inner.close_writer()?;
        journal::truncate_after(&inner.config.dir, keep_until).map_err(io_error)?;
        let kept = keep_until.saturating_sub(inner.first_index) as usize;
        inner.entries.truncate(kept);
        inner.reopen_writer()
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        if inner.state.latest().last_purged.as_ref() >= Some(&log_id) {
            return Ok(());
        }
        inner.purged().await?;
        let log_end = inner.first_index + inner.entries.len() as u64;
        if log_id.index + 1 >= log_end {
            // Nothing of the log stays (a snapshot installed past its end): start the journal
            // again right after the purge point, written down first.
            inner.state.write(|state| state.last_purged = Some(log_id))?;
            inner.close_writer()?;
            journal::clear(&inner.config.dir).map_err(io_error)?;
            inner.entries.clear();
            inner.first_index = log_id.index + 1;
            return inner.reopen_writer();
        }
        inner.state.change(|state| state.last_purged = Some(log_id));
        let purged = (log_id.index + 1).saturating_sub(inner.first_index) as usize;
        inner.entries.drain(..purged);
        inner.first_index = log_id.index + 1;
        let (state, writer) = (Arc::clone(&inner.state), Arc::clone(inner.writer()));
        inner.purging = Some(tokio::task::spawn_blocking(move || write_purge_point(&state, &writer, log_id)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use openraft::type_config::TypeConfigExt;
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::replication::Proposal;

    fn entry(term: u64, index: u64) -> Entry {
        let log_id = LogId::new(openraft::vote::leader_id_adv::CommittedLeaderId::new(term, 2), index);
        Entry::new_normal(log_id, Proposal::Configuration(bytes::Bytes::from(vec![index as u8; 40])))
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        let (tx, rx) = ZoneRaft::oneshot();
        store.append(entries, IOFlushed::signal(tx)).await.expect("append");
        rx.await.expect("reported").expect("flushed");
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(journal::segments_dir(dir)).expect("segments").count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_does_not_wait_for_the_state_file_and_a_vote_beside_it_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = JournalConfig::new(dir.path());
        config.segment_bytes = 512; // a segment or so per append below
        let mut store = LogStore::open(config.clone()).expect("open");
        for first in (0..200).step_by(5) {
            append(&mut store, (first..first + 5).map(|i| entry(1, i)).collect()).await;
        }
        let segments_before_purge = segment_files(dir.path());
        assert!(segments_before_purge > 15, "{segments_before_purge} segments");
        // A slow disk: a thread holds the state file's lock until released.
        let state = Arc::clone(&store.inner.lock().await.state);
        let (holding, held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let slow_disk = std::thread::spawn(move || {
            let _writing = state.writing.lock().expect("the state file's lock");
            holding.send(()).expect("the test waits");
            let _ = released.recv();
        });
        held.recv().expect("the lock is held");
        let purge = store.purge(entry(1, 149).log_id());
        tokio::time::timeout(Duration::from_secs(5), purge).await.expect("purge returns").expect("purge");
        let state_now = store.get_log_state().await.expect("log state");
        assert_eq!(state_now.last_purged_log_id.map(|id| id.index), Some(149));
        assert_eq!(read_state(dir.path()).expect("the file").last_purged, None, "written while its lock was held");
        assert_eq!(
            segment_files(dir.path()),
            segments_before_purge,
            "segments removed before the purge point was written"
        );
        release.send(()).expect("the slow disk waits");
        slow_disk.join().expect("the slow disk");
        let vote = Vote::new(3, 2);
        store.save_vote(&vote).await.expect("vote");
        store.inner.lock().await.purged().await.expect("the purge's file work");
        assert!(segment_files(dir.path()) < segments_before_purge - 10, "the segments before entry 149 go");
        drop(store);
        let mut store = LogStore::open(config).expect("reopen");
        assert_eq!(store.read_vote().await.expect("vote"), Some(vote));
        let log_state = store.get_log_state().await.expect("log state");
        assert_eq!(log_state.last_purged_log_id.map(|id| id.index), Some(149));
        assert_eq!(log_state.last_log_id.map(|id| id.index), Some(199));
        let kept: Vec<u64> = store.try_get_log_entries(0..300).await.expect("read").iter().map(Entry::index).collect();
        assert_eq!(kept, (150..200).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_member_truncates_what_a_new_leader_overrode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = JournalConfig::new(dir.path());
        let mut store = LogStore::open(config.clone()).expect("open");
        append(&mut store, (0..100).map(|i| entry(1, i)).collect()).await;
        drop(store);
        let mut store = LogStore::open(config.clone()).expect("reopen");
        assert_eq!(store.get_log_state().await.expect("state").last_log_id.map(|id| id.index), Some(99));
        store.truncate_after(Some(entry(1, 95).log_id())).await.expect("truncate");
        append(&mut store, (96..120).map(|i| entry(2, i)).collect()).await;
        drop(store);
        let mut store = LogStore::open(config).expect("reopen after the truncation");
        let entries = store.try_get_log_entries(0..200).await.expect("read");
        let terms: Vec<(u64, u64)> = entries.iter().map(|e| (e.log_id().leader_id.term, e.index())).collect();
        let expected: Vec<(u64, u64)> = (0..120).map(|i| (if i < 96 { 1 } else { 2 }, i)).collect();
        assert_eq!(terms, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncations_racing_appends_keep_the_log_whole_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = JournalConfig::new(dir.path());
        let mut store = LogStore::open(config.clone()).expect("open");
        let mut terms = Vec::new(); // the term each entry index holds, as the log should
        let mut receivers = Vec::new();
        for round in 0..300u64 {
            let term = round + 1;
            let next = terms.len() as u64;
            let (tx, rx) = ZoneRaft::oneshot();
            let entries: Vec<Entry> = (next..next + 5).map(|i| entry(term, i)).collect();
            store.append(entries, IOFlushed::signal(tx)).await.expect("append");
            receivers.push(rx);
            terms.extend([term; 5]);
            // Not waiting for the flush: drop the last 0-3 entries again at once.
            let keep = terms.len() - (round % 4) as usize;
            store.truncate_after(Some(entry(term, keep as u64 - 1).log_id())).await.expect("truncate");
            terms.truncate(keep);
            if round % 50 == 0 {
                for rx in receivers.drain(..) {
                    rx.await.expect("reported").expect("flushed");
                }
                drop(store);
                store = LogStore::open(config.clone()).expect("reopen");
            }
        }
        for rx in receivers {
            rx.await.expect("reported").expect("flushed");
        }
        drop(store);
        let mut store = LogStore::open(config).expect("reopen at the end");
        let entries = store.try_get_log_entries(0..10_000).await.expect("read");
        let found: Vec<(u64, u64)> = entries.iter().map(|e| (e.index(), e.log_id().leader_id.term)).collect();
        let expected: Vec<(u64, u64)> = terms.iter().enumerate().map(|(i, &t)| (i as u64, t)).collect();
        assert_eq!(found, expected);
    }
}
