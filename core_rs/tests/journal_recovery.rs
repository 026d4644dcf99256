//! Journal files on disk: records written through the writer are read back whole across
//! segment rolls, and each kind of damage — a torn or corrupt tail cut at every byte, seeded
//! bit flips, zeros, damage before the tail, sequence gaps — gets exactly the verdict the
//! format promises, checked on copies of one written journal.

mod journal_support;

use std::fs::{self, OpenOptions};
use std::path::Path;

use core_rs::journal::format::{self, SEGMENT_HEADER_BYTES};
use core_rs::journal::{
    read_from, recover, remove_segments_before, verify, JournalError, JournalWriter, ReadError, Recovery,
};
use journal_support::{
    append_each_durable, config, contents, copy_journal, location_of, payload, read_all, rebase, recover_and_append,
    segment_files, Rng, WAIT,
};

const SEGMENT_BYTES: u64 = 1024;
const TAG: u64 = 7;
const TAG_AFTER: u64 = 8;

/// A journal of records 1..=N whose last segment holds exactly its last record N.
fn journal_ending_in_fresh_segment(segments: usize) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = JournalWriter::open(config(dir.path(), SEGMENT_BYTES), &recover(dir.path()).expect("recover"), 1)
        .expect("open");
    let mut seq = 0;
    while segment_files(dir.path()).len() < segments {
        seq += 1;
        append_each_durable(&writer, seq, 1, TAG);
    }
    writer.close().expect("close");
    (dir, seq)
}

fn set_len(path: &Path, bytes: u64) {
    OpenOptions::new().write(true).open(path).expect("open").set_len(bytes).expect("truncate");
}

fn flip_bit(path: &Path, bit: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    fs::write(path, bytes).expect("write");
}

/// After a repaired tail: the records before `last_seq`, a reported repair, and appending
/// goes on at `last_seq` with nothing else changed.
fn assert_repaired_and_appendable(dir: &Path, last_seq: u64, recovery: &Recovery, what: &str) {
    assert_eq!((recovery.first_seq, recovery.last_seq, recovery.records), (1, last_seq - 1, last_seq - 1), "{what}");
    assert!(recovery.tail_repaired.is_some(), "{what}: repair reported");
    let expected: Vec<_> = (1..last_seq).map(|seq| (seq, payload(seq, TAG))).collect();
    assert_eq!(read_all(dir), expected, "{what}: records before the damaged one");
    let again = recover_and_append(dir, SEGMENT_BYTES, 1, TAG_AFTER);
    assert_eq!(again.tail_repaired, None, "{what}: repaired once");
    let after = read_all(dir);
    assert_eq!(after.len() as u64, last_seq, "{what}");
    assert_eq!(after.last(), Some(&(last_seq, payload(last_seq, TAG_AFTER))), "{what}: appending resumed at the seq");
    let clean = verify(dir).expect("verify");
    assert_eq!((clean.last_seq, clean.tail_repaired), (last_seq, None), "{what}");
}

#[test]
fn round_trip_across_rolls_and_read_from_every_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer =
        JournalWriter::open(config(dir.path(), 2048), &recover(dir.path()).expect("recover"), 1).expect("open");
    let mut rng = Rng(11);
    let mut seq = 1;
    while seq <= 500 {
        let burst = 1 + rng.below(40);
        for _ in 0..burst {
            writer.append(seq, &payload(seq, TAG)).expect("append");
            seq += 1;
        }
        writer.wait_durable(seq - 1, WAIT).expect("durable");
    }
    let last = seq - 1;
    let position = writer.durable_position();
    writer.close().expect("close");
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 5, "rolled: {segments:?}");
    assert_eq!(position.file, *segments.last().expect("segments"));
    assert_eq!(position.offset, fs::metadata(&position.file).expect("metadata").len());

    let recovery = recover(dir.path()).expect("recover");
    assert_eq!(recovery, Recovery { first_seq: 1, last_seq: last, records: last, tail_repaired: None });
    assert_eq!(verify(dir.path()).expect("verify"), recovery);
    let expected: Vec<_> = (1..=last).map(|seq| (seq, payload(seq, TAG))).collect();
    for from_seq in 0..=last + 1 {
        let mut seen = Vec::new();
        let visited = read_from(dir.path(), from_seq, |seq, payload, location| {
            assert_eq!(format::segment_path(&dir.path().join("journal"), 1).parent(), location.file.parent());
            seen.push((seq, payload.to_vec(), location.clone()));
            Ok::<(), ()>(())
        })
        .expect("read");
        let skipped = from_seq.max(1) as usize - 1;
        assert_eq!(visited as usize, expected.len() - skipped.min(expected.len()));
        let got: Vec<_> = seen.iter().map(|(seq, payload, _)| (*seq, payload.clone())).collect();
        assert_eq!(got, expected[skipped.min(expected.len())..], "from seq {from_seq}");
        for (seq, payload, location) in seen.iter().take(3) {
            let bytes = fs::read(&location.file).expect("segment");
            let frame = format::check_frame(&bytes, location.offset as usize).expect("frame at its location");
            assert_eq!((frame.seq, &bytes[frame.payload_start..frame.end]), (*seq, &payload[..]));
        }
    }
}

#[test]
fn journal_may_start_at_any_seq_and_old_segments_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer =
        JournalWriter::open(config(dir.path(), 1024), &recover(dir.path()).expect("recover"), 1_000).expect("open");
    assert!(matches!(writer.append(1, b"x"), Err(JournalError::SeqOutOfOrder { expected_seq: 1_000, found_seq: 1 })));
    append_each_durable(&writer, 1_000, 100, TAG);
    writer.close().expect("close");
    let recovery = recover(dir.path()).expect("recover");
    assert_eq!((recovery.first_seq, recovery.last_seq, recovery.records), (1_000, 1_099, 100));

    let segments = segment_files(dir.path());
    let firsts: Vec<u64> = segments
        .iter()
        .map(|path| format::parse_segment_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect();
    assert_eq!(remove_segments_before(dir.path(), firsts[2] - 1).expect("remove"), 1, "segment 0 only");
    assert_eq!(remove_segments_before(dir.path(), firsts[2]).expect("remove"), 1, "segment 1 too");
    assert_eq!(remove_segments_before(dir.path(), u64::MAX).expect("remove"), segments.len() - 3, "never the last");
    assert_eq!(segment_files(dir.path()), segments[segments.len() - 1..]);
    let recovery = recover(dir.path()).expect("recover");
    assert_eq!((recovery.first_seq, recovery.last_seq), (firsts[firsts.len() - 1], 1_099));
    assert_eq!(read_all(dir.path()).first().map(|record| record.0), Some(firsts[firsts.len() - 1]));

    let writer = JournalWriter::open(config(dir.path(), 1024), &recovery, 1).expect("reopen");
    append_each_durable(&writer, 1_100, 5, TAG);
    writer.close().expect("close");
    assert_eq!(read_all(dir.path()).last().map(|record| record.0), Some(1_104));
}

#[test]
fn torn_tail_cut_at_every_byte_of_the_last_record_and_its_fresh_segment_header() {
    let (base, last_seq) = journal_ending_in_fresh_segment(3);
    let location = location_of(base.path(), last_seq);
    assert_eq!(location.offset, SEGMENT_HEADER_BYTES as u64, "the last record opens its segment");
    let end = fs::metadata(&location.file).expect("metadata").len();
    for cut in 0..end {
        let dir = copy_journal(base.path());
        let file = rebase(&location.file, base.path(), dir.path());
        set_len(&file, cut);
        let what = format!("cut at {cut} of {end}");
        let recovery = recover(dir.path()).expect(&what);
        if cut == SEGMENT_HEADER_BYTES as u64 {
            // The segment ends cleanly after its header: nothing to repair, one record fewer.
            assert_eq!((recovery.last_seq, recovery.tail_repaired.clone()), (last_seq - 1, None), "{what}");
            continue;
        }
        let repair = recovery.tail_repaired.clone().expect("repair");
        assert_eq!(repair.file, file, "{what}");
        if cut < SEGMENT_HEADER_BYTES as u64 {
            assert_eq!((repair.offset, repair.bytes_dropped), (0, cut), "{what}");
            assert!(!file.exists(), "{what}: a segment with a torn header is removed");
        } else {
            assert_eq!((repair.offset, repair.bytes_dropped), (location.offset, cut - location.offset), "{what}");
            assert_eq!(fs::metadata(&file).expect("metadata").len(), location.offset, "{what}: truncated");
        }
        assert_repaired_and_appendable(dir.path(), last_seq, &recovery, &what);
    }
}

#[test]
fn torn_tail_of_a_record_inside_a_segment() {
    let (base, _) = journal_ending_in_fresh_segment(3);
    let last_seq = {
        // Two more records, so the last one sits after another in its segment.
        let recovery = recover_and_append(base.path(), SEGMENT_BYTES, 2, TAG);
        recovery.last_seq + 2
    };
    let location = location_of(base.path(), last_seq);
    assert!(location.offset > SEGMENT_HEADER_BYTES as u64);
    let end = fs::metadata(&location.file).expect("metadata").len();
    for cut in location.offset + 1..end {
        let dir = copy_journal(base.path());
        set_len(&rebase(&location.file, base.path(), dir.path()), cut);
        let what = format!("cut at {cut} of {end}");
        let recovery = recover(dir.path()).expect(&what);
        let repair = recovery.tail_repaired.clone().expect("repair");
        assert_eq!((repair.offset, repair.bytes_dropped), (location.offset, cut - location.offset), "{what}");
        // The records the test appended carry TAG too, so the generic check holds.
        assert_repaired_and_appendable(dir.path(), last_seq, &recovery, &what);
    }
}

#[test]
fn bit_flips_in_the_last_record_are_a_torn_tail() {
    let (base, last_seq) = journal_ending_in_fresh_segment(3);
    let location = location_of(base.path(), last_seq);
    let end = fs::metadata(&location.file).expect("metadata").len();
    let mut rng = Rng(2024);
    for round in 0..200 {
        let bit = location.offset * 8 + rng.below((end - location.offset) * 8);
        let dir = copy_journal(base.path());
        let file = rebase(&location.file, base.path(), dir.path());
        flip_bit(&file, bit);
        let what = format!("round {round}: bit {bit} of byte {} flipped", bit / 8);
        let before = contents(dir.path());
        assert!(verify(dir.path()).expect(&what).tail_repaired.is_some(), "{what}: verify sees it");
        assert_eq!(contents(dir.path()), before, "{what}: verify modifies nothing");
        let recovery = recover(dir.path()).expect(&what);
        let repair = recovery.tail_repaired.clone().expect("repair");
        assert_eq!((repair.file.clone(), repair.offset), (file.clone(), location.offset), "{what}: {repair:?}");
        assert_repaired_and_appendable(dir.path(), last_seq, &recovery, &what);
    }
}

#[test]
fn zero_filled_tails_are_cut() {
    let (base, last_seq) = journal_ending_in_fresh_segment(3);
    let location = location_of(base.path(), last_seq);
    let end = fs::metadata(&location.file).expect("metadata").len();

    // Zeros after the last record (a file extended but never written): nothing is lost.
    let dir = copy_journal(base.path());
    let file = rebase(&location.file, base.path(), dir.path());
    set_len(&file, end + 4096);
    let recovery = recover(dir.path()).expect("recover");
    assert_eq!(recovery.last_seq, last_seq);
    let repair = recovery.tail_repaired.expect("repair");
    assert_eq!((repair.offset, repair.bytes_dropped), (end, 4096));
    assert_eq!(read_all(dir.path()).len() as u64, last_seq);

    // The last record itself zeroed, and zeros after it.
    let dir = copy_journal(base.path());
    let file = rebase(&location.file, base.path(), dir.path());
    set_len(&file, location.offset);
    set_len(&file, end + 8192);
    let recovery = recover(dir.path()).expect("recover");
    assert_eq!(recovery.tail_repaired.as_ref().map(|repair| repair.offset), Some(location.offset));
    assert_repaired_and_appendable(dir.path(), last_seq, &recovery, "zeroed last record");

    // A fresh segment that is nothing but zeros (its header never written).
    let dir = copy_journal(base.path());
    let file = rebase(&location.file, base.path(), dir.path());
    set_len(&file, 0);
    set_len(&file, 4096);
    let recovery = recover(dir.path()).expect("recover");
    assert_eq!(recovery.tail_repaired.as_ref().map(|repair| (repair.offset, repair.bytes_dropped)), Some((0, 4096)));
    assert!(!file.exists());
    assert_repaired_and_appendable(dir.path(), last_seq, &recovery, "zeroed fresh segment");
}

/// `recover` and `verify` both refuse with an error naming the file, offset and seq, and
/// neither changes a byte.
fn assert_refused(dir: &Path, check: impl Fn(&JournalError) -> bool, what: &str) -> String {
    let before = contents(dir);
    let verified = verify(dir).expect_err(what);
    let recovered = recover(dir).expect_err(what);
    assert!(check(&verified) && check(&recovered), "{what}: {recovered:?}");
    assert_eq!(verified.to_string(), recovered.to_string());
    assert_eq!(contents(dir), before, "{what}: files untouched");
    let read = read_from(dir, 0, |_, _, _| Ok::<(), ()>(()));
    assert!(matches!(read, Err(ReadError::Journal(_))), "{what}: read_from stops with the error");
    recovered.to_string()
}

#[test]
fn corruption_before_the_tail_stops_recovery_loudly() {
    let (base, last_seq) = journal_ending_in_fresh_segment(4);
    // A record in the middle of a segment, with valid records after it in the same file.
    let middle = location_of(base.path(), 3);
    let dir = copy_journal(base.path());
    let file = rebase(&middle.file, base.path(), dir.path());
    flip_bit(&file, (middle.offset + 20) * 8 + 3);
    let message = assert_refused(
        dir.path(),
        |e| matches!(e, JournalError::Corrupt { file: f, offset, seq: 3, .. } if *f == file && *offset == middle.offset),
        "middle record",
    );
    assert!(message.contains(&file.display().to_string()) && message.contains(&format!("offset {}", middle.offset)));
    assert!(message.contains("seq 3"), "{message}");

    // The last record of an older segment: no valid frame follows in its file, but it is not the tail.
    let second_segment_first = {
        let files = segment_files(base.path());
        format::parse_segment_file_name(files[1].file_name().unwrap().to_str().unwrap()).unwrap()
    };
    let victim = location_of(base.path(), second_segment_first - 1);
    let dir = copy_journal(base.path());
    let file = rebase(&victim.file, base.path(), dir.path());
    flip_bit(&file, (victim.offset + 16) * 8);
    let seq = second_segment_first - 1;
    assert_refused(
        dir.path(),
        |e| matches!(e, JournalError::Corrupt { file: f, offset, seq: s, .. } if *f == file && *offset == victim.offset && *s == seq),
        "last record of an older segment",
    );

    // The header of the last segment damaged while its record after it is valid.
    let last = location_of(base.path(), last_seq);
    let dir = copy_journal(base.path());
    let file = rebase(&last.file, base.path(), dir.path());
    flip_bit(&file, 17 * 8);
    assert_refused(
        dir.path(),
        |e| matches!(e, JournalError::Corrupt { file: f, offset: 0, seq, .. } if *f == file && *seq == last_seq),
        "header with a valid record after it",
    );
}

#[test]
fn sequence_gaps_stop_recovery_loudly() {
    let (base, _) = journal_ending_in_fresh_segment(4);
    // A whole segment missing.
    let dir = copy_journal(base.path());
    let files = segment_files(dir.path());
    let first_of = |path: &Path| format::parse_segment_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap();
    fs::remove_file(&files[1]).expect("remove");
    let (expected, found) = (first_of(&files[1]), first_of(&files[2]));
    let file = files[2].clone();
    let message = assert_refused(
        dir.path(),
        |e| matches!(e, JournalError::Gap { file: f, offset: 0, expected_seq, found_seq } if *f == file && *expected_seq == expected && *found_seq == found),
        "missing segment",
    );
    assert!(message.contains(&file.display().to_string()) && message.contains(&format!("expected seq {expected}")));

    // A record missing inside a segment, every frame otherwise valid.
    let dir = tempfile::tempdir().expect("tempdir");
    let segments_dir = dir.path().join("journal");
    fs::create_dir(&segments_dir).expect("mkdir");
    let mut bytes = format::encode_segment_header(1).to_vec();
    let mut offset_of_4 = 0;
    for seq in [1u64, 2, 4, 5] {
        if seq == 4 {
            offset_of_4 = bytes.len() as u64;
        }
        format::encode_frame(seq, &payload(seq, TAG), &mut bytes);
    }
    let file = format::segment_path(&segments_dir, 1);
    fs::write(&file, bytes).expect("write");
    assert_refused(
        dir.path(),
        |e| matches!(e, JournalError::Gap { file: f, offset, expected_seq: 3, found_seq: 4 } if *f == file && *offset == offset_of_4),
        "missing record",
    );

    // A segment whose header disagrees with its name.
    let dir = copy_journal(base.path());
    let files = segment_files(dir.path());
    let renamed = files[0].with_file_name(format::segment_file_name(first_of(&files[0]) + 1_000_000));
    fs::rename(&files[0], &renamed).expect("rename");
    assert_refused(dir.path(), |e| matches!(e, JournalError::Gap { offset: 0, .. }), "renamed segment");
}
