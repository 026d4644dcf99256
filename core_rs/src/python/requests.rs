//! OKX `place` requests read in Rust: the fast path of `pyexchange.gateway.requests.place`.
//!
//! `PlaceReader.read(body)` answers only what it is sure of, a well-formed order whose every
//! field it reads is a string, with the very `PlaceIntent` the Python reading builds. Anything
//! else (a bad or missing field, a number sent as a JSON number, `instIdCode` instead of
//! `instId`, a long tag, a number of more than `DIGITS_MAX` digits) is `None`, and the Python
//! reading answers it, with its error message. `tests/test_place_reader.py` holds the two to
//! the same intents. An order costs it about a quarter of what the Python reading does.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

/// Longer numbers are left to the Python reading (its `Decimal`s round past 28 digits).
const DIGITS_MAX: usize = 24;
/// Ticks and lots past this are refused by the Python reading (`requests.STEPS_MAX`).
const STEPS_MAX: u128 = 1 << 62;
const CLIENT_ORDER_ID_CHARS_MAX: usize = 32;
const TAG_CHARS_MAX: usize = 16;
const MARKET: &str = "market";
const CASH: &str = "cash";
const BASE_CCY: &str = "base_ccy";
const BUY: &str = "buy";

/// A plain decimal, `digits` × 10^-`scale`.
#[derive(Clone, Copy)]
struct Plain {
    digits: u128,
    scale: u32,
}

/// `[0-9]+(\.[0-9]+)?` of at most `DIGITS_MAX` digits, as the Python reading's `DECIMAL`.
fn plain(text: &str) -> Option<Plain> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || text.ends_with('.') || whole.len() + fraction.len() > DIGITS_MAX {
        return None;
    }
    let mut digits: u128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        if !byte.is_ascii_digit() {
            return None;
        }
        digits = digits * 10 + u128::from(byte - b'0');
    }
    Some(Plain { digits, scale: u32::try_from(fraction.len()).ok()? })
}

/// `value`'s digits at `scale` (not less than its own); None on overflow.
fn at_scale(value: Plain, scale: u32) -> Option<u128> {
    value.digits.checked_mul(10u128.checked_pow(scale - value.scale)?)
}

/// `value` / `step` when it is a whole number of at most `STEPS_MAX`.
fn steps(value: Plain, step: Plain) -> Option<u64> {
    let scale = value.scale.max(step.scale);
    let (value, step) = (at_scale(value, scale)?, at_scale(step, scale)?);
    if step == 0 || value % step != 0 || value / step > STEPS_MAX {
        return None;
    }
    u64::try_from(value / step).ok()
}

fn less(a: Plain, b: Plain) -> Option<bool> {
    let scale = a.scale.max(b.scale);
    Some(at_scale(a, scale)? < at_scale(b, scale)?)
}

/// A field as the Python reading's `_text` takes it: `Ok(None)` when missing, None or "";
/// `Err(())` when it is there but not a string (the Python reading's error).
fn text<'py>(body: &Bound<'py, PyDict>, field: &Bound<'py, PyString>) -> Result<Option<Bound<'py, PyString>>, ()> {
    let Some(value) = body.get_item(field).map_err(|_| ())? else { return Ok(None) };
    if value.is_none() {
        return Ok(None);
    }
    let value = value.cast_into::<PyString>().map_err(|_| ())?;
    if value.to_str().map_err(|_| ())?.is_empty() {
        return Ok(None);
    }
    Ok(Some(value))
}

/// A field's allowed values, each with the Python string an intent carries.
type Names = Vec<(String, Py<PyString>)>;

/// The one of `allowed` that `value` is.
fn choice<'a>(value: &str, allowed: &'a Names) -> Option<&'a Py<PyString>> {
    allowed.iter().find(|(name, _)| name == value).map(|(_, name)| name)
}

fn client_order_id_ok(value: &str) -> bool {
    (1..=CLIENT_ORDER_ID_CHARS_MAX).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

struct Spec {
    instrument: Py<PyAny>,
    tick: Plain,
    lot: Plain,
    min_size: Plain,
}

/// Field names, made Python strings once.
struct Fields {
    inst_id: Py<PyString>,
    td_mode: Py<PyString>,
    side: Py<PyString>,
    ord_type: Py<PyString>,
    stp_mode: Py<PyString>,
    sz: Py<PyString>,
    px: Py<PyString>,
    tgt_ccy: Py<PyString>,
    tag: Py<PyString>,
    cl_ord_id: Py<PyString>,
}

#[pyclass(module = "pyexchange._core", frozen)]
pub(super) struct PlaceReader {
    /// Looked up by symbol, never iterated.
    instruments: HashMap<String, Spec>,
    place_intent: Py<PyAny>,
    decimal: Py<PyAny>,
    sides: Names,
    order_types: Names,
    stp_modes: Names,
    default_stp: Py<PyString>,
    empty: Py<PyString>,
    fields: Fields,
}

#[pymethods]
impl PlaceReader {
    /// `instruments`: (symbol, instrument, tick size, lot size, min size), the sizes as plain
    /// decimals (`format(d, "f")`); `place_intent` and `decimal` are the classes it builds.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        instruments: Vec<(String, Py<PyAny>, String, String, String)>,
        place_intent: Py<PyAny>,
        decimal: Py<PyAny>,
        sides: Vec<String>,
        order_types: Vec<String>,
        stp_modes: Vec<String>,
        default_stp: String,
    ) -> PyResult<Self> {
        let mut specs = HashMap::new();
        for (symbol, instrument, tick, lot, min_size) in instruments {
            let read = |text: &str, what: &str| {
                plain(text).ok_or_else(|| {
                    pyo3::exceptions::PyValueError::new_err(format!("{symbol}: {what} {text:?} is not a plain decimal"))
                })
            };
            let spec = Spec {
                instrument,
                tick: read(&tick, "tick size")?,
                lot: read(&lot, "lot size")?,
                min_size: read(&min_size, "min size")?,
            };
            specs.insert(symbol, spec);
        }
        let strings = |names: Vec<String>| {
            names
                .into_iter()
                .map(|name| {
                    let object = PyString::new(py, &name).unbind();
                    (name, object)
                })
                .collect()
        };
        let field = |name: &str| PyString::intern(py, name).unbind();
        Ok(Self {
            instruments: specs,
            place_intent,
            decimal,
            sides: strings(sides),
            order_types: strings(order_types),
            stp_modes: strings(stp_modes),
            default_stp: PyString::new(py, &default_stp).unbind(),
            empty: PyString::new(py, "").unbind(),
            fields: Fields {
                inst_id: field("instId"),
                td_mode: field("tdMode"),
                side: field("side"),
                ord_type: field("ordType"),
                stp_mode: field("stpMode"),
                sz: field("sz"),
                px: field("px"),
                tgt_ccy: field("tgtCcy"),
                tag: field("tag"),
                cl_ord_id: field("clOrdId"),
            },
        })
    }

    /// The `PlaceIntent` of `body`, or None: the Python reading decides.
    fn read<'py>(&self, py: Python<'py>, body: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(body) = body.cast::<PyDict>() else { return Ok(None) };
        let Some(read) = self.read_fields(py, body) else { return Ok(None) };
        let decimal = self.decimal.bind(py);
        let price = match &read.price {
            Some(text) => decimal.call1((text,))?,
            None => py.None().into_bound(py),
        };
        let size = decimal.call1((&read.size,))?;
        let intent = self.place_intent.bind(py).call1((
            read.spec.instrument.bind(py),
            read.side.bind(py),
            read.order_type.bind(py),
            price,
            size,
            read.price_ticks,
            read.size_lots,
            read.client_order_id,
            read.stp.bind(py),
            read.tag,
        ))?;
        Ok(Some(intent))
    }
}

/// What `read` found, before it builds the intent.
struct Read<'a, 'py> {
    spec: &'a Spec,
    side: &'a Py<PyString>,
    order_type: &'a Py<PyString>,
    stp: &'a Py<PyString>,
    price: Option<Bound<'py, PyString>>,
    size: Bound<'py, PyString>,
    price_ticks: u64,
    size_lots: u64,
    client_order_id: Bound<'py, PyString>,
    tag: Bound<'py, PyString>,
}

impl PlaceReader {
    fn read_fields<'a, 'py>(&'a self, py: Python<'py>, body: &Bound<'py, PyDict>) -> Option<Read<'a, 'py>> {
        let f = &self.fields;
        let field = |name: &Py<PyString>| text(body, name.bind(py)).ok();
        let required = |name: &Py<PyString>| field(name).flatten();
        let symbol = required(&f.inst_id)?;
        let spec = self.instruments.get(symbol.to_str().ok()?)?;
        if required(&f.td_mode)?.to_str().ok()? != CASH {
            return None;
        }
        let side_field = required(&f.side)?;
        let side_text = side_field.to_str().ok()?;
        let side = choice(side_text, &self.sides)?;
        let order_type_field = required(&f.ord_type)?;
        let order_type_text = order_type_field.to_str().ok()?;
        let order_type = choice(order_type_text, &self.order_types)?;
        let stp = match field(&f.stp_mode)? {
            Some(stp) => choice(stp.to_str().ok()?, &self.stp_modes)?,
            None => &self.default_stp,
        };
        let size = required(&f.sz)?;
        let size_plain = plain(size.to_str().ok()?).filter(|size| size.digits > 0)?;
        let size_lots = steps(size_plain, spec.lot)?;
        if less(size_plain, spec.min_size)? {
            return None;
        }
        let (price, price_ticks) = if order_type_text == MARKET {
            // As the Python reading: a market buy must say its size is in the base currency.
            match field(&f.tgt_ccy)? {
                Some(target) if target.to_str().ok()? == BASE_CCY => {}
                None if side_text != BUY => {}
                _ => return None,
            }
            (None, 0)
        } else {
            let price = required(&f.px)?;
            let price_plain = plain(price.to_str().ok()?).filter(|price| price.digits > 0)?;
            let ticks = steps(price_plain, spec.tick)?;
            (Some(price), ticks)
        };
        let tag = match field(&f.tag)? {
            Some(tag) if tag.to_str().ok()?.chars().count() <= TAG_CHARS_MAX => tag,
            Some(_) => return None,
            None => self.empty.bind(py).clone(),
        };
        let client_order_id = match field(&f.cl_ord_id)? {
            Some(cid) if client_order_id_ok(cid.to_str().ok()?) => cid,
            Some(_) => return None,
            None => self.empty.bind(py).clone(),
        };
        Some(Read { spec, side, order_type, stp, price, size, price_ticks, size_lots, client_order_id, tag })
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PlaceReader>()
}
