"""The reference ladder on hand-made sequences, then against a brute-force matcher and the peers.

Method: small cases whose fills are worked out by hand from SEMANTICS.md; then the ladder
and an obviously-correct O(n^2) matcher must give identical fills on a generated workload;
then each installed peer must give the ladder's fills (or, for a book-only peer, its book).
"""

import numpy as np
import pytest

from bench import workloads
from bench._wire import AMEND, BUY, CANCEL, IOC, PLACE, SELL
from bench.peers import sequential_order_ids
from bench.peers.plain_ladder import PlainLadder

N_CROSS_CHECK = 20_000


def ladder_with(*orders: tuple[int, int, int, int]) -> PlainLadder:
    """A ladder with resting (id, side, price, size) orders placed in that order."""
    book = PlainLadder()
    for order_id, side, price, size in orders:
        book.place(order_id, side, price, size)
    assert not book.fills
    return book


def test_price_then_time_priority_at_the_makers_price():
    book = ladder_with((1, SELL, 101, 5), (2, SELL, 100, 5), (3, SELL, 100, 5))
    book.place(4, BUY, 101, 12)
    assert book.fills == [(4, 2, 100, 5), (4, 3, 100, 5), (4, 1, 101, 2)]
    assert book.book(SELL) == [(101, 3)]
    assert book.book(BUY) == []


def test_limit_remainder_rests_at_the_tail_ioc_remainder_expires():
    book = ladder_with((1, SELL, 100, 5), (2, BUY, 99, 1))
    book.place(3, BUY, 100, 8)
    assert book.fills == [(3, 1, 100, 5)]
    assert book.book(BUY) == [(100, 3), (99, 1)]
    book.place(4, SELL, 99, 10, ioc=True)
    assert book.fills[1:] == [(4, 3, 100, 3), (4, 2, 99, 1)]
    assert book.book(BUY) == [] and book.book(SELL) == []
    assert book.live == [0, 0]


def test_no_cross_no_fill():
    book = ladder_with((1, SELL, 100, 5))
    book.place(2, BUY, 99, 5)
    assert book.fills == []
    assert book.book(BUY) == [(99, 5)] and book.book(SELL) == [(100, 5)]


def test_cancel_removes_and_unknown_is_refused():
    book = ladder_with((1, BUY, 100, 5), (2, BUY, 100, 7))
    assert book.cancel(1)
    assert not book.cancel(1)
    assert not book.cancel(99)
    book.place(3, SELL, 100, 10, ioc=True)
    assert book.fills == [(3, 2, 100, 7)]


def test_move_loses_priority_and_may_fill_as_taker():
    book = ladder_with((1, BUY, 100, 5), (2, BUY, 100, 5), (3, SELL, 102, 4))
    assert book.amend(1, 99)
    assert book.amend(1, 100)  # back at the old price, now behind order 2
    book.place(4, SELL, 100, 6, ioc=True)
    assert book.fills == [(4, 2, 100, 5), (4, 1, 100, 1)]
    assert book.amend(1, 103)  # crosses the ask at 102: fills at the maker's price
    assert book.fills[2:] == [(1, 3, 102, 4)]
    assert 1 not in book.orders
    assert not book.amend(1, 100)  # filled: unknown


def test_amend_same_price_smaller_size_keeps_priority():
    book = ladder_with((1, BUY, 100, 5), (2, BUY, 100, 5))
    assert book.amend(1, 0, 3)
    book.place(3, SELL, 100, 4, ioc=True)
    assert book.fills == [(3, 1, 100, 3), (3, 2, 100, 1)]


def test_amend_size_counts_the_filled_part():
    book = ladder_with((1, BUY, 100, 5))
    book.place(2, SELL, 100, 2, ioc=True)
    assert not book.amend(1, 0, 2)  # new total 2 <= filled 2
    assert not book.amend(1, 0, 0)  # no change
    assert book.amend(1, 0, 4)  # 2 filled, 2 remain
    assert book.book(BUY) == [(100, 2)]
    assert book.amend(1, 0, 9)  # larger: leaves and re-enters, 7 remain
    assert book.book(BUY) == [(100, 7)]
    assert book.orders[1][3] == 9


def brute_force_fills(commands: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Every match scans all resting orders for the best (price, arrival) — slow, plain."""
    resting: dict[int, list[int]] = {}  # id -> [side, price, remaining, arrival]
    fills: list[tuple[int, int, int, int]] = []
    arrival = 0

    def match(taker: int, side: int, limit: int, qty: int) -> int:
        while qty:
            crossing = [
                ((p if side == BUY else -p), seq, oid)
                for oid, (s, p, _, seq) in resting.items()
                if s != side and (p <= limit if side == BUY else p >= limit)
            ]
            if not crossing:
                break
            maker_id = min(crossing)[2]
            maker = resting[maker_id]
            q = min(qty, maker[2])
            fills.append((taker, maker_id, maker[1], q))
            qty -= q
            maker[2] -= q
            if not maker[2]:
                del resting[maker_id]
        return qty

    ids = sequential_order_ids(commands).tolist()
    for row, place_id in zip(commands.tolist(), ids, strict=True):
        _, _, order_id, price, size, _, kind, side, order_type, _, _ = row
        if kind == PLACE:
            left = match(place_id, side, price, size)
            if left and order_type != IOC:
                arrival += 1
                resting[place_id] = [side, price, left, arrival]
        elif kind == CANCEL:
            resting.pop(order_id, None)
        elif kind == AMEND:
            order = resting.pop(order_id, None)
            if order is not None:
                left = match(order_id, order[0], price, order[2])
                if left:
                    arrival += 1
                    resting[order_id] = [order[0], price, left, arrival]
    return fills


@pytest.fixture(scope="module")
def mix() -> np.ndarray:
    return workloads.exchange_core_mix(N_CROSS_CHECK, seed=7)


@pytest.fixture(scope="module")
def reference(mix: np.ndarray):
    from bench.peers import plain_ladder

    return plain_ladder.run(mix)


def test_ladder_equals_brute_force(mix: np.ndarray, reference) -> None:
    assert len(reference.fills) > 100
    assert reference.fills == brute_force_fills(mix)


def test_exchange_core_mix_is_seeded_and_names_live_orders(mix: np.ndarray) -> None:
    again = workloads.exchange_core_mix(N_CROSS_CHECK, seed=7)
    assert again.tobytes() == mix.tobytes()
    assert workloads.exchange_core_mix(1_000, seed=8).tobytes() != mix[:1_000].tobytes()
    ids = sequential_order_ids(mix)
    owner = dict(zip(ids[ids > 0].tolist(), mix["account"][ids > 0].tolist(), strict=True))
    targets = mix[(mix["kind"] == CANCEL) | (mix["kind"] == AMEND)]
    places_before = np.cumsum(mix["kind"] == PLACE)[(mix["kind"] == CANCEL) | (mix["kind"] == AMEND)]
    assert (targets["order_id"] >= 1).all() and (targets["order_id"] <= places_before).all()
    assert all(owner[o] == a for o, a in zip(targets["order_id"].tolist(), targets["account"].tolist(), strict=True))
    assert (np.diff(mix["ts_ns"]) >= 0).all()
    assert set(mix["account"].tolist()) <= set(range(1, workloads.EXCHANGE_CORE_ACCOUNTS + 1))


def test_funding_covers_every_place(mix: np.ndarray) -> None:
    deposits = workloads.funding(mix)
    funded = {(account, asset) for account, asset, amount in deposits if amount > 0}
    places = mix[mix["kind"] == PLACE]
    for account, side in zip(places["account"].tolist(), places["side"].tolist(), strict=True):
        assert (account, "USDT" if side == BUY else "BTC") in funded
    records = workloads.deposit_commands(deposits, {"BTC": 0, "USDT": 1})
    assert len(records) == len(deposits) and (records["size_lots"] > 0).all()


@pytest.mark.parametrize("module", ["liquibook_peer"])
def test_peer_fills_equal_the_ladder(module: str, mix: np.ndarray, reference) -> None:
    pytest.importorskip(module.removesuffix("_peer"))
    import importlib

    peer = importlib.import_module(f"bench.peers.{module}")
    assert peer.run(mix).fills == reference.fills


def test_nautilus_book_equals_the_ladder(mix: np.ndarray) -> None:
    pytest.importorskip("nautilus_trader")
    from bench.peers import nautilus_peer

    result = nautilus_peer.run(mix)
    assert result.error is None
    assert result.books[0][0] and result.books[0][1]


@pytest.fixture(scope="module")
def venue():
    return workloads.venue_mix_expected(30_000, seed=3)


def test_venue_mix_is_seeded_and_consistent_with_its_model(venue) -> None:
    commands, order_ids, model = venue
    assert len(commands) == len(order_ids) == 30_000
    again, again_ids = workloads.venue_mix_with_ids(30_000, seed=3)
    assert again.tobytes() == commands.tobytes() and (again_ids == order_ids).all()
    model.check_invariants()
    placed = order_ids[order_ids > 0]
    assert (np.diff(placed.astype(np.int64)) == 1).all() and placed[0] == 1  # ids 1, 2, 3... to accepted places
    assert model.rejected["ledger_insufficient_funds"] > 0
    assert model.rejected["matching_post_only_would_cross"] > 0
    assert model.expired["matching_fok_not_fillable"] + model.expired["matching_immediate_remainder"] > 0
    assert len(set(commands["instrument"][commands["kind"] == PLACE].tolist())) == len(workloads.VENUE_INSTRUMENTS)


def test_venue_model_self_trade_prevention_and_fees() -> None:
    from bench._wire import CANCEL_MAKER, LIMIT
    from bench.venue_model import VenueModel

    setup = workloads.venue_setup()
    units = setup["instruments"][0]["units"]  # BTC-USDT: 1 lot = 1000 BTC units, tick*lot = 100 USDT units
    model = VenueModel([i["units"] for i in setup["instruments"]])
    for account in (1, 2):
        model.deposit(account, units.base, 10**9)
        model.deposit(account, units.quote, 10**12)
    maker_self = model.place(1, 0, SELL, LIMIT, 1_000, 5, CANCEL_MAKER)
    maker_other = model.place(2, 0, SELL, LIMIT, 1_000, 5, CANCEL_MAKER)
    taker = model.place(1, 0, BUY, LIMIT, 1_000, 3, CANCEL_MAKER)
    assert model.fills == [(taker, maker_other, 1_000, 3)]
    assert maker_self not in model.orders and model.expired["matching_self_trade_prevented"] == 1
    notional = 1_000 * 3 * units.quote_units_per_tick_lot
    fee_account_quote = model.balances[(0, units.quote)][0]
    assert fee_account_quote == -(-notional * 10 // 10_000) + -(-notional * 8 // 10_000)
    model.check_invariants()


def test_venue_model_agrees_with_the_test_oracle() -> None:
    """The generator's model and tests/reference.py, written apart, give the same ids and fills."""
    import pathlib
    import sys
    from decimal import Decimal

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
    reference = pytest.importorskip("reference")
    from bench._wire import DEPOSIT

    commands, order_ids, model = workloads.venue_mix_expected(5_000, seed=5)
    setup = workloads.venue_setup()
    oracle = reference.ReferenceEngine()
    for name, decimals in setup["assets"]:
        oracle.add_asset(name, decimals)
    for i in setup["instruments"]:
        oracle.add_instrument(
            i["symbol"], i["tick_size"], i["lot_size"], i["min_size"],
            i["maker_fee_bps"], i["taker_fee_bps"], i["market_protection_bps"],
        )  # fmt: skip
    assets = [name for name, _ in setup["assets"]]
    ids, fills = [], []
    for row in commands.tolist():
        _, account, order_id, price, size, inst, kind, side, order_type, _, _ = row
        if kind == DEPOSIT:
            oracle.deposit(account, assets[inst], Decimal(size).scaleb(-8))
            ids.append(0)
            continue
        spec = setup["instruments"][inst]
        symbol, tick, lot = spec["symbol"], Decimal(spec["tick_size"]), Decimal(spec["lot_size"])
        if kind == PLACE:
            kind_name = reference.ORDER_TYPES[order_type]
            limit = None if kind_name == "market" else price * tick
            events = oracle.place(account, symbol, reference.SIDES[side], kind_name, limit, size * lot)
        elif kind == CANCEL:
            events = oracle.cancel(account, symbol, order_id)
        else:
            events = oracle.amend(
                account, symbol, order_id, size * lot if size else None, price * tick if price else None
            )
        accepted = [e.order_id for e in events if e.kind == "accepted"]
        ids.append(accepted[0] if accepted and kind == PLACE else 0)
        fills += [
            (e.taker_order_id, e.maker_order_id, int(e.price / tick), int(e.size / lot))
            for e in events
            if e.kind == "fill"
        ]
    assert ids == order_ids.tolist()
    assert fills == model.fills


def test_exchange_core_mix_is_all_accepted_by_the_test_oracle() -> None:
    """With `funding`, tests/reference.py refuses nothing and fills as the ladder does."""
    import pathlib
    import sys
    from decimal import Decimal

    from bench.peers import plain_ladder

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
    reference = pytest.importorskip("reference")
    commands = workloads.exchange_core_mix(3_000, seed=2)
    oracle = reference.ReferenceEngine()
    for name, decimals in workloads.EXCHANGE_CORE_SETUP["assets"]:
        oracle.add_asset(name, decimals)
    spec = workloads.EXCHANGE_CORE_SETUP["instrument"]
    oracle.add_instrument(spec["symbol"], spec["tick_size"], spec["lot_size"], spec["min_size"])
    for account, asset, amount in workloads.funding(commands):
        assert oracle.deposit(account, asset, Decimal(amount).scaleb(-8))[-1].kind == "deposited"
    events = []
    for row in commands.tolist():
        _, account, order_id, price, size, _, kind, side, order_type, _, _ = row
        if kind == PLACE:
            side_name, type_name = reference.SIDES[side], reference.ORDER_TYPES[order_type]
            events += oracle.place(account, "BTC-USDT", side_name, type_name, Decimal(price), Decimal(size), stp="none")
        elif kind == CANCEL:
            events += oracle.cancel(account, "BTC-USDT", order_id)
        else:
            events += oracle.amend(account, "BTC-USDT", order_id, None, Decimal(price))
    assert not [e for e in events if e.kind == "rejected"]
    fills = [(e.taker_order_id, e.maker_order_id, int(e.price), int(e.size)) for e in events if e.kind == "fill"]
    assert fills == plain_ladder.run(commands).fills


def _engine_events(setup: dict, prefix: np.ndarray, commands: np.ndarray) -> np.ndarray:
    engine_module = pytest.importorskip("pyexchange.engine")
    engine = engine_module.Engine(clock=lambda: 0)
    for name, decimals in setup["assets"]:
        engine.add_asset(name, decimals)
    for spec in setup["instruments"]:
        engine.add_instrument(**spec)
    engine.submit(prefix)
    return engine.submit(commands).copy()


def _fills_and_ids(events: np.ndarray) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    from bench._wire import wire

    fills = events[events["kind"] == wire.FILL][["order_id", "maker_order_id", "price_ticks", "size_lots"]]
    return [tuple(f) for f in fills.tolist()], events[events["kind"] == wire.ACCEPTED]["order_id"].tolist()


def test_engine_takes_the_ids_and_fills_the_workloads_predict(mix: np.ndarray, reference) -> None:
    """Our engine, when built: every predicted id is the one it gives, and the same fills."""
    setup = workloads.EXCHANGE_CORE_SETUP
    instrument = {k: v for k, v in setup["instrument"].items() if k not in ("base", "quote")}
    assets = {name: i for i, (name, _) in enumerate(setup["assets"])}
    prefix = workloads.deposit_commands(workloads.funding(mix), assets)
    fills, ids = _fills_and_ids(_engine_events({"assets": setup["assets"], "instruments": [instrument]}, prefix, mix))
    assert ids == list(range(1, int((mix["kind"] == PLACE).sum()) + 1))
    assert fills == reference.fills
    venue = workloads.venue_workload(N_CROSS_CHECK, seed=4)
    _, _, model = workloads.venue_mix_expected(N_CROSS_CHECK, seed=4)
    fills, ids = _fills_and_ids(_engine_events(venue.setup, venue.prefix, venue.commands))
    assert ids == venue.order_ids[venue.order_ids > 0].tolist()
    assert fills == model.fills
