"""The events as Python sees them (`_core.Event`, made in Rust, its fields turned into names and
decimals when read) against the obvious reading of each record in Python (how the engine's face
decoded them before): every field of every event of commands of every kind, among them
deposits, rejections (of an instrument the engine does not know too), fills with fees, cancels,
amends, and the market states, auctions and uncrosses of a call auction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexchange import Engine, wire
from pyexchange.engine import Event

BTC, ETH = "BTC-USDT", "ETH-USDT"
TS_NS = 2_000_000_000
ACCOUNTS = (1, 2, 3)
# A place (account, instrument index, side, price ticks, lots, order type), a cancel or an amend
# (of the n-th place so far), a deposit (asset 3 is unknown), or a move of BTC's market state.
SIDES, TYPES = st.sampled_from([wire.BUY, wire.SELL]), st.sampled_from([wire.LIMIT, wire.IOC, wire.MARKET])
PLACES = st.tuples(st.just("place"), st.sampled_from(ACCOUNTS), st.integers(0, 2), SIDES, st.integers(995, 1005),
                   st.integers(1, 4), TYPES)  # fmt: skip
ON_ORDERS = st.tuples(st.sampled_from(["cancel", "amend"]), st.integers(0, 40), st.integers(1, 6))
DEPOSITS = st.tuples(st.just("deposit"), st.sampled_from(ACCOUNTS), st.integers(0, 3), st.integers(1, 10**9))
STATES = st.tuples(st.just("state"), st.sampled_from(["call_auction", "continuous", "halted", "pre_open"]))
COMMANDS = st.lists(st.one_of(PLACES, PLACES, PLACES, ON_ORDERS, DEPOSITS, STATES), min_size=1, max_size=60)


def _reference(record: tuple[int, ...], engine: Engine) -> dict[str, Any]:
    """Every field of the event of `record` (`wire.EVENT_STRUCT`), read in plain Python."""
    (seq, ts_ns, order_id, account, maker_id, maker_account, price_ticks, size_lots,
     taker_fee, maker_fee, where, kind, reason, side, is_asset) = record  # fmt: skip
    kind_name = wire.EVENT_KINDS[kind]
    is_fill = kind_name == "fill"
    event: dict[str, Any] = dict.fromkeys(Event.FIELDS)
    event.update(seq=seq, ts_ns=ts_ns, kind=kind_name, reason=wire.REASONS[reason] or None,
                 side=None if side == wire.SIDE_NONE else wire.SIDES[side])  # fmt: skip
    instruments = {inst.instrument_id: inst for inst in engine.instruments()}
    if kind >= wire.MARKET_STATE:
        inst = instruments[where]
        event.update(instrument=inst.symbol, price=inst.price(price_ticks) if price_ticks else None)
        if kind_name == "market_state":
            event["market_state"] = wire.MARKET_STATES[order_id]
        else:
            event["size"] = inst.size(size_lots)
        if kind_name == "auction":
            event["imbalance"] = inst.size(order_id)
        return event
    event.update(account=account, order_id=order_id or None)
    if is_fill:
        event.update(maker_order_id=maker_id, taker_order_id=order_id, maker_account=maker_account,
                     taker_account=account)  # fmt: skip
    if is_asset:
        asset = {a.asset_id: a for a in map(engine.asset, engine.asset_names())}.get(where)
        event.update(asset=asset.name if asset else None, size=asset.amount(size_lots) if asset else None)
        return event
    inst = instruments.get(where)
    event["instrument"] = inst.symbol if inst else None
    if inst is None or kind_name == "rejected":
        return event
    event.update(price=price_ticks * inst.tick_size if price_ticks else None, size=size_lots * inst.lot_size)
    if is_fill:
        event.update(maker_fee=inst.quote.amount(maker_fee), taker_fee=inst.quote.amount(taker_fee))
    return event


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in Event.FIELDS}


def _records(engine: Engine, commands: list[tuple[Any, ...]], placed: list[tuple[int, int, int]]) -> np.ndarray:
    """The commands as records: the instrument index 2 is one the engine does not know."""
    ids = [engine.instrument(BTC).instrument_id, engine.instrument(ETH).instrument_id, 99]
    records = np.zeros(len(commands), dtype=wire.COMMAND_DTYPE)
    for i, command in enumerate(commands):
        if command[0] == "place":
            _, account, instrument, side, price_ticks, lots, order_type = command
            records[i] = (TS_NS, account, 0, price_ticks, lots, ids[instrument], wire.PLACE, side, order_type,
                          wire.CANCEL_MAKER, b"")  # fmt: skip
        elif command[0] in ("cancel", "amend") and placed:
            account, instrument_id, order_id = placed[command[1] % len(placed)]
            kind = wire.CANCEL if command[0] == "cancel" else wire.AMEND
            records[i] = (TS_NS, account, order_id, 0, command[2], instrument_id, kind, 0, 0, 0, b"")
        elif command[0] == "deposit":
            _, account, asset, amount = command
            records[i] = (TS_NS, account, 0, 0, amount, asset, wire.DEPOSIT, 0, 0, 0, b"")
        elif command[0] == "state":
            state = wire.MARKET_STATES.index(command[1])
            records[i] = (TS_NS, 0, 0, 0, 500, ids[0], wire.SET_MARKET_STATE, 0, state, 0, b"")
        else:  # a cancel with nothing placed yet: of an order nobody knows
            records[i] = (TS_NS, 1, 12345, 0, 0, ids[0], wire.CANCEL, 0, 0, 0, b"")
    return records


def _engine() -> Engine:
    engine = Engine(clock=lambda: 1_000_000_000)
    engine.add_instrument(BTC, tick_size="0.1", lot_size="0.001", min_size="0.001", maker_fee_bps=2, taker_fee_bps=5)
    engine.add_instrument(ETH, tick_size="0.01", lot_size="0.01", min_size="0.01", maker_fee_bps=1, taker_fee_bps=3)
    for account in ACCOUNTS:
        for asset, amount in (("USDT", "10000000"), ("BTC", "1000"), ("ETH", "1000")):
            engine.deposit(account, asset, amount)
    return engine


def _check(engine: Engine, commands: list[tuple[Any, ...]]) -> set[str]:
    """Submits the commands in batches of up to 7 and checks every event against `_reference`;
    the kinds of events seen."""
    placed: list[tuple[int, int, int]] = []
    kinds = set()
    for start in range(0, len(commands), 7):
        batch = commands[start : start + 7]
        first_seq = engine.seq + 1
        raw = np.ascontiguousarray(engine.submit(_records(engine, batch, placed))).tobytes()
        per_command = engine.decode_batch(raw, first_seq, len(batch))
        flat = [event for command_events in per_command for event in command_events]
        assert [_fields(e) for e in flat] == [_fields(e) for e in engine.decode_events(raw)]
        assert [[e.seq for e in command_events] for command_events in per_command] == [
            [first_seq + i] * len(command_events) for i, command_events in enumerate(per_command)
        ]
        for event, record in zip(flat, wire.EVENT_STRUCT.iter_unpack(raw), strict=True):
            assert _fields(event) == _reference(record, engine), repr(event)
            kinds.add(event.kind)
            if event.kind == "accepted" and event.order_id is not None and event.account is not None:
                placed.append((event.account, engine.instrument(event.instrument or BTC).instrument_id, event.order_id))
    return kinds


@settings(max_examples=150, deadline=None)
@given(COMMANDS)
def test_every_field_of_every_event_reads_as_the_record_says(commands: list[tuple[Any, ...]]) -> None:
    _check(_engine(), commands)


def test_the_check_sees_events_of_every_kind() -> None:
    commands = [
        ("deposit", 1, 1, 500), ("deposit", 1, 3, 500),  # a known asset, an unknown one
        ("place", 1, 0, wire.BUY, 1000, 2, wire.LIMIT), ("place", 2, 0, wire.SELL, 999, 1, wire.LIMIT),  # a fill
        ("place", 2, 1, wire.SELL, 1001, 3, wire.IOC),  # nothing to take: expired
        ("place", 3, 2, wire.BUY, 1000, 1, wire.LIMIT),  # an instrument the engine does not know: rejected
        ("deposit", 3, 2, 7),
        ("amend", 0, 5), ("cancel", 0, 0),  # (the second batch: of the first batch's resting order)
        ("state", "call_auction"),  # the market state and the indicative auction
        ("place", 1, 0, wire.BUY, 1002, 3, wire.LIMIT), ("place", 2, 0, wire.SELL, 998, 2, wire.LIMIT),
        ("state", "continuous"),  # the uncross
    ]  # fmt: skip
    assert _check(_engine(), commands) == set(wire.EVENT_KINDS) - {""}


def test_an_event_keeps_the_instruments_of_its_decoding_and_shows_its_fields() -> None:
    engine = Engine(clock=lambda: 1_000_000_000)
    engine.add_instrument(BTC, tick_size="0.1", lot_size="0.001", min_size="0.001", maker_fee_bps=2, taker_fee_bps=5)
    (deposited,) = engine.deposit(1, "USDT", "12.5")
    engine.add_instrument(ETH, tick_size="0.01", lot_size="0.01", min_size="0.01")  # copies the decoder's tables
    assert (deposited.asset, deposited.size, deposited.instrument) == ("USDT", Decimal("12.50000000"), None)
    assert repr(deposited) == (
        "Event(account=1, asset='USDT', kind='deposited', seq=4, size=Decimal('12.50000000'), ts_ns=1000000000)"
    )
    assert engine.decode_events(engine.take_events()) == []
    (late,) = engine.deposit(1, "ETH", "1")
    assert late.asset == "ETH" and late.size == 1
