"""pytest-benchmark micro-benchmarks of one call on each way into the engine, against the
plain-Python ladder doing the same work in the same run (ratios, not absolute timings).

    pytest bench/test_engine_calls.py --benchmark-only --benchmark-group-by=group

Each benchmark places a resting order and cancels it again, so the book does not grow and
every round does the same work.
"""

import numpy as np
import pytest

from bench.peers.plain_ladder import PlainLadder
from pyexchange import Engine, wire

PRICE_TICKS = 300_000
CHUNK = 4_096


@pytest.fixture
def eng() -> Engine:
    engine = Engine(clock=lambda: 0)
    engine.add_instrument("BTC-USDT", tick_size="0.1", lot_size="0.001", min_size="0.001")
    engine.deposit(1, "USDT", "100000000")
    engine.preallocate()
    return engine


@pytest.mark.benchmark(group="place and cancel one order")
def test_lean_call(benchmark, eng: Engine) -> None:
    place, cancel, take = eng.place_ticks, eng.cancel_ticks, eng.take_events
    rounds = [0]

    def place_and_cancel() -> None:
        cancel(1, 0, place(1, 0, wire.BUY, wire.LIMIT, PRICE_TICKS, 5))
        rounds[0] += 1
        if rounds[0] % 1024 == 0:  # a hot loop drains its events now and then, not per order
            take()

    benchmark(place_and_cancel)
    assert eng._core.live_orders() == 0


@pytest.mark.benchmark(group="place and cancel one order")
def test_decimal_call(benchmark, eng: Engine) -> None:
    def place_and_cancel() -> None:
        [accepted] = eng.place(1, "BTC-USDT", "buy", "limit", size="0.005", price="30000.0")
        eng.cancel(1, "BTC-USDT", accepted.order_id)

    benchmark(place_and_cancel)
    assert eng._core.live_orders() == 0


@pytest.mark.benchmark(group="place and cancel one order")
def test_plain_ladder(benchmark) -> None:
    ladder = PlainLadder()
    ids = iter(range(1, 1 << 62))

    def place_and_cancel() -> None:
        order_id = next(ids)
        ladder.place(order_id, wire.BUY, PRICE_TICKS, 5)
        ladder.cancel(order_id)

    benchmark(place_and_cancel)


@pytest.mark.benchmark(group=f"a batch of {CHUNK} commands")
def test_batch(benchmark, eng: Engine) -> None:
    batch = np.zeros(CHUNK, dtype=wire.COMMAND_DTYPE)
    batch["account"] = 1
    batch["kind"][0::2] = wire.PLACE
    batch["price_ticks"][0::2] = PRICE_TICKS
    batch["size_lots"][0::2] = 5
    batch["kind"][1::2] = wire.CANCEL
    next_order_id = [1]  # every place is accepted, so ids go on 1, 2, 3... across rounds

    def round_trip() -> None:
        first = next_order_id[0]
        batch["order_id"][1::2] = np.arange(first, first + CHUNK // 2, dtype=np.uint64)
        events = eng.submit(batch)
        assert (events["kind"] == wire.CANCELED).sum() == CHUNK // 2
        next_order_id[0] += CHUNK // 2

    benchmark(round_trip)
