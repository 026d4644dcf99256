"""Crash tests with a real process: client threads drive a durable engine in a child process
(`crash_child.py`, over loopback), the test SIGKILLs it at seeded moments and restarts it on the
same data directory, then checks that every acknowledged command is in the journal with the
events it was answered with, that the recovered state is exactly an independent replay of the
journal (nothing half-applied), that acknowledged orders are known and their retries answered
with the original acceptance, and that retried unknown outcomes execute at most once.
`power_loss` also cuts the journal back to the last durable position the child reported (or to
a random point after it: part of the unsynced writes reached the disk) before the restart.

CRASH_ITERATIONS sets the kills per test (default 5; `make test-long` runs 50); CRASH_SEED
the seed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyexchange import _core, wire

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "5"))
SEED = int(os.environ.get("CRASH_SEED", "20261121"))
CLIENTS = 3
ACKS_BEFORE_KILL_MAX = 250
# Acknowledged places of earlier runs re-checked after each restart (all of the last run's are).
EARLIER_PLACES_CHECKED_MAX = 100
# Only a guard against a hung child: nothing waits on a clock for synchronization.
WAIT_S_MAX = 60
CHILD = Path(__file__).with_name("crash_child.py")
# About 80 records per segment file.
SMALL_SEGMENT_BYTES = 8 << 10
INSTRUMENT = "BTC-USDT"
RECORDS_MAX = 10**9
PLACE_RECORD = re.compile(r'^Place \{ account: (\d+), .* client_order_id: "([^"]*)" \}$')
RECORD_NAMES = {"place": "Place", "cancel": "Cancel", "amend": "Amend", "deposit": "Deposit"}

Request = dict[str, Any]
EventRow = list[Any]  # crash_child.event_json: seq, ts_ns, kind, reason, order_id, account, maker_order_id


class Connection:
    """One line-protocol connection to the child."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S_MAX)
        self.stream = self.socket.makefile("rwb")

    def ask(self, request: Request) -> dict[str, Any] | None:
        """The child's reply, or None if it died before giving one."""
        try:
            self.stream.write(json.dumps(request).encode() + b"\n")
            self.stream.flush()
            line = self.stream.readline()
        except OSError:
            return None
        return json.loads(line) if line else None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a dead child leaves unsent bytes behind
            self.stream.close()
        self.socket.close()


class Child:
    """One run of crash_child.py; `ready` is its first line (port, recovery, durable)."""

    def __init__(self, data_dir: Path, snapshot_every: int, segment_bytes: int, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self.control: Connection | None = None
        with open(stderr_path, "ab") as stderr:
            command = [sys.executable, str(CHILD), str(data_dir), "--snapshot-every", str(snapshot_every)]
            command += ["--segment-bytes", str(segment_bytes)]
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)

    def wait_ready(self) -> None:
        """The handshake: the child has recovered and listens once it prints its first line."""
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], WAIT_S_MAX)
        line = self.process.stdout.readline() if readable else b""
        assert line, f"the child did not start:\n{self.stderr_path.read_text()}"
        self.ready: dict[str, Any] = json.loads(line)
        self.port: int = self.ready["port"]
        self.control = Connection(self.port)

    def ask(self, request: Request) -> dict[str, Any]:
        assert self.control is not None
        reply = self.control.ask(request)
        assert reply is not None, f"the child died answering {request}"
        assert "error" not in reply, f"{request}: {reply['error']}"
        return reply

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.control is not None:
            self.control.close()


@pytest.fixture
def start_child(tmp_path: Path) -> Iterator[Callable[[Path, int, int], Child]]:
    """Starts children; whatever happens, none outlives the test."""
    children: list[Child] = []

    def start(data_dir: Path, snapshot_every: int, segment_bytes: int) -> Child:
        child = Child(data_dir, snapshot_every, segment_bytes, tmp_path / "child-stderr.txt")
        children.append(child)
        child.wait_ready()
        return child

    try:
        yield start
    finally:
        for child in children:
            child.kill()


@dataclass
class Ack:
    request: Request
    events: list[EventRow]
    durable: tuple[str, int]
    # "command"; "retry": a repeat of an accepted place, answered with its acceptance only;
    # "conflict": an accepted place's client order id with another size, to be rejected.
    kind: str


@dataclass
class Run:
    """What the clients of one child's life saw."""

    acks: list[Ack] = field(default_factory=list)
    unknown: list[tuple[Request, str]] = field(default_factory=list)  # sent, never answered; kind
    errors: list[str] = field(default_factory=list)
    clients_done: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, request: Request, reply: dict[str, Any] | None, kind: str) -> None:
        with self.changed:
            if reply is None:
                self.unknown.append((request, kind))
            elif "error" in reply:
                self.errors.append(f"{request}: {reply['error']}")
            else:
                self.acks.append(Ack(request, reply["events"], tuple(reply["durable"]), kind))
            self.changed.notify_all()

    def client_done(self) -> None:
        with self.changed:
            self.clients_done += 1
            self.changed.notify_all()


@dataclass
class Known:
    """What the test knows across the child's lives."""

    # Every journal record seen after a recovery: later recoveries must keep it unchanged.
    history: dict[int, bytes] = field(default_factory=dict)
    acks_unchecked: list[Ack] = field(default_factory=list)
    # Acknowledged accepted places: (account, client order id) -> (request, accepted event).
    accepted: dict[tuple[int, str], tuple[Request, EventRow]] = field(default_factory=dict)

    def add(self, ack: Ack) -> None:
        self.acks_unchecked.append(ack)
        if is_new_acceptance(ack):
            key = (ack.request["account"], ack.request["client_order_id"])
            assert key not in self.accepted, f"{key} accepted twice: {self.accepted[key][1]} and {ack.events[0]}"
            self.accepted[key] = (ack.request, ack.events[0])


def is_new_acceptance(ack: Ack) -> bool:
    return ack.request["op"] == "place" and ack.kind == "command" and ack.events[0][2] == "accepted"


class Client(threading.Thread):
    """Sends one command at a time until the child dies: places with fresh client order ids,
    cancels and amends of its orders, deposits, retries and conflicting reuses of accepted ids."""

    def __init__(self, port: int, index: int, name: str, rng: random.Random, known: Known, run: Run) -> None:
        super().__init__(daemon=True)
        self.port, self.index, self.id_prefix, self.rng, self.run_log = port, index, name, rng, run
        self.accounts = (100 + 10 * index, 101 + 10 * index)
        self.orders: list[tuple[int, int]] = []  # (account, order_id) accepted in this run
        self.accepted = list(known.accepted.values())  # earlier runs'; this run's are added

    def run(self) -> None:
        try:
            connection = Connection(self.port)
        except OSError:  # killed before this client connected
            self.run_log.client_done()
            return
        try:
            for n in itertools.count():
                request, kind = self.next_request(n)
                reply = connection.ask(request)
                self.run_log.record(request, reply, kind)
                if reply is None:
                    return
                self.learn(request, reply, kind)
        finally:
            connection.close()
            self.run_log.client_done()

    def learn(self, request: Request, reply: dict[str, Any], kind: str) -> None:
        events = reply.get("events") or []
        if request["op"] == "place" and kind == "command" and events and events[0][2] == "accepted":
            self.orders.append((request["account"], events[0][4]))
            self.accepted.append((request, events[0]))

    def next_request(self, n: int) -> tuple[Request, str]:
        rng = self.rng
        if n < 4:  # fund both accounts in both assets first
            return self.deposit(self.accounts[n % 2], ("USDT", "BTC")[n // 2]), "command"
        choice = rng.random()
        if choice < 0.12 and self.orders:
            account, order_id = rng.choice(self.orders)
            return {"op": "cancel", "account": account, "instrument": INSTRUMENT, "order_id": order_id}, "command"
        if choice < 0.22 and self.orders:
            return self.amend(), "command"
        if choice < 0.28:
            return self.deposit(rng.choice(self.accounts), rng.choice(("USDT", "BTC"))), "command"
        if choice < 0.34 and self.accepted:
            return dict(rng.choice(self.accepted)[0]), "retry"
        if choice < 0.37 and self.accepted:
            conflicting = dict(rng.choice(self.accepted)[0])
            conflicting["size"] = str(Decimal(conflicting["size"]) + Decimal("0.001"))
            return conflicting, "conflict"
        return self.place(n), "command"

    def deposit(self, account: int, asset: str) -> Request:
        amount = "20000" if asset == "USDT" else "100"
        return {"op": "deposit", "account": account, "asset": asset, "amount": amount}

    def amend(self) -> Request:
        account, order_id = self.rng.choice(self.orders)
        request: Request = {"op": "amend", "account": account, "instrument": INSTRUMENT, "order_id": order_id}
        if self.rng.random() < 0.5:
            request["new_price"] = str(Decimal(10_000 + self.rng.randint(-40, 40)).scaleb(-2))
        else:
            request["new_size"] = str(Decimal(self.rng.randint(1, 60)).scaleb(-3))
        return request

    def place(self, n: int) -> Request:
        rng = self.rng
        order_type = rng.choices(("limit", "ioc", "post_only", "fok", "market"), weights=(70, 10, 10, 5, 5))[0]
        request: Request = {
            "op": "place",
            "account": rng.choice(self.accounts),
            "instrument": INSTRUMENT,
            "side": rng.choice(("buy", "sell")),
            "order_type": order_type,
            "size": str(Decimal(rng.randint(1, 50)).scaleb(-3)),
            "client_order_id": f"{self.id_prefix}t{self.index}n{n}",
        }
        if order_type != "market":
            request["price"] = str(Decimal(10_000 + rng.randint(-40, 40)).scaleb(-2))
        return request


def event_rows(records: bytes) -> list[EventRow]:
    """Event records as crash_child.event_json rows."""
    rows = []
    for e in np.frombuffer(records, dtype=wire.EVENT_DTYPE):
        kind = wire.EVENT_KINDS[e["kind"]]
        reason = wire.REASONS[e["reason"]] or None
        maker_order_id = int(e["maker_order_id"]) if kind == "fill" else None
        rows.append([int(e["seq"]), int(e["ts_ns"]), kind, reason, int(e["order_id"]) or None, int(e["account"])])
        rows[-1].append(maker_order_id)
    return rows


@dataclass
class Journal:
    """The journal as recovered, replayed independently of the child."""

    payloads: list[bytes]  # index seq - 1
    descriptions: list[str]
    events: list[list[EventRow]]
    state_hash: str
    # (account, client order id) -> the accepted event of each journaled place that was accepted.
    accepted: dict[tuple[int, str], list[EventRow]]

    @property
    def last_seq(self) -> int:
        return len(self.payloads)


def read_journal(data_dir: Path) -> Journal:
    records = _core.journal_records(data_dir, 1, RECORDS_MAX)
    assert [r[0] for r in records] == list(range(1, len(records) + 1)), "journal seqs are not 1, 2, 3, ..."
    replica = _core.Engine()
    events = [event_rows(replica.apply_journal_payload(r[5])) for r in records]
    replica.check_invariants()
    accepted: dict[tuple[int, str], list[EventRow]] = {}
    for record, record_events in zip(records, events, strict=True):
        place = PLACE_RECORD.match(record[4])
        if place and record_events[0][2] == "accepted":
            accepted.setdefault((int(place[1]), place[2]), []).append(record_events[0])
    return Journal([r[5] for r in records], [r[4] for r in records], events, replica.state_hash(), accepted)


def durable_key(position: tuple[Any, ...]) -> tuple[str, int]:
    """Orders durable positions: segment names sort by first seq, then offset."""
    return Path(position[0]).name, int(position[1])


def check_recovered(child: Child, data_dir: Path, known: Known, acked_durable: tuple[str, int] | None) -> Journal:
    """The recovered child against the journal, the acknowledgements and the earlier journal."""
    tail = child.ready["recovery"]["tail_repaired"]
    if tail is not None and acked_durable is not None and Path(tail[0]).name == Path(acked_durable[0]).name:
        assert tail[1] >= acked_durable[1], f"recovery cut acknowledged bytes: {tail}, acked up to {acked_durable}"
    state = child.ask({"op": "state"})  # the child checks its invariants too
    journal = read_journal(data_dir)
    assert state["seq"] == journal.last_seq
    assert state["state_hash"] == journal.state_hash, "recovered state differs from a replay of the journal"
    for seq, payload in known.history.items():
        assert seq <= journal.last_seq and journal.payloads[seq - 1] == payload, f"journal record {seq} lost or changed"
    known.history.update(enumerate(journal.payloads, start=1))
    for ack in known.acks_unchecked:
        check_ack_journaled(ack, journal)
    check_client_order_ids_once(journal)
    check_places_known(child, known, random.Random(journal.last_seq))
    known.acks_unchecked.clear()
    return journal


def check_ack_journaled(ack: Ack, journal: Journal) -> None:
    seq = ack.events[0][0]
    assert all(e[0] == seq for e in ack.events), f"one command's events carry several seqs: {ack.events}"
    assert seq <= journal.last_seq, f"acknowledged command {seq} ({ack.request}) is not in the journal"
    description = journal.descriptions[seq - 1]
    assert description.startswith(RECORD_NAMES[ack.request["op"]]), f"{ack.request} acked as {seq}: {description}"
    assert f"account: {ack.request['account']}," in description, f"{ack.request} acked as {seq}: {description}"
    if ack.request["op"] == "place":
        client_order_id = ack.request["client_order_id"]
        assert f'client_order_id: "{client_order_id}"' in description, f"{ack.request} acked as {seq}: {description}"
    if ack.kind == "conflict":
        assert ack.events[0][2:4] == ["rejected", "order_client_order_id_in_use"], f"{ack.request}: {ack.events}"
    if ack.kind == "retry":
        assert ack.events == journal.events[seq - 1][:1], f"retry of {ack.request}: {ack.events}"
    else:
        assert ack.events == journal.events[seq - 1], f"{ack.request} acked with events the journal does not give"


def check_client_order_ids_once(journal: Journal) -> None:
    twice = {key: events for key, events in journal.accepted.items() if len(events) > 1}
    assert not twice, f"client order ids accepted more than once: {twice}"


def check_places_known(child: Child, known: Known, rng: random.Random) -> None:
    """Each acknowledged accepted place of the last run (and a sample of earlier ones) is a
    known order, and a retry gets its original acceptance."""
    latest = [(a.request, a.events[0]) for a in known.acks_unchecked if is_new_acceptance(a)]
    earlier = list(known.accepted.values())
    places = latest + rng.sample(earlier, min(EARLIER_PLACES_CHECKED_MAX, len(earlier)))
    requests = []
    for request, accepted in places:
        requests += [{"op": "order", "account": request["account"], "order_id": accepted[4]}, request]
    replies = child.ask({"op": "batch", "requests": requests})["replies"]
    for (request, accepted), order, retry in zip(places, replies[::2], replies[1::2], strict=True):
        account, client_order_id = request["account"], request["client_order_id"]
        expected = {"order_id": accepted[4], "account": account, "client_order_id": client_order_id}
        assert order["order"] == expected, f"acknowledged order {request} not known after recovery"
        assert retry.get("events") == [accepted], f"retry of {request} answered {retry}"


def retry_unknown(child: Child, run: Run, journal: Journal, known: Known) -> None:
    """Places whose outcome the kill hid, retried with the same client order id: the original
    acceptance if it was journaled and accepted, else exactly one new execution."""
    connection = Connection(child.port)
    try:
        for request, kind in run.unknown:
            if request["op"] != "place" or kind == "conflict":
                continue  # no idempotency key (a client cannot retry these blindly), or meant to be refused
            reply = connection.ask(request)
            assert reply is not None and "error" not in reply, f"retry of {request}: {reply}"
            journaled = journal.accepted.get((request["account"], request["client_order_id"]))
            if journaled:
                assert reply["events"] == journaled[:1], f"retry of {request} executed again: {reply}"
            else:
                assert reply["events"][0][0] > journal.last_seq, f"retry of {request}: {reply}"
            known.add(Ack(request, reply["events"], tuple(reply["durable"]), "retry" if journaled else "command"))
    finally:
        connection.close()


def run_until_killed(child: Child, iteration: int, name: str, rng: random.Random, known: Known) -> Run:
    run = Run()
    acks_before_kill = rng.randint(0, ACKS_BEFORE_KILL_MAX)
    clients = [
        Client(child.port, i, f"{name}{iteration}", random.Random(rng.getrandbits(64)), known, run)
        for i in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    with run.changed:
        run.changed.wait_for(
            lambda: len(run.acks) >= acks_before_kill or run.clients_done == CLIENTS, timeout=WAIT_S_MAX
        )
    child.kill()
    for client in clients:
        client.join(WAIT_S_MAX)
    assert len(run.acks) >= acks_before_kill, f"only {len(run.acks)} of {acks_before_kill} commands acknowledged"
    assert run.clients_done == CLIENTS, "a client did not notice the kill"
    assert not run.errors, run.errors
    for ack in run.acks:
        known.add(ack)
    return run


def cut_journal(data_dir: Path, durable: tuple[str, int], rng: random.Random) -> None:
    """A power loss: what was not synced is gone, except perhaps a prefix of it."""
    segment = data_dir / "journal" / Path(durable[0]).name
    for later in (data_dir / "journal").glob("*.seg"):
        if later.name > segment.name:
            later.unlink()
    size = segment.stat().st_size
    assert size >= durable[1], f"{segment} is shorter ({size}) than its reported durable offset {durable[1]}"
    keep = durable[1] if rng.random() < 0.5 else rng.randint(durable[1], size)
    os.truncate(segment, keep)


@pytest.mark.parametrize("power_loss", [False, True], ids=["kill", "power_loss"])
def test_crash(tmp_path: Path, start_child: Callable[[Path, int, int], Child], power_loss: bool) -> None:
    rng = random.Random(SEED + power_loss)
    data_dir = tmp_path / "data"
    known = Known()
    # The power loss test rolls segments often, so cuts also fall in a segment that follows
    # others (the kill test keeps one: its snapshots remove old segments, which the replay
    # check reads from seq 1).
    segment_bytes = SMALL_SEGMENT_BYTES if power_loss else 64 << 20
    child = start_child(data_dir, 0, segment_bytes)
    check_recovered(child, data_dir, known, None)
    for iteration in range(ITERATIONS):
        run = run_until_killed(child, iteration, "p" if power_loss else "k", rng, known)
        positions = [tuple(child.ready["durable"])] + [a.durable for a in run.acks]
        durable = max(positions, key=durable_key)
        if power_loss:
            cut_journal(data_dir, durable, rng)
        # Snapshots (and recovery from one plus the tail) in the kill test; a power loss test's
        # snapshot could be newer than the cut, which a real power loss cannot produce.
        snapshot_every = 0 if power_loss else rng.choice((0, 0, 7, 60))
        child = start_child(data_dir, snapshot_every, segment_bytes)
        journal = check_recovered(child, data_dir, known, durable)
        retry_unknown(child, run, journal, known)
    check_recovered(child, data_dir, known, None)
