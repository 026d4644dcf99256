"""The gateway benchmark: order entry through `pyexchange serve`, over REST and WebSocket,
against the same server's trivial endpoint, under open-loop load at fixed offered rates.

    python -m bench.gateway [--quick] [--json PATH] [--workers N]

It starts its own server (`python -m pyexchange serve`: the durable engine with fsync'd
journal, uvicorn, FastAPI) on a free loopback port with a temporary data directory and a
bench config (many demo accounts, per-account rate and open-order limits out of the way;
admission as shipped but for the ramp after a start, turned off), and drives it from
separate load processes (`--workers`, default 1).

Method:
- **Open loop.** Request `i` of a step is planned at `t0 + i / rate`, whatever the answers
  so far; its latency runs from that planned time to its answer, so a stall counts against
  every request planned behind it (no coordinated omission). HTTP requests go out on a pool
  of keep-alive connections, one request in flight per connection; a request planned while
  every connection is busy waits in the client's queue, and that wait is in its latency.
  WebSocket ops go out on logged-in connections at once (pipelined; the server runs the ops
  of a connection concurrently). At the end of a step, requests still in the client's queue
  are dropped and counted (`unsent`); those in flight are awaited.
- **Steps.** Each offered rate runs a warm-up (unmeasured) then a measured window. A short
  closed-loop probe first estimates the capacity; offered rates are fractions of it
  (`LADDER`), stepping up until two steps in a row are overloaded: fewer than 90% of the offered
  requests answered with success, p99 over `P99_MS_OVERLOADED`, or more than 1% refused or never
  sent (the client's queue of requests waiting for a connection kept growing).
  A step's achieved rate is the successful answers that arrived within its measured window,
  per second, whichever request they answer: what the server put out. (Counting only the
  answers to the requests planned in the window would understate an overloaded step: the
  server spends the window's start on the warm-up's backlog, and the window's last requests
  are never sent.) The maximum is the best achieved rate of any step.
- **Near capacity, halving the gap.** Ladder steps near capacity are 13-15% apart, and a step
  far past capacity puts out less than the server's capacity when refusing costs the server
  work (a WebSocket op refused at its connection's limit is read and answered; an HTTP
  request the client never sent costs the server nothing). So the ladder alone would report
  a maximum up to a step below capacity, further below it for WebSocket than for HTTP. Once the
  ladder has stopped, `REFINE_STEPS` more steps each run at the middle between the highest
  offered rate that held and the lowest overloaded one above it, whichever that step turns
  out to be, for all three (the trivial endpoint, REST, WebSocket) alike.
- **Orders** are limits on BTC-USDT from random accounts, alternating buy and sell, buys
  at 20,000.0-29,000.0 and sells at 31,000.0-40,000.0 (tick 0.1), so they rest and never
  trade: the book grows by every order within a step. Before each order step (and probe)
  the bench cancels every resting order (the operator's kill switch, unmeasured), so every
  step starts from an empty book, whatever ran before it: the steps of REST and WebSocket
  meet the same book, and no run reaches the engine's limit of live orders
  (`ORDERS_LIVE_MAX`, 4,194,304). Each has its own clOrdId (a repeated one would be
  answered as a retry), and success means `sCode` "0" with an `ordId`.
- **Latency** percentiles from HdrHistograms (3 significant digits, microseconds) of the
  successful answers of the measured window. Refusals (HTTP 429 / 50011) are counted apart
  from other errors.
- **Where the CPU goes.** Per step, the server's event-loop thread, its other threads (the
  sequencer, the journal), the load processes and the whole machine (busy, and stolen by the
  hypervisor), from /proc and getrusage. Client and server share the machine's cores.
- **The disk's share.** For each order step, the journal's own group commits of the measured
  window (`GET /operator/v1/journal`): how many, and the p50 and p99 of their write-and-sync
  times.
- **The server's own stalls.** For each step, how late the server's event loop ran its timer
  ticks (one every 20 ms) over the measured window (`GET /operator/v1/loop`): p99 and max. A
  latency tail that the loop's ticks do not show came from elsewhere (the client, the machine).
- **Second by second.** Each step also gives the longest latency of the requests planned in
  each measured second, the journal's longest sync and the loop's latest tick of each second
  (`latency_ms_max_by_s`, `journal_syncs.sync_us_max_by_s`, `loop_late.late_ms_max_by_s`,
  oldest first; the server's windows end when it is asked, just after the step's), so that a
  tail can be laid beside what the disk and the loop did at the time; `measured_from_unix_s`
  places the step's measured window on the wall clock.

Results go to `bench/results/gateway.json` and a summary to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hmac
import itertools
import json
import math
import multiprocessing
import os
import pathlib
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any, cast

import aiohttp
import httptools
import numpy as np
import orjson
import uvloop
from hdrh.histogram import HdrHistogram

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
SYMBOL = "BTC-USDT"
ORDER_PATH = "/api/v5/trade/order"
TIME_PATH = "/api/v5/public/time"
WS_LOGIN_PREHASH = "GET/users/self/verify"
ACCOUNTS = 64
HTTP_CONNECTIONS = 64  # per load process; one request in flight on each
WS_CONNECTIONS = 16  # per load process; one account each
WS_PROBE_ORDERS = 64  # orders in flight per connection during the closed-loop probe
WS_BATCH_ORDERS = 20  # OKX's most per batch-orders
BUY_TICKS = (200_000, 290_000)  # 20,000.0-29,000.0
SELL_TICKS = (310_000, 400_000)  # 31,000.0-40,000.0: no buy ever reaches a sell
SIZE_LOTS = (1, 20)  # 0.00001-0.0002 BTC
READY_TIMEOUT_S = 300  # first start: scrypt for every demo key
DRAIN_TIMEOUT_S = 6.0  # longer than the server's reply_timeout_ms (5 s): every sent request gets its answer
STOP_TIMEOUT_S = 60
OPERATOR_TIMEOUT_S = 30  # the kill switch cancels up to a step's orders of one account in one command
LATENCY_US_MAX = 600_000_000
DISPATCH_SLEEP_S_MIN = 0.001
STEP_START_DELAY_S = 1.0  # the load processes open their connections (and log in) before this
SUSTAINED_FRACTION = 0.9
NOT_SERVED_FRACTION_MAX = 0.01  # refused, or never sent (the client's queue grew), or no answer
P99_MS_OVERLOADED = 1000  # p99 "explodes": four times the server's own admission.queue_delay_ms_max
LADDER = (0.5, 0.7, 0.85, 1.0, 1.15, 1.3)
QUICK_LADDER = (0.6, 0.9, 1.2)
LADDER_EXTEND = 1.2  # past the ladder, while steps still hold
STEPS_MAX = 9
OVERLOADED_STEPS_TO_STOP = 2  # in a row: one noisy step (another process took the core) does not end the search
REFINE_STEPS = 2  # after the ladder: the gap between the highest rate that held and the overloaded one above it, halved
TARGET_ORDERS_VS_TRIVIAL = 0.70
TARGET_REST_P99_MS = 20
TARGET_WS_VS_REST = 3.0


@dataclass(frozen=True)
class Timing:
    probe_s: float
    warmup_s: float
    measure_s: float
    half_s: float
    ladder: tuple[float, ...]
    refine_steps: int


FULL = Timing(probe_s=3.0, warmup_s=1.0, measure_s=8.0, half_s=30.0, ladder=LADDER, refine_steps=REFINE_STEPS)
QUICK = Timing(probe_s=1.0, warmup_s=0.5, measure_s=2.0, half_s=5.0, ladder=QUICK_LADDER, refine_steps=1)


# ---- the server ------------------------------------------------------------------------------


def bench_config(default_text: str, accounts: int) -> str:
    """The shipped config with many demo accounts, deep pockets, and the per-account rate and
    open-order limits out of the way (the book grows by every order of a step). Admission stays as shipped
    but for the ramp after a start (`admission.ramp_orders_per_s`): the bench measures the steady
    state from its first step, which the shipped ramp would hold back for 30 s."""
    changes = [
        (r"^accounts = \d+", f"accounts = {accounts}"),
        (r"^funds = \{.*\}$", 'funds = { USDT = "100000000", BTC = "1000", ETH = "200", SOL = "5000" }'),
        (r"^open_orders_per_account_max = \d+", "open_orders_per_account_max = 10_000_000"),
        (r'^orders_per_second_per_account = "\d+"', 'orders_per_second_per_account = "1000000"'),
        (r"^orders_burst_per_account = \d+", "orders_burst_per_account = 1_000_000"),
        (r"^ramp_orders_per_s = .*$", "ramp_orders_per_s = []"),
    ]
    text = default_text
    for pattern, replacement in changes:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"the default config no longer has one line matching {pattern!r}"
    return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`python -m pyexchange serve` in its own process, and what /proc says about it."""

    def __init__(self, workdir: pathlib.Path, accounts: int) -> None:
        from pyexchange import config as config_module

        self.data_dir = workdir / "data"
        config_path = workdir / "bench_config.toml"
        default_text = (ROOT / "pyexchange" / "default_config.toml").read_text()
        config_path.write_text(bench_config(default_text, accounts))
        loaded = config_module.load(config_path)
        assert loaded.demo_accounts == accounts and loaded.risk.open_orders_per_account_max == 10_000_000
        self.config = loaded
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", "pyexchange", "serve", "--data-dir", str(self.data_dir),
                   "--config", str(config_path), "--host", HOST, "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def wait_ready(self) -> float:
        start = time.monotonic()
        while time.monotonic() - start < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: see {self.log_path}")
            url = f"http://{HOST}:{self.port}{TIME_PATH}"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - start
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready in {READY_TIMEOUT_S} s: see {self.log_path}")

    def credentials(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads((self.data_dir / "demo-credentials.json").read_text())
        return rows

    def memory_kb(self) -> dict[str, int]:
        fields = {}
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "Threads"):
                fields[name] = int(value.split()[0])
        return fields

    def cpu_ticks(self) -> dict[str, int]:
        """CPU ticks (user + system) of the event-loop thread (`loop`) and of all the others."""
        ticks = {"loop": 0, "others": 0}
        for task in pathlib.Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                fields = task.joinpath("stat").read_text().rpartition(")")[2].split()
                used = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
                ticks["loop" if task.name == str(self.pid) else "others"] += used
        return ticks

    def journal_window(self, seconds: int) -> dict[str, Any]:
        """The journal's group commits of the last `seconds`: how many, and the percentiles of
        their write-and-sync times (`GET /operator/v1/journal`)."""
        window: dict[str, Any] = self._operator(f"/operator/v1/journal?seconds={seconds}")["window"]
        return window

    def loop_window(self, seconds: int) -> dict[str, Any]:
        """How late the server's event loop ran its timer ticks over the last `seconds`
        (`GET /operator/v1/loop`): a stall of the server's own thread is a late tick."""
        return self._operator(f"/operator/v1/loop?seconds={seconds}")

    def clear_book(self, accounts: list[dict[str, Any]]) -> int:
        """Cancels every resting order of these accounts (the operator's kill switch, blocking
        then unblocking each): every order step starts from an empty book. Returns how many."""
        canceled = 0
        for account in accounts:
            for action in ("block", "unblock"):
                body = {"account": int(account["account"]), "action": action}
                answer = self._operator("/operator/v1/kill-switch", body)
                canceled += int(answer["canceled"])
        return canceled

    def _operator(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        token = (self.data_dir / "operator-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{HOST}:{self.port}{path}", data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=OPERATOR_TIMEOUT_S) as answer:
            result: dict[str, Any] = json.loads(answer.read())["data"][0]
            return result

    def snapshots(self) -> list[str]:
        return sorted(str(p.relative_to(self.data_dir)) for p in self.data_dir.rglob("*") if "snap" in p.name)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def machine_ticks() -> tuple[int, int, int]:
    """(busy, total, steal) ticks of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total, values[7]


# ---- signing ---------------------------------------------------------------------------------


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signature(secret: bytes, prehash: bytes) -> bytes:
    return base64.b64encode(hmac.digest(secret, prehash, "sha256"))


def signed_get(port: int, account: dict[str, Any], path: str) -> dict[str, Any]:
    ts = iso_now()
    sign = signature(account["secretKey"].encode(), f"{ts}GET{path}".encode()).decode()
    headers = {"OK-ACCESS-KEY": account["apiKey"], "OK-ACCESS-PASSPHRASE": account["passphrase"],
               "OK-ACCESS-TIMESTAMP": ts, "OK-ACCESS-SIGN": sign}  # fmt: skip
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        body: dict[str, Any] = json.loads(answer.read())
        return body


# ---- the load side: runs in the load processes ------------------------------------------------


@dataclass
class LoadContext:
    """What a load process knows: the server, the accounts, its place among the load processes."""

    port: int
    accounts: list[dict[str, Any]]
    index: int
    workers: int
    tag: str
    orders: int = 0  # orders this process built (part of each clOrdId)

    def order_args(self, i: int) -> dict[str, str]:
        self.orders += 1
        side = "buy" if i % 2 == 0 else "sell"
        low, high = BUY_TICKS if side == "buy" else SELL_TICKS
        ticks = random.randint(low, high)
        lots = random.randint(*SIZE_LOTS)
        return {"instId": SYMBOL, "tdMode": "cash", "side": side, "ordType": "limit",
                "px": f"{ticks // 10}.{ticks % 10}", "sz": f"{lots / 100_000:.5f}",
                "clOrdId": f"{self.tag}w{self.index}n{self.orders}"}  # fmt: skip


class StepRecord:
    """Outcomes and latencies of one step's measured requests, and the successful answers that
    arrived within the measured window, whichever request they answer (the step's throughput)."""

    def __init__(self, t0_ns: int, period_ns: float, measured_from: int, measure_ns: int, measure_s: float) -> None:
        self.t0_ns, self.period_ns, self.measured_from = t0_ns, period_ns, measured_from
        self.measure_ns, self.measure_s = measure_ns, measure_s
        self.measure_end_ns = measure_ns + int(measure_s * 1e9)
        self.latencies_us = array("q")
        self.weights = array("q")
        self.max_us_by_s = array("q")  # the longest latency of the requests started in each measured second
        self.outcomes: Counter[str] = Counter()
        self.ok = 0
        self.ok_all = 0  # warm-up included: what the server now holds
        self.ok_answered_in_window = 0

    def planned_ns(self, i: int) -> int:
        return self.t0_ns + int(i * self.period_ns)

    def answer(self, i: int, codes: list[str], start_ns: int, now_ns: int) -> None:
        """The answer to request `i`: one code per order; its latency runs from `start_ns` (the
        planned time in open loop, the send time in closed loop) to `now_ns`."""
        ok = codes.count("0")
        if self.measure_ns <= now_ns < self.measure_end_ns:
            self.ok_answered_in_window += ok
        self.ok_all += ok
        if i < self.measured_from:
            return
        for code in codes:  # (not Counter.update, whose check for a mapping costs every answer an ABC's isinstance)
            self.outcomes[code] += 1
        if ok:
            self.ok += ok
            latency_us = (now_ns - start_ns) // 1000
            self.latencies_us.append(latency_us)
            self.weights.append(ok)
            second = max(0, (start_ns - self.measure_ns) // 1_000_000_000)
            if second >= len(self.max_us_by_s):
                self.max_us_by_s.extend([0] * (second + 1 - len(self.max_us_by_s)))
            self.max_us_by_s[second] = max(self.max_us_by_s[second], latency_us)

    def lost(self, i: int, code: str, orders: int = 1) -> None:
        if i >= self.measured_from:
            self.outcomes[code] += orders

    def result(self, cpu_s: float) -> dict[str, Any]:
        """`cpu_s`: this process's CPU time over the measured window."""
        return {"ok": self.ok, "ok_all": self.ok_all, "ok_answered_in_window": self.ok_answered_in_window,
                "outcomes": dict(self.outcomes), "cpu_s": cpu_s, "cpu_window_s": self.measure_s,
                "latencies_us": np.frombuffer(self.latencies_us, dtype=np.int64).copy(),
                "weights": np.frombuffer(self.weights, dtype=np.int64).copy(),
                "max_us_by_s": self.max_us_by_s.tolist()}  # fmt: skip


def classify_time(status: int, body: bytes) -> list[str]:
    return ["0" if status == 200 and body.startswith(b'{"code":"0"') else f"http{status}"]


def classify_orders(status: int, body: bytes) -> list[str]:
    """One code per order: "0" for an order placed (sCode 0 with an ordId), else HTTP status/code."""
    try:
        answer = orjson.loads(body)
        rows = answer.get("data") or []
        codes = [("0" if row.get("ordId") else "noOrdId") if row.get("sCode") == "0" else str(row.get("sCode"))
                 for row in rows]  # fmt: skip
        if not codes:
            codes = [str(answer.get("code"))]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        codes = ["badJson"]
    return codes if status == 200 else [f"http{status}/{c}" for c in codes]


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight; httptools parses."""

    def __init__(self, load: HttpLoad) -> None:
        self.load = load
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.request_index = -1
        self.sent_ns = 0
        self.body: list[bytes] = []
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def send(self, i: int) -> None:
        assert self.transport is not None and self.request_index < 0
        self.request_index = i
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.load.build(i))

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        i, self.request_index = self.request_index, -1
        body, self.body = b"".join(self.body), []
        self.load.answered(self, i, self.parser.get_status_code(), body, self.sent_ns)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self.load.lost(self)


class HttpLoad:
    """Requests planned at a fixed rate (or back to back: `closed_loop`) on a connection pool."""

    def __init__(self, ctx: LoadContext, spec: dict[str, Any], record: StepRecord) -> None:
        self.ctx, self.spec, self.record = ctx, spec, record
        self.orders = spec["kind"] == "order"
        self.classify = classify_orders if self.orders else classify_time
        self.host = f"Host: {HOST}:{ctx.port}\r\n".encode()
        # First in, first out: every connection stays in use, so none idles into the server's
        # keep-alive timeout (5 s) and is closed just as a request goes out on it.
        self.idle: deque[HttpConnection] = deque()
        self.pending: deque[int] = deque()
        self.in_flight: set[HttpConnection] = set()
        self.closed_loop = spec["mode"] == "closed"
        self.next_index = 0
        self.stopping = False
        self.secrets = [a["secretKey"].encode() for a in ctx.accounts]

    def build(self, i: int) -> bytes:
        if not self.orders:
            return b"GET " + TIME_PATH.encode() + b" HTTP/1.1\r\n" + self.host + b"\r\n"
        who = random.randrange(len(self.ctx.accounts))
        account = self.ctx.accounts[who]
        body = orjson.dumps(self.ctx.order_args(i))
        ts = iso_now()
        sign = signature(self.secrets[who], ts.encode() + b"POST" + ORDER_PATH.encode() + body)
        head = (f"POST {ORDER_PATH} HTTP/1.1\r\nHost: {HOST}:{self.ctx.port}\r\nContent-Type: application/json\r\n"
                f"OK-ACCESS-KEY: {account['apiKey']}\r\nOK-ACCESS-PASSPHRASE: {account['passphrase']}\r\n"
                f"OK-ACCESS-TIMESTAMP: {ts}\r\nOK-ACCESS-SIGN: {sign.decode()}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        return head.encode() + body

    async def open(self, connections: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(connections):
            _transport, conn = await loop.create_connection(lambda: HttpConnection(self), HOST, self.ctx.port)
            self.idle.append(conn)

    def submit(self, i: int) -> None:
        if self.idle:
            conn = self.idle.popleft()
            self.in_flight.add(conn)
            conn.send(i)
        else:
            self.pending.append(i)

    def answered(self, conn: HttpConnection, i: int, status: int, body: bytes, sent_ns: int) -> None:
        start_ns = sent_ns if self.closed_loop else self.record.planned_ns(i)
        self.record.answer(i, self.classify(status, body), start_ns, time.perf_counter_ns())
        self.in_flight.discard(conn)
        if self.stopping:
            self.idle.append(conn)
        elif self.closed_loop:
            self.next_index += 1
            self.in_flight.add(conn)
            conn.send(self.next_index)
        elif self.pending:
            self.in_flight.add(conn)
            conn.send(self.pending.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: HttpConnection) -> None:
        if conn in self.in_flight:
            self.in_flight.discard(conn)
            self.record.lost(conn.request_index, "connectionLost")
        if conn in self.idle:
            self.idle.remove(conn)

    async def drain(self) -> None:
        """Drops what never left the client's queue (counted), awaits what is in flight."""
        self.stopping = True
        while self.pending:
            self.record.lost(self.pending.popleft(), "unsent")
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.in_flight):
            self.record.lost(conn.request_index, "timeout")
        for conn in [*self.idle, *self.in_flight]:
            if conn.transport is not None:
                conn.transport.close()


async def dispatch(record: StepRecord, ctx: LoadContext, n_total: int, submit: Callable[[int], Any]) -> None:
    """Submits this process's share of requests 0..n_total-1 (every `workers`-th) at their planned times."""
    i = ctx.index
    while i < n_total:
        now_ns = time.perf_counter_ns()
        while i < n_total and record.planned_ns(i) <= now_ns:
            result = submit(i)
            if asyncio.iscoroutine(result):
                await result
            i += ctx.workers
        if i < n_total:
            await asyncio.sleep(max(DISPATCH_SLEEP_S_MIN, (record.planned_ns(i) - time.perf_counter_ns()) / 1e9))


def step_clock(spec: dict[str, Any]) -> tuple[int, int, int, int]:
    """(t0 in perf_counter ns, requests in the step, first measured request, measured window start ns),
    all load processes sharing the wall-clock start `spec["start_at"]`."""
    t0_ns = time.perf_counter_ns() + int((spec["start_at"] - time.time()) * 1e9)
    rate = spec["rate"] / spec.get("orders_per_request", 1)
    n_warm = int(spec["warmup_s"] * rate)
    n_total = n_warm + int(spec["measure_s"] * rate)
    return t0_ns, n_total, n_warm, t0_ns + int(spec["warmup_s"] * 1e9)


async def wait_until(t_ns: int) -> None:
    await asyncio.sleep(max(0.0, (t_ns - time.perf_counter_ns()) / 1e9))


async def cpu_over(start_ns: int, seconds: float) -> float:
    """This process's CPU seconds over the window that starts at `start_ns` (perf_counter)."""
    await wait_until(start_ns)
    before = cpu_self_s()
    await asyncio.sleep(seconds)
    return cpu_self_s() - before


async def http_step(ctx: LoadContext, spec: dict[str, Any]) -> dict[str, Any]:
    t0_ns, n_total, n_warm, measure_ns = step_clock(spec)
    rate = spec["rate"]
    record = StepRecord(t0_ns, 1e9 / rate if rate else 0.0, n_warm, measure_ns, spec["measure_s"])
    load = HttpLoad(ctx, spec, record)
    await load.open(spec["connections"])
    cpu = asyncio.create_task(cpu_over(measure_ns, spec["measure_s"]))
    await wait_until(t0_ns)
    if load.closed_loop:
        record.measured_from = 0
        load.next_index = 10**12 * (ctx.index + 1)  # indices of their own; none is planned
        for _ in range(len(load.idle)):
            load.submit(load.next_index)
            load.next_index += 1
        await asyncio.sleep(spec["measure_s"])
    else:
        await dispatch(record, ctx, n_total, load.submit)
    cpu_s = await cpu
    await load.drain()
    return record.result(cpu_s)


class WsLoad:
    """Logged-in WebSocket connections; each op answered by its id."""

    def __init__(self, ctx: LoadContext, spec: dict[str, Any], record: StepRecord) -> None:
        self.ctx, self.spec, self.record = ctx, spec, record
        self.per_op = spec.get("orders_per_request", 1)
        self.op = "batch-orders" if self.per_op > 1 else "order"
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.outstanding: dict[str, tuple[int, int]] = {}  # op id -> (request, planned or sent ns)
        self.readers: list[asyncio.Task[None]] = []
        self.window_free: list[asyncio.Event] = []
        self.unexpected = 0

    async def open(self, session: aiohttp.ClientSession, connections: int) -> None:
        url = f"ws://{HOST}:{self.ctx.port}/ws/v5/private"
        for c in range(connections):
            account = self.ctx.accounts[(self.ctx.index * connections + c) % len(self.ctx.accounts)]
            ws = await session.ws_connect(url, autoping=True, max_msg_size=1 << 22)
            ts = str(int(time.time()))
            sign = signature(account["secretKey"].encode(), (ts + WS_LOGIN_PREHASH).encode()).decode()
            login = {"apiKey": account["apiKey"], "passphrase": account["passphrase"], "timestamp": ts, "sign": sign}
            await ws.send_str(orjson.dumps({"op": "login", "args": [login]}).decode())
            answer = orjson.loads((await ws.receive()).data)
            if answer.get("event") != "login" or answer.get("code") != "0":
                raise RuntimeError(f"WebSocket login failed: {answer}")
            self.sockets.append(ws)
            self.readers.append(asyncio.create_task(self.read(ws)))

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            now_ns = time.perf_counter_ns()
            answer = orjson.loads(message.data)
            entry = self.outstanding.pop(answer.get("id", ""), None)
            if entry is None:
                self.unexpected += 1
                continue
            i, start_ns = entry
            if answer.get("event") == "error" or "data" not in answer:
                codes = [f"ws/{answer.get('code')}"] * self.per_op
            else:
                codes = [("0" if r.get("ordId") else "noOrdId") if r.get("sCode") == "0" else str(r.get("sCode"))
                         for r in answer["data"]]  # fmt: skip
            self.record.answer(i, codes, start_ns, now_ns)

    async def send(self, i: int, ws: aiohttp.ClientWebSocketResponse | None = None, start_ns: int = 0) -> None:
        """Sends op `i` (open loop: on the connection whose turn it is, latency from its planned time)."""
        op_id = f"w{self.ctx.index}i{i}"
        args = [self.ctx.order_args(i * self.per_op + k) for k in range(self.per_op)]
        if ws is None:
            ws = self.sockets[(i // self.ctx.workers) % len(self.sockets)]
            start_ns = self.record.planned_ns(i)
        self.outstanding[op_id] = (i, start_ns)
        await ws.send_str(orjson.dumps({"id": op_id, "op": self.op, "args": args}).decode())

    async def drain(self) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for i, _start_ns in self.outstanding.values():
            self.record.lost(i, "timeout", self.per_op)
        for ws in self.sockets:
            await ws.close()
        for reader in self.readers:
            reader.cancel()
        if self.unexpected:
            self.record.outcomes["unexpectedMessage"] += self.unexpected


async def ws_closed_loop(load: WsLoad, seconds: float) -> None:
    """Each connection keeps `WS_PROBE_ORDERS` orders in flight for `seconds`."""
    deadline = time.monotonic() + seconds
    counter = iter(range(10**12 * (load.ctx.index + 1), 10**13 * (load.ctx.index + 2)))

    async def keep_full(ws: aiohttp.ClientWebSocketResponse) -> None:
        mine: set[str] = set()
        while time.monotonic() < deadline:
            mine &= load.outstanding.keys()
            while len(mine) < max(1, WS_PROBE_ORDERS // load.per_op):
                i = next(counter)
                mine.add(f"w{load.ctx.index}i{i}")
                await load.send(i, ws, time.perf_counter_ns())
            await asyncio.sleep(0.001)

    await asyncio.gather(*(keep_full(ws) for ws in load.sockets))


async def ws_step(ctx: LoadContext, spec: dict[str, Any]) -> dict[str, Any]:
    t0_ns, n_total, n_warm, measure_ns = step_clock(spec)
    per_op = spec.get("orders_per_request", 1)
    record = StepRecord(
        t0_ns, 1e9 * per_op / spec["rate"] if spec["rate"] else 0.0, n_warm, measure_ns, spec["measure_s"]
    )
    async with aiohttp.ClientSession() as session:
        load = WsLoad(ctx, spec, record)
        await load.open(session, spec["connections"])
        cpu = asyncio.create_task(cpu_over(measure_ns, spec["measure_s"]))
        await wait_until(t0_ns)
        if spec["mode"] == "closed":
            record.measured_from = 0
            await ws_closed_loop(load, spec["measure_s"])
        else:
            await dispatch(record, ctx, n_total, load.send)
        cpu_s = await cpu
        await load.drain()
    return record.result(cpu_s)


def cpu_self_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_process(conn: Connection, port: int, accounts: list[dict[str, Any]], index: int, workers: int,
                 tag: str) -> None:  # fmt: skip
    """A load process: runs each step it is sent, answers with its record, until it is sent None."""
    ctx = LoadContext(port, accounts, index, workers, tag)
    random.seed(index)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        while (spec := conn.recv()) is not None:
            step = ws_step if spec["kind"].startswith("ws") else http_step
            try:
                conn.send(runner.run(step(ctx, spec)))
            except Exception:
                conn.send({"failed": traceback.format_exc()})


# ---- the orchestrator -------------------------------------------------------------------------


class LoadProcesses:
    """The load processes, started once; each step runs in all of them at once."""

    def __init__(self, server: Server, accounts: list[dict[str, Any]], workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        tag = f"b{int(time.time()) % 100_000}"
        self.server = server
        self.accounts = accounts
        self.pipes: list[Connection] = []
        self.procs = []
        for index in range(workers):
            mine, theirs = context.Pipe()
            proc = context.Process(target=load_process, args=(theirs, server.port, accounts, index, workers, tag),
                                   name=f"bench-load-{index}", daemon=True)  # fmt: skip
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """One step in every load process; the server's and the machine's CPU over its measured
        window. An order step starts from an empty book."""
        canceled = self.server.clear_book(self.accounts) if spec["kind"] != "time" else 0
        spec = {**spec, "start_at": time.time() + STEP_START_DELAY_S}
        for pipe in self.pipes:
            pipe.send(spec)
        time.sleep(max(0.0, spec["start_at"] + spec["warmup_s"] - time.time()))
        server0, machine0, wall0 = self.server.cpu_ticks(), machine_ticks(), time.monotonic()
        time.sleep(spec["measure_s"])
        server1, machine1, wall_s = self.server.cpu_ticks(), machine_ticks(), time.monotonic() - wall0
        journal = self.server.journal_window(math.ceil(spec["measure_s"])) if spec["kind"] != "time" else None
        loop_late = self.server.loop_window(math.ceil(spec["measure_s"]))
        parts = [pipe.recv() for pipe in self.pipes]
        for part in parts:
            if "failed" in part:
                raise RuntimeError(f"a load process failed:\n{part['failed']}")
        step = summarize(spec, parts, cpu_use(server0, server1, machine0, machine1, wall_s, parts))
        step["journal_syncs"] = journal
        step["loop_late"] = loop_late
        step["canceled_before"] = canceled
        step["measured_from_unix_s"] = round(spec["start_at"] + spec["warmup_s"], 3)
        return step

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def cpu_use(loop0: dict[str, int], loop1: dict[str, int], machine0: tuple[int, int, int],
            machine1: tuple[int, int, int], wall_s: float,
            parts: list[dict[str, Any]]) -> dict[str, float]:  # fmt: skip
    """CPU used over a step, in percent of one core (the machine's in percent of all of them)."""
    hz = os.sysconf("SC_CLK_TCK")
    busy, total, steal = (b - a for a, b in zip(machine0, machine1, strict=True))
    return {
        "window_s": wall_s,
        "server_loop_cpu_s": (loop1["loop"] - loop0["loop"]) / hz,
        "server_other_threads_cpu_s": (loop1["others"] - loop0["others"]) / hz,
        "server_loop_cpu_pct": 100 * (loop1["loop"] - loop0["loop"]) / hz / wall_s,
        "server_other_threads_cpu_pct": 100 * (loop1["others"] - loop0["others"]) / hz / wall_s,
        "load_cpu_pct": 100 * sum(p["cpu_s"] / p["cpu_window_s"] for p in parts),
        "machine_busy_pct": 100 * busy / total if total else 0.0,
        "machine_steal_pct": 100 * steal / total if total else 0.0,
    }


def percentiles(latencies_us: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    if not len(latencies_us):
        return {k: float("nan") for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")}
    histogram = HdrHistogram(1, LATENCY_US_MAX, 3)
    values, where = np.unique(np.clip(latencies_us, 1, LATENCY_US_MAX), return_inverse=True)
    counts = np.bincount(where, weights=weights).astype(np.int64)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, count)
    at = histogram.get_value_at_percentile
    return {"p50_ms": at(50) / 1000, "p90_ms": at(90) / 1000, "p99_ms": at(99) / 1000, "p999_ms": at(99.9) / 1000,
            "max_ms": histogram.get_max_value() / 1000}  # fmt: skip


def summarize(spec: dict[str, Any], parts: list[dict[str, Any]], cpu: dict[str, float]) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    for part in parts:
        outcomes.update(part["outcomes"])
    ok = sum(p["ok"] for p in parts)
    latencies = np.concatenate([p["latencies_us"] for p in parts])
    weights = np.concatenate([p["weights"] for p in parts])
    answered = sum(outcomes.values())
    refused = sum(n for code, n in outcomes.items() if "50011" in code or code.startswith("http429"))
    lost = sum(outcomes[code] for code in ("unsent", "timeout", "connectionLost"))
    # What the server put out in the measured window, not the answers to the requests planned in it
    ok_answered_in_window = sum(p["ok_answered_in_window"] for p in parts)
    achieved = ok_answered_in_window / spec["measure_s"]
    # CPU per successful answer over the measured window: a figure other processes' load disturbs less
    # than a rate does (the server's CPU is what it spent, not what it was given).
    ok_over_cpu_window = max(1.0, achieved * cpu["window_s"])  # the CPU's window is the parent's wall clock
    cpu["server_loop_cpu_us_per_ok"] = 1e6 * cpu["server_loop_cpu_s"] / ok_over_cpu_window
    cpu["server_other_cpu_us_per_ok"] = 1e6 * cpu["server_other_threads_cpu_s"] / ok_over_cpu_window
    max_us_by_s = itertools.zip_longest(*(p["max_us_by_s"] for p in parts), fillvalue=0)
    step = {"kind": spec["kind"], "mode": spec["mode"], "offered_per_s": spec["rate"], "achieved_per_s": achieved,
            "ok": ok, "ok_answered_in_window": ok_answered_in_window, "ok_with_warmup": sum(p["ok_all"] for p in parts),
            "refused": refused, "lost": lost,
            "errors": {c: n for c, n in outcomes.items() if c != "0"},
            "answered_or_lost": answered, **percentiles(latencies, weights), **cpu,
            "latency_ms_max_by_s": [round(max(us) / 1000, 1) for us in max_us_by_s]}  # fmt: skip
    step["overloaded"] = spec["mode"] == "open" and (
        achieved < SUSTAINED_FRACTION * spec["rate"]
        or refused + lost > NOT_SERVED_FRACTION_MAX * max(answered, 1)
        or not step["p99_ms"] <= P99_MS_OVERLOADED
    )
    return step


def round_rate(rate: float, significant_digits: int = 2) -> int:
    digits = max(0, len(str(int(rate))) - significant_digits)
    return max(10, int(round(rate, -digits)))


def refining_rate(steps: list[dict[str, Any]]) -> int | None:
    """The offered rate halfway between the highest one that held and the lowest overloaded one
    above it; None if there is no such pair or no rate between them."""
    low = max((s["offered_per_s"] for s in steps if not s["overloaded"]), default=None)
    if low is None:
        return None
    high = min((s["offered_per_s"] for s in steps if s["overloaded"] and s["offered_per_s"] > low), default=None)
    if high is None:
        return None
    rate = round_rate((low + high) / 2, significant_digits=3)
    return rate if low < rate < high else None


def find_max(load: LoadProcesses, kind: str, timing: Timing, connections: int,
             orders_per_request: int = 1) -> dict[str, Any]:  # fmt: skip
    """A closed-loop probe for the capacity, offered rates stepping up to overload, then steps halving
    the gap between the highest rate that held and the overloaded one above it."""
    base = {"kind": kind, "connections": connections, "orders_per_request": orders_per_request,
            "warmup_s": timing.warmup_s, "measure_s": timing.measure_s}  # fmt: skip
    probe = load.run({**base, "mode": "closed", "rate": 0, "warmup_s": 0, "measure_s": timing.probe_s})
    print_step(probe)
    capacity = probe["achieved_per_s"]
    rates = [round_rate(f * capacity) for f in timing.ladder]
    steps: list[dict[str, Any]] = []

    def run_step(rate: int) -> None:
        step = load.run({**base, "mode": "open", "rate": rate})
        print_step(step)
        steps.append(step)

    while len(steps) < STEPS_MAX:
        ladder_done = len(steps) >= len(rates)
        run_step(round_rate(steps[-1]["offered_per_s"] * LADDER_EXTEND) if ladder_done else rates[len(steps)])
        if len(steps) >= OVERLOADED_STEPS_TO_STOP and all(s["overloaded"] for s in steps[-OVERLOADED_STEPS_TO_STOP:]):
            break
    for _ in range(timing.refine_steps):
        if (halfway := refining_rate(steps)) is None:
            break
        run_step(halfway)
    best = max(steps, key=lambda s: s["achieved_per_s"])
    sustained = [s["offered_per_s"] for s in steps if not s["overloaded"]]
    return {"probe": probe, "steps": steps, "max_per_s": best["achieved_per_s"],
            "max_sustained_offered_per_s": max(sustained, default=0)}  # fmt: skip


def print_step(step: dict[str, Any]) -> None:
    offered = "closed loop" if step["mode"] == "closed" else f"{step['offered_per_s']:>9,.0f}/s"
    flag = " OVERLOADED" if step["overloaded"] else ""
    errors = ", ".join(f"{c}: {n}" for c, n in sorted(step["errors"].items())) or "-"
    print(f"  {step['kind']:<9} {offered:>12} -> {step['achieved_per_s']:>9,.0f}/s  p50 {step['p50_ms']:7.2f}"
          f"  p99 {step['p99_ms']:8.2f}  p99.9 {step['p999_ms']:8.2f} ms  refused {step['refused']:>6}"
          f"  server cpu: loop {step['server_loop_cpu_pct']:3.0f}% ({step['server_loop_cpu_us_per_ok']:4.0f} us/ok)"
          f" others {step['server_other_threads_cpu_pct']:3.0f}% ({step['server_other_cpu_us_per_ok']:4.0f} us/ok)"
          f" load {step['load_cpu_pct']:3.0f}% machine {step['machine_busy_pct']:3.0f}% steal "
          f"{step['machine_steal_pct']:2.0f}%{_syncs(step['journal_syncs'])}{_late(step['loop_late'])}"
          f"  errors {errors}{flag}", flush=True)  # fmt: skip


def _syncs(journal: dict[str, Any] | None) -> str:
    if not journal or not journal["syncs"]:
        return ""
    return (f"  journal {journal['syncs']:,} syncs, p50 {journal['sync_us_p50'] / 1000:.2f} "
            f"p99 {journal['sync_us_p99'] / 1000:.2f} ms")  # fmt: skip


def _late(loop: dict[str, Any]) -> str:
    return f"  loop ticks late p99 {loop['late_ms_p99']:.1f} max {loop['late_ms_max']:.1f} ms" if loop["ticks"] else ""


def warm_keys(server: Server, accounts: list[dict[str, Any]]) -> float:
    """One signed request per key before timing: the server checks a passphrase with scrypt the
    first time it sees a key (on its event loop), then remembers it."""
    start = time.monotonic()
    for account in accounts:
        answer = signed_get(server.port, account, "/api/v5/account/balance")
        assert answer["code"] == "0", answer
    return time.monotonic() - start


def check_sign_matches_server() -> None:
    from pyexchange.gateway.auth import sign

    secret, prehash = "0123ABCD", "2020-12-08T09:08:57.715ZPOST/api/v5/trade/order{}"
    assert signature(secret.encode(), prehash.encode()).decode() == sign(secret, prehash)


def run(timing: Timing, workers: int) -> dict[str, Any]:
    check_sign_matches_server()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pyexchange-bench-gateway-"))
    server = Server(workdir, ACCOUNTS)
    report: dict[str, Any] = {"machine": machine_info(), "workers": workers,
                              "timing": dataclasses.asdict(timing), "accounts": ACCOUNTS,
                              "admission": dataclasses.asdict(server.config.admission)}  # fmt: skip
    load: LoadProcesses | None = None
    try:
        report["ready_s"] = server.wait_ready()
        accounts = server.credentials()
        report["warm_keys_s"] = warm_keys(server, accounts)
        report["memory_kb_start"] = server.memory_kb()
        load = LoadProcesses(server, accounts, workers)
        report["phases"] = run_phases(load, server, timing)
        report["ratios"], report["targets"] = judge(report["phases"])
        report["orders_placed"] = orders_placed(report["phases"])
        report["book_orders_max"] = max(step["canceled_before"] for step in order_steps(report["phases"]))
    finally:
        if load is not None:
            with contextlib.suppress(Exception):
                load.close()
        with contextlib.suppress(Exception):
            report["memory_kb_end"] = server.memory_kb()
            report["snapshots"] = server.snapshots()
        report["server_exit_code"] = server.stop()
        report["server_log_tail"] = server.log_path.read_text(errors="replace").splitlines()[-40:]
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def run_phases(load: LoadProcesses, server: Server, timing: Timing) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    print(f"(1) trivial endpoint GET {TIME_PATH}", flush=True)
    phases["trivial"] = find_max(load, "time", timing, HTTP_CONNECTIONS)
    phases["trivial"]["memory_kb_after"] = server.memory_kb()
    print(f"(2) REST order placement POST {ORDER_PATH}", flush=True)
    phases["rest_orders"] = find_max(load, "order", timing, HTTP_CONNECTIONS)
    phases["rest_orders"]["memory_kb_after"] = server.memory_kb()
    half = round_rate(phases["rest_orders"]["max_per_s"] / 2)
    print(f"(3) REST order placement at half its maximum, {half:,}/s for {timing.half_s:.0f} s", flush=True)
    step = load.run({"kind": "order", "mode": "open", "rate": half, "connections": HTTP_CONNECTIONS,
                     "warmup_s": timing.warmup_s, "measure_s": timing.half_s})  # fmt: skip
    print_step(step)
    phases["rest_half"] = {"step": step, "memory_kb_after": server.memory_kb()}
    print("(4a) WebSocket order entry, op `order` (one order a message, pipelined)", flush=True)
    phases["ws_orders"] = find_max(load, "ws_order", timing, WS_CONNECTIONS)
    phases["ws_orders"]["memory_kb_after"] = server.memory_kb()
    print(f"(4b) WebSocket order entry, op `batch-orders` ({WS_BATCH_ORDERS} orders a message)", flush=True)
    phases["ws_batch"] = find_max(load, "ws_batch", timing, WS_CONNECTIONS, WS_BATCH_ORDERS)
    phases["ws_batch"]["memory_kb_after"] = server.memory_kb()
    return phases


def order_steps(phases: dict[str, Any]) -> list[dict[str, Any]]:
    steps = [phases["rest_half"]["step"]]
    for name in ("rest_orders", "ws_orders", "ws_batch"):
        steps += [phases[name]["probe"], *phases[name]["steps"]]
    return steps


def orders_placed(phases: dict[str, Any]) -> int:
    """Orders the server accepted over the run (warm-ups and probes included)."""
    return sum(int(step["ok_with_warmup"]) for step in order_steps(phases))


def judge(phases: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    trivial, rest = phases["trivial"]["max_per_s"], phases["rest_orders"]["max_per_s"]
    ws, ws_batch = phases["ws_orders"]["max_per_s"], phases["ws_batch"]["max_per_s"]
    half = phases["rest_half"]["step"]
    ratios = {"rest_orders_vs_trivial": rest / trivial, "ws_orders_vs_rest_orders": ws / rest,
              "ws_batch_orders_vs_rest_orders": ws_batch / rest}  # fmt: skip
    targets = [
        {"target": f"REST order placement >= {TARGET_ORDERS_VS_TRIVIAL:.0%} of the trivial endpoint's throughput",
         "measured": f"{ratios['rest_orders_vs_trivial']:.2f} ({rest:,.0f} / {trivial:,.0f} per s)",
         "met": ratios["rest_orders_vs_trivial"] >= TARGET_ORDERS_VS_TRIVIAL},
        {"target": f"REST p99 < {TARGET_REST_P99_MS} ms at half the maximum rate",
         "measured": f"p99 {half['p99_ms']:.1f} ms at {half['offered_per_s']:,}/s offered, "
                     f"{half['achieved_per_s']:,.0f}/s achieved;{_syncs(half['journal_syncs'])}"
                     f"{_late(half['loop_late'])}",
         "met": half["p99_ms"] < TARGET_REST_P99_MS and not half["overloaded"]},
        {"target": f"WebSocket order entry >= {TARGET_WS_VS_REST:.0f}x REST's throughput (op `order`)",
         "measured": f"{ratios['ws_orders_vs_rest_orders']:.2f}x ({ws:,.0f} / {rest:,.0f} per s)",
         "met": ratios["ws_orders_vs_rest_orders"] >= TARGET_WS_VS_REST},
        {"target": f"the same with `batch-orders` ({WS_BATCH_ORDERS} a message), for reference",
         "measured": f"{ratios['ws_batch_orders_vs_rest_orders']:.2f}x ({ws_batch:,.0f} / {rest:,.0f} per s)",
         "met": ratios["ws_batch_orders_vs_rest_orders"] >= TARGET_WS_VS_REST},
    ]  # fmt: skip
    return ratios, targets


def machine_info() -> dict[str, Any]:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_at_start": pathlib.Path("/proc/loadavg").read_text().split()[:3], "commit": head.stdout.strip(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


def print_summary(report: dict[str, Any]) -> None:
    phases = report["phases"]
    print("\nmaxima (best achieved rate of any step):")
    for name in ("trivial", "rest_orders", "ws_orders", "ws_batch"):
        phase = phases[name]
        print(f"  {name:<12} {phase['max_per_s']:>9,.0f}/s   (highest offered rate held: "
              f"{phase['max_sustained_offered_per_s']:,}/s)")  # fmt: skip
    print("\nratios: " + ", ".join(f"{k} {v:.2f}" for k, v in report["ratios"].items()))
    print("\ntargets:")
    for target in report["targets"]:
        print(f"  [{'met' if target['met'] else 'NOT met'}] {target['target']}: {target['measured']}")
    start, end = report["memory_kb_start"], report.get("memory_kb_end", {})
    print(f"\nserver RSS {start['VmRSS'] / 1024:,.0f} MiB before the load, {end.get('VmRSS', 0) / 1024:,.0f} MiB "
          f"after (peak {end.get('VmHWM', 0) / 1024:,.0f} MiB); "
          f"snapshots written: {len(report.get('snapshots', []))}")  # fmt: skip
    print(f"orders placed: {report['orders_placed']:,}; the largest book canceled between steps: "
          f"{report['book_orders_max']:,}")  # fmt: skip


def json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--json", type=pathlib.Path, default=RESULTS / "gateway.json", help="where the report goes")
    parser.add_argument("--workers", type=int, default=1, help="load processes (default 1)")
    args = parser.parse_args()
    started = time.monotonic()
    report = run(QUICK if args.quick else FULL, args.workers)
    report["run_s"] = time.monotonic() - started
    print_summary(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=json_default))
    print(f"\nwritten to {args.json} ({report['run_s']:.0f} s)")


if __name__ == "__main__":
    main()
