//! WebSocket frames (RFC 6455) as clients send them (`crate::websocket`), for the gateway's
//! WebSocket protocol (`pyexchange.gateway.websocket`). The `websockets` library's Python
//! parser took a WebSocket order about 6 µs, an eighth of the event loop's time for it.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::websocket::{next_frame, unmask, Refusal};

/// A frame's opcode, whether it is its message's last (FIN), and its unmasked payload.
type Frame<'py> = (u8, bool, Bound<'py, PyBytes>);

/// The whole frames at the start of `buffer`, unmasked; how many bytes they took; and, if the
/// next frame breaks the protocol or declares a payload over `payload_bytes_max`, the close
/// code and reason (the frames before it are returned; nothing after it is read). A frame
/// still arriving is left in the buffer, untaken.
#[pyfunction]
fn websocket_frames<'py>(
    py: Python<'py>,
    buffer: &[u8],
    payload_bytes_max: u64,
) -> (Vec<Frame<'py>>, usize, Option<Refusal>) {
    let mut frames = Vec::new();
    let mut taken = 0;
    loop {
        match next_frame(&buffer[taken..], payload_bytes_max) {
            Ok(Some(header)) => {
                let start = taken + header.bytes;
                let payload = &buffer[start..start + header.payload_bytes];
                let unmasked = PyBytes::new_with(py, payload.len(), |out| {
                    unmask(payload, header.mask, out);
                    Ok(())
                })
                .expect("allocating the payload's bytes");
                frames.push((header.opcode, header.fin, unmasked));
                taken = start + header.payload_bytes;
            }
            Ok(None) => return (frames, taken, None),
            Err(refusal) => return (frames, taken, Some(refusal)),
        }
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(websocket_frames, m)?)
}
