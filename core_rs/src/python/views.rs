//! The gateway's private views for Python (`crate::views`): integers and wire codes out; the
//! decimals and names are made in `pyexchange/gateway/views.py`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{client_order_id_text, fields_tuple, OrderTuple};
use crate::command::{ClientOrderId, NO_CLIENT_ORDER_ID};
use crate::limits::CLIENT_ORDER_ID_BYTES;
use crate::views::{FillRecord, Limits, OrderFields, PrivateViews};
use crate::wire::event_records;

/// The orders a batch touched as the engine had them right after it (`read_batch`), for
/// `PrivateViews.apply` once the batch is durable.
#[pyclass(module = "pyexchange._core", name = "TouchedOrders", frozen)]
pub(crate) struct TouchedOrders {
    orders: Vec<OrderFields>,
}

impl TouchedOrders {
    pub(crate) fn new(orders: Vec<OrderFields>) -> Self {
        TouchedOrders { orders }
    }
}

/// (the order as `Engine.order` gives it, the place's client order id, created ms, updated
/// ms, fees in quote minor units, the last fill as (ms, price ticks, lots, trade id) or None,
/// among its account's open orders).
type OrderViewTuple<'a> = (OrderTuple, &'a [u8], i64, i64, u128, Option<(i64, u64, u64, u64)>, bool);
/// (instrument id, trade id, order id, client order id, side code, price ticks, lots, fee in
/// quote minor units, maker, ms).
type FillTuple<'a> = (u32, u64, u64, &'a [u8], u8, u64, u64, u64, bool, i64);

#[pyclass(module = "pyexchange._core", name = "PrivateViews")]
struct PyPrivateViews {
    views: PrivateViews,
}

#[pymethods]
impl PyPrivateViews {
    #[new]
    fn new(closed_orders_max: usize, fills_per_account_max: usize, fills_per_command_max: u64) -> PyResult<Self> {
        if fills_per_account_max == 0 || fills_per_command_max == 0 {
            return Err(PyValueError::new_err("fills_per_account_max and fills_per_command_max must be over 0"));
        }
        let limits = Limits { closed_orders_max, fills_per_account_max, fills_per_command_max };
        Ok(PyPrivateViews { views: PrivateViews::new(limits) })
    }

    /// Follows one durable batch: its event records (bytes), the seqs of its first and last
    /// commands, and the orders it touched (`read_batch`). Returns {order id: account} of the
    /// orders whose views it changed, in the order the events name them.
    fn apply<'py>(
        &mut self,
        py: Python<'py>,
        events: &[u8],
        first_seq: u64,
        last_seq: u64,
        touched: &TouchedOrders,
    ) -> PyResult<Bound<'py, PyDict>> {
        let events = event_records(events).map_err(PyValueError::new_err)?;
        let changed =
            self.views.apply(&events, first_seq..=last_seq, &touched.orders).map_err(|e| PyValueError::new_err(e.0))?;
        let answer = PyDict::new(py);
        for (order_id, account) in changed {
            answer.set_item(order_id, account)?;
        }
        Ok(answer)
    }

    fn order(&self, order_id: u64) -> Option<OrderViewTuple<'_>> {
        let r = self.views.order(order_id)?;
        let fill = r.last_fill.map(|f| (f.ts_ms, f.price_ticks, f.lots, f.trade_id));
        let cid = client_order_id_text(&r.order.client_order_id);
        Some((fields_tuple(&r.order), cid, r.created_ms, r.updated_ms, r.fee_units, fill, r.listed_open))
    }

    /// The id of the order of `account` placed with `client_order_id`, if the views know it.
    fn order_id_of(&self, account: u64, client_order_id: &str) -> Option<u64> {
        let id = padded(client_order_id.as_bytes())?;
        self.views.order_id_of(account, &id)
    }

    fn open_count(&self, account: u64) -> usize {
        self.views.open_count(account)
    }

    /// The account's open orders, oldest first.
    fn open_ids(&self, account: u64) -> Vec<u64> {
        self.views.open_ids(account).collect()
    }

    /// The account's retained closed orders, in the order they closed.
    fn closed_ids(&self, account: u64) -> Vec<u64> {
        self.views.closed_ids(account).collect()
    }

    /// The account's retained fills, oldest first.
    fn fills(&self, account: u64) -> Vec<FillTuple<'_>> {
        self.views.fills(account).map(fill_tuple).collect()
    }
}

fn fill_tuple(f: &FillRecord) -> FillTuple<'_> {
    let cid = client_order_id_text(&f.client_order_id);
    (f.instrument, f.trade_id, f.order_id, cid, f.side.code(), f.price_ticks, f.lots, f.fee_units, f.maker, f.ts_ms)
}

/// A client order id as the engine keeps it; None when it cannot be one (empty or too long).
fn padded(bytes: &[u8]) -> Option<ClientOrderId> {
    if bytes.is_empty() || bytes.len() > CLIENT_ORDER_ID_BYTES {
        return None;
    }
    let mut id = NO_CLIENT_ORDER_ID;
    id[..bytes.len()].copy_from_slice(bytes);
    Some(id)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TouchedOrders>()?;
    m.add_class::<PyPrivateViews>()
}
