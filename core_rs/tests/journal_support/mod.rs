//! Helpers shared by the journal tests: seeded payloads, writing and reading a journal whole,
//! and copies of a data directory to damage.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use core_rs::journal::{read_from, recover, JournalConfig, JournalWriter, ReadError, RecordLocation, Recovery};

pub const WAIT: Duration = Duration::from_secs(30);

/// A small seeded generator (SplitMix64): the same seed gives the same damage every run.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The payload of record `seq` in these tests: 64 to 96 bytes, seeded by `seq` and `tag`.
pub fn payload(seq: u64, tag: u64) -> Vec<u8> {
    let mut rng = Rng(seq.wrapping_mul(31).wrapping_add(tag));
    let bytes = 64 + rng.below(33) as usize;
    (0..bytes).map(|_| rng.next_u64() as u8).collect()
}

pub fn config(dir: &Path, segment_bytes: u64) -> JournalConfig {
    let mut config = JournalConfig::new(dir);
    config.segment_bytes = segment_bytes;
    config
}

/// Every record of the journal, in order.
pub fn read_all(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut records = Vec::new();
    read_from(dir, 0, |seq, payload, _| {
        records.push((seq, payload.to_vec()));
        Ok::<(), ()>(())
    })
    .expect("journal reads");
    records
}

/// Where record `seq` starts.
pub fn location_of(dir: &Path, seq: u64) -> RecordLocation {
    let mut found = None;
    let result = read_from(dir, seq, |_, _, location| {
        found = Some(location.clone());
        Err(())
    });
    assert!(matches!(result, Err(ReadError::Visitor(()))), "seq {seq} is in the journal");
    found.expect("location")
}

/// The segment files of `dir`, in order (not the spare).
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let is_segment = |path: &PathBuf| {
        path.file_name()
            .and_then(|name| name.to_str())
            .and_then(core_rs::journal::format::parse_segment_file_name)
            .is_some()
    };
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("journal"))
        .map(|entries| entries.map(|entry| entry.expect("entry").path()).filter(is_segment).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Every file under `dir` with its bytes, to show that a check modified nothing.
pub fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for sub in ["journal", "snapshots"] {
        if let Ok(entries) = fs::read_dir(dir.join(sub)) {
            for entry in entries {
                let path = entry.expect("entry").path();
                let bytes = fs::read(&path).expect("read");
                all.insert(path, bytes);
            }
        }
    }
    all
}

/// Copies the journal of `from` into a fresh temporary data directory.
pub fn copy_journal(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    fs::create_dir(to.path().join("journal")).expect("mkdir");
    for file in segment_files(from) {
        fs::copy(&file, to.path().join("journal").join(file.file_name().expect("name"))).expect("copy");
    }
    to
}

/// The same path inside another data directory.
pub fn rebase(path: &Path, from: &Path, to: &Path) -> PathBuf {
    to.join(path.strip_prefix(from).expect("path inside the data directory"))
}

/// Appends `count` records from the writer's next seq on, each waited durable by itself (so
/// each is its own batch and segments roll between records).
pub fn append_each_durable(writer: &JournalWriter, first_seq: u64, count: u64, tag: u64) {
    for seq in first_seq..first_seq + count {
        writer.append(seq, &payload(seq, tag)).expect("append");
        writer.wait_durable(seq, WAIT).expect("durable");
    }
}

/// Recovers, appends `count` more records, closes, and returns the recovery it started from.
pub fn recover_and_append(dir: &Path, segment_bytes: u64, count: u64, tag: u64) -> Recovery {
    let recovery = recover(dir).expect("recover");
    let writer = JournalWriter::open(config(dir, segment_bytes), &recovery, 1).expect("open");
    let next = if recovery.records == 0 { 1 } else { recovery.last_seq + 1 };
    append_each_durable(&writer, next, count, tag);
    writer.close().expect("close");
    recovery
}
