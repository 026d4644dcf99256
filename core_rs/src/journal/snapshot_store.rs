//! Snapshot files: the engine's state at a sequence number, as opaque bytes with its state hash.
//!
//! `<dir>/snapshots/<seq:020>.snap` is a 72-byte header then the body:
//!
//! | bytes  | field                                                  |
//! |--------|--------------------------------------------------------|
//! | 0..8   | magic `PYXSNAP1`                                       |
//! | 8..12  | format version, u32 LE (2)                             |
//! | 12..16 | reserved, zero                                         |
//! | 16..24 | seq, u64 LE (equal to the file's name)                 |
//! | 24..32 | body length in bytes, u64 LE                           |
//! | 32..64 | state hash                                             |
//! | 64..68 | CRC32C of bytes 0..64 followed by the body, u32 LE     |
//! | 68..72 | reserved, zero                                         |
//!
//! Rules it keeps: a `.snap` file appears only whole and synced (written as a temp file,
//! fsync'd, renamed, directory fsync'd), so a crash leaves the old set or the new one; the
//! newest `retain` snapshots are kept; loading takes the newest whose checks pass and names
//! every newer one it skipped. One writer per directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{sync_dir, JournalError};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PYXSNAP1";
/// 2 since the state hash takes live orders as a multiset (version 1's hash walked the levels);
/// 3 since it takes the closed orders through their XXH3-128.
pub const SNAPSHOT_VERSION: u32 = 3;
pub const SNAPSHOT_HEADER_BYTES: usize = 72;
/// Snapshots kept by default: the newest, and two to fall back on if it is damaged.
pub const SNAPSHOTS_RETAINED_DEFAULT: usize = 3;
const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".snap.tmp";
/// A snapshot is written and synced this much at a time: the journal's syncs, which share the
/// disk, then never wait behind more than one chunk (a whole body synced at once held them
/// for tens of milliseconds).
const SYNC_CHUNK_BYTES: usize = 1 << 20;

/// A snapshot that passed every check, and the newer ones that did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedSnapshot {
    pub seq: u64,
    pub state_hash: [u8; 32],
    pub body: Vec<u8>,
    pub path: PathBuf,
    /// Newer snapshot files passed over, newest first.
    pub skipped: Vec<SkippedSnapshot>,
}

/// A snapshot file that failed a check, and which one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSnapshot {
    pub path: PathBuf,
    pub reason: String,
}

/// The snapshot files of one data directory.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    /// How many of the newest snapshots `write` keeps (at least 1).
    pub retain: usize,
}

impl SnapshotStore {
    /// The store of `<dir>/snapshots/`; nothing is created until the first write.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        SnapshotStore { dir: dir.as_ref().join("snapshots"), retain: SNAPSHOTS_RETAINED_DEFAULT }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the snapshot at `seq` atomically and durably, then deletes all but the newest
    /// `retain` snapshots (and temp files left by a crash). Returns the snapshot's path.
    pub fn write(&self, seq: u64, state_hash: [u8; 32], body: &[u8]) -> Result<PathBuf, JournalError> {
        fs::create_dir_all(&self.dir).map_err(|e| JournalError::io("creating", &self.dir, e))?;
        let path = self.dir.join(format!("{seq:020}{SNAPSHOT_SUFFIX}"));
        let temp = self.dir.join(format!("{seq:020}{TEMP_SUFFIX}"));
        let header = encode_header(seq, &state_hash, body);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| JournalError::io("creating", &temp, e))?;
        file.write_all(&header).map_err(|e| JournalError::io("writing", &temp, e))?;
        for chunk in body.chunks(SYNC_CHUNK_BYTES) {
            file.write_all(chunk).map_err(|e| JournalError::io("writing", &temp, e))?;
            file.sync_data().map_err(|e| JournalError::io("syncing", &temp, e))?;
        }
        file.sync_all().map_err(|e| JournalError::io("syncing", &temp, e))?;
        drop(file);
        fs::rename(&temp, &path).map_err(|e| JournalError::io("renaming into place", &temp, e))?;
        sync_dir(&self.dir)?;
        self.prune()?;
        Ok(path)
    }

    /// Snapshot files by sequence number, newest first.
    /// Sequence numbers of the snapshot files present (valid or not), oldest first.
    pub fn seqs(&self) -> Result<Vec<u64>, JournalError> {
        Ok(self.list()?.into_iter().rev().map(|(seq, _)| seq).collect())
    }

    /// The snapshot files present, newest first.
    fn list(&self) -> Result<Vec<(u64, PathBuf)>, JournalError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(JournalError::io("listing", &self.dir, e)),
        };
        let mut snapshots = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| JournalError::io("listing", &self.dir, e))?;
            let name = entry.file_name();
            if let Some(seq) = name.to_str().and_then(parse_name) {
                snapshots.push((seq, entry.path()));
            }
        }
        snapshots.sort_by_key(|snapshot| std::cmp::Reverse(snapshot.0));
        Ok(snapshots)
    }

    fn prune(&self) -> Result<(), JournalError> {
        let mut removed = false;
        for (_, path) in self.list()?.into_iter().skip(self.retain.max(1)) {
            fs::remove_file(&path).map_err(|e| JournalError::io("removing", &path, e))?;
            removed = true;
        }
        let entries = fs::read_dir(&self.dir).map_err(|e| JournalError::io("listing", &self.dir, e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|name| name.ends_with(TEMP_SUFFIX)) {
                let _ = fs::remove_file(entry.path());
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The newest snapshot that passes its checks, with the newer ones it skipped; `None` when
    /// there is no snapshot file at all, `NoValidSnapshot` when there are some and none is valid.
    pub fn load_newest_valid(&self) -> Result<Option<LoadedSnapshot>, JournalError> {
        let mut skipped = Vec::new();
        let snapshots = self.list()?;
        if snapshots.is_empty() {
            return Ok(None);
        }
        for (seq, path) in snapshots {
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    skipped.push(SkippedSnapshot { reason: format!("{e} reading it"), path });
                    continue;
                }
            };
            match decode(seq, &bytes) {
                Ok(state_hash) => {
                    let body = bytes[SNAPSHOT_HEADER_BYTES..].to_vec();
                    return Ok(Some(LoadedSnapshot { seq, state_hash, body, path, skipped }));
                }
                Err(reason) => skipped.push(SkippedSnapshot { path, reason }),
            }
        }
        Err(JournalError::NoValidSnapshot { skipped })
    }
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn snapshot_crc(header: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[0..64]), body)
}

fn encode_header(seq: u64, state_hash: &[u8; 32], body: &[u8]) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..32].copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[32..64].copy_from_slice(state_hash);
    let crc = snapshot_crc(&header, body);
    header[64..68].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The state hash of a whole, valid snapshot file named for `seq_named`, or why it is not one.
fn decode(seq_named: u64, bytes: &[u8]) -> Result<[u8; 32], String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(format!("header torn: {} of {SNAPSHOT_HEADER_BYTES} bytes", bytes.len()));
    }
    let (header, body) = bytes.split_at(SNAPSHOT_HEADER_BYTES);
    let word = |range: std::ops::Range<usize>| -> u64 {
        header[range].iter().rev().fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
    };
    if header[0..8] != SNAPSHOT_MAGIC {
        return Err("magic is not PYXSNAP1".into());
    }
    let body_bytes = word(24..32);
    if body_bytes != body.len() as u64 {
        return Err(format!("header declares a body of {body_bytes} bytes, the file holds {}", body.len()));
    }
    let crc_stored = word(64..68);
    let crc_computed = u64::from(snapshot_crc(header, body));
    if crc_stored != crc_computed {
        return Err(format!("CRC mismatch: stored {crc_stored:#010x}, computed {crc_computed:#010x}"));
    }
    let version = word(8..12);
    if version != u64::from(SNAPSHOT_VERSION) {
        return Err(format!("format version {version} is not {SNAPSHOT_VERSION}"));
    }
    let seq = word(16..24);
    if seq != seq_named {
        return Err(format!("header declares seq {seq}, its file name {seq_named}"));
    }
    let mut state_hash = [0u8; 32];
    state_hash.copy_from_slice(&header[32..64]);
    Ok(state_hash)
}
