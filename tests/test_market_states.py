"""Market states and the call auction through the Python face: `set_market_state`,
`market_state` and `auction`, the events they give, bad input refused before it becomes a
command, the batch path's market-state record, and a durable engine that keeps its states and
a crossed auction book across a restart. (The rules themselves are proven in Rust:
`core_rs/tests/auction.rs` against a search over every tick, and `engine_props.rs`.)"""

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from pyexchange import AuctionFigures, Engine, wire
from pyexchange.engine import Event

BTC = "BTC-USDT"


def _market(data_dir: Path | None = None) -> Engine:
    eng = Engine(data_dir=data_dir, clock=lambda: 0) if data_dir else Engine(clock=lambda: 0)
    eng.add_instrument(BTC, tick_size="0.1", lot_size="0.001", min_size="0.001", maker_fee_bps=2, taker_fee_bps=5)
    for account in (1, 2, 3):
        eng.deposit(account, "USDT", "1000000")
        eng.deposit(account, "BTC", "50")
    return eng


def _limit(eng: Engine, account: int, side: str, price: str, size: str) -> list:
    return eng.place(account=account, instrument=BTC, side=side, order_type="limit", price=price, size=size)


def test_a_call_auction_collects_crossing_orders_and_uncrosses_at_one_price() -> None:
    eng = _market()
    _limit(eng, 1, "buy", "30000", "0.5")
    _limit(eng, 2, "sell", "30000", "0.5")  # one continuous trade: the reference price is 30000
    assert eng.market_state(BTC) == "continuous"
    assert eng.auction(BTC) == AuctionFigures(price=None, volume=Decimal(0), imbalance=Decimal(0), imbalance_side=None)

    opened = eng.set_market_state(BTC, "call_auction")
    assert [(e.kind, e.market_state) for e in opened] == [("market_state", "call_auction"), ("auction", None)]
    assert opened[0].price == Decimal("30000"), "the reference price"
    placed = _limit(eng, 1, "buy", "30010", "1")
    assert [e.kind for e in placed] == ["accepted", "auction"], "no fill during the call"
    crossing = _limit(eng, 2, "sell", "29990", "0.4")
    indicative = crossing[-1]
    assert (indicative.kind, indicative.price, indicative.size, indicative.imbalance, indicative.side) == (
        "auction", Decimal("30010.0"), Decimal("0.400"), Decimal("0.600"), "buy"
    )  # fmt: skip
    assert indicative.account is None and indicative.order_id is None
    assert eng.auction(BTC) == AuctionFigures(Decimal("30010.0"), Decimal("0.400"), Decimal("0.600"), "buy")
    eng.check_invariants()  # a crossed book is fine during the call

    uncrossed = eng.set_market_state(BTC, "continuous")
    assert [e.kind for e in uncrossed] == ["fill", "uncross", "market_state"]
    fill, print_, state = uncrossed
    assert (fill.price, fill.size, fill.taker_order_id) == (Decimal("30010.0"), Decimal("0.400"), crossing[0].order_id)
    assert fill.taker_fee == fill.maker_fee, "both sides of an auction pay the maker fee"
    assert (print_.price, print_.size) == (Decimal("30010.0"), Decimal("0.400"))
    assert (state.market_state, state.reason) == ("continuous", None)
    assert eng.book(BTC) == {"bids": [(Decimal("30010.0"), Decimal("0.600"))], "asks": []}
    eng.check_invariants()


def test_an_uncross_outside_the_band_keeps_the_auction_going() -> None:
    eng = _market()
    _limit(eng, 1, "buy", "30000", "0.5")
    _limit(eng, 2, "sell", "30000", "0.5")
    eng.set_market_state(BTC, "call_auction")
    _limit(eng, 1, "buy", "34000", "1")
    _limit(eng, 2, "sell", "33500", "1")
    refused = eng.set_market_state(BTC, "continuous", auction_band_bps=1000)  # 10%: up to 33000
    assert [(e.kind, e.reason) for e in refused] == [("auction", None), ("market_state", "auction_price_outside_band")]
    assert refused[0].price == Decimal("33500.0")
    assert refused[1].market_state == eng.market_state(BTC) == "call_auction"
    assert [e.kind for e in eng.set_market_state(BTC, "continuous", auction_band_bps=1200)][-2:] == [
        "uncross", "market_state"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("state", "order_type", "reason"),
    [
        ("halted", "post_only", "market_halted"),
        ("cancel_only", "post_only", "market_cancel_only"),
        ("pre_open", "limit", "market_pre_open"),
        ("call_auction", "market", "market_call_auction"),
        ("call_auction", "ioc", "market_call_auction"),
    ],
)
def test_a_state_rejects_what_it_forbids_with_its_name(state: str, order_type: str, reason: str) -> None:
    eng = _market()
    eng.set_market_state(BTC, state)
    events = eng.place(account=1, instrument=BTC, side="buy", order_type=order_type, price="100", size="0.001")
    assert [(e.kind, e.reason) for e in events] == [("rejected", reason)]


def test_bad_market_state_input_raises_and_consumes_nothing() -> None:
    eng = _market()
    seq = eng.seq
    with pytest.raises(ValueError, match="market state 'open' is not one of continuous, halted"):
        eng.set_market_state(BTC, "open")
    with pytest.raises(ValueError, match="auction_band_bps 0 must be from 1 to 10000"):
        eng.set_market_state(BTC, "continuous", auction_band_bps=0)
    with pytest.raises(ValueError, match="auction_band_bps must be an integer"):
        eng.set_market_state(BTC, "continuous", auction_band_bps=5.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="DOGE-USDT"):
        eng.set_market_state("DOGE-USDT", "halted")
    assert eng.seq == seq


def test_the_batch_path_takes_market_state_records_and_refuses_bad_ones_whole() -> None:
    eng = _market()
    batch = np.zeros(2, dtype=wire.COMMAND_DTYPE)
    batch["kind"] = wire.SET_MARKET_STATE
    batch["order_type"] = [wire.MARKET_STATES.index("halted"), wire.MARKET_STATES.index("pre_open")]
    batch["size_lots"] = 500
    events = eng.decode_events(eng.submit(batch))
    assert [e.market_state for e in events] == ["halted", "pre_open"]
    seq = eng.seq
    bad = batch.copy()
    bad["order_type"][1] = len(wire.MARKET_STATES)
    with pytest.raises(ValueError, match="unknown market state code 5"):
        eng.submit(bad)
    bad = batch.copy()
    bad["size_lots"][0] = 10_001
    with pytest.raises(ValueError, match="auction band of 10001 bps"):
        eng.submit(bad)
    assert eng.seq == seq and eng.market_state(BTC) == "pre_open"


def test_a_durable_engine_keeps_its_states_and_a_crossed_auction_book_across_a_restart(tmp_path: Path) -> None:
    with _market(tmp_path) as eng:
        eng.set_market_state(BTC, "call_auction")
        _limit(eng, 1, "buy", "101", "2")
        _limit(eng, 2, "sell", "100", "1")
        eng.snapshot()
        _limit(eng, 3, "sell", "99", "1")  # after the snapshot: replayed from the journal
        eng.set_market_state(BTC, "halted")
        figures, state_hash = eng.auction(BTC), eng.state_hash()
    with Engine(data_dir=tmp_path, clock=lambda: 0) as again:
        assert again.state_hash() == state_hash
        assert again.market_state(BTC) == "halted"
        assert again.auction(BTC) == figures == AuctionFigures(Decimal("100.5"), Decimal("2.000"), Decimal(0), None)
        opened = again.set_market_state(BTC, "continuous")
        assert [e.kind for e in opened] == ["fill", "fill", "uncross", "market_state"]
        again.check_invariants()


def test_every_event_of_every_kind_has_every_field() -> None:
    """Each event sets each of its fields (None where the kind has none): decoding takes a path
    per kind, and a field one path forgot would raise only when read."""
    eng = _market()
    events = eng.deposit(4, "USDT", "1000")
    events += _limit(eng, 1, "buy", "30000", "0.5")
    events += _limit(eng, 2, "sell", "30000", "0.2")  # a fill
    resting = _limit(eng, 1, "buy", "29000", "0.5")
    events += resting + eng.amend(1, BTC, order_id=resting[0].order_id, new_size="0.4")
    events += eng.cancel(1, BTC, order_id=resting[0].order_id)
    events += eng.place(account=2, instrument=BTC, side="sell", order_type="ioc", price="30000", size="0.5")
    events += eng.cancel(1, BTC, order_id=10**9)  # rejected
    events += eng.set_market_state(BTC, "call_auction")
    events += _limit(eng, 1, "buy", "30010", "1") + _limit(eng, 2, "sell", "29990", "0.4")
    events += eng.set_market_state(BTC, "continuous")
    assert {event.kind for event in events} == set(wire.EVENT_KINDS) - {""}
    for event in events:
        assert all(hasattr(event, name) for name in Event.FIELDS), repr(event)
