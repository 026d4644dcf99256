//! OKX request signatures checked in Rust for the gateway (`pyexchange.gateway.auth`):
//! `OK-ACCESS-SIGN` is Base64(HMAC-SHA256(secret, timestamp + method + requestPath + body)).
//! Python's `hmac` builds two hash objects per signature and took a REST order about 2 µs.
//! The `OK-ACCESS-*` headers are read here too, in one pass over the request's headers, and the
//! signatures already seen are kept here (`crate::replay`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::replay::SeenSignatures;
use crate::timestamp::utc_ms;

const ACCESS_HEADERS: [&[u8]; 4] =
    [b"ok-access-key", b"ok-access-sign", b"ok-access-timestamp", b"ok-access-passphrase"];

/// (key, sign, timestamp, passphrase; the timestamp in Unix ms when the fast path read it).
type AccessHeaders = (Option<String>, Option<String>, Option<String>, Option<String>, Option<i64>);

/// Whether `sent` is the signature of `timestamp + method + request_path + body` with `secret`
/// (as UTF-8), compared in constant time. A `sent` that is not valid Unicode (a lone surrogate)
/// is no signature.
#[pyfunction]
fn okx_signature_ok(
    secret: &str,
    timestamp: &str,
    method: &str,
    request_path: &str,
    body: &str,
    sent: &Bound<'_, PyString>,
) -> bool {
    let Ok(sent) = sent.to_str() else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    for part in [timestamp, method, request_path, body] {
        mac.update(part.as_bytes());
    }
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    expected.as_bytes().ct_eq(sent.as_bytes()).into()
}

/// The `OK-ACCESS-*` headers of a request's ASGI headers (`(name, value)` tuples of bytes,
/// names lowercase), each the first of its name, as Latin-1 text as Starlette reads it:
/// (key, sign, timestamp, passphrase), None for one that is absent; and the timestamp in Unix
/// ms when it has the usual form (`timestamp::utc_ms`), else None.
#[pyfunction]
fn okx_access_headers(raw: &Bound<'_, PyAny>) -> PyResult<AccessHeaders> {
    let mut found: [Option<String>; 4] = Default::default();
    for pair in raw.try_iter()? {
        let (name, value) = pair?.extract::<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)>()?;
        let Some(at) = ACCESS_HEADERS.iter().position(|&wanted| wanted == name.as_bytes()) else { continue };
        if found[at].is_none() {
            found[at] = Some(value.as_bytes().iter().map(|&byte| char::from(byte)).collect());
        }
    }
    let [key, sign, timestamp, passphrase] = found;
    let sent_ms = timestamp.as_deref().and_then(utc_ms);
    Ok((key, sign, timestamp, passphrase, sent_ms))
}

/// The signed requests seen within their window, so that an exact replay is refused.
#[pyclass(module = "pyexchange._core", name = "SeenSignatures")]
struct PySeenSignatures {
    seen: SeenSignatures,
}

#[pymethods]
impl PySeenSignatures {
    #[new]
    fn new(bucket_ms: u64, entries_max: usize) -> PyResult<Self> {
        if bucket_ms == 0 || entries_max == 0 {
            return Err(PyValueError::new_err("bucket_ms and entries_max must be over 0"));
        }
        Ok(PySeenSignatures { seen: SeenSignatures::new(bucket_ms, entries_max) })
    }

    /// Whether `signature` is new; if so it is remembered until `expires_ms` (Unix ms).
    fn first_time(&mut self, signature: &str, expires_ms: u64, now_ms: u64) -> bool {
        self.seen.first_time(signature.as_bytes(), expires_ms, now_ms)
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySeenSignatures>()?;
    m.add_function(wrap_pyfunction!(okx_signature_ok, m)?)?;
    m.add_function(wrap_pyfunction!(okx_access_headers, m)?)
}
