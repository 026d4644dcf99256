"""The gateway's way into the engine: bounded queues, one batch per journal sync.

Request handlers put commands into one of two bounded queues (cancels, and everything else)
and await a future. The sequencer takes every queued command — cancels first — stamps them
with one timestamp that never goes back, and submits them to the durable engine as one
batch: the engine journals, applies and answers once the batch is fsync'd (group commit).
In a single zone that happens on the event loop itself (`LoopSequencer`): a batch is applied
at once and its results wait, off the loop's hands, for the sync that covers it. In a zone of
a cluster one thread does it (`Sequencer`), with the GIL released while a batch goes through
Raft; new commands gather for the next batch meanwhile.

Right after a batch is applied, and before the next one is, the sequencer reads what the
batch changed (orders, books, balances); the results go to the event loop (`deliver`) once
the batch is durable, which updates the views and answers: everything published is durable.

Admission (the July 2023 lesson): a new order is refused at once (`Overloaded`, which the
gateway answers with 429 / 50011 and Retry-After) when its queue is full, when the oldest
queued order has waited longer than `queue_delay_ms_max`, or when the batch in the engine
(not yet durable) has taken longer than that (a slow disk). Cancels have their own, larger
queue, are never refused for delay, and go first in every batch; so do market-state commands
(an operator's halt must not wait behind the burst it is meant to stop).

In a zone of a cluster the engine is a replica and a batch is proposed through Raft (the
leader's zone only): it is answered once a majority of zones has it fsync'd and this replica
applied it. The views are then kept by the follower thread (`replication.Follower`) from
what the replica applies, on every zone alike, so a batch here only answers its commands,
once the follower has handed its entry to the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pyexchange import JournalUnavailable, NotLeader, OutcomeUnknown, ReplicaStopped, wire
from pyexchange._core import TouchedOrders
from pyexchange.config import AdmissionConfig
from pyexchange.engine import Engine, Event
from pyexchange.gateway import okx

BATCH_COMMANDS_MAX = 4096
STOP_SYNC_WAIT_S = 10.0
STOP_SYNC_POLL_S = 0.001
BOOK_DEPTH_TRACKED = 400
# Cancels and market-state commands: their own queue, first in every batch, never refused for delay.
PRIORITY_KINDS = frozenset({wire.CANCEL, wire.CANCEL_ALL, wire.SET_MARKET_STATE})
log = logging.getLogger("pyexchange.sequencer")


class Followed(Protocol):
    """What someone subscribed to (asked by the sequencer as it reads a batch's results)."""

    def book_followed(self, symbol: str) -> bool: ...
    def balances_followed(self, account: int) -> bool: ...


class Overloaded(Exception):
    """The engine or the journal is behind: refuse new orders now rather than queue them."""


@dataclass(slots=True)
class Command:
    """One command for the engine, with what the gateway needs to answer it."""

    kind: int
    account: int
    instrument_id: int
    side: int = 0
    order_type: int = 0
    stp: int = 0
    price_ticks: int = 0
    size_lots: int = 0
    order_id: int = 0
    client_order_id: bytes = b""
    future: asyncio.Future[list[Event]] | None = None
    enqueued_ns: int = 0
    forwarded: bool = False  # another zone's gateway sent it (`/cluster/v1/submit`) ...
    raw_events: bytes = b""  # ... and wants its event records back


@dataclass(slots=True)
class Batch:
    """A durable batch: its commands (as records, `wire.COMMAND_STRUCT` packed), the events of
    each, and what it changed as read right after it was applied (`collect`)."""

    records: bytes
    events: list[list[Event]]
    event_records: bytes = b""  # the events as records (`wire.EVENT_STRUCT` packed), for the views
    touched: TouchedOrders | None = None  # the orders its events name, as the engine had them
    public: bool = False  # any fill, uncross or market event
    books: dict[str, dict[str, list[tuple[Any, Any]]]] = field(default_factory=dict)
    balances: dict[int, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    instruments: set[str] = field(default_factory=set)  # every instrument the batch changed
    error: okx.OkxError | None = None
    answers_only: bool = False  # in a zone: the follower keeps the views, this only answers
    last_seq: int = 0  # the seq of the batch's last command (0: not applied)

    @property
    def first_seq(self) -> int:
        return self.last_seq - len(self.events) + 1


def records_of(commands: list[Command], ts_ns: int) -> bytes:
    """The commands' records, stamped `ts_ns` (bytes: a batch is often a few commands, and a
    numpy array would cost more to make than `struct` costs per record)."""
    pack = wire.COMMAND_STRUCT.pack
    return b"".join([pack(ts_ns, c.account, c.order_id, c.price_ticks, c.size_lots, c.instrument_id, c.kind,
                          c.side, c.order_type, c.stp, c.client_order_id) for c in commands])  # fmt: skip


def command_bounds(events: list[Event], first_seq: int, commands: int) -> list[int]:
    """Where each command's events start in `events` (and where the last one's end): the
    commands of a batch are numbered from `first_seq`, and every event carries its seq.

    In plain Python: numpy's `searchsorted` and `arange` let go of the GIL even for a few
    elements, and a thread that lets go of it mid-batch may wait for a busy event loop to
    hand it back (up to the 5 ms switch interval) before the batch is answered."""
    seqs = [event.seq for event in events]
    return [bisect.bisect_left(seqs, seq) for seq in range(first_seq, first_seq + commands + 1)]


def collect(
    engine: Engine,
    records: bytes,
    first_seq: int,
    events: np.ndarray[Any, Any],
    followed: Followed | None = None,
) -> Batch:
    """The events of each command of a batch applied from `first_seq` and the orders the batch
    touched, read from the engine now; also the books and balances it changed that someone
    follows (reading 400 levels costs most of a small batch)."""
    event_records = np.ascontiguousarray(events).tobytes()
    commands = len(records) // wire.COMMAND_STRUCT.size
    per_command = engine.decode_batch(event_records, first_seq, commands)
    touched, accounts, instruments, public = engine.read_batch(event_records)
    batch = Batch(records, per_command, event_records, touched, public, last_seq=first_seq + commands - 1)
    batch.instruments = set(instruments)
    if followed is None:
        return batch
    for symbol in sorted(instruments):
        if followed.book_followed(symbol):
            batch.books[symbol] = engine.book(symbol, BOOK_DEPTH_TRACKED)
    assets = engine.asset_names()
    for account in accounts:
        if followed.balances_followed(account):
            batch.balances[account] = {asset: engine.balance(account, asset) for asset in assets}
    return batch


class Sequencer:
    """The thread that submits commands to a zone's replica (see the module doc); also the
    queues and admission that `LoopSequencer` shares."""

    def __init__(
        self,
        engine: Engine,
        admission: AdmissionConfig,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Batch], None],
        followed: Followed,
        views_caught_up: Callable[[int], bool] | None = None,
    ) -> None:
        """`views_caught_up(index)`, for a zone's replica: waits (bounded) until the follower
        has handed the entry at `index` to the event loop; False if it did not in time."""
        self._engine, self._admission, self._loop, self._deliver = engine, admission, loop, deliver
        self._followed = followed
        self._views_caught_up = views_caught_up
        self._orders: deque[Command] = deque()
        self._cancels: deque[Command] = deque()
        # A plain lock under the condition: taken with `with self._lock` where nothing waits or
        # is notified, it is one C call (a `Condition`'s own `with` runs Python on every order).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stopping = False
        self._busy_since_ns = 0
        self._delay_ns_max = admission.queue_delay_ms_max * 1_000_000
        self._last_ts_ns = 0
        self.batches = 0
        self.commands = 0
        self.refused = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pyexchange-sequencer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finishes what is queued, then stops the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def queued(self) -> tuple[int, int]:
        return len(self._orders), len(self._cancels)

    def enqueue(self, command: Command) -> None:
        """Queues a command; `Overloaded` if it must be refused (see the module doc)."""
        now_ns = time.monotonic_ns()
        command.enqueued_ns = now_ns
        with self._lock:
            if self._stopping:
                raise Overloaded("the server is shutting down")
            if command.kind in PRIORITY_KINDS:
                if len(self._cancels) >= self._admission.cancels_queued_max:
                    self._refuse(f"{len(self._cancels)} cancels are queued (admission.cancels_queued_max)")
                self._cancels.append(command)
            else:
                self._admit_order(now_ns)
                self._orders.append(command)
            self._queued()

    def admit_order(self) -> None:
        """`Overloaded` if a new order would be refused now (as `enqueue` would refuse it): so
        that a request can be refused before any of its work is done. Queues nothing."""
        with self._lock:
            if self._stopping:
                raise Overloaded("the server is shutting down")
            self._admit_order(time.monotonic_ns())

    def _queued(self) -> None:
        """A command was queued (called holding `_cond`): the thread takes it."""
        self._cond.notify()

    def _admit_order(self, now_ns: int) -> None:
        if len(self._orders) >= self._admission.orders_queued_max:
            self._refuse(f"{len(self._orders)} orders are queued (admission.orders_queued_max)")
        waited_ns = now_ns - self._orders[0].enqueued_ns if self._orders else 0
        if self._busy_since_ns and now_ns - self._busy_since_ns > waited_ns:  # (not `max`: a builtin call costs more)
            waited_ns = now_ns - self._busy_since_ns
        if waited_ns > self._delay_ns_max:
            self._refuse(f"the engine is {waited_ns // 1_000_000} ms behind (admission.queue_delay_ms_max "
                         f"{self._admission.queue_delay_ms_max})")  # fmt: skip

    def _refuse(self, why: str) -> None:
        self.refused += 1
        raise Overloaded(why)

    def _take(self) -> list[Command] | None:
        with self._cond:
            while not (self._cancels or self._orders or self._stopping):
                self._cond.wait()
            if not (self._cancels or self._orders):
                return None
            self._busy_since_ns = time.monotonic_ns()
            return self._take_queued()

    def _take_queued(self) -> list[Command]:
        """The next batch of what is queued, cancels first (called holding `_cond`)."""
        taken: list[Command] = []
        for queue in (self._cancels, self._orders):
            if len(queue) <= BATCH_COMMANDS_MAX - len(taken):  # all of it (the usual case: one call)
                taken += queue
                queue.clear()
            while queue and len(taken) < BATCH_COMMANDS_MAX:
                taken.append(queue.popleft())
        return taken

    def step(self) -> None:
        """Runs one batch of what is queued (if anything is) on the calling thread, delivered at
        once: for a benchmark that leaves the thread unstarted so that every run takes the same steps
        (`bench.gateway_instructions`)."""
        if self._cancels or self._orders:
            commands = self._take()
            assert commands is not None
            self._deliver(self._execute(commands))

    def _run(self) -> None:
        while (commands := self._take()) is not None:
            batch = self._execute(commands)
            try:
                self._loop.call_soon_threadsafe(self._deliver, batch)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _execute(self, commands: list[Command]) -> Batch:
        """Applies a batch taken by `_take`; the engine is free again when it returns."""
        batch = self._apply(commands)
        self._busy_since_ns = 0
        self.batches += 1
        self.commands += len(commands)
        return batch

    def _apply(self, commands: list[Command]) -> Batch:
        self._last_ts_ns = ts_ns = max(time.time_ns(), self._last_ts_ns)
        records = records_of(commands, ts_ns)
        if self._views_caught_up is not None:
            return self._propose(records, commands, self._views_caught_up)
        first_seq = self._engine.seq + 1
        try:
            events = self._submit(records)
        except JournalUnavailable as error:
            return self._failed(records, commands, f"the journal cannot write, nothing was done: {error}")
        except OutcomeUnknown as error:
            return self._failed(records, commands, f"outcome unknown, retry with the same clOrdId: {error}")
        except ValueError as error:  # a bug of ours: the gateway validates every field first
            log.exception("the engine refused a batch")
            return self._failed(records, commands, f"internal error, nothing was done: {error}")
        batch = collect(self._engine, records, first_seq, events, self._followed)
        batch.commands = commands
        return batch

    def _submit(self, records: bytes) -> np.ndarray[Any, Any]:
        """The batch's events, once it is durable."""
        return self._engine.submit(records)

    def _propose(self, records: bytes, commands: list[Command], views_caught_up: Callable[[int], bool]) -> Batch:
        try:
            index, first_seq, events = self._engine.propose(records)
        except NotLeader as error:
            return self._failed(records, commands, f"this zone lost the lead, nothing was done; retry: {error.args[0]}")
        except (OutcomeUnknown, ReplicaStopped) as error:
            return self._failed(records, commands, f"outcome unknown, retry with the same clOrdId: {error}")
        except ValueError as error:  # a bug of ours: the gateway validates every field first
            log.exception("the replicas refused a batch")
            return self._failed(records, commands, f"internal error, nothing was done: {error}")
        decoded = self._engine.decode_events(events)
        bounds = command_bounds(decoded, first_seq, len(commands))
        for i, command in enumerate(commands):
            if command.forwarded:
                command.raw_events = events[bounds[i] : bounds[i + 1]].tobytes()
        if not views_caught_up(index):
            log.warning("the views have not caught up with entry %d: answering anyway", index)
        per_command = [decoded[bounds[i] : bounds[i + 1]] for i in range(len(commands))]
        return Batch(records, per_command, commands=commands, answers_only=True)

    @staticmethod
    def _failed(records: bytes, commands: list[Command], msg: str) -> Batch:
        return Batch(records, [[] for _ in commands], commands=commands,
                     error=okx.OkxError(okx.SERVICE_UNAVAILABLE, msg))  # fmt: skip


class LoopSequencer(Sequencer):
    """The sequencer of a single zone, run on the event loop's own thread: no thread, so no
    hand-off of the GIL or wake-up between two threads for each batch (they cost a REST order
    about a fifth of its CPU). Commands queued during one turn of the loop go to the engine
    together at the next (`_flush`); the engine journals and applies them at once without
    waiting for the sync (`Engine.submit_unsynced`) and the loop goes on serving. The journal's
    flusher wakes the loop through an eventfd once a sync covers a batch (`_synced`), and only
    then are its results delivered: nothing that is not durable reaches the views or a client.

    Admission as for the thread: "the batch in the engine" is the oldest batch applied and not
    yet synced. A batch that starts a snapshot (every `snapshot_every_commands`) copies the
    engine before `submit_unsynced` returns, tens of ms on a big book and about half a second
    for the first snapshot of a process that loaded none (bench/README.md): that batch goes to
    the engine from a worker thread, and the loop serves on while the next batch gathers."""

    def __init__(self, engine: Engine, admission: AdmissionConfig, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[Batch], None], followed: Followed) -> None:  # fmt: skip
        super().__init__(engine, admission, loop, deliver, followed)
        self._flush_scheduled = False
        self._unsynced: deque[tuple[int, Batch]] = deque()  # (when applied, ns; the batch), by seq
        self._durable = engine.is_durable  # else (in memory) a batch is final once applied
        self._wake_fd: int | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyexchange-snapshot-batch")
        self._snapshotting: Future[Batch] | None = None  # the batch the worker applies, if any

    def start(self) -> None:
        if self._durable:
            self._wake_fd = self._engine.durable_wake_fd()
            self._loop.add_reader(self._wake_fd, self._synced)

    def stop(self) -> None:
        """Applies what is queued and delivers what a sync covers within `STOP_SYNC_WAIT_S`."""
        with self._cond:
            self._stopping = True
        if (running := self._snapshotting) is not None:
            running.exception()  # waits for it
            self._snapshotted(running)
        while self._cancels or self._orders:
            self._flush()
        self._worker.shutdown()
        deadline = time.monotonic() + STOP_SYNC_WAIT_S
        while self._unsynced and self._engine.durable_seq < self._unsynced[-1][1].last_seq:
            if time.monotonic() > deadline:
                log.warning("stopping with %d batches not synced: they are not answered", len(self._unsynced))
                break
            time.sleep(STOP_SYNC_POLL_S)
        self._deliver_synced()
        if self._wake_fd is not None:
            self._loop.remove_reader(self._wake_fd)

    def _queued(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._snapshotting is not None:
            return  # the engine is the worker's until its batch is applied; `_applied` flushes next
        with self._lock:
            commands = self._take_queued()
        if not commands:
            return
        if self._engine.snapshot_due_within(len(commands)) and not self._stopping:
            self._busy_since_ns = self._unsynced[0][0] if self._unsynced else time.monotonic_ns()
            self._snapshotting = running = self._worker.submit(self._execute, commands)
            running.add_done_callback(lambda done: self._loop.call_soon_threadsafe(self._snapshotted, done))
            return
        self._applied(self._execute(commands))

    def _snapshotted(self, done: Future[Batch]) -> None:
        if done is self._snapshotting:  # (`stop` may have taken it already)
            self._snapshotting = None
            self._applied(done.result())

    def _applied(self, batch: Batch) -> None:
        """After a batch is applied: delivered now if it failed or the engine is in memory, else
        once a sync covers it; then the next batch, if more is queued."""
        if batch.error is not None or not self._durable:
            self._deliver(batch)
        else:
            self._unsynced.append((time.monotonic_ns(), batch))
            self._engine.wake_when_durable(batch.last_seq)
        self._busy_since_ns = self._unsynced[0][0] if self._unsynced else 0
        with self._cond:
            if self._cancels or self._orders:  # more than a batch, or queued meanwhile
                self._queued()

    def _submit(self, records: bytes) -> np.ndarray[Any, Any]:
        events, _last_seq = self._engine.submit_unsynced(records)
        return events

    def _synced(self) -> None:
        assert self._wake_fd is not None
        with contextlib.suppress(BlockingIOError):  # another wake-up read it already
            os.eventfd_read(self._wake_fd)
        self._deliver_synced()

    def _deliver_synced(self) -> None:
        durable_seq = self._engine.durable_seq
        while self._unsynced and self._unsynced[0][1].last_seq <= durable_seq:
            self._deliver(self._unsynced.popleft()[1])
        self._busy_since_ns = self._unsynced[0][0] if self._unsynced else 0
