//! Durable storage of the command log: append-only journal segments and snapshot files.
//!
//! The journal knows nothing of the engine: a record is a sequence number and opaque payload
//! bytes. It owns `<dir>/journal/*.seg` (see [`format`] for the bytes) and the snapshot store
//! owns `<dir>/snapshots/*.snap`.
//!
//! Rules it keeps:
//! - Sequence numbers are consecutive across all segments, with no gap and no repeat; the
//!   first record may have any sequence number ≥ 1 (older segments may have been removed).
//! - A record is durable, and may be acknowledged, only once an `fdatasync` that covers it
//!   has returned; [`JournalWriter::durable_seq`] never passes such a sync.
//! - A torn or corrupt tail (a bad frame in the last segment with no valid frame after it) is
//!   the trace of a write that never completed, so [`recover`] cuts it off and reports it.
//!   An end marker (zeros where a frame header would be) is not: records end there, and what
//!   follows is the rest of a recycled segment (see [`JournalWriter::remove_segments_before`]).
//!   Anything else that is wrong — a bad frame with a valid one after it, a bad frame in an
//!   older segment, a gap or repeat in the sequence — means acknowledged data is damaged, so
//!   recovery stops with an error that names the file, the byte offset and the sequence
//!   number, and modifies nothing.
//! - A write or sync error never loses or reorders a record: the writer cuts the segment back
//!   to its last durable offset, holds the records in memory, refuses new ones, and retries.
//!
//! Known limit: the kernel may write the pages of an un-synced batch out of order, so a crash
//! can leave a hole (zeros) in the tail with valid frames of the same batch after it. Those
//! records were never acknowledged, but recovery cannot tell them from damaged acknowledged
//! data and stops with `Corrupt`; truncating such a file at the reported offset is the manual
//! repair.

pub mod format;
mod scan;
mod snapshot_store;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use scan::{clear, read_from, recover, recover_reading, truncate_after, verify, ReadError};
pub use snapshot_store::{LoadedSnapshot, SkippedSnapshot, SnapshotStore, SNAPSHOTS_RETAINED_DEFAULT};
pub use writer::{
    DurableCallback, JournalConfig, JournalHealth, JournalStatus, JournalWriter, SyncMode, SyncRound, SyncWindow,
    SYNC_ROUNDS_KEPT,
};

/// Largest payload of one record. A length field above it is corruption, not a big record.
pub const PAYLOAD_BYTES_MAX: u32 = 16 << 20;
/// A segment is closed and a new one started at the first sync boundary past this size.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest `segment_bytes` accepted: a header and one small frame.
pub const SEGMENT_BYTES_MIN: u64 = 64;
/// Bytes of encoded frames waiting for the flusher before `append` blocks (back-pressure).
pub const PENDING_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// The flusher's gathering window. Zero: a batch is written as soon as anything is pending;
/// while one fsync is in flight the next batch gathers anyway, so throughput still grows with
/// load and a lone waiter pays one fsync, not a window plus an fsync.
pub const GROUP_COMMIT_WINDOW_US_DEFAULT: u64 = 0;
/// How long a failing writer waits between attempts to write its held records again.
pub const RETRY_INTERVAL_MS_DEFAULT: u64 = 100;

const _: () = assert!(SEGMENT_BYTES_MIN > format::SEGMENT_HEADER_BYTES as u64 + format::FRAME_HEADER_BYTES as u64);
const _: () = assert!(SEGMENT_BYTES_DEFAULT >= SEGMENT_BYTES_MIN);
const _: () = assert!(PENDING_BYTES_MAX_DEFAULT >= PAYLOAD_BYTES_MAX as u64 + format::FRAME_HEADER_BYTES as u64);

/// Where a record starts: its segment file and the byte offset of its frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    pub file: PathBuf,
    pub offset: u64,
}

/// A torn or corrupt tail that `recover` cut off (or that `verify` found and would cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailRepair {
    pub file: PathBuf,
    /// The file's new length; for a torn segment header, 0 and the file was removed.
    pub offset: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// What a scan found: the records `[first_seq, last_seq]` (both 0 for an empty journal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    /// Where the next record goes: the last segment that stays, and the offset where its
    /// records end (at an end marker, or at the end of the file). None when no segment stays.
    pub end: Option<RecordLocation>,
    pub tail_repaired: Option<TailRepair>,
}

/// Why a journal or snapshot operation failed. I/O and damage are errors; nothing here is a
/// rejection of a well-formed request except `SeqOutOfOrder` and `PayloadTooLarge`.
#[derive(Debug)]
pub enum JournalError {
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A bad frame or header that is not a torn tail. `seq` is the sequence number expected there.
    Corrupt {
        file: PathBuf,
        offset: u64,
        seq: u64,
        reason: String,
    },
    /// A valid frame or segment whose sequence number is not the next one.
    Gap {
        file: PathBuf,
        offset: u64,
        expected_seq: u64,
        found_seq: u64,
    },
    /// The writer cannot write or sync; it holds unwritten records and retries.
    Failing {
        reason: String,
    },
    /// `wait_durable` reached its deadline while the journal was healthy.
    Timeout,
    /// The writer was closed (or its flusher stopped) before the record became durable.
    Closed,
    /// `append` was given a sequence number other than the next one.
    SeqOutOfOrder {
        expected_seq: u64,
        found_seq: u64,
    },
    PayloadTooLarge {
        bytes: usize,
        bytes_max: u32,
    },
    /// The configuration or the state on disk does not allow the request.
    Invalid {
        reason: String,
    },
    /// Snapshot files exist but none is valid (each listed with why).
    NoValidSnapshot {
        skipped: Vec<SkippedSnapshot>,
    },
}

impl JournalError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        JournalError::Io { op, path: path.to_path_buf(), source }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { op, path, source } => write!(f, "{source} {op} {}", path.display()),
            JournalError::Corrupt { file, offset, seq, reason } => {
                write!(f, "journal corrupt in {} at offset {offset} (expected seq {seq}): {reason}", file.display())
            }
            JournalError::Gap { file, offset, expected_seq, found_seq } => write!(
                f,
                "journal sequence gap in {} at offset {offset}: expected seq {expected_seq}, found seq {found_seq}",
                file.display()
            ),
            JournalError::Failing { reason } => write!(f, "journal failing: {reason}"),
            JournalError::Timeout => write!(f, "timed out waiting for the journal to become durable"),
            JournalError::Closed => write!(f, "journal writer closed"),
            JournalError::SeqOutOfOrder { expected_seq, found_seq } => {
                write!(f, "journal append out of order: expected seq {expected_seq}, got seq {found_seq}")
            }
            JournalError::PayloadTooLarge { bytes, bytes_max } => {
                write!(f, "journal payload of {bytes} bytes exceeds the limit of {bytes_max}")
            }
            JournalError::Invalid { reason } => write!(f, "journal: {reason}"),
            JournalError::NoValidSnapshot { skipped } => {
                write!(f, "no valid snapshot:")?;
                for s in skipped {
                    write!(f, " {}: {};", s.path.display(), s.reason)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `<dir>/journal`, where the segments live.
pub fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("journal")
}

/// Flushes a directory's entries (a created, renamed or removed file) to disk.
pub(crate) fn sync_dir(path: &Path) -> Result<(), JournalError> {
    let dir = std::fs::File::open(path).map_err(|e| JournalError::io("opening directory", path, e))?;
    dir.sync_all().map_err(|e| JournalError::io("syncing directory", path, e))
}
