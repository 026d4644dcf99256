//! One zone's replicated engine for Python: the methods of `Engine` (same arguments, same
//! returns), each proposed through Raft on the leader and answered once a majority of zones
//! has it fsync'd and this replica has applied it; queries read this zone's replica. Plus
//! what only a zone has: its Raft status, leadership transfer, and the stream of applied
//! entries that keeps the gateway's views hot on every zone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyAssertionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::durable::OutcomeUnknown;
use super::{book_levels, instrument_tuple, order_tuple, place_order, Batch, InstrumentTuple, Levels, OrderTuple};
use crate::command::{AmendOrder, AssetSpec, Command, InstrumentSpec};
use crate::engine::Engine;
use crate::journal::SyncMode;
use crate::replication::node::{NodeConfig, NodeStatus, ProposeError, ZoneNode};
use crate::replication::state_machine::Followed;
use crate::replication::{Applied, Proposal, ZoneId};
use crate::wire::{encode_command, CommandRecord, WireError};

create_exception!(
    _core,
    NotLeader,
    PyRuntimeError,
    "This zone does not lead its group, so nothing was done here. args: (message, leader zone or None, \
     leader address or None)."
);
create_exception!(_core, ReplicaStopped, PyRuntimeError, "This zone's replica stopped (storage error or shutdown).");

fn propose_error(error: ProposeError) -> PyErr {
    let message = error.to_string();
    match error {
        ProposeError::NotLeader { leader } => {
            let (zone, addr) = leader.map_or((None, None), |(zone, addr)| (Some(zone), Some(addr)));
            NotLeader::new_err((message, zone, addr))
        }
        ProposeError::Unknown { .. } => OutcomeUnknown::new_err(message),
        ProposeError::Stopped { .. } => ReplicaStopped::new_err(message),
    }
}

fn closed() -> PyErr {
    ReplicaStopped::new_err("the zone engine is closed")
}

/// What applying gave, or the refusal as `ValueError` (nothing was applied anywhere).
fn applied_events(applied: Applied) -> PyResult<(u64, bytes::Bytes)> {
    match applied.refused {
        Some(reason) => Err(PyValueError::new_err(reason)),
        None => Ok((applied.first_seq, applied.events)),
    }
}

#[pyclass(module = "pyexchange._core", name = "ZoneEngine")]
pub(super) struct PyZoneEngine {
    node: Option<ZoneNode>,
    propose_timeout: Duration,
}

impl PyZoneEngine {
    fn node(&self) -> PyResult<&ZoneNode> {
        self.node.as_ref().ok_or_else(closed)
    }

    fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> PyResult<R> {
        Ok(self.node()?.replica().read(f))
    }

    /// Proposes one command with the GIL released; its events as record bytes.
    fn run<'py>(&self, py: Python<'py>, ts_ns: i64, command: Command) -> PyResult<Bound<'py, PyBytes>> {
        let node = self.node()?;
        let timeout = self.propose_timeout;
        let outcome = py.detach(|| match CommandRecord::from_command(ts_ns, &command) {
            Some(record) => node.propose_records(std::slice::from_ref(&record), timeout),
            None => {
                let mut payload = Vec::new();
                encode_command(ts_ns, &command, &mut payload);
                node.propose(Proposal::Configuration(payload.into()), timeout)
            }
        });
        let (_, applied) = outcome.map_err(propose_error)?;
        let (_, events) = applied_events(applied)?;
        Ok(PyBytes::new(py, &events))
    }
}

fn status_dict<'py>(py: Python<'py>, status: &NodeStatus) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("zone", status.zone)?;
    dict.set_item("role", status.role)?;
    dict.set_item("term", status.term)?;
    dict.set_item("leader", status.leader)?;
    dict.set_item("last_log_index", status.last_log_index)?;
    dict.set_item("committed_index", status.committed_index)?;
    dict.set_item("applied_index", status.applied_index)?;
    dict.set_item("snapshot_index", status.snapshot_index)?;
    dict.set_item("matched", status.matched.clone())?;
    dict.set_item("quorum_ack_ms_ago", status.quorum_ack_ms_ago)?;
    dict.set_item("diverged", status.diverged.clone())?;
    dict.set_item("stopped", status.stopped.clone())?;
    Ok(dict)
}

fn followed_tuple<'py>(py: Python<'py>, followed: Followed) -> PyResult<Bound<'py, PyTuple>> {
    match followed {
        Followed::Commands { index, first_seq, last_seq, records, events, refused } => {
            ("commands", index, first_seq, last_seq, PyBytes::new(py, &records), PyBytes::new(py, &events), refused)
                .into_pyobject(py)
        }
        Followed::Reset { index, seq } => ("reset", index, seq).into_pyobject(py),
    }
}

engine_methods!(PyZoneEngine, [], {
    /// Starts this zone's member of its Raft group on `data_dir`, serving the other zones on
    /// `listen_addr`. `members` maps every zone id to its address; `dial` overrides the
    /// addresses this zone dials (a fault-injecting proxy); `bootstrap` lets an empty member
    /// initialize a new group; `follow` queues applied entries for `take_applied` from the start.
    #[new]
    #[allow(clippy::too_many_arguments)] // one per keyword argument of the Python constructor
    #[pyo3(signature = (zone, data_dir, listen_addr, members, *, dial=BTreeMap::new(), bootstrap=false, heartbeat_ms=30, election_timeout_min_ms=150, election_timeout_max_ms=300, snapshot_every_entries=20_000, entries_kept_after_snapshot=5_000, checkpoint_interval_ms=1_000, propose_timeout_ms=5_000, no_fsync_unsafe_benchmark_only=false, follow=false))]
    fn new(
        py: Python<'_>,
        zone: ZoneId,
        data_dir: PathBuf,
        listen_addr: String,
        members: BTreeMap<ZoneId, String>,
        dial: BTreeMap<ZoneId, String>,
        bootstrap: bool,
        heartbeat_ms: u64,
        election_timeout_min_ms: u64,
        election_timeout_max_ms: u64,
        snapshot_every_entries: u64,
        entries_kept_after_snapshot: u64,
        checkpoint_interval_ms: u64,
        propose_timeout_ms: u64,
        no_fsync_unsafe_benchmark_only: bool,
        follow: bool,
    ) -> PyResult<Self> {
        if !members.contains_key(&zone) {
            return Err(PyValueError::new_err(format!("zone {zone} is not among the members {:?}", members.keys())));
        }
        let mut config = NodeConfig::new(zone, data_dir, members);
        config.listen_addr = listen_addr;
        config.dial = dial;
        config.bootstrap = bootstrap;
        config.heartbeat_ms = heartbeat_ms;
        config.election_timeout_min_ms = election_timeout_min_ms;
        config.election_timeout_max_ms = election_timeout_max_ms;
        config.snapshot_every_entries = snapshot_every_entries;
        config.entries_kept_after_snapshot = entries_kept_after_snapshot;
        config.checkpoint_interval_ms = checkpoint_interval_ms;
        config.follow = follow;
        config.sync =
            if no_fsync_unsafe_benchmark_only { SyncMode::NoFsyncUnsafeBenchmarkOnly } else { SyncMode::Fsync };
        let node = py.detach(|| ZoneNode::start(config)).map_err(PyRuntimeError::new_err)?;
        Ok(PyZoneEngine { node: Some(node), propose_timeout: Duration::from_millis(propose_timeout_ms) })
    }

    /// Proposes a batch of command records (stamped with the leader's clock) with the GIL
    /// released; returns the events once a majority has it and this replica applied it.
    fn submit<'py>(&self, py: Python<'py>, commands: PyBuffer<u8>) -> PyResult<Bound<'py, PyBytes>> {
        let (_, _, events) = self.propose(py, commands)?;
        Ok(events)
    }

    /// `submit`, with the entry's log index and its first command's seq:
    /// (index, first_seq, event record bytes).
    fn propose<'py>(&self, py: Python<'py>, commands: PyBuffer<u8>) -> PyResult<(u64, u64, Bound<'py, PyBytes>)> {
        let batch = Batch::of(&commands)?;
        let node = self.node()?;
        let timeout = self.propose_timeout;
        let outcome = py.detach(move || -> PyResult<(u64, Applied)> {
            // SAFETY: `commands` stays exported until this returns; the caller does not write
            // to the batch meanwhile (as for `Engine.submit`).
            let proposed =
                unsafe { batch.with_records(|records| Ok::<_, WireError>(node.propose_records(records, timeout))) };
            proposed.map_err(|e| PyValueError::new_err(e.to_string()))?.map_err(propose_error)
        })?;
        let (index, applied) = outcome;
        let (first_seq, events) = applied_events(applied)?;
        Ok((index, first_seq, PyBytes::new(py, &events)))
    }

    /// This zone's view of its group: zone, role, term, leader, last_log_index,
    /// committed_index, applied_index, snapshot_index, matched {zone: index} (leader only),
    /// quorum_ack_ms_ago (leader only), diverged (why, or None), stopped (why, or None).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        status_dict(py, &self.node()?.status())
    }

    /// Asks the leader to hand leadership to `to` (planned maintenance); returns at once.
    fn transfer_leader(&self, py: Python<'_>, to: ZoneId) -> PyResult<()> {
        let node = self.node()?;
        py.detach(|| node.transfer_leader(to)).map_err(PyRuntimeError::new_err)
    }

    /// Takes a snapshot now (Raft then purges the log behind it).
    fn snapshot(&self, py: Python<'_>) -> PyResult<()> {
        let node = self.node()?;
        py.detach(|| node.snapshot()).map_err(PyRuntimeError::new_err)
    }

    /// What was applied since the last call, waiting up to `timeout_ms` for something:
    /// ("commands", index, first_seq, last_seq, records, events, refused or None) per entry,
    /// or ("reset", index, seq) when the state was replaced by a snapshot.
    fn take_applied<'py>(&self, py: Python<'py>, timeout_ms: u64) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let replica = std::sync::Arc::clone(self.node()?.replica());
        let taken = py.detach(move || replica.take_applied(Duration::from_millis(timeout_ms)));
        taken.into_iter().map(|followed| followed_tuple(py, followed)).collect()
    }

    /// Waits until this replica has applied the entry at `index`; False at the deadline.
    fn wait_applied(&self, py: Python<'_>, index: u64, timeout_ms: u64) -> PyResult<bool> {
        let replica = std::sync::Arc::clone(self.node()?.replica());
        Ok(py.detach(move || replica.wait_applied(index, Duration::from_millis(timeout_ms))))
    }

    /// Stops this zone's member; the engine answers nothing afterwards.
    fn close(&mut self, py: Python<'_>) {
        if let Some(node) = self.node.take() {
            py.detach(|| node.shutdown());
        }
    }
});

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyZoneEngine>()?;
    m.add("NotLeader", m.py().get_type::<NotLeader>())?;
    m.add("ReplicaStopped", m.py().get_type::<ReplicaStopped>())?;
    Ok(())
}
