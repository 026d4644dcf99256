//! The bytes of a journal segment, and nothing else: encoding on write, checking on read.
//!
//! A segment `<first_seq:020>.seg` starts with a 32-byte header:
//!
//! | bytes  | field                                          |
//! |--------|------------------------------------------------|
//! | 0..8   | magic `PYXJRNL1`                               |
//! | 8..12  | format version, u32 LE (1)                     |
//! | 12..16 | reserved, zero                                 |
//! | 16..24 | first_seq, u64 LE (equal to the file's name)   |
//! | 24..28 | reserved, zero                                 |
//! | 28..32 | CRC32C of bytes 0..28, u32 LE                  |
//!
//! then frames, each `len u32 LE | crc32c u32 LE | seq u64 LE | payload (len bytes)`, the CRC
//! covering the len bytes, the seq bytes and the payload, in that order. A frame is valid only
//! whole: its length within [`PAYLOAD_BYTES_MAX`](super::PAYLOAD_BYTES_MAX) and the file, and
//! its CRC matching. An all-zero frame header never matches (CRC32C of zeros is not zero).
//!
//! Where a segment's records end, the file ends or an end marker follows: zeros where the next
//! frame header would be (up to 16 bytes, fewer at the end of the file). The writer puts one
//! after every batch it writes inside a recycled segment, whose older bytes follow it; frames
//! there with a sequence number below the segment's first are stale, never records.

use std::path::{Path, PathBuf};

use super::PAYLOAD_BYTES_MAX;

pub const SEGMENT_MAGIC: [u8; 8] = *b"PYXJRNL1";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 32;
pub const FRAME_HEADER_BYTES: usize = 16;
pub const SEGMENT_SUFFIX: &str = ".seg";

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first sequence number a segment's file name declares, if it is a segment name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn segment_path(segments_dir: &Path, first_seq: u64) -> PathBuf {
    segments_dir.join(segment_file_name(first_seq))
}

pub fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The first_seq of a valid segment header, or why it is not one.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(format!("segment header torn: {} of {SEGMENT_HEADER_BYTES} bytes", bytes.len()));
    }
    let crc_stored = read_u32(bytes, 28);
    let crc_computed = crc32c::crc32c(&bytes[0..28]);
    if crc_stored != crc_computed {
        return Err(format!("segment header CRC mismatch: stored {crc_stored:#010x}, computed {crc_computed:#010x}"));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("segment header magic is not PYXJRNL1".into());
    }
    let version = read_u32(bytes, 8);
    if version != SEGMENT_VERSION {
        return Err(format!("segment format version {version} is not {SEGMENT_VERSION}"));
    }
    Ok(read_u64(bytes, 16))
}

/// Payloads up to this size have their CRC input gathered on the stack and computed in one
/// call (commands are 80 bytes): three calls cost several times one on inputs this short.
const FRAME_CRC_GATHER_BYTES_MAX: usize = 244;

/// CRC-32C of a short input: on x86-64 with SSE 4.2, one `crc32` instruction per 8 bytes in a
/// plain loop (the `crc32c` crate's path, built for long inputs, costs several times that on
/// a ~92-byte frame, which replay does millions of times a second); elsewhere the crate.
fn crc32c_short(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE 4.2, checked just above.
        return unsafe { crc32c_sse42(bytes) };
    }
    crc32c::crc32c(bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_sse42(bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut words = bytes.chunks_exact(8);
    let mut crc = u64::from(u32::MAX);
    for word in &mut words {
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    let mut crc = crc as u32;
    for &byte in words.remainder() {
        crc = _mm_crc32_u8(crc, byte);
    }
    !crc
}

/// The CRC of a frame: over its len bytes, its seq bytes and its payload.
pub fn frame_crc(len: u32, seq: u64, payload: &[u8]) -> u32 {
    if payload.len() <= FRAME_CRC_GATHER_BYTES_MAX {
        let mut gathered = [0u8; 12 + FRAME_CRC_GATHER_BYTES_MAX];
        gathered[..4].copy_from_slice(&len.to_le_bytes());
        gathered[4..12].copy_from_slice(&seq.to_le_bytes());
        gathered[12..12 + payload.len()].copy_from_slice(payload);
        return crc32c_short(&gathered[..12 + payload.len()]);
    }
    let crc = crc32c::crc32c(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// The 16 bytes that precede a payload. The caller has checked the payload's length.
pub fn encode_frame_header(seq: u64, payload: &[u8]) -> [u8; FRAME_HEADER_BYTES] {
    debug_assert!(payload.len() <= PAYLOAD_BYTES_MAX as usize);
    let len = payload.len() as u32;
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&frame_crc(len, seq, payload).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header
}

/// Appends one whole frame to `out`.
pub fn encode_frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_frame_header(seq, payload));
    out.extend_from_slice(payload);
}

/// Zeros where a frame header would start `bytes` (as many of its 16 bytes as there are).
pub fn is_end_marker(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes[..bytes.len().min(FRAME_HEADER_BYTES)].iter().all(|&byte| byte == 0)
}

/// A valid frame found at some offset of a segment's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    /// Offset of the payload; it ends at `end`, where the next frame starts.
    pub payload_start: usize,
    pub end: usize,
}

/// The frame at `offset` of `bytes`, or why there is no valid frame there.
pub fn check_frame(bytes: &[u8], offset: usize) -> Result<Frame, String> {
    let remaining = bytes.len() - offset;
    if remaining < FRAME_HEADER_BYTES {
        return Err(format!("frame header torn: {remaining} of {FRAME_HEADER_BYTES} bytes"));
    }
    let len = read_u32(bytes, offset);
    if len > PAYLOAD_BYTES_MAX {
        return Err(format!("frame length {len} exceeds the limit of {PAYLOAD_BYTES_MAX}"));
    }
    let payload_bytes = len as usize;
    if remaining - FRAME_HEADER_BYTES < payload_bytes {
        return Err(format!(
            "frame torn: payload of {payload_bytes} bytes, {} present",
            remaining - FRAME_HEADER_BYTES
        ));
    }
    let seq = read_u64(bytes, offset + 8);
    let payload_start = offset + FRAME_HEADER_BYTES;
    let end = payload_start + payload_bytes;
    let crc_stored = read_u32(bytes, offset + 4);
    let crc_computed = frame_crc(len, seq, &bytes[payload_start..end]);
    if crc_stored != crc_computed {
        return Err(format!("frame CRC mismatch: stored {crc_stored:#010x}, computed {crc_computed:#010x}"));
    }
    Ok(Frame { seq, payload_start, end })
}

/// The offset of the first valid frame at or after `start` whose sequence number could follow
/// `expected_seq` in this file (at least `expected_seq`, and within one frame per 16 bytes).
/// The sequence filter is checked before the CRC, so the search costs little per offset.
pub fn find_valid_frame_after(bytes: &[u8], start: usize, expected_seq: u64) -> Option<(usize, Frame)> {
    let seq_max = expected_seq.saturating_add((bytes.len() / FRAME_HEADER_BYTES) as u64);
    let last_start = bytes.len().checked_sub(FRAME_HEADER_BYTES)?;
    (start..=last_start).find_map(|offset| {
        let seq = read_u64(bytes, offset + 8);
        if seq < expected_seq || seq > seq_max {
            return None;
        }
        check_frame(bytes, offset).ok().map(|frame| (offset, frame))
    })
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_zeros_rejected() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), Ok(42));
        assert!(decode_segment_header(&[0u8; SEGMENT_HEADER_BYTES]).is_err());
        assert!(decode_segment_header(&header[..31]).is_err());
    }

    #[test]
    fn frame_round_trip_and_zeros_rejected() {
        let mut bytes = Vec::new();
        encode_frame(7, b"hello", &mut bytes);
        encode_frame(8, b"", &mut bytes);
        let first = check_frame(&bytes, 0).unwrap();
        assert_eq!((first.seq, &bytes[first.payload_start..first.end]), (7, &b"hello"[..]));
        assert_eq!(check_frame(&bytes, first.end).unwrap().seq, 8);
        assert!(check_frame(&[0u8; 64], 0).is_err());
        assert_eq!(find_valid_frame_after(&bytes, 1, 7).map(|(offset, _)| offset), Some(first.end));
    }

    #[test]
    fn frame_crc_is_the_crc_of_len_seq_and_payload_on_either_path() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in (0..=90).chain([FRAME_CRC_GATHER_BYTES_MAX, FRAME_CRC_GATHER_BYTES_MAX + 1, 300]) {
            let mut whole = Vec::new();
            whole.extend_from_slice(&(len as u32).to_le_bytes());
            whole.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
            whole.extend_from_slice(&payload[..len]);
            assert_eq!(frame_crc(len as u32, 0x0102_0304_0506_0708, &payload[..len]), crc32c::crc32c(&whole), "{len}");
        }
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(5), "00000000000000000005.seg");
        assert_eq!(parse_segment_file_name("00000000000000000005.seg"), Some(5));
        assert_eq!(parse_segment_file_name("5.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000005.seg.tmp"), None);
    }
}
