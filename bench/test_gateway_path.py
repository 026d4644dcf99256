"""pytest-benchmark of the gateway's own WebSocket order-entry path, in process: logged-in
connections (`websocket.WebSocketProtocol`, on counting transports) handle `order` messages
from the bytes of the frame to the bytes of the answer (the frame, JSON, checks, risk, the
sequencer thread, the engine, the views, the answer), against the engine's own decimal
call (`Engine.place`) placing the same orders in the same run: the ratio is what the gateway
costs an order over the engine's Python entry point. And REST order entry through the whole
application (`create_app`, called as uvicorn calls it: a task a request, signed `POST
/api/v5/trade/order`s) against the same application's trivial endpoint (`GET
/api/v5/public/time`), the ceiling the server benchmark holds REST orders to.

    pytest bench/test_gateway_path.py --benchmark-only --benchmark-group-by=group

No network, no uvicorn, no journal (an in-memory engine), so it is steadier than
`python -m bench.gateway` on a shared VM (compare minima: a round's mean moves with when the
sequencer thread gets the GIL back): the tool for changes to the gateway's Python, each
measured old against new. The garbage collector runs as in the server
(`keep_gc_pauses_short`). A round sends `ORDERS_PER_ROUND` orders at once over `SESSIONS`
sessions, as pipelining clients do (REST: as many requests at once), and ends when the last
is answered; orders rest (buys far below the sells), so the book grows by every order, as in
the server benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import uvloop

from bench.gateway import ROOT, bench_config
from pyexchange import Engine
from pyexchange.accounts import Credentials, KeyStore
from pyexchange.config import load
from pyexchange.gateway.app import Gateway as App
from pyexchange.gateway.app import create_app, keep_gc_pauses_short
from pyexchange.gateway.auth import Authenticator, sign
from pyexchange.gateway.exchange import Exchange
from pyexchange.gateway.websocket import OP_PING, OP_PONG, OP_TEXT, WebSocketProtocol
from pyexchange.gateway.ws import Hub
from pyexchange.serve import configure

ORDERS_PER_ROUND = 1_000
ROUNDS, WARMUP_ROUNDS = 20, 2
SESSIONS = 16  # as the server benchmark's connections; a session takes 256 ops in flight at most
ACCOUNT = 1
BUY_TICKS, SELL_TICKS = (200_000, 290_000), (310_000, 400_000)  # 20,000.0-29,000.0 and 31,000.0-40,000.0


@dataclasses.dataclass
class Gateway:
    runner: asyncio.Runner
    exchange: Exchange
    sockets: Sockets

    def round_trip(self, messages: list[str]) -> None:
        self.runner.run(self._round_trip(messages))

    async def _round_trip(self, messages: list[str]) -> None:
        sockets = self.sockets
        sockets.all_in, sockets.expected = asyncio.Event(), sockets.count + len(messages)
        sockets.send(messages)
        await asyncio.wait_for(sockets.all_in.wait(), 30)


def _exchange(tmp_path: Path) -> Exchange:
    """A zone's exchange on an in-memory engine with the bench config, its account funded."""
    config = load(_bench_config(tmp_path))
    engine = Engine()
    configure(engine, config)
    _fund(engine)
    return Exchange(config, tmp_path, engine)


class Sockets:
    """Logged-in private connections as the server has them (`WebSocketProtocol`, past the
    upgrade) on transports that count the answers written to them: the path from the bytes of
    a frame to the bytes of its answer. The client masks with zeros, so it costs nothing, and
    answers the server's pings as clients do (a run under valgrind outlasts a ping interval)."""

    def __init__(self, exchange: Exchange, connections: int) -> None:
        self.count, self.failed = 0, 0
        self.all_in: asyncio.Event | None = None
        self.expected = 0
        state, server_state = {"exchange": exchange, "hub": Hub(), "auth": None}, SimpleNamespace(connections=set())
        self.protocols = [WebSocketProtocol(None, server_state, state) for _ in range(connections)]
        for protocol in self.protocols:
            protocol.connection_made(_Transport(self, protocol))  # type: ignore[arg-type]
            protocol.data_received(UPGRADE)
            assert protocol.session is not None
            protocol.session.conn.key = SimpleNamespace(account=ACCOUNT)  # type: ignore[assignment]
        self.count, self.failed = 0, 0  # the handshakes' answers

    def send(self, texts: list[str]) -> None:
        """Each text as a frame a client sends, the connections taking turns."""
        for text, protocol in zip(texts, itertools.cycle(self.protocols)):
            protocol.data_received(_client_frame(OP_TEXT, text.encode()))

    def answered(self, data: bytes) -> None:
        self.count += 1
        if b'"code":"0"' not in data:
            self.failed += 1
        if self.count == self.expected and self.all_in is not None:
            self.all_in.set()


@dataclasses.dataclass
class _Transport:
    sockets: Sockets
    protocol: WebSocketProtocol

    def write(self, data: bytes) -> None:
        if data[0] & 0x0F == OP_PING:
            self.protocol.data_received(_client_frame(OP_PONG, b""))
        else:
            self.sockets.answered(data)

    def is_closing(self) -> bool:
        return False


def _client_frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    head = bytes((0x80 | opcode, 0x80 | length)) if length < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, length)
    return head + b"\0\0\0\0" + payload


async def _sockets(exchange: Exchange) -> Sockets:
    return Sockets(exchange, SESSIONS)  # the protocol is made on the loop, as uvicorn makes it


UPGRADE = (b"GET /ws/v5/private HTTP/1.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
           b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n")  # fmt: skip


@contextlib.contextmanager
def _running(exchange: Exchange) -> Iterator[asyncio.Runner]:
    """An event loop with the exchange started on it, and the server's garbage collector policy."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_start(exchange))
        gc_policy = runner.get_loop().create_task(keep_gc_pauses_short())
        try:
            yield runner
        finally:
            gc_policy.cancel()
            exchange.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    exchange = _exchange(tmp_path)
    with _running(exchange) as runner:
        sockets = runner.run(_sockets(exchange))
        yield Gateway(runner, exchange, sockets)
    assert sockets.failed == 0, f"{sockets.failed} answers were not a success"


def _bench_config(tmp_path: Path) -> Path:
    """The server benchmark's config: no admission ramp, no per-account rate or open-order limits."""
    path = tmp_path / "bench_config.toml"
    path.write_text(bench_config((ROOT / "pyexchange" / "default_config.toml").read_text(), accounts=1))
    return path


def _fund(engine: Engine) -> None:
    engine.deposit(ACCOUNT, "USDT", "1000000000000")
    engine.deposit(ACCOUNT, "BTC", "1000000000")


async def _start(exchange: Exchange) -> None:
    exchange.start(asyncio.get_running_loop(), Hub())


def _orders() -> Iterator[str]:
    for i in itertools.count():
        side, (low, high) = ("buy", BUY_TICKS) if i % 2 == 0 else ("sell", SELL_TICKS)
        ticks = low + (i * 7919) % (high - low)
        order = {"instId": "BTC-USDT", "tdMode": "cash", "side": side, "ordType": "limit",
                 "px": f"{ticks // 10}.{ticks % 10}", "sz": "0.0001", "clOrdId": f"b{i}"}  # fmt: skip
        yield json.dumps({"id": f"o{i}", "op": "order", "args": [order]})


@pytest.mark.benchmark(group="1,000 orders through the gateway")
def test_websocket_order(benchmark: Any, gateway: Gateway) -> None:
    orders = _orders()
    benchmark.pedantic(lambda: gateway.round_trip(list(itertools.islice(orders, ORDERS_PER_ROUND))),
                       rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)  # fmt: skip
    assert gateway.sockets.count == (ROUNDS + WARMUP_ROUNDS) * ORDERS_PER_ROUND


@pytest.mark.benchmark(group="1,000 orders through the gateway")
def test_engine_decimal_call(benchmark: Any, tmp_path: Path) -> None:
    config = load(_bench_config(tmp_path))
    engine = Engine()
    configure(engine, config)
    _fund(engine)
    orders = (json.loads(text)["args"][0] for text in _orders())

    def place_a_round() -> None:
        for order in itertools.islice(orders, ORDERS_PER_ROUND):
            [accepted] = engine.place(ACCOUNT, order["instId"], order["side"], order["ordType"], size=order["sz"],
                                      price=order["px"], client_order_id=order["clOrdId"])  # fmt: skip
            assert accepted.kind == "accepted", accepted

    benchmark.pedantic(place_a_round, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)


# ---- REST: the app's own work on an order, against its trivial endpoint ----------------------


@dataclasses.dataclass
class RestApp:
    """The whole application (`create_app`: admission, order entry, routing, signatures), called
    in process as uvicorn calls it, a task a request, without HTTP parsing or sockets."""

    runner: asyncio.Runner
    app: Any
    credentials: Credentials
    answers: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def round_trip(self, requests: list[tuple[dict[str, Any], bytes]]) -> None:
        """Calls the app with every request at once, then waits until each is answered."""
        self.runner.run(self._all(requests))

    async def _all(self, requests: list[tuple[dict[str, Any], bytes]]) -> None:
        await asyncio.wait_for(asyncio.gather(*(self.one(scope, body) for scope, body in requests)), 30)

    async def one(self, scope: dict[str, Any], body: bytes) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                self.answers.append(orjson.loads(message["body"]))

        await self.app(scope, receive, send)


@pytest.fixture
def rest_app(tmp_path: Path) -> Iterator[RestApp]:
    exchange = _exchange(tmp_path)
    app, credentials = signed_app(exchange, tmp_path)
    with _running(exchange) as runner:
        yield (rest := RestApp(runner, app, credentials))
    failed = failures(rest.answers)
    assert not failed, f"{len(failed)} answers were not a success, the first: {failed[0]}"


def signed_app(exchange: Exchange, data_dir: Path) -> tuple[App, Credentials]:
    """The application of `exchange` (`create_app`) and an API key of `ACCOUNT`, its passphrase
    checked once already (as a warm server has)."""
    keys = KeyStore(data_dir)
    credentials = keys.create(ACCOUNT)
    key = keys.get(credentials.api_key)
    assert key is not None and keys.passphrase_ok(key, credentials.passphrase)
    return create_app(exchange, Authenticator(keys, exchange.config.timestamp_window_s)), credentials


def failures(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers that are not a success (the envelope's code, or an order's sCode)."""
    return [a for a in answers if a["code"] != "0" or any(d.get("sCode", "0") != "0" for d in a["data"])]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}  # fmt: skip


def _signed_orders(credentials: Credentials) -> Iterator[tuple[dict[str, Any], bytes]]:
    path = "/api/v5/trade/order"
    for text in _orders():
        body = orjson.dumps(json.loads(text)["args"][0])
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        signature = sign(credentials.secret_key, timestamp + "POST" + path + body.decode())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"ok-access-key", credentials.api_key.encode()), (b"ok-access-sign", signature.encode()),
                   (b"ok-access-timestamp", timestamp.encode()),
                   (b"ok-access-passphrase", credentials.passphrase.encode())]  # fmt: skip
        yield _scope("POST", path, headers), body


@pytest.mark.benchmark(group="1,000 REST requests through the app")
def test_rest_order(benchmark: Any, rest_app: RestApp) -> None:
    orders = _signed_orders(rest_app.credentials)
    benchmark.pedantic(rest_app.round_trip, setup=lambda: ((list(itertools.islice(orders, ORDERS_PER_ROUND)),), {}),
                       rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)  # fmt: skip
    assert len(rest_app.answers) == (ROUNDS + WARMUP_ROUNDS) * ORDERS_PER_ROUND


@pytest.mark.benchmark(group="1,000 REST requests through the app")
def test_rest_trivial(benchmark: Any, rest_app: RestApp) -> None:
    request = (_scope("GET", "/api/v5/public/time", []), b"")
    benchmark.pedantic(rest_app.round_trip, args=([request] * ORDERS_PER_ROUND,), rounds=ROUNDS,
                       warmup_rounds=WARMUP_ROUNDS)  # fmt: skip
    assert len(rest_app.answers) == (ROUNDS + WARMUP_ROUNDS) * ORDERS_PER_ROUND
