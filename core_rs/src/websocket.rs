//! WebSocket frames (RFC 6455) as clients send them: each frame's header read and checked, its
//! payload unmasked. No extension is ever negotiated, so a reserved bit set is a protocol error.
//! The gateway's WebSocket protocol reads its frames with these (`python/websocket.rs`).

/// Close codes (RFC 6455, section 7.4.1) of the frames refused here.
pub const PROTOCOL_ERROR: u16 = 1002;
pub const MESSAGE_TOO_BIG: u16 = 1009;
const CONTROL_PAYLOAD_BYTES_MAX: u64 = 125;

/// Why a frame was refused: the close code to answer with and the reason.
pub type Refusal = (u16, String);

/// A frame's header as read.
#[derive(Debug)]
pub struct Header {
    pub opcode: u8,
    pub fin: bool,
    pub mask: [u8; 4],
    /// The header's own length, mask included.
    pub bytes: usize,
    pub payload_bytes: usize,
}

/// The header of the frame at the start of `bytes`, if the whole frame is there. The checks
/// come in the order of the `websockets` library's parser, the tests' reference: the opcode,
/// the mask and the length as soon as the header is there, then the reserved bits and the
/// control frames' rules once the whole frame is.
pub fn next_frame(bytes: &[u8], payload_bytes_max: u64) -> Result<Option<Header>, Refusal> {
    let [first, second, ..] = *bytes else { return Ok(None) };
    let refuse = |reason: &str| Err((PROTOCOL_ERROR, reason.to_string()));
    let (fin, opcode) = (first & 0x80 != 0, first & 0x0f);
    if !matches!(opcode, 0x0..=0x2 | 0x8..=0xa) {
        return refuse("unknown opcode");
    }
    if second & 0x80 == 0 {
        return refuse("a client's frame must be masked");
    }
    let (length_bytes, short_length) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        length => (0, Some(u64::from(length))),
    };
    let Some(extended) = bytes.get(2..2 + length_bytes) else { return Ok(None) };
    let payload_bytes = short_length.unwrap_or_else(|| extended.iter().fold(0, |n, &b| n << 8 | u64::from(b)));
    if payload_bytes > payload_bytes_max {
        return Err((MESSAGE_TOO_BIG, format!("a frame over {payload_bytes_max} bytes")));
    }
    let header_bytes = 2 + length_bytes + 4;
    let Some(&[a, b, c, d]) = bytes.get(2 + length_bytes..header_bytes) else { return Ok(None) };
    let payload_bytes = payload_bytes as usize; // at most `payload_bytes_max`, a size in memory
    if bytes.len() - header_bytes < payload_bytes {
        return Ok(None);
    }
    if first & 0x70 != 0 {
        return refuse("a reserved bit is set (no extension was negotiated)");
    }
    if opcode >= 0x8 && (!fin || payload_bytes as u64 > CONTROL_PAYLOAD_BYTES_MAX) {
        return refuse("a control frame must be whole and at most 125 bytes");
    }
    Ok(Some(Header { opcode, fin, mask: [a, b, c, d], bytes: header_bytes, payload_bytes }))
}

/// `payload` XOR the repeated `mask`, into `out` (eight bytes at a time, then the rest).
pub fn unmask(payload: &[u8], mask: [u8; 4], out: &mut [u8]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = payload.chunks_exact(8);
    let mut outs = out.chunks_exact_mut(8);
    for (chunk, out) in (&mut chunks).zip(&mut outs) {
        let word = u64::from_ne_bytes(chunk.try_into().expect("eight bytes")) ^ wide;
        out.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, (byte, out)) in chunks.remainder().iter().zip(outs.into_remainder()).enumerate() {
        *out = byte ^ mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode_byte: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![opcode_byte];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 1 << 16 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn unmasking_matches_the_bytewise_definition_at_every_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for n in 0..40 {
            let payload: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            let frame = masked(0x81, &payload, mask);
            let mut out = vec![0; n];
            let header = next_frame(&frame, 1 << 20).expect("valid").expect("whole");
            unmask(&frame[header.bytes..], header.mask, &mut out);
            assert_eq!(out, payload, "length {n}");
        }
    }

    #[test]
    fn a_frame_is_taken_only_once_all_of_it_arrived() {
        let frame = masked(0x82, &[7; 300], [1, 2, 3, 4]);
        for cut in 0..frame.len() {
            assert!(next_frame(&frame[..cut], 1 << 20).expect("valid so far").is_none(), "cut at {cut}");
        }
        let header = next_frame(&frame, 1 << 20).expect("valid").expect("whole");
        assert_eq!((header.opcode, header.fin, header.bytes, header.payload_bytes), (0x2, true, 8, 300));
    }

    #[test]
    fn each_breach_of_the_protocol_is_refused_with_its_close_code() {
        let cases: [(Vec<u8>, u16); 6] = [
            (vec![0xc1, 0x80, 0, 0, 0, 0], PROTOCOL_ERROR), // RSV1: no extension negotiated
            (vec![0x83, 0x80, 0, 0, 0, 0], PROTOCOL_ERROR), // opcode 3 is reserved
            (vec![0x81, 0x00], PROTOCOL_ERROR),             // unmasked
            (vec![0x09, 0x80, 0, 0, 0, 0], PROTOCOL_ERROR), // a fragmented ping
            (masked(0x89, &[0; 126], [0; 4]), PROTOCOL_ERROR), // a ping of 126 bytes
            (vec![0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0], MESSAGE_TOO_BIG), // 2^63 bytes declared
        ];
        for (frame, code) in cases {
            assert_eq!(next_frame(&frame, 1 << 20).err().map(|(c, _)| c), Some(code), "{frame:x?}");
        }
        let big = [0x81, 0xfe, 0x04, 0x01]; // 1,025 bytes declared: refused before they arrive
        assert_eq!(next_frame(&big, 1024).err().map(|(c, _)| c), Some(MESSAGE_TOO_BIG));
    }
}
