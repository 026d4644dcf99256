"""pytest-benchmark of the gateway's own WebSocket order-entry path, in process: a logged-in
session (`ws.Session`) handles `order` messages from the text frame on (JSON, checks, risk,
the sequencer thread, the engine, the views, the answer), against the engine's own decimal
call (`Engine.place`) placing the same orders in the same run: the ratio is what the gateway
costs an order over the engine's Python entry point.

    pytest bench/test_gateway_path.py --benchmark-only --benchmark-group-by=group

No network, no uvicorn, no journal (an in-memory engine), so it is steadier than
`python -m bench.gateway` on a shared VM (compare minima: a round's mean moves with when the
sequencer thread gets the GIL back): the tool for changes to the gateway's Python, each
measured old against new. The garbage collector runs as in the server
(`keep_gc_pauses_short`). A round sends `ORDERS_PER_ROUND` orders at once over `SESSIONS`
sessions, as pipelining clients do, and ends when the last is answered; orders rest (buys far
below the sells), so the book grows by every order, as in the server benchmark.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from bench.gateway import ROOT, bench_config
from pyexchange import Engine
from pyexchange.config import load
from pyexchange.gateway.app import keep_gc_pauses_short
from pyexchange.gateway.exchange import Exchange
from pyexchange.gateway.ws import Hub, Session
from pyexchange.serve import configure

ORDERS_PER_ROUND = 1_000
ROUNDS, WARMUP_ROUNDS = 20, 2
SESSIONS = 16  # as the server benchmark's connections; a session takes 256 ops in flight at most
ACCOUNT = 1
BUY_TICKS, SELL_TICKS = (200_000, 290_000), (310_000, 400_000)  # 20,000.0-29,000.0 and 31,000.0-40,000.0


class Answers:
    """Logged-in private connections (all the sessions') that count what is sent to them."""

    def __init__(self) -> None:
        self.private, self.key, self.conn_id = True, SimpleNamespace(account=ACCOUNT), "bench"
        self.count, self.failed = 0, 0
        self.all_in: asyncio.Event | None = None
        self.expected = 0

    def send(self, message: dict[str, Any] | str) -> None:
        self.count += 1
        if isinstance(message, dict) and message.get("code") != "0":
            self.failed += 1

        if self.count == self.expected and self.all_in is not None:
            self.all_in.set()


@dataclasses.dataclass
class Gateway:
    runner: asyncio.Runner
    exchange: Exchange
    sessions: list[Session]
    answers: Answers

    def round_trip(self, messages: list[str]) -> None:
        """Hands every message to the session, then waits until each is answered."""
        self.runner.run(self._round_trip(messages))

    async def _round_trip(self, messages: list[str]) -> None:
        answers = self.answers
        answers.all_in, answers.expected = asyncio.Event(), answers.count + len(messages)
        for text, session in zip(messages, itertools.cycle(self.sessions)):
            await session.handle(text)
        await asyncio.wait_for(answers.all_in.wait(), 30)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    config = load(_bench_config(tmp_path))
    engine = Engine()
    configure(engine, config)
    _fund(engine)
    exchange = Exchange(config, tmp_path, engine)
    answers = Answers()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_start(exchange))
        gc_policy = runner.get_loop().create_task(keep_gc_pauses_short())
        sessions = [Session(exchange, Hub(), None, answers) for _ in range(SESSIONS)]  # type: ignore[arg-type]
        try:
            yield Gateway(runner, exchange, sessions, answers)
        finally:
            gc_policy.cancel()
            exchange.stop()
    assert answers.failed == 0, f"{answers.failed} answers were not a success"


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
    assert gateway.answers.count == (ROUNDS + WARMUP_ROUNDS) * ORDERS_PER_ROUND


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
