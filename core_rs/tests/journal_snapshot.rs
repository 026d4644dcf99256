//! Snapshot files: written snapshots load back bit for bit, retention keeps the newest, and a
//! damaged newest snapshot (flipped byte, truncation, wrong name, crash leftovers) is passed
//! over for the previous one and reported.

use std::fs;
use std::path::PathBuf;

use core_rs::journal::{JournalError, SnapshotStore};

fn hash(seq: u64) -> [u8; 32] {
    let mut hash = [0u8; 32];
    for (index, byte) in hash.iter_mut().enumerate() {
        *byte = (seq as u8).wrapping_mul(31).wrapping_add(index as u8);
    }
    hash
}

fn body(seq: u64) -> Vec<u8> {
    (0..1_000 + seq).map(|index| (index * seq % 251) as u8).collect()
}

fn snapshot_names(store: &SnapshotStore) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.dir())
        .expect("listing")
        .map(|entry| entry.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

fn store_with(seqs: &[u64]) -> (tempfile::TempDir, SnapshotStore, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::new(dir.path());
    let paths = seqs.iter().map(|&seq| store.write(seq, hash(seq), &body(seq)).expect("write")).collect();
    (dir, store, paths)
}

#[test]
fn write_load_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::new(dir.path());
    assert_eq!(store.load_newest_valid().expect("load"), None, "no snapshot yet");
    for seq in [10, 20, 30, 40, 50] {
        let path = store.write(seq, hash(seq), &body(seq)).expect("write");
        assert_eq!(path, dir.path().join("snapshots").join(format!("{seq:020}.snap")));
    }
    assert_eq!(
        snapshot_names(&store),
        ["00000000000000000030.snap", "00000000000000000040.snap", "00000000000000000050.snap"],
        "the newest three are kept, no temp file is left"
    );
    let loaded = store.load_newest_valid().expect("load").expect("a snapshot");
    assert_eq!((loaded.seq, loaded.state_hash, &loaded.body), (50, hash(50), &body(50)));
    assert!(loaded.skipped.is_empty());

    let mut store = store;
    store.retain = 1;
    store.write(60, hash(60), b"").expect("write an empty body");
    assert_eq!(snapshot_names(&store), ["00000000000000000060.snap"]);
    let loaded = store.load_newest_valid().expect("load").expect("a snapshot");
    assert_eq!((loaded.seq, loaded.body.len()), (60, 0));
}

/// A way to damage a snapshot file's bytes.
type Damage = fn(&mut Vec<u8>);

#[test]
fn a_damaged_newest_snapshot_falls_back_and_is_reported() {
    let damages: [(&str, Damage); 4] = [
        ("body byte flipped", |bytes| bytes[500] ^= 0x10),
        ("hash byte flipped", |bytes| bytes[40] ^= 0x01),
        ("truncated", |bytes| bytes.truncate(bytes.len() - 7)),
        ("header torn", |bytes| bytes.truncate(30)),
    ];
    for (what, damage) in damages {
        let (_dir, store, paths) = store_with(&[100, 200, 300]);
        let mut bytes = fs::read(&paths[2]).expect("read");
        damage(&mut bytes);
        fs::write(&paths[2], bytes).expect("write");
        let loaded = store.load_newest_valid().expect("load").expect("a snapshot");
        assert_eq!((loaded.seq, loaded.state_hash, &loaded.body), (200, hash(200), &body(200)), "{what}");
        assert_eq!(loaded.skipped.len(), 1, "{what}");
        assert_eq!(loaded.skipped[0].path, paths[2], "{what}");
        println!("{what}: {}", loaded.skipped[0].reason);
    }
}

#[test]
fn a_snapshot_under_another_name_is_not_trusted() {
    let (_dir, store, paths) = store_with(&[100, 200]);
    let renamed = paths[1].with_file_name(format!("{:020}.snap", 250));
    fs::rename(&paths[1], &renamed).expect("rename");
    let loaded = store.load_newest_valid().expect("load").expect("a snapshot");
    assert_eq!(loaded.seq, 100);
    assert_eq!(loaded.skipped[0].path, renamed);
    assert!(loaded.skipped[0].reason.contains("seq 200"), "{}", loaded.skipped[0].reason);
}

#[test]
fn every_snapshot_damaged_is_an_error_listing_them() {
    let (_dir, store, paths) = store_with(&[1, 2]);
    for path in &paths {
        let mut bytes = fs::read(path).expect("read");
        bytes[0] ^= 0xff;
        fs::write(path, bytes).expect("write");
    }
    match store.load_newest_valid() {
        Err(JournalError::NoValidSnapshot { skipped }) => {
            assert_eq!(
                skipped.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
                [paths[1].clone(), paths[0].clone()]
            );
        }
        other => panic!("expected NoValidSnapshot, got {other:?}"),
    }
}

#[test]
fn a_crash_mid_write_leaves_the_previous_snapshot_in_force() {
    let (_dir, store, _) = store_with(&[100]);
    // What a crash before the rename leaves: a partial temp file of a newer snapshot.
    let temp = store.dir().join(format!("{:020}.snap.tmp", 200));
    fs::write(&temp, &body(200)[..100]).expect("write");
    let loaded = store.load_newest_valid().expect("load").expect("a snapshot");
    assert_eq!((loaded.seq, loaded.skipped.len()), (100, 0), "temp files are not snapshots");
    store.write(300, hash(300), &body(300)).expect("write");
    assert!(!temp.exists(), "the next write clears crash leftovers");
    assert_eq!(store.load_newest_valid().expect("load").expect("a snapshot").seq, 300);
}
