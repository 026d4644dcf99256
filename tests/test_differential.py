"""Differential testing: hypothesis generates random command streams over two instruments that
share USDT, and after every command the real engine must match the reference model event for
event, level for level, balance for balance and order view for order view, with both engines'
invariant checks passing.

Set HYPOTHESIS_PROFILE=long for a deeper run.
"""

import itertools
import os
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import EVENT_FIELDS, ORDER_TYPES, SIDES, STP_MODES, ReferenceEngine

try:
    import pyexchange
except ImportError:  # not built yet: only the reference runs
    pyexchange = None
needs_real_engine = pytest.mark.skipif(pyexchange is None, reason="pyexchange does not import")

EXAMPLES_MAX = 5_000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 500
COMMANDS_MIN, COMMANDS_MAX = 20, 80
SETTINGS = settings(
    max_examples=EXAMPLES_MAX, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

ACCOUNTS = (1, 2, 3)
ASSETS = {"USDT": 4, "BTC": 8, "ETH": 6}  # decimals
# symbol: tick, lot, min_size, maker bps, taker bps, protection bps, price band in ticks, lots.
# Narrow bands make crossings and shared levels common; the protection bound (5 ticks from the
# best price on either) falls inside them, so market orders sometimes stop at it; the maker fee
# above the taker fee on ETH-USDT sets its buy hold.
INSTRUMENTS = {
    "BTC-USDT": ("0.1", "0.01", "0.02", 2, 5, 50, (994, 1008), (2, 10)),
    "ETH-USDT": ("0.01", "0.1", "0.1", 10, 3, 25, (1993, 2007), (1, 8)),
}
FUNDED = {"USDT": "25", "BTC": "0.1", "ETH": "1"}  # each account, before the stream
DEPOSIT_STEPS = {"USDT": ("0.5", 40), "BTC": ("0.01", 20), "ETH": ("0.1", 20)}  # step, count
# SEMANTICS.md does not say what a rejection echoes besides its reason; place echoes its side.
REJECTED_FIELDS = ("kind", "seq", "order_id", "account", "reason")
ORDER_FIELDS = (
    "order_id",
    "account",
    "instrument",
    "side",
    "order_type",
    "price",
    "size",
    "filled_size",
    "state",
    "client_order_id",
    "stp",
)
AVG_PRICE_TOLERANCE = Decimal("1e-7")  # average_price is a quotient; engines may round it differently


def open_venue(engine) -> list[tuple[int, int, str]]:
    """Assets, instruments, funded accounts and a book three levels deep on each side; returns
    the accepted orders."""
    for asset, decimals in ASSETS.items():
        engine.add_asset(asset, decimals=decimals)
    for symbol, (tick, lot, minimum, maker, taker, protection, _, _) in INSTRUMENTS.items():
        engine.add_instrument(
            symbol,
            tick_size=tick,
            lot_size=lot,
            min_size=minimum,
            maker_fee_bps=maker,
            taker_fee_bps=taker,
            market_protection_bps=protection,
        )
    for account, (asset, amount) in itertools.product(ACCOUNTS, FUNDED.items()):
        engine.deposit(account=account, asset=asset, amount=amount)
    accepted = []
    for symbol, (tick, lot, _, _, _, _, (low, high), _) in INSTRUMENTS.items():
        mid_ticks = (low + high) // 2
        for level, account in enumerate(ACCOUNTS, start=1):
            for side, price_ticks in (("buy", mid_ticks - level), ("sell", mid_ticks + level)):
                events = engine.place(
                    account=account,
                    instrument=symbol,
                    side=side,
                    order_type="limit",
                    price=price_ticks * Decimal(tick),
                    size=3 * Decimal(lot),
                )
                accepted += accepted_orders(events)
    return accepted


def prices(symbol: str) -> st.SearchStrategy[str]:
    """Half of them within 3 ticks of the middle of the band, so that orders share levels."""
    tick, _, _, _, _, _, (low, high), _ = INSTRUMENTS[symbol]
    mid_ticks = (low + high) // 2
    ticks = st.integers(mid_ticks - 3, mid_ticks + 3) | st.integers(low, high)
    return ticks.map(lambda price_ticks: str(price_ticks * Decimal(tick)))


def sizes(symbol: str) -> st.SearchStrategy[str]:
    _, lot, _, _, _, _, _, (low, high) = INSTRUMENTS[symbol]
    return st.integers(low, high).map(lambda lots: str(lots * Decimal(lot)))


accounts = st.sampled_from(ACCOUNTS)
accounts_or_fee = st.sampled_from((*ACCOUNTS, *ACCOUNTS, *ACCOUNTS, 0))  # the fee account, rarely
symbols = st.sampled_from(sorted(INSTRUMENTS))
# Cancels and amends mostly name an order by its rank among the open ones ("target", taken
# modulo their number); `resolve` turns that into its id, account and instrument.
targets = st.integers(0, 1_000)


@st.composite
def places(draw: st.DrawFn) -> tuple[str, dict]:
    symbol = draw(symbols)
    order_type = draw(st.sampled_from((*ORDER_TYPES, "limit", "limit")))
    return "place", {
        "account": draw(accounts_or_fee),
        "instrument": symbol,
        "side": draw(st.sampled_from(SIDES)),
        "order_type": order_type,
        "price": None if order_type == "market" else draw(prices(symbol)),
        "size": draw(sizes(symbol)),
        "stp": draw(st.sampled_from(STP_MODES)),
        "client_order_id": draw(st.sampled_from((None, "a", "cl-7"))),
    }


@st.composite
def off_grid_places(draw: st.DrawFn) -> tuple[str, dict]:
    """A price off the tick, a size off the lot or below the minimum: ValueError on both, and
    no seq taken."""
    _, command = draw(places())
    _, lot, minimum, _, _, _, _, _ = INSTRUMENTS[command["instrument"]]
    variants = [{"size": command["size"] + "1"}, {"size": str(Decimal(minimum) - Decimal(lot))}]
    if command["price"] is not None:
        variants.append({"price": command["price"] + "1"})
    return "place", {**command, **draw(st.sampled_from(variants))}


@st.composite
def deposits(draw: st.DrawFn) -> tuple[str, dict]:
    asset = draw(st.sampled_from(sorted(ASSETS)))
    step, steps_max = DEPOSIT_STEPS[asset]
    amount = draw(st.integers(1, steps_max)) * Decimal(step)
    return "deposit", {"account": draw(accounts_or_fee), "asset": asset, "amount": str(amount)}


# new_size in lots, new_price in ticks above the bottom of the band; None leaves it unchanged.
amends = st.fixed_dictionaries(
    {"target": targets, "new_size": st.none() | st.integers(1, 10), "new_price": st.none() | st.integers(0, 15)}
).map(lambda kwargs: ("amend", kwargs))
cancels = targets.map(lambda target: ("cancel", {"target": target}))
blind_cancels = st.fixed_dictionaries({"account": accounts, "instrument": symbols, "order_id": st.integers(1, 30)}).map(
    lambda kwargs: ("cancel", kwargs)
)
cancel_alls = st.fixed_dictionaries({"account": accounts, "instrument": st.none() | symbols}).map(
    lambda kwargs: ("cancel_all", kwargs)
)
# A join rests an order at the price and side of an open one, so that levels hold several.
joins = st.fixed_dictionaries(
    {
        "target": targets,
        "account": accounts,
        "order_type": st.sampled_from(("limit", "post_only")),
        "size_lots": st.integers(2, 8),
        "stp": st.sampled_from(STP_MODES),
    }
).map(lambda kwargs: ("place", kwargs))
# one_of picks a branch uniformly, so a repeated branch weighs more.
commands = st.one_of(
    *[places()] * 4, joins, joins, amends, amends, cancels, blind_cancels, cancel_alls, deposits(), off_grid_places()
)
streams = st.lists(commands, min_size=COMMANDS_MIN, max_size=COMMANDS_MAX)


def resolve(command: tuple[str, dict], accepted: list[tuple[int, int, str]], engine) -> tuple[str, dict]:
    """Turn a "target" (a rank among the open orders of `engine`, else among all the accepted
    ones, never none: `open_venue` places some) into the command on that order."""
    name, kwargs = command
    if "target" not in kwargs:
        return command
    open_orders = [
        (order_id, account, symbol)
        for order_id, account, symbol in accepted
        if engine.order(account=account, order_id=order_id).state in ("live", "partially_filled")
    ] or accepted
    order_id, account, symbol = open_orders[kwargs["target"] % len(open_orders)]
    tick, lot, _, _, _, _, (low, _), _ = INSTRUMENTS[symbol]
    if name == "place":
        order = engine.order(account=account, order_id=order_id)
        joiner = {key: kwargs[key] for key in ("account", "order_type", "stp")}
        return "place", {
            **joiner,
            "instrument": symbol,
            "side": order.side,
            "price": order.price,
            "size": str(kwargs["size_lots"] * Decimal(lot)),
        }
    resolved = {"account": account, "instrument": symbol, "order_id": order_id}
    if name == "amend":
        new_size, new_price = kwargs["new_size"], kwargs["new_price"]
        resolved["new_size"] = None if new_size is None else str(new_size * Decimal(lot))
        resolved["new_price"] = None if new_price is None else str((low + new_price) * Decimal(tick))
    return name, resolved


def run(engine, command: tuple[str, dict]):
    """The events of a command, or ValueError if it was refused at the edge."""
    name, kwargs = command
    try:
        return getattr(engine, name)(**kwargs)
    except ValueError:
        return ValueError


def accepted_orders(events) -> list[tuple[int, int, str]]:
    if events is ValueError:
        return []
    return [(e.order_id, e.account, e.instrument) for e in events if e.kind == "accepted"]


def event_view(event, command_name: str) -> dict:
    if event.kind != "rejected":
        fields = EVENT_FIELDS
    elif command_name == "place":
        fields = (*REJECTED_FIELDS, "side")
    else:
        fields = REJECTED_FIELDS
    return {name: getattr(event, name) for name in fields}


def order_view(order) -> dict | None:
    return None if order is None else {name: getattr(order, name) for name in ORDER_FIELDS}


def check_same_average_price(real_order, reference_order) -> None:
    real, reference = real_order.average_price, reference_order.average_price
    assert (real is None) == (reference is None), (real_order, reference_order)
    if real is not None:
        assert abs(real - reference) < AVG_PRICE_TOLERANCE, (real_order, reference_order)


def check_same_state(real, reference, order_ids) -> None:
    """Invariants, books and balances in full; the order views of `order_ids`, for each account."""
    real.check_invariants()
    reference.check_invariants()
    for symbol in INSTRUMENTS:
        assert real.book(symbol, depth=50) == reference.book(symbol, depth=50), symbol
    for account, asset in itertools.product((0, *ACCOUNTS), ASSETS):
        real_balance = real.balance(account=account, asset=asset)
        assert real_balance == reference.balance(account=account, asset=asset), (account, asset)
    for order_id, account in itertools.product(order_ids, ACCOUNTS):
        real_order = real.order(account=account, order_id=order_id)
        reference_order = reference.order(account=account, order_id=order_id)
        assert order_view(real_order) == order_view(reference_order), (account, order_id)
        if reference_order is not None:
            check_same_average_price(real_order, reference_order)
    keys = [(account, order_id) for order_id, account in itertools.product(order_ids, ACCOUNTS)]
    assert real.orders(keys) == [real.order(account=account, order_id=order_id) for account, order_id in keys]


def real_engine():
    """A real engine stamped by a counter, so that equal streams are equal inputs."""
    return pyexchange.Engine(clock=itertools.count(1).__next__)


@needs_real_engine
@SETTINGS
@given(stream=streams)
def test_real_engine_matches_the_reference(stream):
    real, reference = real_engine(), ReferenceEngine()
    open_venue(real)
    accepted = open_venue(reference)
    for command in stream:
        command = resolve(command, accepted, reference)
        real_events, reference_events = run(real, command), run(reference, command)
        if reference_events is ValueError or real_events is ValueError:
            assert real_events is reference_events, command
            continue
        assert [event_view(e, command[0]) for e in real_events] == [
            event_view(e, command[0]) for e in reference_events
        ], command
        accepted += accepted_orders(reference_events)
        named = {e.order_id for e in reference_events} | {e.maker_order_id for e in reference_events}
        check_same_state(real, reference, named - {None})
    check_same_state(real, reference, range(1, len(accepted) + 2))  # one id past the last, too


@needs_real_engine
@settings(SETTINGS, max_examples=max(EXAMPLES_MAX // 3, 10))
@given(stream=streams)
def test_equal_streams_give_equal_state_hashes(stream):
    first, second, third = real_engine(), real_engine(), real_engine()
    accepted = open_venue(first)
    open_venue(second)
    open_venue(third)
    for command in stream:
        command = resolve(command, accepted, first)
        accepted += accepted_orders(run(first, command))
        run(second, command)
        run(third, command)
    third.deposit(account=1, asset="USDT", amount="0.0001")  # one unit more on one replica
    first_hash = first.state_hash()
    assert isinstance(first_hash, str) and int(first_hash, 16) >= 0
    assert first_hash == second.state_hash() != third.state_hash()


@settings(SETTINGS, max_examples=max(EXAMPLES_MAX // 2, 10))
@given(stream=streams)
def test_reference_keeps_its_invariants(stream):
    reference = ReferenceEngine()
    accepted = open_venue(reference)
    for command in stream:
        accepted += accepted_orders(run(reference, resolve(command, accepted, reference)))
        reference.check_invariants()
