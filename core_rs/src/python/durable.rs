//! The durable engine for Python: the methods of `Engine` (same arguments, same returns),
//! each returning only once its command is durable, with the GIL released while it waits so
//! other threads' commands share its fsync. Plus what only a durable engine has: recovery
//! report, snapshots, journal status.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyAssertionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::{
    book_levels, instrument_tuple, order_tuple, place_order, pooled_events, Batch, EventBuffer, InstrumentTuple,
    Levels, OrderTuple,
};
use crate::command::{AmendOrder, AssetSpec, Command, InstrumentSpec};
use crate::durable::{DurableConfig, DurableEngine, DurableError};
use crate::engine::Engine;
use crate::journal::{self, JournalHealth, Recovery, SyncMode};
use crate::wire::{decode_command, event_bytes, EventRecord};

create_exception!(
    _core,
    JournalUnavailable,
    PyRuntimeError,
    "The journal cannot write (disk full, I/O error): the command was not applied; try again later."
);
create_exception!(
    _core,
    OutcomeUnknown,
    PyRuntimeError,
    "The command was applied but is not durable yet: it is held and written when the journal recovers, or lost \
     with the process. Retry a place with the same client_order_id to learn its outcome."
);

fn py_error(error: DurableError) -> PyErr {
    match error {
        DurableError::Engine(error) => PyValueError::new_err(error.to_string()),
        DurableError::Unavailable { .. } => JournalUnavailable::new_err(error.to_string()),
        DurableError::NotDurable { .. } => OutcomeUnknown::new_err(error.to_string()),
        DurableError::Recovery(_) | DurableError::Journal(_) => PyRuntimeError::new_err(error.to_string()),
    }
}

fn closed() -> PyErr {
    PyRuntimeError::new_err("the durable engine is closed")
}

#[pyclass(module = "pyexchange._core", name = "DurableEngine")]
pub(super) struct PyDurableEngine {
    durable: Option<DurableEngine>,
    /// What `open` found, as a dict for `recovery()`.
    recovery: Py<PyDict>,
    /// The eventfd that `wake_when_durable` writes to (made on first use). Each waiting
    /// callback holds it too, so it stays open until the last of them has run.
    durable_wake: Option<Arc<OwnedFd>>,
}

impl PyDurableEngine {
    fn engine(&self) -> PyResult<&DurableEngine> {
        self.durable.as_ref().ok_or_else(closed)
    }

    fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> PyResult<R> {
        Ok(self.engine()?.read(f))
    }

    /// Journals and applies a batch of command records with the GIL released: its events and
    /// its last seq, once the batch is durable if `wait_durable`.
    fn sequence(&self, py: Python<'_>, commands: &PyBuffer<u8>, wait_durable: bool) -> PyResult<(EventBuffer, u64)> {
        let batch = Batch::of(commands)?;
        let durable = self.engine()?;
        let sequenced = py.detach(move || -> Result<(Vec<EventRecord>, u64), DurableError> {
            // SAFETY: `commands` stays exported until this returns; the caller does not write
            // to the batch meanwhile (as for `Engine.submit`).
            unsafe {
                batch.with_records(|records| {
                    let mut events = pooled_events(records.len() + records.len() / 4);
                    let last_seq = durable.sequence_records(records, &mut events)?;
                    if wait_durable {
                        durable.wait_durable(last_seq)?;
                    }
                    Ok((events, last_seq))
                })
            }
        });
        let (events, last_seq) = sequenced.map_err(py_error)?;
        Ok((EventBuffer { events }, last_seq))
    }

    /// Executes with the GIL released; the events as record bytes.
    fn run<'py>(&self, py: Python<'py>, ts_ns: i64, command: Command) -> PyResult<Bound<'py, PyBytes>> {
        let durable = self.engine()?;
        let events = py.detach(|| durable.execute(ts_ns, &command)).map_err(py_error)?;
        Ok(PyBytes::new(py, event_bytes(&events)))
    }
}

engine_methods!(PyDurableEngine, [], {
    /// Opens (creating if needed) the data directory and recovers its state.
    #[new]
    #[allow(clippy::too_many_arguments)] // one per keyword argument of the Python constructor
    #[pyo3(signature = (data_dir, *, no_fsync_unsafe_benchmark_only=false, group_commit_window_us=0, snapshot_every_commands=1_000_000, segment_bytes=67_108_864, ack_timeout_ms=10_000, retain_journal=false))]
    fn new(
        py: Python<'_>,
        data_dir: PathBuf,
        no_fsync_unsafe_benchmark_only: bool,
        group_commit_window_us: u64,
        snapshot_every_commands: u64,
        segment_bytes: u64,
        ack_timeout_ms: u64,
        retain_journal: bool,
    ) -> PyResult<Self> {
        let mut config = DurableConfig::new(data_dir);
        config.journal.sync =
            if no_fsync_unsafe_benchmark_only { SyncMode::NoFsyncUnsafeBenchmarkOnly } else { SyncMode::Fsync };
        config.journal.group_commit_window_us = group_commit_window_us;
        config.journal.segment_bytes = segment_bytes;
        config.snapshot_every_commands = snapshot_every_commands;
        config.ack_timeout = Duration::from_millis(ack_timeout_ms);
        config.retain_journal = retain_journal;
        let (durable, report) = py.detach(|| DurableEngine::open(config)).map_err(py_error)?;
        let recovery = PyDict::new(py);
        recovery.set_item("snapshot_seq", report.snapshot.as_ref().map(|(seq, _)| *seq))?;
        recovery.set_item("snapshot_path", report.snapshot.map(|(_, path)| path))?;
        let skipped: Vec<(PathBuf, String)> =
            report.snapshots_skipped.into_iter().map(|s| (s.path, s.reason)).collect();
        recovery.set_item("snapshots_skipped", skipped)?;
        recovery.set_item("replayed", report.replayed)?;
        let tail = report.tail_repaired.map(|t| (t.file, t.offset, t.bytes_dropped, t.reason));
        recovery.set_item("tail_repaired", tail)?;
        recovery.set_item("recovery_ms", report.recovery_time.as_secs_f64() * 1e3)?;
        Ok(PyDurableEngine { durable: Some(durable), recovery: recovery.unbind(), durable_wake: None })
    }

    /// What opening found: the snapshot used, snapshots skipped, records replayed, the torn
    /// tail cut off (file, offset, bytes, reason), and the time it took.
    fn recovery(&self, py: Python<'_>) -> Py<PyDict> {
        self.recovery.clone_ref(py)
    }

    /// Journals and applies a batch of command records with the GIL released; returns the
    /// events once the whole batch is durable. A bad record applies nothing.
    fn submit(&self, py: Python<'_>, commands: PyBuffer<u8>) -> PyResult<EventBuffer> {
        self.sequence(py, &commands, true).map(|(events, _)| events)
    }

    /// The first half of `submit`, for a caller that must not block until the sync (an event
    /// loop): journals and applies the batch with the GIL released and returns its events and
    /// its last seq at once. None of those events may reach anyone before `durable_seq`
    /// covers that seq (`wake_when_durable`). A bad record applies nothing.
    fn submit_unsynced(&self, py: Python<'_>, commands: PyBuffer<u8>) -> PyResult<(EventBuffer, u64)> {
        self.sequence(py, &commands, false)
    }

    /// Whether applying `commands` more commands now would start a snapshot, which copies the
    /// engine before `submit_unsynced` returns (tens of ms on a big book) if the shadow engine
    /// is out of step.
    fn snapshot_due_within(&self, commands: u64) -> PyResult<bool> {
        Ok(self.engine()?.snapshot_due_within(commands))
    }

    /// The last seq a journal sync covers: what may be published.
    #[getter]
    fn durable_seq(&self) -> PyResult<u64> {
        Ok(self.engine()?.journal_status().durable_seq)
    }

    /// The eventfd (non-blocking) that `wake_when_durable` adds to; made on the first call.
    fn durable_wake_fd(&mut self) -> PyResult<RawFd> {
        self.engine()?;
        if self.durable_wake.is_none() {
            // SAFETY: eventfd has no memory arguments; a descriptor it returns is ours to own.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            self.durable_wake = Some(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        Ok(self.durable_wake.as_ref().expect("made above").as_raw_fd())
    }

    /// Adds 1 to `durable_wake_fd` once a sync covers `seq`, or once the journal stops without
    /// one (then `durable_seq` stays below `seq`); at once if a sync already covers it.
    fn wake_when_durable(&mut self, seq: u64) -> PyResult<()> {
        self.durable_wake_fd()?;
        let wake = Arc::clone(self.durable_wake.as_ref().expect("made above"));
        self.engine()?.on_durable(
            seq,
            Box::new(move |_| {
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live array to the eventfd `wake` keeps open. A
                // full counter (EAGAIN) already wakes its reader: nothing to do then.
                unsafe { libc::write(wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            }),
        );
        Ok(())
    }

    /// Takes a snapshot now; returns (seq, path) once it is written.
    fn snapshot(&self, py: Python<'_>) -> PyResult<(u64, PathBuf)> {
        let durable = self.engine()?;
        py.detach(|| durable.snapshot()).map_err(py_error)
    }

    /// The journal's health ("ok" or the failure's reason) and counters.
    fn journal_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let status = self.engine()?.journal_status();
        let dict = PyDict::new(py);
        let failing = match status.health {
            JournalHealth::Healthy => None,
            JournalHealth::Failing { reason } => Some(reason),
        };
        dict.set_item("failing", failing)?;
        dict.set_item("next_seq", status.next_seq)?;
        dict.set_item("durable_seq", status.durable_seq)?;
        dict.set_item("syncs", status.syncs)?;
        dict.set_item("records_durable", status.records_durable)?;
        dict.set_item("bytes_durable", status.bytes_durable)?;
        dict.set_item("sync_latency_us_last", status.sync_latency_us_last)?;
        dict.set_item("sync_latency_us_max", status.sync_latency_us_max)?;
        dict.set_item("write_failures", status.write_failures)?;
        Ok(dict)
    }

    /// The journal's group commits of the last `seconds` (of the newest
    /// `journal::SYNC_ROUNDS_KEPT`): `syncs`, `records`, `sync_us_p50`, `sync_us_p99`,
    /// `sync_us_max` (None without a round) and `sync_us_max_by_s` (oldest second first).
    fn sync_window<'py>(&self, py: Python<'py>, seconds: u32) -> PyResult<Bound<'py, PyDict>> {
        let window = self.engine()?.sync_window(seconds);
        let dict = PyDict::new(py);
        dict.set_item("seconds", seconds)?;
        dict.set_item("syncs", window.syncs)?;
        dict.set_item("records", window.records)?;
        dict.set_item("sync_us_p50", window.sync_us_p50)?;
        dict.set_item("sync_us_p99", window.sync_us_p99)?;
        dict.set_item("sync_us_max", window.sync_us_max)?;
        dict.set_item("sync_us_max_by_s", window.sync_us_max_by_s)?;
        Ok(dict)
    }

    /// (segment file, byte offset) up to which the journal is synced.
    fn durable_position(&self) -> PyResult<(PathBuf, u64)> {
        let position = self.engine()?.durable_position();
        Ok((position.file, position.offset))
    }

    /// Syncs and closes the journal; the engine answers nothing afterwards.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.durable.take() {
            Some(durable) => py.detach(|| durable.close()).map_err(py_error),
            None => Ok(()),
        }
    }
});

/// (seq, file, offset, ts_ns, command in words, payload)
type JournalRecord = (u64, PathBuf, u64, i64, String, Vec<u8>);

/// A command in words; a client order id as text.
fn describe(command: &Command) -> String {
    match command {
        Command::Place(p) => {
            let client_order_id = String::from_utf8_lossy(&p.client_order_id).trim_end_matches('\0').to_owned();
            format!(
                "Place {{ account: {}, instrument: {}, side: {}, order_type: {}, stp: {}, price_ticks: {}, \
                 size_lots: {}, client_order_id: {client_order_id:?} }}",
                p.account,
                p.instrument,
                p.side.name(),
                p.order_type.name(),
                p.stp.name(),
                p.price_ticks,
                p.size_lots
            )
        }
        other => format!("{other:?}"),
    }
}

fn recovery_dict<'py>(py: Python<'py>, recovery: &Recovery) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("first_seq", recovery.first_seq)?;
    dict.set_item("last_seq", recovery.last_seq)?;
    dict.set_item("records", recovery.records)?;
    let tail = recovery.tail_repaired.as_ref().map(|t| (t.file.clone(), t.offset, t.bytes_dropped, t.reason.clone()));
    dict.set_item("tail_damaged", tail)?;
    Ok(dict)
}

/// Checks every journal segment of a data directory without changing anything: first_seq,
/// last_seq, records, and the torn tail recovery would cut (file, offset, bytes, reason) or
/// None. Damage before the tail raises RuntimeError naming file, offset and seq.
#[pyfunction]
fn journal_verify(py: Python<'_>, data_dir: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let recovery = py.detach(|| journal::verify(&data_dir)).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    recovery_dict(py, &recovery)
}

/// Up to `limit` journal records from `from_seq`, as (seq, file, offset, ts_ns, command,
/// payload), the command described in words.
#[pyfunction]
#[pyo3(signature = (data_dir, from_seq, limit))]
fn journal_records(py: Python<'_>, data_dir: PathBuf, from_seq: u64, limit: usize) -> PyResult<Vec<JournalRecord>> {
    let mut records = Vec::new();
    let read = py.detach(|| {
        journal::read_from(&data_dir, from_seq, |seq, payload, location| {
            if records.len() >= limit {
                return Err("enough".to_string());
            }
            let (ts_ns, command) = match decode_command(payload) {
                Ok((ts_ns, command)) => (ts_ns, describe(&command)),
                Err(error) => (0, format!("undecodable payload: {error}")),
            };
            records.push((seq, location.file.clone(), location.offset, ts_ns, command, payload.to_vec()));
            Ok(())
        })
    });
    match read {
        Ok(_) | Err(journal::ReadError::Visitor(_)) => Ok(records),
        Err(journal::ReadError::Journal(error)) => Err(PyRuntimeError::new_err(error.to_string())),
    }
}

/// Reads the journal once from `from_seq` and hands its records to `visit`, a list of
/// (seq, payload) at a time (`chunk_records` each, the last one shorter), with the GIL held;
/// an exception in `visit` stops the reading and is raised. Returns the records handed over.
#[pyfunction]
#[pyo3(signature = (data_dir, from_seq, chunk_records, visit))]
fn journal_replay(
    py: Python<'_>,
    data_dir: PathBuf,
    from_seq: u64,
    chunk_records: usize,
    visit: Bound<'_, PyAny>,
) -> PyResult<u64> {
    let chunk_records = chunk_records.max(1);
    let mut chunk: Vec<(u64, Py<PyBytes>)> = Vec::with_capacity(chunk_records);
    let mut failed: Option<PyErr> = None;
    let mut hand_over = |chunk: &mut Vec<(u64, Py<PyBytes>)>| -> Result<(), String> {
        let records = std::mem::take(chunk);
        visit.call1((records,)).map(drop).map_err(|error| {
            failed = Some(error);
            "the visitor raised".to_string()
        })
    };
    let read = journal::read_from(&data_dir, from_seq, |seq, payload, _location| {
        chunk.push((seq, PyBytes::new(py, payload).unbind()));
        if chunk.len() >= chunk_records {
            hand_over(&mut chunk)?;
        }
        Ok(())
    });
    let read = read.and_then(|count| hand_over(&mut chunk).map(|()| count).map_err(journal::ReadError::Visitor));
    match (read, failed) {
        (_, Some(error)) => Err(error),
        (Ok(count), None) => Ok(count),
        (Err(journal::ReadError::Journal(error)), None) => Err(PyRuntimeError::new_err(error.to_string())),
        (Err(journal::ReadError::Visitor(reason)), None) => Err(PyRuntimeError::new_err(reason)),
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDurableEngine>()?;
    m.add_function(wrap_pyfunction!(journal_verify, m)?)?;
    m.add_function(wrap_pyfunction!(journal_records, m)?)?;
    m.add_function(wrap_pyfunction!(journal_replay, m)?)?;
    m.add("JournalUnavailable", m.py().get_type::<JournalUnavailable>())?;
    m.add("OutcomeUnknown", m.py().get_type::<OutcomeUnknown>())?;
    Ok(())
}
