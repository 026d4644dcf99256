//! OKX `place` requests read in Rust: the fast path of `pyexchange.gateway.requests.place`.
//!
//! `PlaceReader.read(body)` answers only what it is sure of, a well-formed order whose every
//! field it reads is a string, with the very `PlaceIntent` the Python reading builds. Anything
//! else (a bad or missing field, a number sent as a JSON number, `instIdCode` instead of
//! `instId`, a long tag, a number of more than `DIGITS_MAX` digits) is `None`, and the Python
//! reading answers it, with its error message. `tests/test_place_reader.py` holds the two to
//! the same intents. An order costs it about a quarter of what the Python reading does.
//!
//! It reads the JSON text itself too (`read_json`, and a WebSocket `order` op's whole message,
//! `read_order_op`), so that the common order never becomes a Python dict: the same fields, by
//! the same rules, from a JSON object (a repeated key counts by its last value, as in `orjson`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

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
const ORDER_OP: &str = "order";
/// A WebSocket op's `id`, at most (characters).
const OP_ID_CHARS_MAX: usize = 32;

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

/// The fields an order is read from (the others are ignored, as by the Python reading).
#[derive(Clone, Copy)]
enum Field {
    InstId,
    TdMode,
    Side,
    OrdType,
    StpMode,
    Sz,
    Px,
    TgtCcy,
    Tag,
    ClOrdId,
}

const FIELDS: usize = 10;
const FIELD_NAMES: [&str; FIELDS] =
    ["instId", "tdMode", "side", "ordType", "stpMode", "sz", "px", "tgtCcy", "tag", "clOrdId"];

/// An order's fields as text; None for one that is missing, null or "" (the Python reading's
/// `_text`). An order with one of them there but not a string is left to the Python reading.
struct Texts<'t>([Option<&'t str>; FIELDS]);

impl<'t> Texts<'t> {
    fn get(&self, field: Field) -> Option<&'t str> {
        self.0[field as usize]
    }
}

#[pyclass(module = "pyexchange._core", frozen)]
pub(super) struct PlaceReader {
    /// Looked up by symbol, never iterated.
    instruments: HashMap<String, Spec>,
    place_intent: Py<PyAny>,
    /// `tuple.__new__`: builds a `PlaceIntent` (a named tuple) without its Python `__new__`.
    tuple_new: Py<PyAny>,
    decimal: Py<PyAny>,
    sides: Names,
    order_types: Names,
    stp_modes: Names,
    default_stp: Py<PyString>,
    empty: Py<PyString>,
    /// `FIELD_NAMES` as Python strings, made once.
    field_names: [Py<PyString>; FIELDS],
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
        Ok(Self {
            instruments: specs,
            place_intent,
            tuple_new: py.get_type::<PyTuple>().getattr("__new__")?.unbind(),
            decimal,
            sides: strings(sides),
            order_types: strings(order_types),
            stp_modes: strings(stp_modes),
            default_stp: PyString::new(py, &default_stp).unbind(),
            empty: PyString::new(py, "").unbind(),
            field_names: FIELD_NAMES.map(|name| PyString::intern(py, name).unbind()),
        })
    }

    /// The `PlaceIntent` of `body`, or None: the Python reading decides.
    fn read<'py>(&self, py: Python<'py>, body: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(body) = body.cast::<PyDict>() else { return Ok(None) };
        let mut found: [Option<Bound<'py, PyString>>; FIELDS] = Default::default();
        for (slot, name) in found.iter_mut().zip(&self.field_names) {
            let Ok(value) = text(body, name.bind(py)) else { return Ok(None) };
            *slot = value;
        }
        let mut texts = [None; FIELDS];
        for (slot, value) in texts.iter_mut().zip(&found) {
            if let Some(value) = value {
                let Ok(value) = value.to_str() else { return Ok(None) };
                *slot = Some(value);
            }
        }
        self.intent(py, &Texts(texts))
    }

    /// `read` of an order's JSON text (a request's body), without a dict in between.
    fn read_json<'py>(&self, py: Python<'py>, body: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(order) = serde_json::from_slice::<JsonOrder<'_>>(body) else { return Ok(None) };
        match order.texts() {
            Some(texts) => self.intent(py, &texts),
            None => Ok(None),
        }
    }

    /// A WebSocket message that is an `order` op of one order read whole: (its id, the
    /// intent), or None, when the session reads it (as anything else that is not exactly
    /// `{"id": <up to 32 characters>, "op": "order", "args": [<an order read takes>]}`, the id
    /// optional).
    fn read_order_op<'py>(
        &self,
        py: Python<'py>,
        message: &str,
    ) -> PyResult<Option<(Option<String>, Bound<'py, PyAny>)>> {
        let Ok(op) = serde_json::from_str::<JsonOrderOp<'_>>(message) else { return Ok(None) };
        let op_id = match op.id {
            JsonText::Absent => None,
            JsonText::Text(id) if id.chars().count() <= OP_ID_CHARS_MAX => Some(id.into_owned()),
            _ => return Ok(None),
        };
        let (JsonText::Text(name), Some([order])) = (&op.op, op.args.as_deref()) else { return Ok(None) };
        let Some(texts) = order.texts().filter(|_| name == ORDER_OP) else { return Ok(None) };
        Ok(self.intent(py, &texts)?.map(|intent| (op_id, intent)))
    }
}

impl PlaceReader {
    /// The intent of an order's fields, if the fast path is sure of it.
    fn intent<'py>(&self, py: Python<'py>, texts: &Texts<'_>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(read) = self.read_fields(texts) else { return Ok(None) };
        let decimal = self.decimal.bind(py);
        let price = match read.price {
            Some(text) => decimal.call1((text,))?,
            None => py.None().into_bound(py),
        };
        let size = decimal.call1((read.size,))?;
        let text_or_empty = |text: Option<&str>| match text {
            Some(text) => PyString::new(py, text),
            None => self.empty.bind(py).clone(),
        };
        let fields = (
            read.spec.instrument.bind(py),
            read.side.bind(py),
            read.order_type.bind(py),
            price,
            size,
            read.price_ticks,
            read.size_lots,
            text_or_empty(read.client_order_id),
            read.stp.bind(py),
            text_or_empty(read.tag),
        );
        let intent = self.tuple_new.bind(py).call1((self.place_intent.bind(py), fields))?;
        Ok(Some(intent))
    }

    fn read_fields<'a, 't>(&'a self, texts: &Texts<'t>) -> Option<Read<'a, 't>> {
        let spec = self.instruments.get(texts.get(Field::InstId)?)?;
        if texts.get(Field::TdMode)? != CASH {
            return None;
        }
        let side_text = texts.get(Field::Side)?;
        let side = choice(side_text, &self.sides)?;
        let order_type_text = texts.get(Field::OrdType)?;
        let order_type = choice(order_type_text, &self.order_types)?;
        let stp = match texts.get(Field::StpMode) {
            Some(stp) => choice(stp, &self.stp_modes)?,
            None => &self.default_stp,
        };
        let size = texts.get(Field::Sz)?;
        let size_plain = plain(size).filter(|size| size.digits > 0)?;
        let size_lots = steps(size_plain, spec.lot)?;
        if less(size_plain, spec.min_size)? {
            return None;
        }
        let (price, price_ticks) = if order_type_text == MARKET {
            // As the Python reading: a market buy must say its size is in the base currency.
            match texts.get(Field::TgtCcy) {
                Some(BASE_CCY) => {}
                None if side_text != BUY => {}
                _ => return None,
            }
            (None, 0)
        } else {
            let price = texts.get(Field::Px)?;
            let price_plain = plain(price).filter(|price| price.digits > 0)?;
            (Some(price), steps(price_plain, spec.tick)?)
        };
        let tag = texts.get(Field::Tag);
        if tag.is_some_and(|tag| tag.chars().count() > TAG_CHARS_MAX) {
            return None;
        }
        let client_order_id = texts.get(Field::ClOrdId);
        if client_order_id.is_some_and(|cid| !client_order_id_ok(cid)) {
            return None;
        }
        Some(Read { spec, side, order_type, stp, price, size, price_ticks, size_lots, client_order_id, tag })
    }
}

/// What `read_fields` found, before the intent is built.
struct Read<'a, 't> {
    spec: &'a Spec,
    side: &'a Py<PyString>,
    order_type: &'a Py<PyString>,
    stp: &'a Py<PyString>,
    price: Option<&'t str>,
    size: &'t str,
    price_ticks: u64,
    size_lots: u64,
    client_order_id: Option<&'t str>,
    tag: Option<&'t str>,
}

/// A JSON value where the Python reading wants text: text, nothing (missing or null), or
/// something else (which leaves the order to the Python reading).
#[derive(Default)]
enum JsonText<'j> {
    #[default]
    Absent,
    Text(Cow<'j, str>),
    Other,
}

impl JsonText<'_> {
    /// Whether it is the text `wanted` (an object's key is read as a `JsonText`: borrowed from
    /// the message unless it has escapes).
    fn is(&self, wanted: &str) -> bool {
        matches!(self, JsonText::Text(text) if text == wanted)
    }
}

impl<'de: 'j, 'j> Deserialize<'de> for JsonText<'j> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = JsonText<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(JsonText::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(JsonText::Text(Cow::Owned(text.to_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(JsonText::Absent)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(JsonText::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(JsonText::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(JsonText::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(JsonText::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonText::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonText::Other)
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A JSON object read as an order: its `FIELD_NAMES` fields, the last of a repeated one.
struct JsonOrder<'j>([JsonText<'j>; FIELDS]);

impl JsonOrder<'_> {
    /// Its `Texts`; None if a field is there but not a string.
    fn texts(&self) -> Option<Texts<'_>> {
        let mut texts = [None; FIELDS];
        for (slot, value) in texts.iter_mut().zip(&self.0) {
            match value {
                JsonText::Absent => {}
                JsonText::Text(text) if text.is_empty() => {}
                JsonText::Text(text) => *slot = Some(text.as_ref()),
                JsonText::Other => return None,
            }
        }
        Some(Texts(texts))
    }
}

impl<'de: 'j, 'j> Deserialize<'de> for JsonOrder<'j> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderVisitor;
        impl<'de> Visitor<'de> for OrderVisitor {
            type Value = JsonOrder<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: [JsonText<'de>; FIELDS] = Default::default();
                while let Some(key) = map.next_key::<JsonText<'de>>()? {
                    match FIELD_NAMES.iter().position(|name| key.is(name)) {
                        Some(at) => fields[at] = map.next_value()?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(JsonOrder(fields))
            }
        }
        deserializer.deserialize_map(OrderVisitor)
    }
}

/// A WebSocket message read as an order-entry op: `id`, `op` and `args` (any other key ignored,
/// as by the session; the last of a repeated one). Read by hand, as `JsonOrder` is, not derived:
/// a derived struct would also take a JSON array as its fields in order, which is no op.
#[derive(Default)]
struct JsonOrderOp<'j> {
    id: JsonText<'j>,
    op: JsonText<'j>,
    args: Option<Vec<JsonOrder<'j>>>,
}

impl<'de: 'j, 'j> Deserialize<'de> for JsonOrderOp<'j> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OpVisitor;
        impl<'de> Visitor<'de> for OpVisitor {
            type Value = JsonOrderOp<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut op = JsonOrderOp::default();
                while let Some(key) = map.next_key::<JsonText<'de>>()? {
                    if key.is("id") {
                        op.id = map.next_value()?;
                    } else if key.is("op") {
                        op.op = map.next_value()?;
                    } else if key.is("args") {
                        op.args = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(op)
            }
        }
        deserializer.deserialize_map(OpVisitor)
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PlaceReader>()
}
