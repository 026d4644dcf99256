//! Reading the journal back: one scanner judges every segment, and `recover`, `verify` and
//! `read_from` differ only in what they do with its verdict (cut the torn tail, report it,
//! or stream the records before it).

use std::convert::Infallible;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::format::{self, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::{segments_dir, sync_dir, JournalError, RecordLocation, Recovery, TailRepair, PAYLOAD_BYTES_MAX};

/// A segment file as listed: its path and the first sequence number its name declares.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub first_seq: u64,
}

/// Why `read_from` stopped early: the journal was damaged, or the visitor returned an error.
#[derive(Debug)]
pub enum ReadError<E> {
    Journal(JournalError),
    Visitor(E),
}

impl<E> From<JournalError> for ReadError<E> {
    fn from(error: JournalError) -> Self {
        ReadError::Journal(error)
    }
}

impl<E: fmt::Display> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Journal(error) => error.fmt(f),
            ReadError::Visitor(error) => error.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ReadError<E> {}

/// Segment files of `<dir>/journal`, in sequence order. A missing directory is an empty journal.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>, JournalError> {
    let segments_dir = segments_dir(dir);
    let entries = match fs::read_dir(&segments_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io("listing", &segments_dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io("listing", &segments_dir, e))?;
        let name = entry.file_name();
        if let Some(first_seq) = name.to_str().and_then(format::parse_segment_file_name) {
            segments.push(Segment { path: entry.path(), first_seq });
        }
    }
    segments.sort_by_key(|segment| segment.first_seq);
    Ok(segments)
}

/// The damaged tail of the last segment: where the valid data ends and why.
#[derive(Clone, Debug)]
struct Torn {
    path: PathBuf,
    offset: u64,
    file_bytes: u64,
    header: bool,
    reason: String,
}

/// What one segment held: the sequence number expected next, the offset where its records
/// end, and a torn tail if any.
struct SegmentEnd {
    next_seq: u64,
    end_offset: u64,
    torn: Option<Torn>,
}

/// Checks a segment's header against its name and the sequence expected; returns its first_seq,
/// or `Ok(None)` when the header of the last segment is torn with no valid frame after it.
fn check_header(
    segment: &Segment,
    bytes: &[u8],
    expected_seq: Option<u64>,
    is_last: bool,
) -> Result<Option<u64>, JournalError> {
    let expected = expected_seq.unwrap_or(segment.first_seq);
    if segment.first_seq != expected {
        return Err(JournalError::Gap {
            file: segment.path.clone(),
            offset: 0,
            expected_seq: expected,
            found_seq: segment.first_seq,
        });
    }
    match format::decode_segment_header(bytes) {
        Ok(first_seq) if first_seq == expected => Ok(Some(first_seq)),
        Ok(first_seq) => Err(JournalError::Corrupt {
            file: segment.path.clone(),
            offset: 0,
            seq: expected,
            reason: format!("segment header declares first seq {first_seq}, its file name {expected}"),
        }),
        Err(reason) => match format::find_valid_frame_after(bytes, 0, expected) {
            None if is_last => Ok(None),
            found => Err(JournalError::Corrupt {
                file: segment.path.clone(),
                offset: 0,
                seq: expected,
                reason: match found {
                    Some((offset, frame)) => {
                        format!("{reason}; a valid frame (seq {}) follows at offset {offset}", frame.seq)
                    }
                    None => format!("{reason}; not the last segment"),
                },
            }),
        },
    }
}

/// Bytes of a segment read at a time: large enough that a read costs little per record,
/// small enough that the buffer stays in cache. A frame larger than this grows the buffer.
const CHUNK_BYTES: usize = 1 << 20;

/// A window onto one segment file, refilled by `read` into one reused buffer.
#[derive(Debug)]
struct Chunks {
    file: File,
    buffer: Vec<u8>,
    /// `buffer[begin..end]` holds the file's bytes from `offset` on.
    begin: usize,
    end: usize,
    offset: u64,
    eof: bool,
}

impl Chunks {
    fn open(path: &Path, mut buffer: Vec<u8>) -> Result<Self, JournalError> {
        let file = File::open(path).map_err(|e| JournalError::io("opening", path, e))?;
        buffer.resize(CHUNK_BYTES.max(buffer.len()), 0);
        Ok(Chunks { file, buffer, begin: 0, end: 0, offset: 0, eof: false })
    }

    fn available(&self) -> &[u8] {
        &self.buffer[self.begin..self.end]
    }

    fn consume(&mut self, bytes: usize) {
        debug_assert!(bytes <= self.end - self.begin);
        self.begin += bytes;
        self.offset += bytes as u64;
    }

    /// Reads until at least `want` bytes are available or the file ends.
    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        if self.end - self.begin >= want || self.eof {
            return Ok(());
        }
        self.buffer.copy_within(self.begin..self.end, 0);
        self.end -= self.begin;
        self.begin = 0;
        if self.buffer.len() < want {
            self.buffer.resize(want, 0);
        }
        while self.end < want {
            let read = self.file.read(&mut self.buffer[self.end..])?;
            if read == 0 {
                self.eof = true;
                break;
            }
            self.end += read;
        }
        Ok(())
    }

    /// Everything from the current offset to the end of the file (the rare path of damage).
    fn rest(&mut self) -> std::io::Result<Vec<u8>> {
        let mut rest = self.available().to_vec();
        self.file.read_to_end(&mut rest)?;
        Ok(rest)
    }

    fn into_buffer(self) -> Vec<u8> {
        self.buffer
    }
}

/// The verdict on a bad frame at `offset`, given the bytes from there to the end of the file:
/// a torn tail if this is the last segment and no valid frame follows, else corruption.
fn judge_bad_frame(
    segment: &Segment,
    offset: u64,
    rest: &[u8],
    seq: u64,
    is_last: bool,
    reason: String,
) -> Result<Torn, JournalError> {
    let after = format::find_valid_frame_after(rest, 1, seq);
    if is_last && after.is_none() {
        let file_bytes = offset + rest.len() as u64;
        return Ok(Torn { path: segment.path.clone(), offset, file_bytes, header: false, reason });
    }
    let reason = match after {
        Some((after, frame)) => {
            format!("{reason}; a valid frame (seq {}) follows at offset {}", frame.seq, offset + after as u64)
        }
        None => format!("{reason}; not the last segment"),
    };
    Err(JournalError::Corrupt { file: segment.path.clone(), offset, seq, reason })
}

/// The verdict on an end marker at `offset` (zeros where a frame header would be): the end of
/// the segment's records, unless a frame that could follow them comes later (then the zeros
/// are damage). What lies after it may be zeros or a recycled segment's stale frames.
fn judge_end_marker(segment: &Segment, offset: u64, rest: &[u8], seq: u64) -> Result<(), JournalError> {
    match format::find_valid_frame_after(rest, 1, seq) {
        None => Ok(()),
        Some((after, frame)) => Err(JournalError::Corrupt {
            file: segment.path.clone(),
            offset,
            seq,
            reason: format!(
                "zeros where a frame header belongs; a valid frame (seq {}) follows at offset {}",
                frame.seq,
                offset + after as u64
            ),
        }),
    }
}

/// Judges one segment and hands every valid record to `visit(seq, payload, offset)`.
fn scan_segment<E>(
    segment: &Segment,
    chunks: &mut Chunks,
    expected_seq: Option<u64>,
    is_last: bool,
    visit: &mut impl FnMut(u64, &[u8], u64) -> Result<(), E>,
) -> Result<SegmentEnd, ReadError<E>> {
    let io = |e| JournalError::io("reading", &segment.path, e);
    chunks.fill(SEGMENT_HEADER_BYTES).map_err(io)?;
    // A bad header needs the whole file judged (is there a valid frame after it?).
    let whole = match format::decode_segment_header(chunks.available()) {
        Ok(_) => None,
        Err(_) => Some(chunks.rest().map_err(io)?),
    };
    let header_bytes = whole.as_deref().unwrap_or(chunks.available());
    let Some(mut seq) = check_header(segment, header_bytes, expected_seq, is_last)? else {
        let reason = format::decode_segment_header(header_bytes).err().unwrap_or_default();
        let file_bytes = header_bytes.len() as u64;
        let torn = Torn { path: segment.path.clone(), offset: 0, file_bytes, header: true, reason };
        return Ok(SegmentEnd { next_seq: segment.first_seq, end_offset: 0, torn: Some(torn) });
    };
    chunks.consume(SEGMENT_HEADER_BYTES);
    loop {
        chunks.fill(FRAME_HEADER_BYTES).map_err(io)?;
        let available = chunks.available();
        if available.is_empty() {
            return Ok(SegmentEnd { next_seq: seq, end_offset: chunks.offset, torn: None });
        }
        if available.len() >= FRAME_HEADER_BYTES {
            let len = u32::from_le_bytes([available[0], available[1], available[2], available[3]]);
            if len <= PAYLOAD_BYTES_MAX {
                chunks.fill(FRAME_HEADER_BYTES + len as usize).map_err(io)?;
            }
        }
        let offset = chunks.offset;
        let frame = format::check_frame(chunks.available(), 0).and_then(|frame| {
            if frame.seq < segment.first_seq {
                return Err(format!("stale frame of seq {} from before the segment's first", frame.seq));
            }
            Ok(frame)
        });
        match frame {
            Ok(frame) if frame.seq == seq => {
                visit(seq, &chunks.available()[frame.payload_start..frame.end], offset).map_err(ReadError::Visitor)?;
                chunks.consume(frame.end);
                seq += 1;
            }
            Ok(frame) => {
                let file = segment.path.clone();
                return Err(ReadError::Journal(JournalError::Gap {
                    file,
                    offset,
                    expected_seq: seq,
                    found_seq: frame.seq,
                }));
            }
            Err(reason) => {
                let end_marked = format::is_end_marker(chunks.available());
                let rest = chunks.rest().map_err(io)?;
                let torn = if end_marked {
                    judge_end_marker(segment, offset, &rest, seq)?;
                    None
                } else {
                    Some(judge_bad_frame(segment, offset, &rest, seq, is_last, reason)?)
                };
                return Ok(SegmentEnd { next_seq: seq, end_offset: offset, torn });
            }
        }
    }
}

/// Scans every segment from the one holding `from_seq`; returns what it found and the torn tail.
fn scan<E>(
    dir: &Path,
    from_seq: u64,
    mut visit: impl FnMut(u64, &[u8], u64, usize, &Path) -> Result<(), E>,
) -> Result<(Recovery, Option<Torn>), ReadError<E>> {
    let segments = list_segments(dir)?;
    // Segments whose records all precede `from_seq` are skipped unread; the rest are judged whole.
    let skip = segments.windows(2).take_while(|pair| pair[1].first_seq <= from_seq).count();
    let mut recovery = Recovery { first_seq: 0, last_seq: 0, records: 0, end: None, tail_repaired: None };
    let mut buffer = Vec::with_capacity(CHUNK_BYTES);
    let mut expected_seq = None;
    let mut torn = None;
    for (index, segment) in segments.iter().enumerate().skip(skip) {
        let mut chunks = Chunks::open(&segment.path, std::mem::take(&mut buffer))?;
        let is_last = index + 1 == segments.len();
        let mut count = |seq: u64, payload: &[u8], offset: u64| {
            if recovery.records == 0 {
                recovery.first_seq = seq;
            }
            recovery.last_seq = seq;
            recovery.records += 1;
            if seq >= from_seq {
                visit(seq, payload, offset, index, &segment.path)?;
            }
            Ok(())
        };
        let end = scan_segment(segment, &mut chunks, expected_seq, is_last, &mut count)?;
        buffer = chunks.into_buffer();
        expected_seq = Some(end.next_seq);
        if !end.torn.as_ref().is_some_and(|torn| torn.header) {
            recovery.end = Some(RecordLocation { file: segment.path.clone(), offset: end.end_offset });
        }
        torn = end.torn;
    }
    Ok((recovery, torn))
}

fn tail_repair(torn: &Torn) -> TailRepair {
    TailRepair {
        file: torn.path.clone(),
        offset: torn.offset,
        bytes_dropped: torn.file_bytes - torn.offset,
        reason: torn.reason.clone(),
    }
}

/// Cuts a torn tail off (ftruncate + fsync), or removes a segment whose header is torn.
fn repair(dir: &Path, torn: &Torn) -> Result<(), JournalError> {
    if torn.header {
        fs::remove_file(&torn.path).map_err(|e| JournalError::io("removing", &torn.path, e))?;
        return sync_dir(&segments_dir(dir));
    }
    let file =
        OpenOptions::new().write(true).open(&torn.path).map_err(|e| JournalError::io("opening", &torn.path, e))?;
    file.set_len(torn.offset).map_err(|e| JournalError::io("truncating", &torn.path, e))?;
    file.sync_all().map_err(|e| JournalError::io("syncing", &torn.path, e))
}

fn judge(dir: &Path) -> Result<(Recovery, Option<Torn>), JournalError> {
    scan(dir, 0, |_, _, _, _, _| Ok::<(), Infallible>(())).map_err(|error| match error {
        ReadError::Journal(error) => error,
        ReadError::Visitor(never) => match never {},
    })
}

/// Validates every segment; cuts a torn or corrupt tail off the last one (ftruncate + fsync,
/// or removing a segment whose header is torn) and reports it. Anything else that is wrong
/// stops with an error naming the file, offset and sequence number, and nothing is modified.
pub fn recover(dir: &Path) -> Result<Recovery, JournalError> {
    recover_reading(dir, u64::MAX, |_, _, _| Ok::<(), Infallible>(())).map_err(|error| match error {
        ReadError::Journal(error) => error,
        ReadError::Visitor(never) => match never {},
    })
}

/// [`recover`] and [`read_from`] in one pass: judges every segment as `recover` does, hands
/// each valid record with `seq >= from_seq` to `visit` as it is read, then cuts a torn tail.
/// Records reach `visit` before the rest of the journal is judged, so a caller must discard
/// what it built from them when this returns an error.
pub fn recover_reading<E>(
    dir: &Path,
    from_seq: u64,
    visit: impl FnMut(u64, &[u8], &RecordLocation) -> Result<(), E>,
) -> Result<Recovery, ReadError<E>> {
    let (mut recovery, torn) = scan(dir, 0, located(from_seq, visit))?;
    if let Some(torn) = torn {
        repair(dir, &torn)?;
        recovery.tail_repaired = Some(tail_repair(&torn));
    }
    Ok(recovery)
}

/// The checks of [`recover`], modifying nothing; `tail_repaired` reports the tail it would cut.
pub fn verify(dir: &Path) -> Result<Recovery, JournalError> {
    let (mut recovery, torn) = judge(dir)?;
    recovery.tail_repaired = torn.as_ref().map(tail_repair);
    Ok(recovery)
}

/// Streams the records with `seq >= from_seq`, in order, to `visit`. Segments are read in chunks
/// into one reused buffer. It stops where [`recover`] would: silently at a torn tail, with an
/// error at damage before it (segments wholly before `from_seq` are not read). Returns how
/// many records it handed over.
pub fn read_from<E>(
    dir: &Path,
    from_seq: u64,
    mut visit: impl FnMut(u64, &[u8], &RecordLocation) -> Result<(), E>,
) -> Result<u64, ReadError<E>> {
    let mut visited = 0u64;
    let counted = |seq: u64, payload: &[u8], location: &RecordLocation| {
        visited += 1;
        visit(seq, payload, location)
    };
    scan(dir, from_seq, located(from_seq, counted))?;
    Ok(visited)
}

/// `scan`'s visitor for a visitor of (seq, payload, location), called for `seq >= from_seq`.
fn located<E>(
    from_seq: u64,
    mut visit: impl FnMut(u64, &[u8], &RecordLocation) -> Result<(), E>,
) -> impl FnMut(u64, &[u8], u64, usize, &Path) -> Result<(), E> {
    let mut location = RecordLocation { file: PathBuf::new(), offset: 0 };
    let mut segment_index = usize::MAX;
    move |seq, payload, offset, index, path| {
        if seq < from_seq {
            return Ok(());
        }
        if index != segment_index {
            segment_index = index;
            location.file = path.to_path_buf();
        }
        location.offset = offset;
        visit(seq, payload, &location)
    }
}

/// The segments, oldest first, whose records all precede `seq`; never the last segment.
pub(crate) fn segments_before(dir: &Path, seq: u64) -> Result<Vec<Segment>, JournalError> {
    let mut segments = list_segments(dir)?;
    let removable = segments.windows(2).take_while(|pair| pair[1].first_seq <= seq).count();
    segments.truncate(removable);
    Ok(segments)
}

/// Removes every record after `seq`, as a Raft log drops the entries a new leader overrode:
/// cuts the segment holding `seq + 1` at that record's frame, deletes the segments after it,
/// and syncs the file and the directory. Returns how many bytes it dropped (0 when the journal
/// ends at or before `seq`). The writer must be closed, and the records after `seq` durable.
pub fn truncate_after(dir: &Path, seq: u64) -> Result<u64, JournalError> {
    let mut cut: Option<RecordLocation> = None;
    let found = read_from(dir, seq + 1, |_, _, location| {
        cut = Some(location.clone());
        Err(()) // the first record after `seq` is all we need
    });
    match found {
        Ok(_) => return Ok(0),
        Err(ReadError::Visitor(())) => {}
        Err(ReadError::Journal(error)) => return Err(error),
    }
    let cut = cut.expect("the visitor saw a record");
    let segments = list_segments(dir)?;
    let position = segments.iter().position(|s| s.path == cut.file).expect("the record's segment is listed");
    let mut dropped = 0u64;
    for later in segments[position + 1..].iter().rev() {
        dropped += fs::metadata(&later.path).map_err(|e| JournalError::io("reading", &later.path, e))?.len();
        fs::remove_file(&later.path).map_err(|e| JournalError::io("removing", &later.path, e))?;
    }
    let file = OpenOptions::new().write(true).open(&cut.file).map_err(|e| JournalError::io("opening", &cut.file, e))?;
    let length = file.metadata().map_err(|e| JournalError::io("reading", &cut.file, e))?.len();
    file.set_len(cut.offset).map_err(|e| JournalError::io("truncating", &cut.file, e))?;
    file.sync_all().map_err(|e| JournalError::io("syncing", &cut.file, e))?;
    sync_dir(&segments_dir(dir))?;
    Ok(dropped + length - cut.offset)
}

/// Deletes every segment (a member that installed a snapshot past the end of its log starts
/// its journal again after the snapshot). The writer must be closed.
pub fn clear(dir: &Path) -> Result<usize, JournalError> {
    let segments = list_segments(dir)?;
    for segment in segments.iter().rev() {
        fs::remove_file(&segment.path).map_err(|e| JournalError::io("removing", &segment.path, e))?;
    }
    if !segments.is_empty() {
        sync_dir(&segments_dir(dir))?;
    }
    Ok(segments.len())
}
