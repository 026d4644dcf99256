//! The PyO3 binding: one leaf that converts and delegates. It holds exactly one engine and
//! no trading state of its own; decimals, names and defaults live in `pyexchange/engine.py`.
//!
//! Three ways in: `submit` takes a whole batch of command records (bytes or a numpy buffer)
//! and releases the GIL while the engine works, returning an `EventBuffer` numpy can view; the per-command methods (`place`, `cancel`,
//! …) return their events as record bytes; the lean calls (`place_ticks`, …) return one integer
//! and queue their events until `take_events`.

use std::ffi::{c_int, c_void};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyAssertionError, PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::codes::{EventKind, MarketState, OrderType, Reason, Side, Stp};
use crate::command::{AmendOrder, AssetSpec, ClientOrderId, Command, InstrumentSpec, PlaceOrder};
use crate::engine::{Engine, EngineError};
use crate::limits::CLIENT_ORDER_ID_BYTES;
use crate::views::OrderFields;
use crate::wire::{
    command_records, event_bytes, CommandRecord, EventRecord, WireError, COMMAND_RECORD_BYTES, EVENT_RECORD_BYTES,
};

/// The methods every engine class has, written once: the per-command methods (integers and
/// wire codes in, event record bytes out) and the queries. A class provides `run(py, ts_ns,
/// command)`, which sequences a command and returns its events as record bytes, and
/// `read(|engine| …)`; `[mut]` makes the commands take `&mut self` (the in-memory engine),
/// `[]` `&self` (the durable engine, which callers on several threads share while it waits
/// for fsyncs). The braces hold the class's own methods.
macro_rules! engine_methods {
    ($class:ty, [$($mutable:tt)?], { $($own:tt)* }) => {
        #[pymethods]
        impl $class {
            $($own)*

            /// Sequence number of the last command applied.
            #[getter]
            fn seq(&self) -> PyResult<u64> {
                self.read(Engine::seq)
            }

            /// Timestamp of the last command applied.
            #[getter]
            fn ts_ns(&self) -> PyResult<i64> {
                self.read(Engine::ts_ns)
            }

            fn add_asset(&$($mutable)? self, py: Python<'_>, ts_ns: i64, name: &str, decimals: u8) -> PyResult<u32> {
                self.run(py, ts_ns, Command::AddAsset(AssetSpec { name: name.to_owned(), decimals }))?;
                Ok(self.read(|e| e.ledger().asset_id(name))?.expect("just added"))
            }

            #[pyo3(signature = (ts_ns, symbol, base_asset, quote_asset, lot_units, quote_units_per_tick_lot, min_size_lots, maker_fee_bps, taker_fee_bps, market_protection_bps))]
            #[allow(clippy::too_many_arguments)]
            fn add_instrument(
                &$($mutable)? self,
                py: Python<'_>,
                ts_ns: i64,
                symbol: &str,
                base_asset: u32,
                quote_asset: u32,
                lot_units: u64,
                quote_units_per_tick_lot: u64,
                min_size_lots: u64,
                maker_fee_bps: u16,
                taker_fee_bps: u16,
                market_protection_bps: u16,
            ) -> PyResult<u32> {
                let spec = InstrumentSpec {
                    symbol: symbol.to_owned(),
                    base_asset,
                    quote_asset,
                    lot_units,
                    quote_units_per_tick_lot,
                    min_size_lots,
                    maker_fee_bps,
                    taker_fee_bps,
                    market_protection_bps,
                };
                self.run(py, ts_ns, Command::AddInstrument(spec))?;
                Ok(self.read(|e| e.instrument_id(symbol))?.expect("just added"))
            }

            fn deposit<'py>(
                &$($mutable)? self,
                py: Python<'py>,
                ts_ns: i64,
                account: u64,
                asset: u32,
                amount_units: u64,
            ) -> PyResult<Bound<'py, PyBytes>> {
                self.run(py, ts_ns, Command::Deposit { account, asset, amount_units })
            }

            /// Places an order; a retry of a known order's place gets its original acceptance.
            #[pyo3(signature = (ts_ns, account, instrument, side, order_type, stp, price_ticks, size_lots, client_order_id))]
            #[allow(clippy::too_many_arguments)]
            fn place<'py>(
                &$($mutable)? self,
                py: Python<'py>,
                ts_ns: i64,
                account: u64,
                instrument: u32,
                side: u8,
                order_type: u8,
                stp: u8,
                price_ticks: u64,
                size_lots: u64,
                client_order_id: &[u8],
            ) -> PyResult<Bound<'py, PyBytes>> {
                let codes = (side, order_type, stp);
                let place = place_order(account, instrument, codes, price_ticks, size_lots, client_order_id)?;
                self.run(py, ts_ns, Command::Place(place))
            }

            fn cancel<'py>(
                &$($mutable)? self,
                py: Python<'py>,
                ts_ns: i64,
                account: u64,
                instrument: u32,
                order_id: u64,
            ) -> PyResult<Bound<'py, PyBytes>> {
                self.run(py, ts_ns, Command::Cancel { account, instrument, order_id })
            }

            /// Amends a resting order (0 = unchanged; size is the new total size).
            #[allow(clippy::too_many_arguments)]
            fn amend<'py>(
                &$($mutable)? self,
                py: Python<'py>,
                ts_ns: i64,
                account: u64,
                instrument: u32,
                order_id: u64,
                new_price_ticks: u64,
                new_size_lots: u64,
            ) -> PyResult<Bound<'py, PyBytes>> {
                let amend = AmendOrder { account, instrument, order_id, new_price_ticks, new_size_lots };
                self.run(py, ts_ns, Command::Amend(amend))
            }

            #[pyo3(signature = (ts_ns, account, instrument=None))]
            fn cancel_all<'py>(
                &$($mutable)? self,
                py: Python<'py>,
                ts_ns: i64,
                account: u64,
                instrument: Option<u32>,
            ) -> PyResult<Bound<'py, PyBytes>> {
                self.run(py, ts_ns, Command::CancelAll { account, instrument })
            }

            /// Moves an instrument to a market state (a `MarketState` code); see
            /// `Command::SetMarketState`.
            fn set_market_state<'py>(
                &$($mutable)? self,
                py: Python<'py>,
                ts_ns: i64,
                instrument: u32,
                state: u8,
                auction_band_bps: u16,
            ) -> PyResult<Bound<'py, PyBytes>> {
                let state = crate::python::code(state, "market state", crate::codes::MarketState::from_code)?;
                self.run(py, ts_ns, Command::SetMarketState { instrument, state, auction_band_bps })
            }

            /// The instrument's `MarketState` code, or None for an unknown instrument.
            fn market_state(&self, instrument: u32) -> PyResult<Option<u8>> {
                Ok(self.read(|e| e.market_state(instrument))?.map(crate::codes::MarketState::code))
            }

            /// The uncross the book would have now, as (price_ticks, volume_lots,
            /// imbalance_lots, surplus side code or None); None when nothing would execute.
            fn auction(&self, instrument: u32) -> PyResult<Option<(u64, u64, u64, Option<u8>)>> {
                let at = self.read(|e| e.auction(instrument))?;
                let at = at.ok_or_else(|| PyValueError::new_err(format!("unknown instrument {instrument}")))?;
                Ok(at.map(|a| (a.price_ticks, a.volume_lots, a.imbalance_lots, a.surplus.map(crate::codes::Side::code))))
            }

            /// (available, frozen) in minor units.
            fn balance(&self, account: u64, asset: u32) -> PyResult<(u64, u64)> {
                let balance = self.read(|e| e.balance(account, asset))?;
                Ok((balance.available, balance.frozen))
            }

            /// Up to `depth` levels per side, best first, as (price_ticks, size_lots).
            fn book(&self, instrument: u32, depth: usize) -> PyResult<(Levels, Levels)> {
                self.read(|e| book_levels(e, instrument, depth))?
            }

            /// (id, account, instrument, side, order_type, stp, state, price_ticks, size_lots,
            /// filled_lots, filled_price_lots, client_order_id) or None.
            fn order(&self, account: u64, order_id: u64) -> PyResult<Option<OrderTuple>> {
                self.read(|e| order_tuple(e, account, order_id))
            }

            /// `order` of each (account, order_id), read at one point of the sequence.
            fn orders(&self, keys: Vec<(u64, u64)>) -> PyResult<Vec<Option<OrderTuple>>> {
                self.read(|e| keys.iter().map(|&(account, order_id)| order_tuple(e, account, order_id)).collect())
            }

            /// What the views and the gateway read right after a batch is applied, from its
            /// event records (bytes): (the orders they name as `TouchedOrders`, the accounts
            /// they concern, the instruments they may have changed, whether any is public).
            fn read_batch(&self, events: &[u8]) -> PyResult<(crate::python::views::TouchedOrders, Vec<u64>, Vec<u32>, bool)> {
                let events = crate::wire::event_records(events).map_err(PyValueError::new_err)?;
                let reads = self.read(|e| crate::views::touched_orders(e, &events))?;
                let touched = crate::python::views::TouchedOrders::new(reads.orders);
                Ok((touched, reads.accounts.into_iter().collect(), reads.instruments.into_iter().collect(), reads.public))
            }

            fn instrument_id(&self, symbol: &str) -> PyResult<Option<u32>> {
                self.read(|e| e.instrument_id(symbol))
            }

            fn asset_id(&self, name: &str) -> PyResult<Option<u32>> {
                self.read(|e| e.ledger().asset_id(name))
            }

            /// Every asset as (name, decimals), by id.
            fn assets(&self) -> PyResult<Vec<(String, u8)>> {
                self.read(|e| e.ledger().assets().iter().map(|a| (a.name.clone(), a.decimals)).collect())
            }

            /// Every instrument's spec, by id, as the arguments of `add_instrument` after `ts_ns`.
            fn instruments(&self) -> PyResult<Vec<InstrumentTuple>> {
                self.read(|e| e.instrument_specs().map(instrument_tuple).collect())
            }

            fn live_orders(&self) -> PyResult<usize> {
                self.read(Engine::live_orders)
            }

            /// Hex SHA-256 of the canonical state.
            fn state_hash(&self) -> PyResult<String> {
                self.read(Engine::state_hash)
            }

            /// Raises AssertionError naming the broken invariant.
            fn check_invariants(&self) -> PyResult<()> {
                self.read(Engine::check_invariants)?.map_err(PyAssertionError::new_err)
            }
        }
    };
}

mod durable;
mod events;
mod requests;
mod signature;
mod views;
mod websocket;
mod zone;

/// Events the lean calls may queue before `take_events` must drain them.
const QUEUED_EVENTS_MAX: usize = 1 << 22;
/// Bytes of dropped event buffers kept for reuse (`EVENT_BUFFER_POOL`).
const EVENT_BUFFER_POOL_BYTES_MAX: usize = 256 << 20;

/// Event buffers that Python has dropped, kept for the next batch or lean queue: writing
/// events into memory that is already mapped avoids a page fault (and the kernel zeroing the
/// page) every 4 KiB of output, which on a large batch cost half as much as applying it, or more.
/// Process-wide, so a new engine reuses what an old one left. Holds only memory: no
/// state or event passes through it.
static EVENT_BUFFER_POOL: Mutex<Vec<Vec<EventRecord>>> = Mutex::new(Vec::new());

fn event_buffer_pool() -> MutexGuard<'static, Vec<Vec<EventRecord>>> {
    EVENT_BUFFER_POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An empty event buffer with room for at least `capacity` events: the smallest pooled one
/// large enough, else a new one.
fn pooled_events(capacity: usize) -> Vec<EventRecord> {
    if capacity == 0 {
        return Vec::new();
    }
    let mut pool = event_buffer_pool();
    let fitting = pool.iter().enumerate().filter(|(_, events)| events.capacity() >= capacity);
    match fitting.min_by_key(|(_, events)| events.capacity()).map(|(index, _)| index) {
        Some(index) => pool.swap_remove(index),
        None => Vec::with_capacity(capacity),
    }
}

/// Keeps a dropped event buffer for reuse while the pool is under its byte limit.
fn recycle_events(mut events: Vec<EventRecord>) {
    let bytes = events.capacity() * EVENT_RECORD_BYTES;
    events.clear();
    let mut pool = event_buffer_pool();
    let pooled_bytes: usize = pool.iter().map(|pooled| pooled.capacity() * EVENT_RECORD_BYTES).sum();
    if bytes > 0 && pooled_bytes + bytes <= EVENT_BUFFER_POOL_BYTES_MAX {
        pool.push(events);
    }
}

/// Book levels as (price_ticks, size_lots), best first.
type Levels = Vec<(u64, u64)>;
type OrderTuple = (u64, u64, u32, u8, u8, u8, u8, u64, u64, u64, u128, Vec<u8>);

fn value_error(error: &EngineError) -> PyErr {
    PyValueError::new_err(error.to_string())
}

fn code<T>(value: u8, what: &str, parse: fn(u8) -> Option<T>) -> PyResult<T> {
    parse(value).ok_or_else(|| PyValueError::new_err(format!("unknown {what} code {value}")))
}

/// A place from wire codes (side, order type, stp), each checked.
fn place_order(
    account: u64,
    instrument: u32,
    (side, order_type, stp): (u8, u8, u8),
    price_ticks: u64,
    size_lots: u64,
    client_order_id: &[u8],
) -> PyResult<PlaceOrder> {
    Ok(PlaceOrder {
        account,
        instrument,
        side: code(side, "side", Side::from_code)?,
        order_type: code(order_type, "order type", OrderType::from_code)?,
        stp: code(stp, "stp", Stp::from_code)?,
        price_ticks,
        size_lots,
        client_order_id: self::client_order_id(client_order_id)?,
    })
}

fn client_order_id(bytes: &[u8]) -> PyResult<ClientOrderId> {
    let mut id = [0u8; CLIENT_ORDER_ID_BYTES];
    if bytes.len() > CLIENT_ORDER_ID_BYTES {
        return Err(PyValueError::new_err(format!("client order id longer than {CLIENT_ORDER_ID_BYTES} bytes")));
    }
    id[..bytes.len()].copy_from_slice(bytes);
    Ok(id)
}

#[pyclass(module = "pyexchange._core", name = "Engine")]
struct PyEngine {
    engine: Engine,
    /// Events of the lean calls, waiting for `take_events`.
    queued: Vec<EventRecord>,
    /// Reused output buffer of one command or batch.
    scratch: Vec<EventRecord>,
}

impl PyEngine {
    /// Applies a command, or answers a retried place with its original acceptance (as the
    /// durable engine's sequencer does); the events as record bytes.
    fn run<'py>(&mut self, py: Python<'py>, ts_ns: i64, command: Command) -> PyResult<Bound<'py, PyBytes>> {
        if let Command::Place(place) = &command {
            if let Some(accepted) = self.engine.place_retry(place) {
                return Ok(PyBytes::new(py, event_bytes(&[accepted])));
            }
        }
        self.scratch.clear();
        self.engine.apply(ts_ns, &command, &mut self.scratch).map_err(|e| value_error(&e))?;
        Ok(PyBytes::new(py, event_bytes(&self.scratch)))
    }

    fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> PyResult<R> {
        Ok(f(&self.engine))
    }

    /// Applies a lean command at the last timestamp, queueing its events; returns how many
    /// events it queued (the first is at `queued[start]`).
    fn run_queued(&mut self, command: &Command) -> PyResult<usize> {
        if self.queued.len() >= QUEUED_EVENTS_MAX {
            return Err(PyBufferError::new_err("event queue full: drain it with take_events()"));
        }
        let start = self.queued.len();
        self.engine.apply(self.engine.ts_ns(), command, &mut self.queued).map_err(|e| value_error(&e))?;
        Ok(start)
    }
}

engine_methods!(PyEngine, [mut], {
    #[new]
    fn new() -> Self {
        PyEngine { engine: Engine::new(), queued: Vec::new(), scratch: Vec::new() }
    }

    /// Applies a command as the journal stores it (its own timestamp); returns its events.
    fn apply_journal_payload<'py>(&mut self, py: Python<'py>, payload: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let (ts_ns, command) = crate::wire::decode_command(payload).map_err(PyValueError::new_err)?;
        self.run(py, ts_ns, command)
    }

    /// Allocates and touches memory for `live_orders` live orders and the retained closed
    /// orders now, so later commands never wait on the allocator or a page fault.
    fn preallocate(&mut self, live_orders: usize) {
        self.engine.preallocate(live_orders);
    }

    /// Lean place at the last timestamp: the new order id, or 0 if rejected.
    #[pyo3(signature = (account, instrument, side, order_type, price_ticks, size_lots, stp=0))]
    #[allow(clippy::too_many_arguments)]
    fn place_ticks(
        &mut self,
        account: u64,
        instrument: u32,
        side: u8,
        order_type: u8,
        price_ticks: u64,
        size_lots: u64,
        stp: u8,
    ) -> PyResult<u64> {
        let place = place_order(account, instrument, (side, order_type, stp), price_ticks, size_lots, &[])?;
        let first = self.run_queued(&Command::Place(place))?;
        let event = &self.queued[first];
        Ok(if event.kind() == EventKind::Accepted { event.order_id } else { 0 })
    }

    /// Lean deposit: whether it was credited.
    fn deposit_units(&mut self, account: u64, asset: u32, amount_units: u64) -> PyResult<bool> {
        let first = self.run_queued(&Command::Deposit { account, asset, amount_units })?;
        Ok(self.queued[first].kind() == EventKind::Deposited)
    }

    /// Lean cancel: whether the order was canceled.
    fn cancel_ticks(&mut self, account: u64, instrument: u32, order_id: u64) -> PyResult<bool> {
        let first = self.run_queued(&Command::Cancel { account, instrument, order_id })?;
        Ok(self.queued[first].kind() == EventKind::Canceled)
    }

    /// Lean amend: whether it was accepted.
    fn amend_ticks(
        &mut self,
        account: u64,
        instrument: u32,
        order_id: u64,
        new_price_ticks: u64,
        new_size_lots: u64,
    ) -> PyResult<bool> {
        let amend = AmendOrder { account, instrument, order_id, new_price_ticks, new_size_lots };
        let first = self.run_queued(&Command::Amend(amend))?;
        Ok(self.queued[first].kind() == EventKind::Amended)
    }

    /// The queued events of the lean calls (the queue is emptied).
    fn take_events(&mut self) -> EventBuffer {
        let refill = pooled_events(self.queued.capacity());
        EventBuffer { events: std::mem::replace(&mut self.queued, refill) }
    }

    /// Applies a batch of command records (a C-contiguous buffer, a multiple of 80 bytes)
    /// with the GIL released and returns the events. A bad record applies nothing.
    ///
    /// The engine reads the caller's buffer in place while the GIL is released, as numpy's
    /// own loops do: the caller must not write to the batch until `submit` returns.
    // PyO3 hands buffers over by value; dropping it releases the export.
    fn submit(&mut self, py: Python<'_>, commands: PyBuffer<u8>) -> PyResult<EventBuffer> {
        let batch = Batch::of(&commands)?;
        let engine = &mut self.engine;
        let events = py.detach(move || -> Result<Vec<EventRecord>, EngineError> {
            // SAFETY: the buffer is exported until `commands` drops after this closure
            // returns; no one writes to it meanwhile (see above).
            unsafe {
                batch.with_records(|records| {
                    let mut events = pooled_events(records.len() + records.len() / 4);
                    engine.apply_records(records, &mut events)?;
                    Ok(events)
                })
            }
        });
        Ok(EventBuffer { events: events.map_err(|e| value_error(&e))? })
    }
});

fn book_levels(engine: &Engine, instrument: u32, depth: usize) -> PyResult<(Levels, Levels)> {
    let book =
        engine.book(instrument).ok_or_else(|| PyValueError::new_err(format!("unknown instrument {instrument}")))?;
    let levels =
        |ladder: &crate::book::ladder::Ladder| ladder.levels().take(depth).map(|(p, l)| (p, l.total_lots)).collect();
    Ok((levels(&book.bids), levels(&book.asks)))
}

/// (symbol, base_asset, quote_asset, lot_units, quote_units_per_tick_lot, min_size_lots,
/// maker_fee_bps, taker_fee_bps, market_protection_bps)
type InstrumentTuple = (String, u32, u32, u64, u64, u64, u16, u16, u16);

fn instrument_tuple(s: &InstrumentSpec) -> InstrumentTuple {
    let (fees, protection) = ((s.maker_fee_bps, s.taker_fee_bps), s.market_protection_bps);
    let units = (s.lot_units, s.quote_units_per_tick_lot, s.min_size_lots);
    (s.symbol.clone(), s.base_asset, s.quote_asset, units.0, units.1, units.2, fees.0, fees.1, protection)
}

fn order_tuple(engine: &Engine, account: u64, order_id: u64) -> Option<OrderTuple> {
    engine.order(account, order_id).map(|o| fields_tuple(&OrderFields::from(o)))
}

fn fields_tuple(o: &OrderFields) -> OrderTuple {
    (
        o.id,
        o.account,
        o.instrument,
        o.side.code(),
        o.order_type,
        o.stp,
        o.state.code(),
        o.price_ticks,
        o.size_lots,
        o.filled_lots,
        o.filled_price_lots,
        client_order_id_text(&o.client_order_id).to_vec(),
    )
}

/// A client order id without its NUL padding.
fn client_order_id_text(id: &ClientOrderId) -> &[u8] {
    &id[..id.iter().position(|&b| b == 0).unwrap_or(CLIENT_ORDER_ID_BYTES)]
}

/// A caller's batch, handed to the thread that runs without the GIL.
struct Batch {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the pointer is only read, while the exporting buffer is held by `submit`.
unsafe impl Send for Batch {}

impl Batch {
    /// A C-contiguous buffer's batch; the caller keeps `buffer` alive while it is used.
    fn of(buffer: &PyBuffer<u8>) -> PyResult<Batch> {
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err("command batch must be C-contiguous"));
        }
        Ok(Batch { ptr: buffer.buf_ptr().cast::<u8>(), len: buffer.len_bytes() })
    }

    /// Runs `f` on the batch's records, read in place when aligned, else copied.
    ///
    /// # Safety
    /// The buffer must still be exported and not written to until this returns.
    unsafe fn with_records<R, E: From<WireError>>(
        &self,
        f: impl FnOnce(&[CommandRecord]) -> Result<R, E>,
    ) -> Result<R, E> {
        // SAFETY: `ptr` and `len` describe the caller's exported, contiguous buffer.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        match records_in_place(bytes) {
            Some(records) => f(records),
            None => f(&command_records(bytes)?),
        }
    }
}

/// The records of `bytes` without copying, when it is aligned and whole.
fn records_in_place(bytes: &[u8]) -> Option<&[CommandRecord]> {
    let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<CommandRecord>()) == 0;
    if !aligned || !bytes.len().is_multiple_of(COMMAND_RECORD_BYTES) {
        return None;
    }
    // SAFETY: aligned, a whole number of records, and every bit pattern is a valid
    // CommandRecord (repr(C) integers and bytes, no padding).
    Some(unsafe {
        std::slice::from_raw_parts(bytes.as_ptr().cast::<CommandRecord>(), bytes.len() / COMMAND_RECORD_BYTES)
    })
}

/// Event records owned by Rust and shown to Python through the buffer protocol, so numpy
/// views them without a copy (`np.frombuffer(buffer, wire.EVENT_DTYPE)`).
#[pyclass(module = "pyexchange._core", name = "EventBuffer", frozen)]
struct EventBuffer {
    events: Vec<EventRecord>,
}

#[pymethods]
impl EventBuffer {
    /// Number of events.
    fn __len__(&self) -> usize {
        self.events.len()
    }

    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("event buffers are read-only"));
        }
        let bytes = event_bytes(&slf.get().events);
        // SAFETY: `view` is the caller's Py_buffer; the bytes live as long as `slf`, which
        // the view keeps a reference to, and a frozen EventBuffer never changes them.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut c_void,
                bytes.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

impl Drop for EventBuffer {
    /// Runs once no view of the buffer is left (each view holds a reference to it).
    fn drop(&mut self) {
        recycle_events(std::mem::take(&mut self.events));
    }
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|&v| name(v)).collect()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()?;
    m.add_class::<EventBuffer>()?;
    durable::register(m)?;
    events::register(m)?;
    requests::register(m)?;
    signature::register(m)?;
    views::register(m)?;
    websocket::register(m)?;
    zone::register(m)?;
    m.add("COMMAND_RECORD_BYTES", COMMAND_RECORD_BYTES)?;
    m.add("EVENT_RECORD_BYTES", EVENT_RECORD_BYTES)?;
    m.add("SIDES", names(Side::ALL, Side::name))?;
    m.add("ORDER_TYPES", names(OrderType::ALL, OrderType::name))?;
    m.add("STP_MODES", names(Stp::ALL, Stp::name))?;
    m.add("EVENT_KINDS", names(EventKind::ALL, EventKind::name))?;
    m.add("REASONS", names(Reason::ALL, Reason::name))?;
    m.add("MARKET_STATES", names(MarketState::ALL, MarketState::name))?;
    m.add("ORDER_STATES", names(crate::codes::OrderState::ALL, crate::codes::OrderState::name))?;
    Ok(())
}
