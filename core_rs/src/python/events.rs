//! Event records as Python objects (`pyexchange.engine.Event`): one small object per record,
//! made in one call per batch (`EventDecoder.decode_batch`), whose fields become Python values
//! only when read. Decoding in Python cost a WebSocket order about 0.6 µs of the event loop
//! (bench/README.md), most of it for fields nobody reads (an order's answer reads four).
//!
//! The names and the decimals are `pyexchange`'s: the decoder is given the code names, the
//! `Decimal` class, and each asset and instrument as the engine's face learns them; a decimal
//! field is `ticks * tick_size`, `lots * lot_size` or `Decimal(units).scaleb(-decimals)`, as
//! `Instrument.price`, `Instrument.size` and `Asset.amount` make them.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::codes::EventKind;
use crate::wire::{event_records, EventRecord, SIDE_NONE};

#[derive(Debug)]
struct InstrumentNames {
    symbol: Py<PyString>,
    tick_size: Py<PyAny>,
    lot_size: Py<PyAny>,
    quote_decimals: i64,
}

#[derive(Debug)]
struct AssetNames {
    name: Py<PyString>,
    decimals: i64,
}

/// What turns records into Python values; shared by the events of a batch (an event keeps the
/// tables of its decoding: instruments learned later are not its).
#[derive(Debug)]
struct Tables {
    decimal: Py<PyAny>,
    kinds: Vec<Py<PyString>>,
    reasons: Vec<Option<Py<PyString>>>,
    sides: Vec<Py<PyString>>,
    market_states: Vec<Py<PyString>>,
    instruments: Vec<Arc<InstrumentNames>>,
    assets: Vec<Arc<AssetNames>>,
}

#[pyclass(module = "pyexchange._core", name = "EventDecoder")]
pub(crate) struct EventDecoder {
    tables: Arc<Tables>,
}

fn names(py: Python<'_>, names: Vec<String>) -> Vec<Py<PyString>> {
    names.iter().map(|name| PyString::intern(py, name).unbind()).collect()
}

#[pymethods]
impl EventDecoder {
    /// The `Decimal` class and the names of the codes, by code (`wire.EVENT_KINDS`, …).
    #[new]
    fn new(
        py: Python<'_>,
        decimal: Py<PyAny>,
        kinds: Vec<String>,
        reasons: Vec<String>,
        sides: Vec<String>,
        market_states: Vec<String>,
    ) -> Self {
        let reasons = reasons.iter().map(|r| (!r.is_empty()).then(|| PyString::intern(py, r).unbind())).collect();
        let tables = Tables {
            decimal,
            kinds: names(py, kinds),
            reasons,
            sides: names(py, sides),
            market_states: names(py, market_states),
            instruments: Vec::new(),
            assets: Vec::new(),
        };
        EventDecoder { tables: Arc::new(tables) }
    }

    /// Learns the next asset (ids are handed out in sequence).
    fn add_asset(&mut self, py: Python<'_>, asset_id: usize, name: &str, decimals: i64) -> PyResult<()> {
        let tables = self.tables_to_change(py);
        if asset_id != tables.assets.len() {
            return Err(PyValueError::new_err(format!("asset {asset_id} is not the next ({})", tables.assets.len())));
        }
        tables.assets.push(Arc::new(AssetNames { name: PyString::new(py, name).unbind(), decimals }));
        Ok(())
    }

    /// Learns the next instrument: its symbol, tick and lot sizes (decimals), and its quote
    /// asset's decimals.
    fn add_instrument(
        &mut self,
        py: Python<'_>,
        instrument_id: usize,
        symbol: &str,
        tick_size: Py<PyAny>,
        lot_size: Py<PyAny>,
        quote_decimals: i64,
    ) -> PyResult<()> {
        let tables = self.tables_to_change(py);
        if instrument_id != tables.instruments.len() {
            let next = tables.instruments.len();
            return Err(PyValueError::new_err(format!("instrument {instrument_id} is not the next ({next})")));
        }
        let symbol = PyString::new(py, symbol).unbind();
        tables.instruments.push(Arc::new(InstrumentNames { symbol, tick_size, lot_size, quote_decimals }));
        Ok(())
    }

    /// The events of event records (bytes).
    fn decode<'py>(&self, py: Python<'py>, events: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let records = event_records(events).map_err(PyValueError::new_err)?;
        let events = records.into_iter().map(|record| self.event(py, record)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, events)
    }

    /// The events of a batch's commands, numbered `first_seq` on: a list for each command.
    fn decode_batch<'py>(
        &self,
        py: Python<'py>,
        events: &[u8],
        first_seq: u64,
        commands: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let records = event_records(events).map_err(PyValueError::new_err)?;
        let mut per_command: Vec<Vec<Py<Event>>> = (0..commands).map(|_| Vec::new()).collect();
        for record in records {
            let command = record.seq.checked_sub(first_seq).and_then(|i| usize::try_from(i).ok());
            let Some(events) = command.and_then(|i| per_command.get_mut(i)) else {
                let last = first_seq + commands as u64;
                return Err(PyValueError::new_err(format!(
                    "an event of seq {} in a batch of {first_seq}..{last}",
                    record.seq
                )));
            };
            events.push(self.event(py, record)?);
        }
        PyList::new(py, per_command.into_iter().map(|events| PyList::new(py, events)).collect::<PyResult<Vec<_>>>()?)
    }
}

impl EventDecoder {
    /// The tables, copied first if events still share them.
    fn tables_to_change(&mut self, py: Python<'_>) -> &mut Tables {
        if Arc::get_mut(&mut self.tables).is_none() {
            let t = &self.tables;
            let copy = |names: &Vec<Py<PyString>>| names.iter().map(|n| n.clone_ref(py)).collect();
            self.tables = Arc::new(Tables {
                decimal: t.decimal.clone_ref(py),
                kinds: copy(&t.kinds),
                reasons: t.reasons.iter().map(|r| r.as_ref().map(|r| r.clone_ref(py))).collect(),
                sides: copy(&t.sides),
                market_states: copy(&t.market_states),
                instruments: t.instruments.clone(),
                assets: t.assets.clone(),
            });
        }
        Arc::get_mut(&mut self.tables).expect("not shared")
    }

    fn event(&self, py: Python<'_>, record: EventRecord) -> PyResult<Py<Event>> {
        Py::new(py, Event { record, tables: Arc::clone(&self.tables) })
    }
}

/// One event of a command; fields that do not apply to its kind are None.
#[pyclass(module = "pyexchange._core", name = "Event", frozen)]
pub(crate) struct Event {
    record: EventRecord,
    tables: Arc<Tables>,
}

/// The event's instrument or asset, as its kind reads the record's `instrument`.
enum Subject<'t> {
    /// A market event's instrument (`market_state`, `auction`, `uncross`).
    Market(Option<&'t InstrumentNames>),
    /// A deposit's asset.
    Asset(Option<&'t AssetNames>),
    /// An order's instrument; None when unknown. A rejection names it but gives no figures.
    Order(Option<&'t InstrumentNames>),
}

impl Event {
    fn kind(&self) -> EventKind {
        self.record.kind()
    }

    fn subject(&self) -> Subject<'_> {
        let r = &self.record;
        let instrument = || self.tables.instruments.get(r.instrument as usize).map(Arc::as_ref);
        if self.kind() >= EventKind::MarketState {
            Subject::Market(instrument())
        } else if r.is_asset != 0 {
            Subject::Asset(self.tables.assets.get(r.instrument as usize).map(Arc::as_ref))
        } else {
            Subject::Order(instrument())
        }
    }

    /// The instrument whose figures the event gives (not a rejection's).
    fn priced(&self) -> Option<&InstrumentNames> {
        match self.subject() {
            Subject::Market(inst) => inst,
            Subject::Order(inst) if self.kind() != EventKind::Rejected => inst,
            _ => None,
        }
    }

    fn is_fill(&self) -> bool {
        self.kind() == EventKind::Fill
    }

    fn is_market(&self) -> bool {
        self.kind() >= EventKind::MarketState
    }

    fn times<'py>(py: Python<'py>, count: u64, step: &Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        count.into_pyobject(py)?.into_any().mul(step.bind(py))
    }

    fn amount<'py>(&self, py: Python<'py>, units: u64, decimals: i64) -> PyResult<Bound<'py, PyAny>> {
        self.tables.decimal.bind(py).call1((units,))?.call_method1("scaleb", (-decimals,))
    }

    fn fee<'py>(&self, py: Python<'py>, units: u64) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.priced() {
            Some(inst) if self.is_fill() => Ok(Some(self.amount(py, units, inst.quote_decimals)?)),
            _ => Ok(None),
        }
    }
}

#[pymethods]
impl Event {
    #[getter]
    fn seq(&self) -> u64 {
        self.record.seq
    }

    #[getter]
    fn ts_ns(&self) -> i64 {
        self.record.ts_ns
    }

    #[getter(kind)]
    fn kind_text(&self, py: Python<'_>) -> Py<PyString> {
        self.tables.kinds[self.record.kind as usize].clone_ref(py)
    }

    #[getter]
    fn reason(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.tables.reasons.get(self.record.reason as usize)?.as_ref().map(|r| r.clone_ref(py))
    }

    #[getter]
    fn account(&self) -> Option<u64> {
        (!self.is_market()).then_some(self.record.account)
    }

    #[getter]
    fn order_id(&self) -> Option<u64> {
        (!self.is_market() && self.record.order_id != 0).then_some(self.record.order_id)
    }

    #[getter]
    fn side(&self, py: Python<'_>) -> Option<Py<PyString>> {
        if self.record.side == SIDE_NONE {
            return None;
        }
        self.tables.sides.get(self.record.side as usize).map(|s| s.clone_ref(py))
    }

    #[getter]
    fn maker_order_id(&self) -> Option<u64> {
        self.is_fill().then_some(self.record.maker_order_id)
    }

    #[getter]
    fn taker_order_id(&self) -> Option<u64> {
        self.is_fill().then_some(self.record.order_id)
    }

    #[getter]
    fn maker_account(&self) -> Option<u64> {
        self.is_fill().then_some(self.record.maker_account)
    }

    #[getter]
    fn taker_account(&self) -> Option<u64> {
        self.is_fill().then_some(self.record.account)
    }

    #[getter]
    fn instrument(&self, py: Python<'_>) -> Option<Py<PyString>> {
        match self.subject() {
            Subject::Market(inst) | Subject::Order(inst) => inst.map(|i| i.symbol.clone_ref(py)),
            Subject::Asset(_) => None,
        }
    }

    #[getter]
    fn asset(&self, py: Python<'_>) -> Option<Py<PyString>> {
        match self.subject() {
            Subject::Asset(asset) => asset.map(|a| a.name.clone_ref(py)),
            _ => None,
        }
    }

    #[getter]
    fn price<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.priced() {
            Some(inst) if self.record.price_ticks != 0 => {
                Ok(Some(Self::times(py, self.record.price_ticks, &inst.tick_size)?))
            }
            _ => Ok(None),
        }
    }

    #[getter]
    fn size<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.subject() {
            Subject::Asset(Some(asset)) => Ok(Some(self.amount(py, self.record.size_lots, asset.decimals)?)),
            _ if self.kind() == EventKind::MarketState => Ok(None),
            _ => match self.priced() {
                Some(inst) => Ok(Some(Self::times(py, self.record.size_lots, &inst.lot_size)?)),
                None => Ok(None),
            },
        }
    }

    #[getter]
    fn imbalance<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.priced() {
            Some(inst) if self.kind() == EventKind::Auction => {
                Ok(Some(Self::times(py, self.record.order_id, &inst.lot_size)?))
            }
            _ => Ok(None),
        }
    }

    #[getter]
    fn market_state(&self, py: Python<'_>) -> Option<Py<PyString>> {
        if self.kind() != EventKind::MarketState {
            return None;
        }
        self.tables.market_states.get(usize::try_from(self.record.order_id).ok()?).map(|s| s.clone_ref(py))
    }

    #[getter]
    fn maker_fee<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.fee(py, self.record.maker_fee)
    }

    #[getter]
    fn taker_fee<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.fee(py, self.record.taker_fee)
    }

    /// `Event(field=value, …)` of the fields that are not None, in `FIELDS` order.
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let mut fields = Vec::new();
        for name in FIELDS {
            let value = slf.getattr(name)?;
            if !value.is_none() {
                fields.push(format!("{name}={}", value.repr()?));
            }
        }
        Ok(format!("Event({})", fields.join(", ")))
    }

    /// The names of its fields.
    #[classattr]
    #[allow(non_snake_case)]
    fn FIELDS() -> Vec<&'static str> {
        FIELDS.to_vec()
    }
}

const FIELDS: [&str; 19] = [
    "account",
    "asset",
    "imbalance",
    "instrument",
    "kind",
    "maker_account",
    "maker_fee",
    "maker_order_id",
    "market_state",
    "order_id",
    "price",
    "reason",
    "seq",
    "side",
    "size",
    "taker_account",
    "taker_fee",
    "taker_order_id",
    "ts_ns",
];

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventDecoder>()?;
    m.add_class::<Event>()
}
