//! Journal files on disk: records written through the writer are read back whole across
//! segment rolls, and each kind of damage — a torn or corrupt tail cut at every byte, seeded
//! bit flips, zeros, damage before the tail, sequence gaps — gets exactly the verdict the
//! format promises, checked on copies of one written journal.

mod journal_support;

use std::fs::{self, OpenOptions};
use std::path::Path;

use core_rs::journal::format::{self, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use core_rs::journal::{read_from, recover, verify, JournalError, JournalWriter, ReadError, Recovery};
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
    let end = Some(position);
    assert_eq!(recovery, Recovery { first_seq: 1, last_seq: last, records: last, end, tail_repaired: None });
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
    let recovery = recover(dir.path()).expect("recover");
    assert_eq!((recovery.first_seq, recovery.last_seq, recovery.records), (1_000, 1_099, 100));

    let segments = segment_files(dir.path());
    let firsts: Vec<u64> = segments
        .iter()
        .map(|path| format::parse_segment_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect();
    assert_eq!(writer.remove_segments_before(firsts[2] - 1).expect("remove"), 1, "segment 0 only");
    assert_eq!(writer.remove_segments_before(firsts[2]).expect("remove"), 1, "segment 1 too");
    assert_eq!(writer.remove_segments_before(u64::MAX).expect("remove"), segments.len() - 3, "never the last");
    assert_eq!(segment_files(dir.path()), segments[segments.len() - 1..]);
    writer.close().expect("close");
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

/// After an end marker: the records before it, no repair, nothing cut, and appending goes on
/// at its offset with the zeros after the new record left in place.
fn assert_ends_at_marker(dir: &Path, file: &Path, next_seq: u64, marker: u64, what: &str) {
    let file_bytes = fs::metadata(file).expect("metadata").len();
    let recovery = recover(dir).expect(what);
    assert_eq!((recovery.last_seq, recovery.tail_repaired.clone()), (next_seq - 1, None), "{what}");
    assert_eq!(recovery.end.clone().map(|end| (end.file, end.offset)), Some((file.to_path_buf(), marker)), "{what}");
    assert_eq!(fs::metadata(file).expect("metadata").len(), file_bytes, "{what}: nothing cut");
    recover_and_append(dir, SEGMENT_BYTES, 1, TAG_AFTER);
    let after = read_all(dir);
    let expected: Vec<_> =
        (1..next_seq).map(|seq| (seq, payload(seq, TAG))).chain([(next_seq, payload(next_seq, TAG_AFTER))]).collect();
    assert_eq!(after, expected, "{what}: appended at the marker");
    let new_end = recover(dir).expect(what).end.expect("end").offset;
    assert!(new_end > marker, "{what}");
    assert_eq!(fs::metadata(file).expect("metadata").len(), file_bytes.max(new_end), "{what}: written over the zeros");
}

/// A journal whose last segment is a recycled one, two records into it: the directory, the
/// first seq kept after the retirement, the last seq, the recycled file and its length.
fn journal_ending_in_recycled_segment() -> (tempfile::TempDir, u64, u64, std::path::PathBuf, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = JournalWriter::open(config(dir.path(), SEGMENT_BYTES), &recover(dir.path()).expect("recover"), 1)
        .expect("open");
    append_each_durable(&writer, 1, 60, TAG);
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 5, "{segments:?}");
    let retired_newest_bytes = fs::metadata(&segments[2]).expect("metadata").len();
    let first_kept_seq = format::parse_segment_file_name(segments[3].file_name().unwrap().to_str().unwrap()).unwrap();
    assert_eq!(writer.remove_segments_before(first_kept_seq).expect("retire"), 3);
    let spare = dir.path().join("journal").join("spare.recycled");
    assert_eq!(fs::metadata(&spare).expect("the newest retired segment is the spare").len(), retired_newest_bytes);
    assert_eq!(segment_files(dir.path()), segments[3..]);

    // Records go on until the writer rolls into the spare.
    let mut seq = 61;
    while segment_files(dir.path()).len() == segments.len() - 3 {
        append_each_durable(&writer, seq, 1, TAG);
        seq += 1;
    }
    append_each_durable(&writer, seq, 2, TAG);
    let last_seq = seq + 1;
    writer.close().expect("close");
    assert!(!spare.exists(), "the spare became a segment");
    let recycled = segment_files(dir.path()).last().expect("segments").clone();
    assert_eq!(fs::metadata(&recycled).expect("metadata").len(), retired_newest_bytes, "overwritten, not appended");
    (dir, first_kept_seq, last_seq, recycled, retired_newest_bytes)
}

#[test]
fn a_batch_torn_at_every_byte_in_a_recycled_segment_keeps_a_prefix_and_no_stale_frame() {
    let (dir, first_kept_seq, last_seq, recycled, _) = journal_ending_in_recycled_segment();
    let old = fs::read(&recycled).expect("read");
    let recovery = recover(dir.path()).expect("recover");
    let old_end = recovery.end.clone().expect("end").offset as usize;
    // One batch of five records over the stale bytes.
    let writer = JournalWriter::open(config(dir.path(), SEGMENT_BYTES), &recovery, 1).expect("open");
    for seq in last_seq + 1..=last_seq + 5 {
        writer.append(seq, &payload(seq, TAG)).expect("append");
    }
    writer.wait_durable(last_seq + 5, WAIT).expect("durable");
    writer.close().expect("close");
    let new = fs::read(&recycled).expect("read");
    let new_end = recover(dir.path()).expect("recover").end.expect("end").offset as usize;
    assert_eq!(new.len(), old.len(), "written over the stale bytes");
    let frame_ends: Vec<usize> = (last_seq + 1..=last_seq + 5)
        .map(|seq| format::check_frame(&new, location_of(dir.path(), seq).offset as usize).expect("frame").end)
        .collect();
    assert_eq!(frame_ends.last(), Some(&new_end));
    let expected: Vec<_> = (first_kept_seq..=last_seq + 5).map(|seq| (seq, payload(seq, TAG))).collect();
    // A power loss that kept the batch's first `cut` bytes and none after.
    for cut in old_end..=new_end + FRAME_HEADER_BYTES {
        let copy = copy_journal(dir.path());
        let mut image = new[..cut].to_vec();
        image.extend_from_slice(&old[cut..]);
        fs::write(rebase(&recycled, dir.path(), copy.path()), image).expect("write");
        let what = format!("batch kept up to byte {cut} ({old_end}..{new_end})");
        let whole = frame_ends.iter().filter(|&&end| end <= cut).count();
        recover(copy.path()).expect(&what);
        let records = read_all(copy.path());
        assert_eq!(records[..], expected[..expected.len() - 5 + whole], "{what}");
        let recovery = recover_and_append(copy.path(), SEGMENT_BYTES, 1, TAG_AFTER);
        let next = recovery.last_seq + 1;
        assert_eq!(read_all(copy.path()).last(), Some(&(next, payload(next, TAG_AFTER))), "{what}: appendable");
    }
}

#[test]
fn retired_segments_are_recycled_and_their_stale_frames_never_read() {
    let (dir, first_kept_seq, last_seq, recycled, _) = journal_ending_in_recycled_segment();

    let recovery = recover(dir.path()).expect("recover");
    assert_eq!(
        (recovery.first_seq, recovery.last_seq, recovery.tail_repaired.clone()),
        (first_kept_seq, last_seq, None)
    );
    let end = recovery.end.expect("end");
    assert_eq!(end.file, recycled);
    let bytes = fs::read(&recycled).expect("read");
    let recycled_first = format::decode_segment_header(&bytes).expect("the recycled segment's new header");
    let stale = (end.offset as usize..bytes.len())
        .filter_map(|offset| format::check_frame(&bytes, offset).ok())
        .filter(|frame| frame.seq < recycled_first)
        .count();
    assert!(stale > 0, "stale frames of the retired segment lie after the records");
    let expected: Vec<_> = (first_kept_seq..=last_seq).map(|seq| (seq, payload(seq, TAG))).collect();
    assert_eq!(read_all(dir.path()), expected);

    // The last record torn anywhere (a bit flipped), or never written (zeros): the records
    // before it stay, and appending goes on at its seq.
    let location = location_of(dir.path(), last_seq);
    for byte in location.offset..end.offset {
        let copy = copy_journal(dir.path());
        let file = rebase(&location.file, dir.path(), copy.path());
        flip_bit(&file, byte * 8 + byte % 8);
        let what = format!("byte {byte} of the last record flipped");
        let recovery = recover(copy.path()).expect(&what);
        assert_eq!(recovery.last_seq, last_seq - 1, "{what}");
        assert_eq!(recovery.tail_repaired.map(|repair| repair.offset), Some(location.offset), "{what}");
        recover_and_append(copy.path(), SEGMENT_BYTES, 1, TAG_AFTER);
        let after = read_all(copy.path());
        assert_eq!(after[..after.len() - 1], expected[..expected.len() - 1], "{what}");
        assert_eq!(after.last(), Some(&(last_seq, payload(last_seq, TAG_AFTER))), "{what}");
    }
    let copy = copy_journal(dir.path());
    let file = rebase(&location.file, dir.path(), copy.path());
    let mut zeroed = fs::read(&file).expect("read");
    zeroed[location.offset as usize..end.offset as usize + 16].fill(0);
    fs::write(&file, zeroed).expect("write");
    let recovery = recover(copy.path()).expect("zeroed");
    assert_eq!(
        (recovery.last_seq, recovery.tail_repaired),
        (last_seq - 1, None),
        "an unwritten record ends the journal"
    );
}

#[test]
fn zeros_after_the_last_record_are_an_end_marker() {
    let (base, last_seq) = journal_ending_in_fresh_segment(3);
    let location = location_of(base.path(), last_seq);
    let end = fs::metadata(&location.file).expect("metadata").len();

    // Zeros after the last record (a file extended, or a recycled segment's end marker).
    for zeros in [1, 15, 16, 4096] {
        let dir = copy_journal(base.path());
        let file = rebase(&location.file, base.path(), dir.path());
        set_len(&file, end + zeros);
        assert_ends_at_marker(dir.path(), &file, last_seq + 1, end, &format!("{zeros} zeros"));
    }

    // The last record itself zeroed, and zeros after it: it was never synced.
    let dir = copy_journal(base.path());
    let file = rebase(&location.file, base.path(), dir.path());
    set_len(&file, location.offset);
    set_len(&file, end + 8192);
    assert_ends_at_marker(dir.path(), &file, last_seq, location.offset, "zeroed last record");

    // Zeros where a record belongs, with a valid record after them: damage, not an end.
    let dir = copy_journal(base.path());
    let file = rebase(&location.file, base.path(), dir.path());
    let mut bytes = fs::read(&file).expect("read");
    let record = bytes[location.offset as usize..].to_vec();
    bytes.truncate(location.offset as usize);
    bytes.extend_from_slice(&[0u8; 64]);
    bytes.extend_from_slice(&record);
    fs::write(&file, bytes).expect("write");
    let reason = assert_refused(dir.path(), |e| matches!(e, JournalError::Corrupt { .. }), "zeros before a record");
    assert!(reason.contains("zeros where a frame header belongs"), "{reason}");

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
