"""The views: what they answer about orders and fills, against the engine and the events (a
differential test), and that their orders cost the garbage collector nothing. (The growth of
their big indexes is tested in Rust: `core_rs/src/views.rs`.)"""

from __future__ import annotations

import gc
from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexchange import Engine, wire
from pyexchange.engine import Event
from pyexchange.gateway import views as views_module
from pyexchange.gateway.sequencer import collect
from pyexchange.gateway.views import FILLS_PER_COMMAND_MAX, Fill, OrderView, Views

BTC = "BTC-USDT"
ACCOUNTS = (1, 2, 3)
# A place (account, side, price ticks, lots, order type, with a client order id) or a cancel (of the
# n-th place so far); commands go to the engine in batches of one to four.
PLACES = st.tuples(st.just("place"), st.sampled_from(ACCOUNTS), st.sampled_from([wire.BUY, wire.SELL]),
                   st.integers(995, 1005), st.integers(1, 4), st.sampled_from([wire.LIMIT, wire.IOC]),
                   st.booleans())  # fmt: skip
CANCELS = st.tuples(st.just("cancel"), st.integers(0, 60))
BATCHES = st.lists(st.lists(st.one_of(PLACES, PLACES, CANCELS), min_size=1, max_size=4), max_size=25)


def _engine() -> Engine:
    engine = Engine(clock=lambda: 1_000_000_000)
    engine.add_instrument(BTC, tick_size="0.1", lot_size="0.001", min_size="0.001", maker_fee_bps=2, taker_fee_bps=5)
    for account in ACCOUNTS:
        engine.deposit(account, "USDT", "1000000")
        engine.deposit(account, "BTC", "1000")
    return engine


def _apply(engine: Engine, views: Views, commands: list[tuple[Any, ...]], ts_ns: int) -> list[list[Event]]:
    """Submits one batch of (kind, account, order id, price ticks, lots, side, order type, client
    order id) to the engine and the views; each command's events."""
    records = np.zeros(len(commands), dtype=wire.COMMAND_DTYPE)
    instrument_id = engine.instrument(BTC).instrument_id
    for i, (kind, account, order_id, price_ticks, lots, side, order_type, cid) in enumerate(commands):
        records[i] = (ts_ns, account, order_id, price_ticks, lots, instrument_id, kind, side, order_type,
                      wire.CANCEL_MAKER, cid)  # fmt: skip
    first_seq = engine.seq + 1
    batch = collect(engine, records.tobytes(), first_seq, engine.submit(records))
    views.apply(batch)
    return batch.events


class _Expected:
    """What the views should say about each order: the engine's order, and from the batches'
    events its fees, last fill, times, and whether it is open, closed or forgotten (the views
    keep `closed_max` closed orders); and each account's fills (the views keep `fills_max`)."""

    def __init__(self, closed_max: int, fills_max: int) -> None:
        self.closed_max, self.fills_max = closed_max, fills_max
        self.placed: list[tuple[int, int, str]] = []  # (account, order id, client order id), as accepted
        self.fees: dict[int, Decimal] = {}
        self.last_fill: dict[int, tuple[int, Decimal, Decimal, str]] = {}  # order id -> (ms, price, size, trade id)
        self.times_ms: dict[int, tuple[int, int]] = {}  # order id -> (placed, last named by an event)
        self.closed: list[int] = []
        self.fills: dict[int, list[Fill]] = {}

    def follow(self, engine: Engine, commands: list[tuple[int, ...]], events: list[list[Event]], ts_ms: int) -> None:
        named: dict[int, None] = {}  # the orders the batch's events name, in that order (as the views see them)
        for command, command_events in zip(commands, events, strict=True):
            fills = 0
            for event in command_events:
                if event.kind == "fill" and event.maker_order_id is not None:
                    named.setdefault(event.maker_order_id, None)
                if event.order_id is not None and event.kind != "rejected":
                    named.setdefault(event.order_id, None)
                if event.kind == "accepted":
                    assert event.order_id is not None and event.account is not None
                    self.placed.append((event.account, event.order_id, bytes(command[7]).decode()))
                    self.fees[event.order_id] = Decimal(0)
                elif event.kind == "fill":
                    self._fill(event, str(event.seq * FILLS_PER_COMMAND_MAX + fills), ts_ms)
                    fills += 1
        accounts = {order_id: account for account, order_id, _cid in self.placed}
        for order_id in named:
            self.times_ms[order_id] = (self.times_ms.get(order_id, (ts_ms,))[0], ts_ms)
            order = engine.order(accounts[order_id], order_id)
            assert order is not None
            if order.state not in views_module.OPEN_STATES and order_id not in self.closed:
                self.closed.append(order_id)

    def _fill(self, event: Event, trade_id: str, ts_ms: int) -> None:
        assert event.instrument and event.price is not None and event.size is not None and event.side
        cids = {order_id: cid for _account, order_id, cid in self.placed}
        maker_side = "sell" if event.side == "buy" else "buy"
        for account, order_id, side, fee, maker in (
            (event.taker_account, event.taker_order_id, event.side, event.taker_fee, False),
            (event.maker_account, event.maker_order_id, maker_side, event.maker_fee, True),
        ):
            assert account is not None and order_id is not None and fee is not None
            self.fees[order_id] += fee
            self.last_fill[order_id] = (ts_ms, event.price, event.size, trade_id)
            fill = Fill(account, event.instrument, trade_id, order_id, cids[order_id], side, event.price, event.size,
                        fee, "USDT", maker, ts_ms)  # fmt: skip
            self.fills.setdefault(account, []).append(fill)

    def check(self, engine: Engine, views: Views) -> None:
        kept = set(self.closed[-self.closed_max :])
        for account, order_id, cid in self.placed:
            view = views.view(order_id)
            if order_id in self.closed and order_id not in kept:
                assert view is None, "forgotten: more closed orders than the views keep"
                assert cid == "" or views.order_of(account, None, cid) is None
                continue
            assert view is not None and view.order == engine.order(account, order_id)
            assert (view.client_order_id, view.fee) == (cid, self.fees[order_id])
            assert (view.c_time_ms, view.u_time_ms) == self.times_ms[order_id]
            assert view.listed_open == (order_id not in self.closed)
            fill = (view.fill_time_ms, view.fill_px, view.fill_sz, view.trade_id)
            assert fill == self.last_fill.get(order_id, (0, None, None, ""))
            assert views.order_of(account, order_id, None) == view
            assert views.order_of(account % 3 + 1, order_id, None) is None, "another account's order"
            assert cid == "" or views.order_of(account, None, cid) == view
        for account in ACCOUNTS:
            mine = [order_id for acct, order_id, _ in self.placed if acct == account]
            assert views.open_ids(account) == [i for i in mine if i not in self.closed]
            assert views.open_count(account) == len(views.open_ids(account))
            assert views.closed_ids(account) == [i for i in self.closed if i in kept and i in mine]
            assert views.fills(account) == self.fills.get(account, [])[-self.fills_max :]


@settings(max_examples=150, deadline=None)
@given(BATCHES)
def test_the_views_answer_as_the_engine_and_the_events_say(batches: list[list[tuple[Any, ...]]]) -> None:
    """Orders placed, filled (as taker and maker, in the batch that placed them or later), canceled
    and forgotten (more closed orders than the views keep): each order's view is the engine's
    order, with the fees, times and last fill its events give; the open and closed lists, the
    client order ids and each account's fills (more than the views keep) follow."""
    engine = _engine()
    expected = _Expected(closed_max=6, fills_max=5)
    views = Views(engine.instruments(), closed_orders_max=expected.closed_max, fills_per_account_max=expected.fills_max)
    for n, batch in enumerate(batches):
        commands: list[tuple[int, ...]] = []
        for i, command in enumerate(batch):
            if command[0] == "place":
                _, account, side, price_ticks, lots, order_type, with_cid = command
                cid = f"c{n}x{i}".encode() if with_cid else b""
                commands.append((wire.PLACE, account, 0, price_ticks, lots, side, order_type, cid))
            elif expected.placed:
                account, order_id, _cid = expected.placed[command[1] % len(expected.placed)]
                commands.append((wire.CANCEL, account, order_id, 0, 0, 0, 0, b""))
        ts_ns = (n // 2 + 2) * 1_000_000_000  # two batches a millisecond: an order may change, its time not
        events = _apply(engine, views, commands, ts_ns)
        expected.follow(engine, commands, events, ts_ns // 1_000_000)
    expected.check(engine, views)


def test_the_views_orders_leave_the_garbage_collector_nothing_to_walk() -> None:
    """The server's full collection walks every object the collector tracks
    (`app.keep_gc_pauses_short`): the views' orders must not be among them, or the pause grows
    with the book (0.7 s at a million orders when each was two tracked objects)."""
    engine = _engine()
    views = Views(engine.instruments())
    _apply(engine, views, [(wire.PLACE, 1, 0, 990, 1, wire.BUY, wire.LIMIT, b"warm")], 1_000_000_000)
    gc.collect()
    tracked_before = len(gc.get_objects())
    orders = 3_000
    for n in range(orders // 100):
        commands = [(wire.PLACE, ACCOUNTS[i % 3], 0, 900 + i % 50, 1, wire.BUY, wire.LIMIT, f"o{n}x{i}".encode())
                    for i in range(100)]  # fmt: skip
        _apply(engine, views, commands, (n + 2) * 1_000_000_000)
    assert views.open_count(1) > orders // 3
    gc.collect()
    grown = len(gc.get_objects()) - tracked_before
    assert grown < orders // 10, f"{grown} more objects tracked after {orders} orders"
    assert isinstance(views.order_of(1, None, "o0x0"), OrderView)
