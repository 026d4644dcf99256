"""The three ways into the engine — decimal calls, lean integer calls, and numpy batches —
give the same events and the same state hash for the same commands; bad batches apply
nothing; bad input raises before it becomes a command."""

import itertools
import time
from decimal import Decimal

import numpy as np
import pytest

from pyexchange import Engine, wire


def _market() -> Engine:
    eng = Engine(clock=lambda: 0)
    eng.add_instrument(
        "BTC-USDT", tick_size="0.1", lot_size="0.001", min_size="0.002", maker_fee_bps=2, taker_fee_bps=5
    )
    for account in (1, 2, 3):
        eng.deposit(account, "USDT", "1000000")
        eng.deposit(account, "BTC", "50")
    return eng


def _stream(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    batch = np.zeros(n, dtype=wire.COMMAND_DTYPE)
    batch["account"] = rng.integers(1, 4, n)
    batch["side"] = rng.integers(0, 2, n)
    batch["order_type"] = rng.choice([wire.LIMIT, wire.IOC, wire.MARKET, wire.LIMIT], n)
    batch["price_ticks"] = rng.integers(299_990, 300_010, n)
    batch["size_lots"] = rng.integers(1, 400, n)  # some below the minimum of 2 lots
    kinds = rng.choice([wire.PLACE, wire.PLACE, wire.CANCEL, wire.AMEND], n)
    batch["kind"] = kinds
    batch["order_id"] = rng.integers(1, max(2, n // 2), n)
    amends = kinds == wire.AMEND
    batch["price_ticks"][amends] = np.where(rng.random(int(amends.sum())) < 0.5, 0, batch["price_ticks"][amends])
    batch["size_lots"][amends] = np.where(rng.random(int(amends.sum())) < 0.5, 0, batch["size_lots"][amends])
    batch["stp"] = rng.integers(0, 4, n)
    return batch


def _lean(eng: Engine, record: np.void) -> None:
    account, side, kind = int(record["account"]), int(record["side"]), int(record["kind"])
    price, size, order_id = int(record["price_ticks"]), int(record["size_lots"]), int(record["order_id"])
    if kind == wire.PLACE:
        eng.place_ticks(account, 0, side, int(record["order_type"]), price, size, int(record["stp"]))
    elif kind == wire.CANCEL:
        eng.cancel_ticks(account, 0, order_id)
    else:
        eng.amend_ticks(account, 0, order_id, price, size)


def test_batch_and_lean_calls_agree() -> None:
    commands = _stream(seed=3, n=3_000)
    batch_engine, lean_engine = _market(), _market()
    batch_events = batch_engine.submit(commands)
    for record in commands:
        _lean(lean_engine, record)
    lean_events = lean_engine.take_events()
    assert len(batch_events) > len(commands)
    assert (batch_events["kind"] == wire.FILL).sum() > 100
    np.testing.assert_array_equal(batch_events, lean_events)
    assert batch_engine.state_hash() == lean_engine.state_hash()
    batch_engine.check_invariants()
    assert len(lean_engine.take_events()) == 0


def test_preallocate_changes_no_state() -> None:
    commands = _stream(seed=8, n=2_000)
    plain, preallocated = _market(), _market()
    preallocated.preallocate(live_orders=1_000)
    np.testing.assert_array_equal(plain.submit(commands), preallocated.submit(commands))
    assert plain.state_hash() == preallocated.state_hash()
    preallocated.preallocate()
    assert plain.state_hash() == preallocated.state_hash()
    preallocated.check_invariants()


def test_batch_in_pieces_equals_batch_whole() -> None:
    commands = _stream(seed=4, n=2_000)
    whole, pieces = _market(), _market()
    whole_events = whole.submit(commands)
    piece_events = np.concatenate([pieces.submit(part) for part in np.array_split(commands, 7)])
    np.testing.assert_array_equal(whole_events, piece_events)
    assert whole.state_hash() == pieces.state_hash()


def test_recycled_event_buffers_carry_only_their_own_events() -> None:
    commands = _stream(seed=5, n=2_000)
    expected = _market().submit(commands).copy()
    for _ in range(3):  # each round's buffers go back to the pool when its views are dropped
        eng = _market()
        short = eng.submit(commands[:10])
        np.testing.assert_array_equal(short, expected[: len(short)])
        rest = eng.submit(commands[10:])
        np.testing.assert_array_equal(np.concatenate([short, rest]), expected)
        eng.take_events()


def test_decimal_calls_agree_with_batch() -> None:
    eng_batch, eng_calls = _market(), _market()
    batch = np.zeros(3, dtype=wire.COMMAND_DTYPE)
    batch[0] = (0, 1, 0, 300_000, 500, 0, wire.PLACE, wire.SELL, wire.LIMIT, wire.CANCEL_MAKER, b"ask1")
    batch[1] = (0, 2, 0, 300_001, 200, 0, wire.PLACE, wire.BUY, wire.IOC, wire.CANCEL_MAKER, b"")
    batch[2] = (0, 1, 1, 300_002, 0, 0, wire.AMEND, 0, 0, 0, b"")
    events = eng_batch.decode_events(eng_batch.submit(batch))
    calls = [
        *eng_calls.place(1, "BTC-USDT", "sell", "limit", size="0.5", price="30000.0", client_order_id="ask1"),
        *eng_calls.place(2, "BTC-USDT", "buy", "ioc", size="0.2", price="30000.1"),
        *eng_calls.amend(1, "BTC-USDT", 1, new_price="30000.2"),
    ]
    assert [(e.kind, e.order_id, e.price, e.size, e.seq) for e in events] == [
        (e.kind, e.order_id, e.price, e.size, e.seq) for e in calls
    ]
    assert [e.kind for e in calls] == ["accepted", "accepted", "fill", "amended"]
    assert calls[2].price == Decimal("30000.0") and calls[2].size == Decimal("0.2")
    assert eng_batch.state_hash() == eng_calls.state_hash()
    order = eng_calls.order(1, 1)
    assert order is not None and order.client_order_id == "ask1" and order.state == "partially_filled"


def test_bad_record_refuses_the_whole_batch() -> None:
    eng = _market()
    before = (eng.state_hash(), eng.seq)
    batch = _stream(seed=5, n=10)
    batch["kind"][7] = 99
    with pytest.raises(ValueError, match="command record 7: unknown command kind 99"):
        eng.submit(batch)
    batch["kind"][7] = wire.PLACE
    batch["ts_ns"][:] = 10
    batch["ts_ns"][8] = 5
    with pytest.raises(ValueError, match="command record 8"):
        eng.submit(batch)
    assert (eng.state_hash(), eng.seq) == before
    with pytest.raises(ValueError, match="dtype"):
        eng.submit(np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"price": "30000.05"}, "not a multiple of 0.1"),
        ({"size": "0.0015"}, "not a multiple of 0.001"),
        ({"size": "0.001"}, "below the minimum"),
        ({"price": "-1"}, "must be positive"),
        ({"price": "abc"}, "not a number"),
        ({"price": "NaN"}, "not a finite number"),
        ({"side": "long"}, "unknown side"),
        ({"order_type": "stop"}, "unknown order_type"),
        ({"stp": "never"}, "unknown stp"),
        ({"instrument": "DOGE-USDT"}, "unknown instrument"),
        ({"client_order_id": "has space"}, "client_order_id"),
        ({"client_order_id": "x" * 33}, "client_order_id"),
        ({"price": None}, "needs a price"),
        ({"size": "1e30"}, "too large"),
        ({"account": -1}, "account must be an integer"),
        ({"account": 2**64}, "account must be an integer"),
        ({"account": "7"}, "account must be an integer"),
    ],
)
def test_bad_input_raises_and_consumes_nothing(kwargs: dict[str, object], message: str) -> None:
    eng = _market()
    before = (eng.state_hash(), eng.seq)
    args: dict[str, object] = {
        "account": 1, "instrument": "BTC-USDT", "side": "buy", "order_type": "limit",
        "price": "30000.1", "size": "0.5",
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        eng.place(**{**args, **kwargs})  # type: ignore[arg-type]
    assert (eng.state_hash(), eng.seq) == before


def test_bad_ids_raise_everywhere() -> None:
    eng = _market()
    for call in (
        lambda: eng.cancel(1, "BTC-USDT", order_id=-5),
        lambda: eng.amend(1, "BTC-USDT", order_id=2**64, new_size="0.5"),
        lambda: eng.cancel_all(account=-1),
        lambda: eng.deposit(account=1.5, asset="USDT", amount="1"),  # type: ignore[arg-type]
        lambda: eng.balance(account=-1, asset="USDT"),
        lambda: eng.order(account=1, order_id=-1),
        lambda: eng.orders([(1, 1), (1, -1)]),
        lambda: eng.orders([(2**64, 1)]),
    ):
        with pytest.raises(ValueError, match="must be an integer"):
            call()


def test_time_never_goes_backwards() -> None:
    eng = _market()
    eng.place(1, "BTC-USDT", "buy", "limit", size="0.5", price="30000.1", ts_ns=1_000)
    events = eng.place(1, "BTC-USDT", "buy", "limit", size="0.5", price="30000.1", ts_ns=500)
    assert events[0].ts_ns == 1_000  # the sequencer stamps max(clock, last)
    with pytest.raises(ValueError, match="before the last command"):
        eng._core.place(10, 1, 0, 0, 0, 0, 300_001, 500, b"")


def test_lean_calls_queue_their_events() -> None:
    eng = _market()
    order_id = eng.place_ticks(1, 0, wire.BUY, wire.LIMIT, 300_000, 2)
    assert order_id > 0
    assert eng.place_ticks(1, 0, wire.BUY, wire.LIMIT, 300_000, 10**9) == 0  # insufficient funds
    events = eng.take_events()
    assert [wire.REASONS[r] for r in events["reason"]] == ["", "ledger_insufficient_funds"]


def test_events_say_what_they_are_about() -> None:
    eng = _market()
    [reserved] = eng.place(0, "BTC-USDT", "buy", "limit", size="0.5", price="30000.1")
    assert (reserved.kind, reserved.reason, reserved.instrument, reserved.asset, reserved.side) == (
        "rejected", "ledger_reserved_account", "BTC-USDT", None, "buy",
    )  # fmt: skip
    [unknown] = eng.cancel(1, "BTC-USDT", 999)
    assert (unknown.reason, unknown.order_id, unknown.side) == ("matching_unknown_order", 999, None)
    [deposit] = eng.deposit(0, "USDT", "5")
    assert (deposit.reason, deposit.asset, deposit.instrument, deposit.side) == (
        "ledger_reserved_account", "USDT", None, None,
    )  # fmt: skip
    batch = np.zeros(1, dtype=wire.COMMAND_DTYPE)
    batch[0] = (0, 1, 0, 300_000, 500, 7, wire.PLACE, wire.SELL, wire.LIMIT, wire.CANCEL_MAKER, b"")
    [no_instrument] = eng.decode_events(eng.submit(batch))
    assert (no_instrument.reason, no_instrument.instrument, no_instrument.side) == ("instrument_unknown", None, "sell")


def test_batch_releases_the_gil() -> None:
    """While a large batch runs, another thread keeps running Python: inside the batch's
    time window, no pause of a spinning thread is longer than half the window (the GIL is
    held only to copy records in and events out)."""
    import threading
    from array import array

    eng = _market()
    batch = _stream(seed=6, n=400_000)
    batch["kind"] = wire.PLACE
    batch["order_type"] = wire.IOC  # nothing rests: every order is checked, held, and expires
    buffer = batch.view(np.uint8)
    window: list[float] = []

    def submit() -> None:
        window.append(time.perf_counter())
        eng._core.submit(buffer)
        window.append(time.perf_counter())

    spins = array("d")
    worker = threading.Thread(target=submit)
    worker.start()
    while len(window) < 2:
        spins.append(time.perf_counter())
    worker.join()
    assert eng.seq > 400_000
    start, end = window
    inside = [start, *(t for t in spins if start < t < end), end]
    longest_pause_s = max(b - a for a, b in itertools.pairwise(inside))
    assert longest_pause_s < 0.5 * (end - start)
