"""The gateway's own protocols, driven raw against a real server (WebSocket order entry and
pushes, the operator kill switch, cancel-all-after, HTTP admission), and the sequencer's
admission rules against an engine that is made to stall."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from pyexchange import Engine, wire
from pyexchange.cli import huge_page_env
from pyexchange.config import AdmissionConfig, load
from pyexchange.gateway import okx
from pyexchange.gateway.app import BODY_BYTES_MAX, OrderEntry
from pyexchange.gateway.exchange import REPLY_SWEEP_S, Exchange, LoopLag, ReplyDeadlines, start_op
from pyexchange.gateway.operator import loop_window
from pyexchange.gateway.sequencer import (
    BATCH_COMMANDS_MAX,
    Batch,
    Command,
    LoopSequencer,
    Overloaded,
    Sequencer,
    command_bounds,
)
from pyexchange.gateway.ws import Hub
from tests.gateway_server import Server, running_server

BTC = "BTC-USDT"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("flow")) as zone:
        yield zone


def _sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


def _rest(server: Server, n: int, method: str, path: str, body: Any = None) -> httpx.Response:
    creds = server.credentials[n]
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = "" if body is None else json.dumps(body)
    headers = {"OK-ACCESS-KEY": creds["apiKey"], "OK-ACCESS-PASSPHRASE": creds["passphrase"],
               "OK-ACCESS-TIMESTAMP": stamp, "OK-ACCESS-SIGN": _sign(creds["secretKey"], stamp + method + path + text),
               "Content-Type": "application/json"}  # fmt: skip
    return httpx.request(method, server.base_url + path, content=text or None, headers=headers, timeout=30)


def _login(server: Server, n: int, *, passphrase: str | None = None) -> dict[str, Any]:
    creds = server.credentials[n]
    stamp = str(int(time.time()))
    sign = _sign(creds["secretKey"], stamp + "GET/users/self/verify")
    arg = {"apiKey": creds["apiKey"], "passphrase": passphrase or creds["passphrase"], "timestamp": stamp, "sign": sign}
    return {"op": "login", "args": [arg]}


async def _recv(ws: Any, timeout_s: float = 10) -> Any:
    text = await asyncio.wait_for(ws.recv(), timeout_s)
    return text if text == "pong" else json.loads(text)


def test_websocket_order_entry_and_pushes(server: Server) -> None:
    asyncio.run(_ws_order_entry(server))


async def _ws_order_entry(server: Server) -> None:
    async with websockets.connect(server.ws_url + "/private") as ws:
        await ws.send("ping")
        assert await _recv(ws) == "pong"
        await ws.send(b"ping")  # a binary frame is read as text
        assert await _recv(ws) == "pong"
        await ws.send(json.dumps({"op": "order", "id": "x", "args": [{"instId": BTC}]}))
        assert (await _recv(ws))["code"] == "60011"  # not logged in
        await ws.send(json.dumps(_login(server, 1, passphrase="wrong")))
        assert (await _recv(ws))["event"] == "error"
        await ws.send(json.dumps(_login(server, 1)))
        assert await _recv(ws) == {"event": "login", "code": "0", "msg": "", "connId": (await _conn_id(ws))}
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]}))
        assert (await _recv(ws))["event"] == "subscribe"
        order = {"instId": BTC, "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "25000", "sz": "0.01"}
        await ws.send(json.dumps({"op": "order", "id": "o1", "args": [{**order, "clOrdId": "ws1"}]}))
        placed, pushed = await _answer_and_push(ws, "o1")
        assert placed["code"] == "0" and placed["data"][0]["sCode"] == "0"
        order_id = placed["data"][0]["ordId"]
        assert pushed["data"][0]["ordId"] == order_id and pushed["data"][0]["state"] == "live"
        batch = [{**order, "px": "24000"}, {**order, "px": "oops"}]
        await ws.send(json.dumps({"op": "batch-orders", "id": "b1", "args": batch}))
        answer, _ = await _answer_and_push(ws, "b1")
        assert answer["code"] == "2" and [d["sCode"] for d in answer["data"]] == ["0", "51000"]
        await ws.send(
            json.dumps({"op": "amend-order", "id": "a1", "args": [{"instId": BTC, "ordId": order_id, "newSz": "0.02"}]})
        )
        amended, pushed = await _answer_and_push(ws, "a1")
        assert amended["data"][0]["sCode"] == "0" and pushed["data"][0]["sz"] == "0.02"
        await ws.send(json.dumps({"op": "cancel-order", "id": "c1", "args": [{"instId": BTC, "clOrdId": "ws1"}]}))
        canceled, pushed = await _answer_and_push(ws, "c1")
        assert canceled["data"][0]["ordId"] == order_id and pushed["data"][0]["state"] == "canceled"
        # An op of several steps on their way is answered once, when its last step is.
        batch = [{**order, "px": px} for px in ("22000", "22100", "bad", "22200")]
        await ws.send(json.dumps({"op": "batch-orders", "id": "b2", "args": batch}))
        while (answer := await _recv(ws)).get("id") != "b2":
            assert answer.get("arg", {}).get("channel") == "orders"
        assert [d["sCode"] for d in answer["data"]] == ["0", "0", "51000", "0"]
        assert len({d["ordId"] for d in answer["data"]}) == 4  # three orders and the refusal's ""
        await ws.send("ping")
        while (after := await _recv(ws)) != "pong":
            assert after.get("id") != "b2", "answered twice"
    assert (
        _rest(server, 1, "GET", f"/api/v5/trade/order?instId={BTC}&ordId={order_id}").json()["data"][0]["state"]
        == "canceled"
    )


async def _conn_id(ws: Any) -> str:
    await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "nope"}]}))
    error = await _recv(ws)
    assert error["code"] == "60018"
    return str(error["connId"])


async def _answer_and_push(ws: Any, op_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The op's answer and the first `orders` push that came with it (either order)."""
    answer = push = None
    while answer is None or push is None:
        message = await _recv(ws)
        if message.get("id") == op_id:
            answer = message
            if answer["code"] == "1":
                return answer, None
        elif message.get("arg", {}).get("channel") == "orders":
            push = message
    return answer, push


def test_the_server_runs_again_in_its_own_process_with_glibc_asking_for_huge_pages(server: Server) -> None:
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
    assert b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in environ  # the pid it was started with, started again


def test_huge_page_env_adds_the_tunable_once_and_keeps_an_operator_s_choice() -> None:
    assert huge_page_env({"HOME": "/root"}) == {"HOME": "/root", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    }
    assert huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) is None  # started again already
    assert huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"}) is None  # turned off


HUGE_BLOCK_PROBE = """
import ctypes
block = bytearray(64 << 20)  # more than glibc's mmap threshold: a mapping of its own, written here
address = ctypes.addressof((ctypes.c_char * len(block)).from_buffer(block))
inside = False
for line in open("/proc/self/smaps"):
    head = line.split()[0]
    if "-" in head and not head.endswith(":"):
        low, high = (int(x, 16) for x in head.split("-"))
        inside = low <= address < high
    elif inside and head == "AnonHugePages:":
        print(line.split()[1])  # kB
"""


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()
                    or "[madvise]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text(),
                    reason="transparent huge pages are not in madvise mode here")  # fmt: skip
def test_glibc_backs_a_server_s_big_allocations_with_huge_pages_in_the_environment_it_gets() -> None:
    def huge_kb(env: dict[str, str]) -> int:
        done = subprocess.run([sys.executable, "-c", HUGE_BLOCK_PROBE], env=env, capture_output=True, text=True,
                              check=True)  # fmt: skip
        return int(done.stdout)

    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    huge_env = huge_page_env(plain)
    assert huge_env is not None
    assert huge_kb(plain) == 0
    assert huge_kb(huge_env) >= 32 << 10


def test_kill_switch_blocks_cancels_and_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "zone"
    with running_server(data_dir) as first:
        order = {"instId": BTC, "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "25000", "sz": "0.01"}
        assert _rest(first, 0, "POST", "/api/v5/trade/order", order).json()["code"] == "0"
        token = (data_dir / "operator-token").read_text().strip()
        refused = httpx.post(first.base_url + "/operator/v1/kill-switch", json={"account": 1, "action": "block"})
        assert refused.status_code == 401
        blocked = httpx.post(first.base_url + "/operator/v1/kill-switch", json={"account": 1, "action": "block"},
                             headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
        assert blocked["data"] == [{"account": "1", "action": "block", "canceled": "1"}]
        assert _rest(first, 0, "GET", "/api/v5/trade/orders-pending").json()["data"] == []
    with running_server(data_dir) as second:
        answer = _rest(second, 0, "POST", "/api/v5/trade/order", order).json()
        assert answer["code"] == "1" and answer["data"][0]["sCode"] == "51009"
        assert _rest(second, 1, "POST", "/api/v5/trade/order", order).json()["code"] == "0"  # others trade on
        headers = {"Authorization": f"Bearer {token}"}
        httpx.post(
            second.base_url + "/operator/v1/kill-switch", json={"account": 1, "action": "unblock"}, headers=headers
        )
        assert _rest(second, 0, "POST", "/api/v5/trade/order", order).json()["code"] == "0"


def test_the_operator_sees_the_journal_s_recent_syncs(server: Server) -> None:
    headers = {"Authorization": f"Bearer {(server.data_dir / 'operator-token').read_text().strip()}"}
    order = {"instId": "SOL-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "10", "sz": "1"}
    placed = _rest(server, 1, "POST", "/api/v5/trade/order", order).json()["data"][0]
    journal = httpx.get(server.base_url + "/operator/v1/journal?seconds=5", headers=headers).json()["data"][0]
    window = journal["window"]
    assert placed["sCode"] == "0" and journal["failing"] is None and journal["durable_seq"] >= 1
    assert window["seconds"] == 5 and 1 <= window["syncs"] <= journal["syncs"] and window["records"] >= 1
    assert 1 <= window["sync_us_p50"] <= window["sync_us_p99"] <= window["sync_us_max"]
    assert len(window["sync_us_max_by_s"]) == 5 and max(window["sync_us_max_by_s"]) == window["sync_us_max"]
    assert httpx.get(server.base_url + "/operator/v1/journal").status_code == 401
    wrong = httpx.get(server.base_url + "/operator/v1/journal?seconds=0", headers=headers)
    assert (wrong.status_code, wrong.json()["code"]) == (400, "51000")


def test_cancel_all_after(server: Server) -> None:
    order = {"instId": "ETH-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "1500", "sz": "0.1"}
    kept = _rest(server, 0, "POST", "/api/v5/trade/order", order).json()["data"][0]["ordId"]
    swept = _rest(server, 2, "POST", "/api/v5/trade/order", order).json()["data"][0]["ordId"]
    armed = _rest(server, 0, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "10"}).json()["data"][0]
    assert int(armed["triggerTime"]) > time.time() * 1000
    assert (
        _rest(server, 0, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "0"}).json()["data"][0]["triggerTime"]
        == "0"
    )
    _rest(server, 2, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "10"})
    assert _rest(server, 2, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "5"}).json()["code"] == "51000"
    time.sleep(11.5)
    state = {n: _rest(server, n, "GET", f"/api/v5/trade/order?instId=ETH-USDT&ordId={i}").json()["data"][0]["state"]
             for n, i in ((0, kept), (2, swept))}  # fmt: skip
    assert state == {0: "live", 2: "canceled"}
    _rest(server, 0, "POST", "/api/v5/trade/cancel-order", {"instId": "ETH-USDT", "ordId": kept})


def test_http_admission_refuses_fast_with_retry_after(tmp_path: Path) -> None:
    config = (Path(__file__).parents[1] / "pyexchange" / "default_config.toml").read_text()
    config = config.replace("requests_in_flight_max = 2048", "requests_in_flight_max = 2")
    (tmp_path / "config.toml").write_text(config)
    with running_server(tmp_path / "zone", tmp_path / "config.toml") as zone:
        asyncio.run(_burst(zone))


async def _burst(zone: Server) -> None:
    order = {"instId": BTC, "tdMode": "cash", "side": "sell", "ordType": "limit", "px": "31000", "sz": "0.001"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
        answers = await asyncio.gather(*(_signed(client, zone, {**order, "clOrdId": f"burst{i}"}) for i in range(64)))
    refused = [a for a in answers if a.status_code == 429]
    placed = [a for a in answers if a.status_code == 200 and a.json()["code"] == "0"]
    assert refused, "64 requests at once against a limit of 2 in flight: some must be refused"
    assert len(refused) + len(placed) == len(answers)
    assert all(a.headers["Retry-After"] == "1" and a.json()["code"] == "50011" for a in refused)
    pending = _rest(zone, 0, "GET", "/api/v5/trade/orders-pending?limit=100").json()["data"]
    assert len(pending) == len(placed)


async def _signed(client: httpx.AsyncClient, zone: Server, body: dict[str, Any]) -> httpx.Response:
    creds = zone.credentials[0]
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = json.dumps(body)
    headers = {"OK-ACCESS-KEY": creds["apiKey"], "OK-ACCESS-PASSPHRASE": creds["passphrase"],
               "OK-ACCESS-TIMESTAMP": stamp, "Content-Type": "application/json",
               "OK-ACCESS-SIGN": _sign(creds["secretKey"], stamp + "POST/api/v5/trade/order" + text)}  # fmt: skip
    return await client.post(zone.base_url + "/api/v5/trade/order", content=text, headers=headers)


# Small queues and a 50 ms delay bound, for the sequencers' admission tests.
TIGHT_ADMISSION = AdmissionConfig(orders_queued_max=3, cancels_queued_max=2, queue_delay_ms_max=50,
                                  requests_in_flight_max=10, reply_timeout_ms=1000, retry_after_s=1)  # fmt: skip


class StalledEngine:
    """Enough of an engine for the sequencer: `submit` waits until the test lets it go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.seq = 0

    def submit(self, records: bytes) -> np.ndarray[Any, Any]:
        self.entered.set()
        self.release.wait(10)
        self.seq += len(records) // wire.COMMAND_STRUCT.size
        return np.zeros(0, dtype=wire.EVENT_DTYPE)

    def decode_batch(self, events: bytes, first_seq: int, commands: int) -> list[list[Any]]:
        return [[] for _ in range(commands)]

    def read_batch(self, events: bytes) -> tuple[None, list[int], list[str], bool]:
        return None, [], [], False

    def asset_names(self) -> list[str]:
        return []


def kinds(batch: Batch) -> list[int]:
    """The kinds of a batch's commands, in order."""
    return np.frombuffer(batch.records, dtype=wire.COMMAND_DTYPE)["kind"].tolist()


class NobodyFollows:
    def book_followed(self, symbol: str) -> bool:
        return False

    def balances_followed(self, account: int) -> bool:
        return False


@given(st.lists(st.integers(0, 3), max_size=40), st.integers(1, 10**15))
def test_command_bounds_give_each_command_of_a_batch_its_own_events(
    events_per_command: list[int], first_seq: int
) -> None:
    """A batch's events carry the seq of their command; a command may have none."""
    seqs = [first_seq + i for i, count in enumerate(events_per_command) for _ in range(count)]
    events: list[Any] = [SimpleNamespace(seq=seq) for seq in seqs]
    bounds = command_bounds(events, first_seq, len(events_per_command))
    assert len(bounds) == len(events_per_command) + 1
    assert bounds[0] == 0 and bounds[-1] == len(seqs)
    for i, count in enumerate(events_per_command):
        assert bounds[i + 1] - bounds[i] == count
        assert all(event.seq == first_seq + i for event in events[bounds[i] : bounds[i + 1]])


def test_sequencer_refuses_orders_when_behind_but_takes_cancels() -> None:
    admission = TIGHT_ADMISSION
    engine = StalledEngine()
    delivered: list[Batch] = []
    loop = asyncio.new_event_loop()
    sequencer = Sequencer(engine, admission, loop, delivered.append, NobodyFollows())  # type: ignore[arg-type]
    sequencer.start()
    try:
        sequencer.enqueue(Command(wire.PLACE, 1, 0))
        assert engine.entered.wait(5)  # the first batch is in the (stalled) engine
        for _ in range(3):
            sequencer.enqueue(Command(wire.PLACE, 1, 0))
        with pytest.raises(Overloaded, match="orders are queued"):
            sequencer.enqueue(Command(wire.PLACE, 1, 0))
        sequencer.enqueue(Command(wire.CANCEL, 1, 0, order_id=7))  # cancels have their own queue
        sequencer.enqueue(Command(wire.CANCEL_ALL, 1, 0))
        with pytest.raises(Overloaded, match="cancels are queued"):
            sequencer.enqueue(Command(wire.CANCEL, 1, 0, order_id=8))
        assert sequencer.queued() == (3, 2)
        engine.release.set()
        deadline = time.monotonic() + 5
        while sum(len(kinds(b)) for b in delivered) < 6 and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        batches = [[wire.PLACE], [wire.CANCEL, wire.CANCEL_ALL, wire.PLACE, wire.PLACE, wire.PLACE]]
        assert [kinds(b) for b in delivered] == batches
        assert sequencer.refused == 2
        # A batch that takes longer than queue_delay_ms_max: new orders are refused, cancels not.
        engine.release.clear()
        engine.entered.clear()
        sequencer.enqueue(Command(wire.PLACE, 1, 0))
        assert engine.entered.wait(5)
        time.sleep(0.08)
        with pytest.raises(Overloaded, match="ms behind"):
            sequencer.enqueue(Command(wire.PLACE, 1, 0))
        sequencer.enqueue(Command(wire.CANCEL, 1, 0, order_id=9))
        engine.release.set()
    finally:
        engine.release.set()
        sequencer.stop()
        loop.close()


class SyncOnCue(StalledEngine):
    """Enough of a durable engine for `LoopSequencer`: `submit_unsynced` applies at once, and the
    journal's sync covers a batch only when the test says (`sync`), which wakes the loop."""

    is_durable = True

    def __init__(self) -> None:
        super().__init__()
        self.durable_seq = 0
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.wake_at: list[int] = []

    def submit_unsynced(self, records: bytes) -> tuple[np.ndarray[Any, Any], int]:
        self.seq += len(records) // wire.COMMAND_STRUCT.size
        return np.zeros(0, dtype=wire.EVENT_DTYPE), self.seq

    def snapshot_due_within(self, commands: int) -> bool:
        return False

    def durable_wake_fd(self) -> int:
        return self.wake_fd

    def wake_when_durable(self, seq: int) -> None:
        self.wake_at.append(seq)

    def sync(self) -> None:
        self.durable_seq = self.seq
        os.eventfd_write(self.wake_fd, 1)


def test_the_loop_sequencer_delivers_a_batch_only_once_a_sync_covers_it() -> None:
    """`LoopSequencer`: what one turn of the loop queued goes to the engine as one batch at the
    next turn, cancels first; nothing is delivered until the journal's sync covers the batch;
    while a batch waits for its sync longer than `queue_delay_ms_max`, new orders are refused
    and cancels are not; the sync's wake-up delivers every covered batch, in order."""
    admission = TIGHT_ADMISSION
    engine = SyncOnCue()
    delivered: list[Batch] = []
    loop = asyncio.new_event_loop()
    sequencer = LoopSequencer(engine, admission, loop, delivered.append, NobodyFollows())  # type: ignore[arg-type]

    def turns(n: int = 3) -> None:
        for _ in range(n):
            loop.run_until_complete(asyncio.sleep(0))

    sequencer.start()
    try:
        sequencer.enqueue(Command(wire.PLACE, 1, 0))
        sequencer.enqueue(Command(wire.CANCEL, 1, 0, order_id=7))
        turns()
        assert engine.seq == 2 and engine.wake_at == [2] and delivered == []
        time.sleep(0.08)  # the batch waits for its sync longer than queue_delay_ms_max
        with pytest.raises(Overloaded, match="ms behind"):
            sequencer.enqueue(Command(wire.PLACE, 1, 0))
        sequencer.enqueue(Command(wire.CANCEL, 1, 0, order_id=8))
        turns()
        assert engine.seq == 3 and engine.wake_at == [2, 3] and delivered == []
        engine.sync()
        turns()
        assert [kinds(b) for b in delivered] == [[wire.CANCEL, wire.PLACE], [wire.CANCEL]]
        sequencer.enqueue(Command(wire.PLACE, 1, 0))  # synced: orders are taken again
        syncing = threading.Timer(0.05, engine.sync)  # the journal's flusher, meanwhile
        syncing.start()
        sequencer.stop()  # applies what is queued, then delivers it once its sync comes
        syncing.join()
        assert engine.seq == 4 and [kinds(b) for b in delivered[2:]] == [[wire.PLACE]]
    finally:
        loop.close()
        os.close(engine.wake_fd)


class SnapshotOnCue(SyncOnCue):
    """`SyncOnCue` whose next batch starts a snapshot when the test says: its `submit_unsynced`
    then copies the engine until the test lets it go (`copied`)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshot_next = False
        self.copying, self.copied = threading.Event(), threading.Event()
        self.threads: list[str] = []  # which thread applied each batch

    def snapshot_due_within(self, commands: int) -> bool:
        return self.snapshot_next

    def submit_unsynced(self, records: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], int]:
        self.threads.append(threading.current_thread().name)
        if self.snapshot_next:
            self.snapshot_next = False
            self.copying.set()
            assert self.copied.wait(5)
        return super().submit_unsynced(records)


def test_the_loop_sequencer_applies_a_batch_that_starts_a_snapshot_off_the_loop() -> None:
    """The engine's copy for a snapshot happens from a worker thread: the loop serves on
    meanwhile, what is queued then waits for the next batch, and deliveries keep batch order."""
    engine = SnapshotOnCue()
    delivered: list[Batch] = []
    loop = asyncio.new_event_loop()
    sequencer = LoopSequencer(engine, load(None).admission, loop, delivered.append, NobodyFollows())  # type: ignore[arg-type]

    def turns(n: int = 3) -> None:
        for _ in range(n):
            loop.run_until_complete(asyncio.sleep(0))

    sequencer.start()
    try:
        engine.snapshot_next = True
        sequencer.enqueue(Command(wire.PLACE, 1, 0))
        turns()
        assert engine.copying.wait(5)
        sequencer.enqueue(Command(wire.CANCEL, 1, 0, order_id=7))  # while the worker copies
        turns()  # the loop turns: it is not held by the copy
        assert engine.seq == 0 and sequencer.queued() == (0, 1), "the cancel waits for the engine"
        engine.copied.set()
        deadline = time.monotonic() + 5
        while engine.seq < 2 and time.monotonic() < deadline:
            turns(1)
        assert engine.threads[0].startswith("pyexchange-snapshot-batch") and engine.threads[1] == "MainThread"
        engine.sync()
        turns()
        assert [kinds(b) for b in delivered] == [[wire.PLACE], [wire.CANCEL]]
    finally:
        engine.copied.set()
        sequencer.stop()
        loop.close()
        os.close(engine.wake_fd)


def test_the_loop_sequencer_on_a_durable_engine_delivers_what_its_journal_synced(tmp_path: Path) -> None:
    """The real wake-up: the journal's flusher adds to the engine's eventfd after the sync, and
    each batch reaches `deliver` with `durable_seq` at or past its last seq."""
    engine = Engine(data_dir=tmp_path / "data")
    engine.add_asset("USDT")
    seen: list[tuple[int, int]] = []  # (batch's last seq, durable_seq) at delivery

    def deliver(batch: Batch) -> None:
        seen.append((batch.last_seq, engine.durable_seq))

    async def scenario() -> None:
        sequencer = LoopSequencer(engine, load(None).admission, asyncio.get_running_loop(), deliver, NobodyFollows())  # type: ignore[arg-type]
        sequencer.start()
        try:
            for round_ in range(3):
                for account in (1, 2):
                    sequencer.enqueue(Command(wire.DEPOSIT, account, 0, size_lots=round_ + 1))
                deadline = time.monotonic() + 5
                while len(seen) <= round_ and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
        finally:
            sequencer.stop()

    try:
        asyncio.run(scenario())
        final_seq = engine.seq
    finally:
        engine.close()
    assert [last for last, _ in seen] == [final_seq - 4, final_seq - 2, final_seq]
    assert all(durable >= last for last, durable in seen)


def test_sequencer_step_runs_one_batch_on_the_calling_thread() -> None:
    """`Sequencer.step` (for the instruction-count benchmark): with the thread not started, each
    step applies what is queued, cancels first, and delivers it at once; with nothing queued it
    returns without waiting."""
    engine = Engine()
    engine.add_asset("USDT")
    engine.add_asset("BTC")
    engine.add_instrument("BTC-USDT", tick_size="0.1", lot_size="0.001", min_size="0.001")
    engine.deposit(1, "USDT", "1000000")
    delivered: list[Batch] = []
    loop = asyncio.new_event_loop()
    admission = load(None).admission
    sequencer = Sequencer(engine, admission, loop, delivered.append, NobodyFollows())  # type: ignore[arg-type]
    seq_before = engine.seq
    try:
        sequencer.step()
        assert delivered == [] and engine.seq == seq_before
        place = Command(wire.PLACE, 1, 0, side=wire.SIDES.index("buy"), price_ticks=100, size_lots=1)
        sequencer.enqueue(place)
        sequencer.enqueue(Command(wire.CANCEL, 1, 0, order_id=99))
        sequencer.step()
        [batch] = delivered
        assert kinds(batch) == [wire.CANCEL, wire.PLACE]
        assert [[event.kind for event in events] for events in batch.events] == [["rejected"], ["accepted"]]
        assert sequencer.queued() == (0, 0) and engine.seq == seq_before + 2
        assert (sequencer.batches, sequencer.commands) == (1, 2)  # counted, and the engine free again
        sequencer.step()
        assert len(delivered) == 1
    finally:
        loop.close()


def test_a_batch_takes_at_most_batch_commands_max_cancels_first_in_queue_order() -> None:
    admission = dataclasses.replace(load(None).admission, orders_queued_max=3 * BATCH_COMMANDS_MAX,
                                    cancels_queued_max=3 * BATCH_COMMANDS_MAX)  # fmt: skip
    loop = asyncio.new_event_loop()
    sequencer = Sequencer(Engine(), admission, loop, lambda _batch: None, NobodyFollows())  # type: ignore[arg-type]
    try:
        cancels = [Command(wire.CANCEL, 1, 0, order_id=i) for i in range(BATCH_COMMANDS_MAX // 2)]
        places = [Command(wire.PLACE, 1, 0, price_ticks=i) for i in range(BATCH_COMMANDS_MAX - 10)]
        for command in [*places, *cancels]:
            sequencer.enqueue(command)
        with sequencer._lock:
            first, second, third = (sequencer._take_queued() for _ in range(3))
        assert first == cancels + places[: BATCH_COMMANDS_MAX - len(cancels)]
        assert second == places[BATCH_COMMANDS_MAX - len(cancels) :]
        assert third == [] and sequencer.queued() == (0, 0)
    finally:
        loop.close()


class EngineThatStalls(Engine):
    """An engine in memory posing as a durable one whose journal syncs nothing until the test
    lets it go (`release`): commands apply at once, their answers wait for the sync."""

    is_durable = True

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.synced_seq = 0

    @property
    def durable_seq(self) -> int:
        return self.synced_seq

    def durable_wake_fd(self) -> int:
        return self.wake_fd

    def wake_when_durable(self, seq: int) -> None:
        def flusher() -> None:
            self.release.wait(10)
            self.synced_seq = max(self.synced_seq, seq)
            os.eventfd_write(self.wake_fd, 1)

        threading.Thread(target=flusher, daemon=True).start()


def test_a_command_not_answered_in_time_is_50004_and_its_late_answer_is_dropped(tmp_path: Path) -> None:
    config = load(None)
    config = dataclasses.replace(config, admission=dataclasses.replace(config.admission, reply_timeout_ms=100))
    engine = EngineThatStalls()
    exchange = Exchange(config, tmp_path, engine)

    async def scenario() -> None:
        exchange.start(asyncio.get_running_loop(), Hub())
        try:
            started = time.monotonic()
            with pytest.raises(okx.OkxError, match="No answer in time") as timed_out:
                await exchange.submit_here(Command(wire.DEPOSIT, 1, 0, size_lots=5))
            assert timed_out.value.code == okx.REQUEST_TIMEOUT
            assert 0.1 <= time.monotonic() - started < 5
            engine.release.set()  # the deposit is done after all: its answer finds nobody waiting
            deadline = time.monotonic() + 5
            while exchange.sequencer.batches < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the batch's delivery on this loop
            assert exchange.sequencer.batches == 1 and engine.seq == 1
        finally:
            engine.release.set()
            exchange.stop()

    asyncio.run(scenario())


class _RecordingConnection:
    """A logged-in private WebSocket connection that keeps what the session sends it."""

    def __init__(self, account: int) -> None:
        self.private, self.key, self.conn_id = True, SimpleNamespace(account=account), "test"
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any] | str) -> None:
        assert isinstance(message, dict)
        self.sent.append(message)


def test_websocket_ops_in_flight_are_bounded_and_each_is_answered_when_its_reply_times_out(tmp_path: Path) -> None:
    from pyexchange.gateway.ws import OPS_IN_FLIGHT_MAX, Session
    from pyexchange.serve import configure

    config = load(None)
    admission = dataclasses.replace(config.admission, reply_timeout_ms=100, ramp_orders_per_s=[])  # no ramp: a burst
    config = dataclasses.replace(config, admission=admission)
    engine = EngineThatStalls()
    configure(engine, config)
    exchange = Exchange(config, tmp_path, engine)
    conn = _RecordingConnection(account=1)
    order = {"instId": BTC, "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "100", "sz": "0.01"}

    async def scenario() -> None:
        exchange.start(asyncio.get_running_loop(), Hub())
        session = Session(exchange, Hub(), None, conn)  # type: ignore[arg-type]
        try:
            for i in range(OPS_IN_FLIGHT_MAX + 1):
                session.handle(json.dumps({"id": f"o{i}", "op": "order", "args": [order]}))
            assert session.ops_in_flight == OPS_IN_FLIGHT_MAX
            assert [(m["id"], m["code"]) for m in conn.sent] == [(f"o{OPS_IN_FLIGHT_MAX}", okx.RATE_LIMITED)]
            deadline = time.monotonic() + 5
            while len(conn.sent) <= OPS_IN_FLIGHT_MAX and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            answers = {m["id"]: m for m in conn.sent[1:]}
            assert sorted(answers) == sorted(f"o{i}" for i in range(OPS_IN_FLIGHT_MAX))
            for answer in answers.values():
                assert answer["op"] == "order" and answer["code"] == okx.ALL_FAILED, answer
                assert [d["sCode"] for d in answer["data"]] == [okx.REQUEST_TIMEOUT], answer
            assert session.ops_in_flight == 0
        finally:
            engine.release.set()
            exchange.stop()

    asyncio.run(scenario())


def test_a_batch_refused_under_a_burst_is_refused_whole_and_takes_nothing_from_its_account(tmp_path: Path) -> None:
    """The sequencer's queue is full: a WebSocket `batch-orders` op is refused with one 50011,
    and a REST batch with 429 / 50011, before any of their orders is read or checked; neither
    takes a token from the account's order rate, so once the queue drains the account's last
    token places an order."""
    from pyexchange.gateway.rest import ENTRY_ENDPOINTS
    from pyexchange.gateway.ws import Session
    from pyexchange.serve import configure

    config = load(None)
    admission = dataclasses.replace(config.admission, orders_queued_max=2, ramp_orders_per_s=[])
    risk = dataclasses.replace(config.risk, orders_per_second_per_account=Decimal("0.001"), orders_burst_per_account=3)
    config = dataclasses.replace(config, admission=admission, risk=risk)
    engine = EngineThatStalls()
    configure(engine, config)
    exchange = Exchange(config, tmp_path, engine)
    conn = _RecordingConnection(account=1)
    order = {"instId": BTC, "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "100", "sz": "0.01"}
    batch = [{**order, "clOrdId": f"b{k}"} for k in range(5)]

    class SignedByAccount1:
        async def rest(self, *_request: Any) -> Any:
            return SimpleNamespace(account=1)

    app = SimpleNamespace(state=SimpleNamespace(auth=SignedByAccount1(), exchange=exchange))
    scope = {"app": app, "method": "POST", "path": "/api/v5/trade/batch-orders", "query_string": b"", "headers": []}

    def place(cid: str) -> dict[str, str]:
        step = start_op(exchange, 1, "place", {**order, "clOrdId": cid})
        return step if isinstance(step, dict) else {"sCode": "0", "sMsg": "on its way"}

    async def scenario() -> None:
        exchange.start(asyncio.get_running_loop(), Hub())
        session = Session(exchange, Hub(), None, conn)  # type: ignore[arg-type]
        try:
            for i in (1, 2):  # the queue's two places, and two of the account's three tokens
                session.handle(json.dumps({"id": f"o{i}", "op": "order", "args": [{**order, "clOrdId": f"o{i}"}]}))
            session.handle(json.dumps({"id": "b", "op": "batch-orders", "args": batch}))
            assert [(m["id"], m["event"], m["code"]) for m in conn.sent] == [("b", "error", okx.RATE_LIMITED)]
            assert conn.sent[0]["msg"] == "Rate limit reached: 2 orders are queued (admission.orders_queued_max)"
            with pytest.raises(okx.OkxError) as refused:
                await ENTRY_ENDPOINTS["/api/v5/trade/batch-orders"](scope, orjson.dumps(batch))
            assert (refused.value.code, refused.value.http_status, refused.value.retry_after_s) == (
                okx.RATE_LIMITED, 429, config.admission.retry_after_s)  # fmt: skip
            await asyncio.sleep(0)  # a turn of the loop: the queue goes to the engine
            assert exchange.sequencer.queued() == (0, 0)
            assert place("last")["sCode"] == "0", "the account's third token: neither batch took one"
            limited = place("over")
            assert limited["sCode"] != "0" and "over its rate limit" in limited["sMsg"], limited
        finally:
            engine.release.set()
            exchange.stop()

    asyncio.run(scenario())


def test_reply_deadlines_fail_only_the_futures_still_waiting_at_their_deadline_and_then_stop_sweeping() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadlines = ReplyDeadlines(timeout_s=1.0)
        answered, unanswered = loop.create_future(), loop.create_future()
        deadlines.add(loop, answered)
        deadlines.add(loop, unanswered)
        answered.set_result([])
        await asyncio.sleep(0.6)
        late = loop.create_future()
        deadlines.add(loop, late)  # due at 1.6 s
        await asyncio.sleep(started + 1.0 + 2.5 * REPLY_SWEEP_S - loop.time())
        assert answered.result() == []
        with pytest.raises(okx.OkxError, match="No answer in time") as timed_out:
            unanswered.result()
        assert timed_out.value.code == okx.REQUEST_TIMEOUT
        assert not late.done(), "not due yet"
        late.set_result([])
        await asyncio.sleep(3 * REPLY_SWEEP_S)
        assert deadlines._sweep is None  # nothing waits any more: no timer is left armed

    asyncio.run(scenario())


def test_rebuild_refuses_a_journal_whose_start_was_removed(tmp_path: Path) -> None:
    from pyexchange.serve import open_engine

    config = load(None)
    with open_engine(tmp_path, config) as engine:  # the gateway's own engine keeps the journal whole
        for _ in range(3):
            engine.deposit(1, "USDT", "1")
            engine.snapshot()
        assert Exchange(config, tmp_path, engine).rebuild() == engine.seq
    with Engine(tmp_path, snapshot_every_commands=0, segment_bytes=4096) as engine:  # one that does not
        for _ in range(4):
            for _ in range(100):
                engine.deposit(1, "USDT", "1")
            engine.snapshot()
    with Engine(tmp_path) as engine, pytest.raises(RuntimeError, match=r"has no record 1 .*removed after a snapshot"):
        Exchange(config, tmp_path, engine).rebuild()


def test_accounts_and_keys_made_by_the_operator_commands_trade(tmp_path: Path) -> None:
    data_dir = tmp_path / "zone"
    with running_server(data_dir):  # the first start creates the data directory and the demo accounts
        pass
    run = [sys.executable, "-m", "pyexchange"]
    created = subprocess.run([*run, "accounts", "create", "--data-dir", str(data_dir), "--name", "alice",
                              "--deposit", "USDT=1234.5", "--deposit", "BTC=2"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    account = json.loads(created.stdout)["account"]
    assert account == 4  # after the three demo accounts
    refused = subprocess.run([*run, "accounts", "create", "--data-dir", str(data_dir), "--name", "alice"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "exists" in refused.stderr
    with running_server(data_dir) as zone:
        made = subprocess.run([*run, "keys", "create", "--data-dir", str(data_dir), "--account", str(account)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        key = json.loads(made.stdout)
        assert set(key) == {"account", "apiKey", "secretKey", "passphrase"}
        stored = (data_dir / "keys.json").read_text()
        assert key["secretKey"] not in stored and key["passphrase"] not in stored
        zone.credentials.append(key)  # a key made while the server runs is used at once
        ex = zone.okx(len(zone.credentials) - 1)
        balance = ex.fetch_balance()
        assert (balance["USDT"]["total"], balance["BTC"]["total"]) == (1234.5, 2)
        ex.load_markets()
        assert ex.create_order("BTC/USDT", "limit", "sell", 1, 30000)["id"]


def test_loop_lag_ignores_one_stall_but_not_a_loop_that_stays_behind() -> None:
    lag = LoopLag(window_ticks=5)
    for late_ms in (0.5, 900.0, 0.4, 0.3):  # one stall: the machine, not the gateway
        lag.record(late_ms, 0)
    assert lag.behind_ms < 1
    for late_ms in (300.0, 320.0, 310.0):  # three late ticks of the last five: overloaded
        lag.record(late_ms, 0)
    assert lag.behind_ms == 300.0
    for late_ms in (0.2, 0.1, 0.3):
        lag.record(late_ms, 0)
    assert lag.behind_ms == 0.3


def test_loop_lag_window_holds_the_ticks_of_the_last_seconds_only() -> None:
    lag = LoopLag(window_ticks=3)
    assert loop_window(lag, 5, 0) == {"seconds": 5, "ticks": 0, "behind_ms": 0.0, "late_ms_p50": None,
                                "late_ms_p99": None, "late_ms_max": None, "late_ms_max_by_s": [0] * 5}  # fmt: skip
    second_ns = 1_000_000_000
    lag.record(500.0, 0)  # older than the window asked for below
    for i in range(100):
        lag.record(float(i), 20 * second_ns + i * 10_000_000)  # 0..99 ms late, over one second
    lag.record(7.5, 17 * second_ns + 1)  # 3.99... s before the end: the fourth second from the end
    window = loop_window(lag, 5, 21 * second_ns)
    assert window == {"seconds": 5, "ticks": 101, "behind_ms": 98.0, "late_ms_p50": 49.0, "late_ms_p99": 98.0,
                      "late_ms_max": 99.0, "late_ms_max_by_s": [0, 7.5, 0, 0, 99.0]}  # fmt: skip
    whole = loop_window(lag, 21, 21 * second_ns)  # the tick at 0 is as old as the window: its first second
    assert whole["late_ms_max"] == 500.0 and whole["late_ms_max_by_s"] == [500.0] + [0] * 16 + [7.5, 0, 0, 99.0]


def test_the_operator_sees_how_late_the_loop_ran(server: Server) -> None:
    headers = {"Authorization": f"Bearer {(server.data_dir / 'operator-token').read_text().strip()}"}
    time.sleep(0.2)  # ten ticks at the least
    window = httpx.get(server.base_url + "/operator/v1/loop?seconds=5", headers=headers).json()["data"][0]
    assert window["seconds"] == 5 and window["ticks"] >= 5
    assert 0 <= window["late_ms_p50"] <= window["late_ms_p99"] <= window["late_ms_max"]
    assert httpx.get(server.base_url + "/operator/v1/loop").status_code == 401
    wrong = httpx.get(server.base_url + "/operator/v1/loop?seconds=0", headers=headers)
    assert (wrong.status_code, wrong.json()["code"]) == (400, "51000")


def test_order_entry_answers_its_paths_and_passes_everything_else_on(caplog: pytest.LogCaptureFixture) -> None:
    """`app.OrderEntry`: a POST to an entry path goes to its endpoint with the whole body (sent
    in parts here); an `OkxError` there becomes the OKX envelope with its HTTP status; anything
    else is logged and answered as the app's 500 handler answers it (50026); every other
    request reaches the app behind it."""

    async def placed(_scope: Any, body: bytes) -> bytes:
        return orjson.dumps(okx.envelope([{"sCode": "0", "body": body.decode()}]))

    async def refused(_scope: Any, _body: bytes) -> bytes:
        raise okx.OkxError(okx.RATE_LIMITED, "slow down", retry_after_s=1)

    async def broken(_scope: Any, _body: bytes) -> bytes:
        raise KeyError("a bug")

    passed_on: list[tuple[str, str, str]] = []

    async def app_behind(scope: dict[str, Any], receive: Any, send: Any) -> None:
        passed_on.append((scope["type"], scope.get("method", ""), scope["path"]))
        await okx.answer([])(scope, receive, send)

    entry = OrderEntry(app_behind, {"/placed": placed, "/refused": refused, "/broken": broken})

    Answer = tuple[int, dict[str, Any], dict[bytes, bytes]]

    async def call(method: str, path: str, kind: str = "http", body: tuple[bytes, ...] = (b'{"a":', b" 1}")) -> Answer:
        sent: list[dict[str, Any]] = []
        parts = iter([*body, b""])

        async def receive() -> dict[str, Any]:
            part = next(parts)
            return {"type": "http.request", "body": part, "more_body": part != b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": kind, "path": path, "headers": [], "query_string": b""}
        if kind == "http":  # a WebSocket scope has no method
            scope["method"] = method
        await entry(scope, receive, send)
        start, body = sent
        return start["status"], json.loads(body["body"]), dict(start["headers"])

    async def scenario() -> None:
        status, body, headers = await call("POST", "/placed")
        assert (status, body["data"]) == (200, [{"sCode": "0", "body": '{"a": 1}'}])
        # The headers Starlette's JSON responses have (the endpoint's answer is sent as it is).
        answer = okx.answer(body["data"])
        assert headers == dict(answer.raw_headers) and headers[b"content-type"] == b"application/json"
        status, body, headers = await call("POST", "/refused")
        assert (status, body["code"], body["msg"], headers[b"retry-after"]) == (429, "50011", "slow down", b"1")
        status, body, _ = await call("POST", "/broken")
        assert (status, body["code"]) == (500, "50026")
        assert "KeyError: 'a bug'" in caplog.text
        # Sent in parts without a Content-Length (Admission checks that one): refused past the limit.
        status, body, _ = await call("POST", "/placed", body=(b"[" * (BODY_BYTES_MAX // 2),) * 3)
        assert (status, body["code"]) == (413, "51000") and "larger than" in body["msg"]
        assert passed_on == []
        for method, path, kind in [("GET", "/placed", "http"), ("POST", "/other", "http"), ("PUT", "/refused", "http"),
                                   ("", "/placed", "websocket")]:  # fmt: skip
            status, body, _ = await call(method, path, kind)
            assert (status, body["code"]) == (200, "0")
        assert passed_on == [("http", "GET", "/placed"), ("http", "POST", "/other"), ("http", "PUT", "/refused"),
                             ("websocket", "", "/placed")]  # fmt: skip

    asyncio.run(scenario())


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.sampled_from(["orders", "account"]), st.sampled_from("12")))
)
def test_the_hub_follows_a_channel_while_any_connection_is_subscribed_to_it_under_any_key(
    steps: list[tuple[bool, int, str, str]],
) -> None:
    class Subscriber:  # what the hub needs of a connection: its args, and to be a key
        def __init__(self) -> None:
            self.args: dict[tuple[str, str], dict[str, str]] = {}

    hub, conns = Hub(), [Subscriber() for _ in range(3)]
    for subscribe, conn, channel, key in steps:
        if subscribe:
            hub.add(conns[conn], channel, key, {"channel": channel})  # type: ignore[arg-type]
        else:
            hub.remove(conns[conn], channel, key)  # type: ignore[arg-type]
        for name in ("orders", "account"):
            assert hub.follows(name) == any(hub.has(name, k) for k in "12")
