"""Hand-computed scenarios, each run on the reference model and on the real engine: the expected
events, books and balances are worked out by hand in the comments and are the ground truth.

Units of the standard venue (`venue()`): BTC has 8 decimals, USDT 6; BTC-USDT has tick 0.1,
lot 0.001, maker 2 bps, taker 5 bps, protection 500 bps. So price 100.0 is 1000 ticks, a lot is
100_000 BTC units, and notional_units = ticks * lots * 100 (USDT micro-units).
  fee(n, 5 bps) = ceil(n / 2000), fee(n, 2 bps) = ceil(n / 5000)
  per_lot_max(p) = 100p + ceil(100p * 5 / 10000)  (taker 5 > maker 2):
    p=949: 94_948   p=999: 99_950   p=1000: 100_050   p=1001: 100_151   p=1050: 105_053
Setup takes seq 1 (add BTC), 2 (add USDT), 3 (add BTC-USDT); the first command of a test is 4.
"""

from decimal import Decimal as D

import pytest
from reference import EVENT_FIELDS, ReferenceEngine

BTC = "BTC-USDT"
ETH = "ETH-USDT"
STP = "matching_self_trade_prevented"
REMAINDER = "matching_immediate_remainder"


@pytest.fixture(params=["reference", "pyexchange"])
def engine_cls(request: pytest.FixtureRequest) -> type:
    if request.param == "reference":
        return ReferenceEngine
    return pytest.importorskip("pyexchange", exc_type=ImportError).Engine


def add_eth(engine, min_size: str) -> None:
    """ETH (8 decimals) and ETH-USDT: tick 0.01, lot 0.01, taker fee 10 bps, no maker fee."""
    engine.add_asset("ETH", decimals=8)
    engine.add_instrument(
        ETH,
        tick_size="0.01",
        lot_size="0.01",
        min_size=min_size,
        maker_fee_bps=0,
        taker_fee_bps=10,
        market_protection_bps=500,
    )


def venue(engine_cls: type):
    engine = engine_cls()
    engine.add_asset("BTC", decimals=8)
    engine.add_asset("USDT", decimals=6)
    engine.add_instrument(
        BTC,
        tick_size="0.1",
        lot_size="0.001",
        min_size="0.001",
        maker_fee_bps=2,
        taker_fee_bps=5,
        market_protection_bps=500,
    )
    return engine


def limit(engine, account, side, price, size, order_type="limit", stp="cancel_maker", inst=BTC):
    return engine.place(
        account=account, instrument=inst, side=side, order_type=order_type, price=price, size=size, stp=stp
    )


def accepted(seq, order_id, account, side, price, size, inst=BTC):
    return {
        "kind": "accepted",
        "seq": seq,
        "order_id": order_id,
        "account": account,
        "instrument": inst,
        "side": side,
        "price": D(price),
        "size": D(size),
    }


def closed(kind, seq, order_id, account, side, price, size, reason=None, inst=BTC):
    """A canceled, expired or amended event: size is the remaining (or the new total) size."""
    return {**accepted(seq, order_id, account, side, price, size, inst), "kind": kind, "reason": reason}


def fill(seq, side, taker, maker, price, size, taker_fee, maker_fee):
    """taker and maker are (order_id, account)."""
    return {
        "kind": "fill",
        "seq": seq,
        "order_id": taker[0],
        "account": taker[1],
        "instrument": BTC,
        "side": side,
        "price": D(price),
        "size": D(size),
        "taker_order_id": taker[0],
        "taker_account": taker[1],
        "maker_order_id": maker[0],
        "maker_account": maker[1],
        "taker_fee": D(taker_fee),
        "maker_fee": D(maker_fee),
    }


def deposited(seq, account, asset, amount):
    return {"kind": "deposited", "seq": seq, "account": account, "asset": asset, "size": D(amount)}


def rejected(seq, account, reason, order_id=None):
    return {"kind": "rejected", "seq": seq, "account": account, "order_id": order_id, "reason": reason}


def check_events(events, expected):
    """Rejections are compared on the fields given; other events on every field (absent = None)."""
    got, want = [], []
    for event, fields in zip(events, expected, strict=False):
        names = fields if fields["kind"] == "rejected" else EVENT_FIELDS
        got.append({name: getattr(event, name) for name in names})
        want.append({name: fields.get(name) for name in names})
    assert len(events) == len(expected), events
    assert got == want


def check_balances(engine, expected):
    """expected maps (account, asset) to (available, frozen)."""
    got = {key: engine.balance(account=key[0], asset=key[1]) for key in expected}
    assert got == {key: (D(a), D(f)) for key, (a, f) in expected.items()}


def check_book(engine, bids, asks, inst=BTC):
    book = engine.book(inst, depth=10)
    assert book == {"bids": [(D(p), D(s)) for p, s in bids], "asks": [(D(p), D(s)) for p, s in asks]}
    engine.check_invariants()


def test_simple_cross(engine_cls):
    engine = venue(engine_cls)
    check_events(engine.deposit(account=1, asset="BTC", amount="1"), [deposited(4, 1, "BTC", "1")])
    engine.deposit(account=2, asset="USDT", amount="100")  # seq 5
    # Sell 10 lots at 1000 ticks: 1_000_000 BTC units frozen.
    check_events(limit(engine, 1, "sell", "100.0", "0.01"), [accepted(6, 1, 1, "sell", "100.0", "0.01")])
    # Buy 4 lots at 1000: hold 4 * 100_050 = 400_200. Fill 4 lots at 1000: notional 400_000,
    # taker fee 200, maker fee 80; the buyer pays 400_200, exactly its hold.
    events = engine.place(
        account=2,
        instrument=BTC,
        side="buy",
        order_type="limit",
        price=D("100.0"),
        size="0.004",
        client_order_id="abc-1",
    )
    check_events(
        events,
        [
            accepted(7, 2, 2, "buy", "100.0", "0.004"),
            fill(7, "buy", (2, 2), (1, 1), "100.0", "0.004", "0.0002", "0.00008"),
        ],
    )
    assert all(isinstance(v, D) for v in (events[1].price, events[1].size, events[1].taker_fee))
    check_balances(
        engine,
        {
            (1, "BTC"): ("0.99", "0.006"),
            (1, "USDT"): ("0.39992", "0"),  # 400_000 - 80
            (2, "BTC"): ("0.004", "0"),
            (2, "USDT"): ("99.5998", "0"),  # 100 - 0.4002
            (0, "USDT"): ("0.00028", "0"),  # 200 + 80
        },
    )
    check_book(engine, bids=[], asks=[("100.0", "0.006")])
    maker, taker = engine.order(account=1, order_id=1), engine.order(account=2, order_id=2)
    assert (maker.state, maker.filled_size, maker.average_price) == ("partially_filled", D("0.004"), D(100))
    assert (taker.state, taker.size, taker.average_price) == ("filled", D("0.004"), D(100))
    assert (taker.client_order_id, taker.stp, taker.order_type) == ("abc-1", "cancel_maker", "limit")
    assert (maker.client_order_id, taker.instrument, taker.side) == (None, BTC, "buy")
    assert engine.order(account=1, order_id=2) is None  # another account's order
    assert engine.order(account=1, order_id=99) is None


def test_partial_fills_across_levels_round_fees_up_and_release_the_buy_hold(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=2, asset="USDT", amount="100")  # seq 5
    limit(engine, 1, "sell", "100.1", "0.002")  # seq 6, id 1
    limit(engine, 1, "sell", "100.2", "0.003")  # seq 7, id 2
    limit(engine, 1, "sell", "100.3", "0.005")  # seq 8, id 3
    # Buy 6 lots at 1002: hold 6 * 100_251 = 601_506.
    # Fill 2 lots at 1001: notional 200_200, taker fee ceil(100.1) = 101, maker ceil(40.04) = 41;
    #   paid 200_301 of a 200_502 hold: 201 released.
    # Fill 3 lots at 1002: notional 300_600, taker fee ceil(150.3) = 151, maker ceil(60.12) = 61;
    #   paid 300_751 of a 300_753 hold: 2 released. 1 lot rests at 1002 (1003 does not cross).
    check_events(
        limit(engine, 2, "buy", "100.2", "0.006"),
        [
            accepted(9, 4, 2, "buy", "100.2", "0.006"),
            fill(9, "buy", (4, 2), (1, 1), "100.1", "0.002", "0.000101", "0.000041"),
            fill(9, "buy", (4, 2), (2, 1), "100.2", "0.003", "0.000151", "0.000061"),
        ],
    )
    check_balances(
        engine,
        {
            # 100_000_000 - 200_301 - 300_751 - 100_251 (the hold of the resting lot)
            (2, "USDT"): ("99.398697", "0.100251"),
            (2, "BTC"): ("0.005", "0"),
            (1, "USDT"): ("0.500698", "0"),  # 200_159 + 300_539
            (1, "BTC"): ("0.99", "0.005"),
            (0, "USDT"): ("0.000354", "0"),  # 101 + 41 + 151 + 61
        },
    )
    check_book(engine, bids=[("100.2", "0.001")], asks=[("100.3", "0.005")])
    order = engine.order(account=2, order_id=4)
    # avg = (1001 * 2 + 1002 * 3) / 5 = 1001.6 ticks
    assert (order.state, order.filled_size, order.average_price) == ("partially_filled", D("0.005"), D("100.16"))


def test_price_time_priority(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=2, asset="BTC", amount="1")  # seq 5
    engine.deposit(account=3, asset="USDT", amount="10")  # seq 6
    limit(engine, 1, "sell", "100.0", "0.002")  # seq 7, id 1: first at 100.0
    limit(engine, 2, "sell", "100.0", "0.002")  # seq 8, id 2: second at 100.0
    limit(engine, 1, "sell", "99.9", "0.002")  # seq 9, id 3: better price, latest
    check_book(engine, bids=[], asks=[("99.9", "0.002"), ("100.0", "0.004")])
    # 999 * 2 lots: notional 199_800, fees ceil(99.9) = 100 and ceil(39.96) = 40;
    # 1000 * 2: 200_000, fees 100 and 40; 1000 * 1: 100_000, fees 50 and 20.
    check_events(
        limit(engine, 3, "buy", "100.0", "0.005"),
        [
            accepted(10, 4, 3, "buy", "100.0", "0.005"),
            fill(10, "buy", (4, 3), (3, 1), "99.9", "0.002", "0.0001", "0.00004"),
            fill(10, "buy", (4, 3), (1, 1), "100.0", "0.002", "0.0001", "0.00004"),
            fill(10, "buy", (4, 3), (2, 2), "100.0", "0.001", "0.00005", "0.00002"),
        ],
    )
    check_book(engine, bids=[], asks=[("100.0", "0.001")])
    # Paid 199_900 + 200_100 + 100_050 = 500_050 of a 500_250 hold.
    check_balances(engine, {(3, "USDT"): ("9.49995", "0"), (3, "BTC"): ("0.005", "0"), (2, "BTC"): ("0.998", "0.001")})
    assert engine.order(account=2, order_id=2).state == "partially_filled"


def test_market_orders_stop_at_the_protection_bound(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=2, asset="USDT", amount="1")  # seq 5
    limit(engine, 1, "sell", "100.0", "0.002")  # seq 6, id 1
    limit(engine, 1, "sell", "104.0", "0.002")  # seq 7, id 2
    limit(engine, 1, "sell", "106.0", "0.002")  # seq 8, id 3
    # Bound floor(1000 * 10500 / 10000) = 1050; hold 5 * 105_053 = 525_265 <= 1_000_000.
    # 2 lots at 1000 (fees 100, 40); 2 lots at 1040: notional 208_000, fees 104, ceil(41.6) = 42;
    # 1060 > 1050 stops it: the last lot expires.
    events = engine.place(account=2, instrument=BTC, side="buy", order_type="market", price=None, size="0.005")
    check_events(
        events,
        [
            accepted(9, 4, 2, "buy", "105.0", "0.005"),
            fill(9, "buy", (4, 2), (1, 1), "100.0", "0.002", "0.0001", "0.00004"),
            fill(9, "buy", (4, 2), (2, 1), "104.0", "0.002", "0.000104", "0.000042"),
            closed("expired", 9, 4, 2, "buy", "105.0", "0.001", REMAINDER),
        ],
    )
    # 1_000_000 - 200_100 - 208_104
    check_balances(engine, {(2, "USDT"): ("0.591796", "0"), (2, "BTC"): ("0.004", "0")})
    order = engine.order(account=2, order_id=4)
    assert (order.order_type, order.price, order.state) == ("market", D("105.0"), "canceled")
    assert (order.filled_size, order.average_price) == (D("0.004"), D("102.0"))
    check_book(engine, bids=[], asks=[("106.0", "0.002")])
    events = engine.place(account=2, instrument=BTC, side="sell", order_type="market", size="0.001")
    check_events(events, [rejected(10, 2, "matching_no_liquidity")])
    limit(engine, 2, "buy", "100.0", "0.001")  # seq 11, id 5: hold 100_050
    limit(engine, 2, "buy", "94.9", "0.001")  # seq 12, id 6: hold 94_948
    # Sell bound max(1, ceil(1000 * 9500 / 10000)) = 950: one lot at 1000 (the seller is the
    # taker: fee 50, the buyer's maker fee 20), then 949 < 950 stops it.
    events = engine.place(account=1, instrument=BTC, side="sell", order_type="market", size="0.003")
    check_events(
        events,
        [
            accepted(13, 7, 1, "sell", "95.0", "0.003"),
            fill(13, "sell", (7, 1), (5, 2), "100.0", "0.001", "0.00005", "0.00002"),
            closed("expired", 13, 7, 1, "sell", "95.0", "0.002", REMAINDER),
        ],
    )
    check_book(engine, bids=[("94.9", "0.001")], asks=[("106.0", "0.002")])
    # 591_796 - 100_050 - 94_948 = 396_798; the fill returns 100_050 - 100_020 = 30.
    check_balances(engine, {(2, "USDT"): ("0.396828", "0.094948"), (2, "BTC"): ("0.005", "0")})


def test_ioc_fills_what_it_can_and_expires_the_rest(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=2, asset="USDT", amount="1")  # seq 5
    limit(engine, 1, "sell", "100.0", "0.002")  # seq 6, id 1
    check_events(
        limit(engine, 2, "buy", "100.0", "0.005", order_type="ioc"),
        [
            accepted(7, 2, 2, "buy", "100.0", "0.005"),
            fill(7, "buy", (2, 2), (1, 1), "100.0", "0.002", "0.0001", "0.00004"),
            closed("expired", 7, 2, 2, "buy", "100.0", "0.003", REMAINDER),
        ],
    )
    check_events(
        limit(engine, 2, "buy", "99.0", "0.001", order_type="ioc"),
        [accepted(8, 3, 2, "buy", "99.0", "0.001"), closed("expired", 8, 3, 2, "buy", "99.0", "0.001", REMAINDER)],
    )
    check_book(engine, bids=[], asks=[])
    check_balances(engine, {(2, "USDT"): ("0.7999", "0")})  # 1_000_000 - 200_100
    assert engine.order(account=2, order_id=2).state == "canceled"


def test_fok_fills_entirely_or_not_at_all(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=2, asset="USDT", amount="1")  # seq 5
    limit(engine, 1, "sell", "100.0", "0.002")  # seq 6, id 1
    limit(engine, 1, "sell", "100.1", "0.002")  # seq 7, id 2
    # Only 2 lots cross 1000: not fillable, nothing trades, the hold is released.
    check_events(
        limit(engine, 2, "buy", "100.0", "0.003", order_type="fok"),
        [
            accepted(8, 3, 2, "buy", "100.0", "0.003"),
            closed("expired", 8, 3, 2, "buy", "100.0", "0.003", "matching_fok_not_fillable"),
        ],
    )
    check_balances(engine, {(2, "USDT"): ("1", "0")})
    check_book(engine, bids=[], asks=[("100.0", "0.002"), ("100.1", "0.002")])
    # 1 lot at 1001: notional 100_100, fees ceil(50.05) = 51 and ceil(20.02) = 21.
    check_events(
        limit(engine, 2, "buy", "100.1", "0.003", order_type="fok"),
        [
            accepted(9, 4, 2, "buy", "100.1", "0.003"),
            fill(9, "buy", (4, 2), (1, 1), "100.0", "0.002", "0.0001", "0.00004"),
            fill(9, "buy", (4, 2), (2, 1), "100.1", "0.001", "0.000051", "0.000021"),
        ],
    )
    check_balances(engine, {(2, "USDT"): ("0.699749", "0")})  # 1_000_000 - 200_100 - 100_151
    check_book(engine, bids=[], asks=[("100.1", "0.001")])
    assert engine.order(account=2, order_id=4).state == "filled"


def test_post_only_never_takes(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=2, asset="USDT", amount="1")  # seq 5
    limit(engine, 1, "sell", "100.0", "0.002")  # seq 6, id 1
    check_events(
        limit(engine, 2, "buy", "100.0", "0.001", order_type="post_only"),
        [rejected(7, 2, "matching_post_only_would_cross")],
    )
    check_events(
        limit(engine, 2, "buy", "99.9", "0.001", order_type="post_only"), [accepted(8, 2, 2, "buy", "99.9", "0.001")]
    )
    events = engine.amend(account=2, instrument=BTC, order_id=2, new_price="100.0")
    check_events(events, [rejected(9, 2, "matching_post_only_would_cross", order_id=2)])
    events = engine.amend(account=2, instrument=BTC, order_id=2, new_price="99.8")
    check_events(events, [closed("amended", 10, 2, 2, "buy", "99.8", "0.001")])
    check_book(engine, bids=[("99.8", "0.001")], asks=[("100.0", "0.002")])


def stp_venue(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=1, asset="USDT", amount="1")  # seq 5
    engine.deposit(account=2, asset="BTC", amount="1")  # seq 6
    limit(engine, 1, "sell", "100.0", "0.002")  # seq 7, id 1: account 1's own, first in line
    limit(engine, 2, "sell", "100.0", "0.002")  # seq 8, id 2
    return engine


# Account 1 buys 3 lots at 1000 (hold 300_150) into its own ask (id 1) and account 2's (id 2).
STP_CASES = {
    "cancel_maker": (  # its own ask expires, the other fills 2 lots, 1 lot rests
        [
            closed("expired", 9, 1, 1, "sell", "100.0", "0.002", STP),
            fill(9, "buy", (3, 1), (2, 2), "100.0", "0.002", "0.0001", "0.00004"),
        ],
        [("100.0", "0.001")],
        [],
        {(1, "USDT"): ("0.69985", "0.10005"), (1, "BTC"): ("1.002", "0"), (0, "USDT"): ("0.00014", "0")},
    ),
    "cancel_taker": (
        [closed("expired", 9, 3, 1, "buy", "100.0", "0.003", STP)],
        [],
        [("100.0", "0.004")],
        {(1, "USDT"): ("1", "0"), (1, "BTC"): ("0.998", "0.002"), (0, "USDT"): ("0", "0")},
    ),
    "cancel_both": (  # maker first, then taker
        [
            closed("expired", 9, 1, 1, "sell", "100.0", "0.002", STP),
            closed("expired", 9, 3, 1, "buy", "100.0", "0.003", STP),
        ],
        [],
        [("100.0", "0.002")],
        {(1, "USDT"): ("1", "0"), (1, "BTC"): ("1", "0"), (0, "USDT"): ("0", "0")},
    ),
    "none": (  # trades with itself: pays 200_100, gets 199_960 back; then 100_050 to account 2
        [
            fill(9, "buy", (3, 1), (1, 1), "100.0", "0.002", "0.0001", "0.00004"),
            fill(9, "buy", (3, 1), (2, 2), "100.0", "0.001", "0.00005", "0.00002"),
        ],
        [],
        [("100.0", "0.001")],
        {(1, "USDT"): ("0.89981", "0"), (1, "BTC"): ("1.001", "0"), (0, "USDT"): ("0.00021", "0")},
    ),
}


@pytest.mark.parametrize("stp", list(STP_CASES))
def test_self_trade_prevention(engine_cls, stp):
    engine = stp_venue(engine_cls)
    after_accept, bids, asks, balances = STP_CASES[stp]
    events = limit(engine, 1, "buy", "100.0", "0.003", stp=stp)
    check_events(events, [accepted(9, 3, 1, "buy", "100.0", "0.003"), *after_accept])
    check_book(engine, bids, asks)
    check_balances(engine, balances)


# Account 1 FOK-buys 2 lots at 1000; its own 2 lots come first, account 2's 2 lots after.
FOK_STP_CASES = {
    "cancel_maker": (  # own order skipped by the walk: fillable; matching expires it
        [
            closed("expired", 9, 1, 1, "sell", "100.0", "0.002", STP),
            fill(9, "buy", (3, 1), (2, 2), "100.0", "0.002", "0.0001", "0.00004"),
        ],
        [],
    ),
    "cancel_taker": (  # own order ends the walk: not fillable, the book is untouched
        [closed("expired", 9, 3, 1, "buy", "100.0", "0.002", "matching_fok_not_fillable")],
        [("100.0", "0.004")],
    ),
    "cancel_both": (
        [closed("expired", 9, 3, 1, "buy", "100.0", "0.002", "matching_fok_not_fillable")],
        [("100.0", "0.004")],
    ),
    "none": (  # own order counted: fillable against itself
        [fill(9, "buy", (3, 1), (1, 1), "100.0", "0.002", "0.0001", "0.00004")],
        [("100.0", "0.002")],
    ),
}


@pytest.mark.parametrize("stp", list(FOK_STP_CASES))
def test_fok_fillability_walk_follows_stp(engine_cls, stp):
    engine = stp_venue(engine_cls)
    after_accept, asks = FOK_STP_CASES[stp]
    events = limit(engine, 1, "buy", "100.0", "0.002", order_type="fok", stp=stp)
    check_events(events, [accepted(9, 3, 1, "buy", "100.0", "0.002"), *after_accept])
    check_book(engine, [], asks)


def test_amend_size_down_keeps_priority(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 4
    engine.deposit(account=2, asset="BTC", amount="1")  # seq 5
    engine.deposit(account=3, asset="USDT", amount="1")  # seq 6
    limit(engine, 1, "sell", "100.0", "0.003")  # seq 7, id 1
    limit(engine, 2, "sell", "100.0", "0.002")  # seq 8, id 2
    events = engine.amend(account=1, instrument=BTC, order_id=1, new_size="0.001")
    check_events(events, [closed("amended", 9, 1, 1, "sell", "100.0", "0.001")])
    check_balances(engine, {(1, "BTC"): ("0.999", "0.001")})
    check_book(engine, bids=[], asks=[("100.0", "0.003")])
    # id 1 is still first: 1 lot from it, then 1 from id 2 (1 lot at 1000: fees 50 and 20).
    check_events(
        limit(engine, 3, "buy", "100.0", "0.002"),
        [
            accepted(10, 3, 3, "buy", "100.0", "0.002"),
            fill(10, "buy", (3, 3), (1, 1), "100.0", "0.001", "0.00005", "0.00002"),
            fill(10, "buy", (3, 3), (2, 2), "100.0", "0.001", "0.00005", "0.00002"),
        ],
    )
    order = engine.order(account=1, order_id=1)
    assert (order.state, order.size) == ("filled", D("0.001"))


def test_amend_size_up_loses_priority(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="USDT", amount="1")  # seq 4
    engine.deposit(account=3, asset="USDT", amount="1")  # seq 5
    engine.deposit(account=2, asset="BTC", amount="1")  # seq 6
    limit(engine, 1, "buy", "99.9", "0.001")  # seq 7, id 1
    limit(engine, 3, "buy", "99.9", "0.001")  # seq 8, id 2
    events = engine.amend(account=1, instrument=BTC, order_id=1, new_size="0.002")
    check_events(events, [closed("amended", 9, 1, 1, "buy", "99.9", "0.002")])
    check_balances(engine, {(1, "USDT"): ("0.8001", "0.1999")})  # hold 2 * 99_950
    # id 2 is now first. Account 2 sells 1 lot at 999 (notional 99_900): taker fee
    # ceil(49.95) = 50, maker fee ceil(19.98) = 20.
    check_events(
        limit(engine, 2, "sell", "99.9", "0.001"),
        [
            accepted(10, 3, 2, "sell", "99.9", "0.001"),
            fill(10, "sell", (3, 2), (2, 3), "99.9", "0.001", "0.00005", "0.00002"),
        ],
    )
    check_book(engine, bids=[("99.9", "0.002")], asks=[])


def test_amend_price_loses_priority_and_can_match(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="USDT", amount="1")  # seq 4
    engine.deposit(account=2, asset="BTC", amount="1")  # seq 5
    limit(engine, 2, "sell", "100.1", "0.002")  # seq 6, id 1
    limit(engine, 1, "buy", "99.9", "0.003")  # seq 7, id 2: hold 3 * 99_950 = 299_850
    # New hold 3 * 100_151 = 300_453. It re-enters as a taker: 2 lots at 1001, notional 200_200,
    # taker fee 101 (paid by account 1), maker fee 41; 1 lot rests at 1001.
    events = engine.amend(account=1, instrument=BTC, order_id=2, new_price="100.1")
    check_events(
        events,
        [
            closed("amended", 8, 2, 1, "buy", "100.1", "0.003"),
            fill(8, "buy", (2, 1), (1, 2), "100.1", "0.002", "0.000101", "0.000041"),
        ],
    )
    check_book(engine, bids=[("100.1", "0.001")], asks=[])
    check_balances(
        engine,
        {
            (1, "USDT"): ("0.699548", "0.100151"),  # 1_000_000 - 200_301 - 100_151
            (1, "BTC"): ("0.002", "0"),
            (2, "USDT"): ("0.200159", "0"),
            (0, "USDT"): ("0.000142", "0"),
        },
    )
    order = engine.order(account=1, order_id=2)
    assert (order.price, order.size, order.filled_size, order.state) == (
        D("100.1"),
        D("0.003"),
        D("0.002"),
        "partially_filled",
    )


def test_amend_rejections_leave_the_order_untouched(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="USDT", amount="0.3")  # seq 4: 300_000
    engine.deposit(account=2, asset="BTC", amount="1")  # seq 5
    limit(engine, 1, "buy", "99.9", "0.002")  # seq 6, id 1: hold 199_900, 100_100 left
    # Account 2 sells 1 lot into it; account 1 (maker) pays 99_900 + 20 of a 99_950 hold.
    limit(engine, 2, "sell", "99.9", "0.001")  # seq 7, id 2
    check_balances(engine, {(1, "USDT"): ("0.10013", "0.09995")})

    def amend(account, **changes):
        return engine.amend(account=account, instrument=BTC, order_id=1, **changes)

    check_events(amend(2, new_size="0.003"), [rejected(8, 2, "matching_unknown_order", 1)])
    check_events(amend(1), [rejected(9, 1, "matching_amend_no_change", 1)])
    check_events(amend(1, new_size="0.001"), [rejected(10, 1, "matching_amend_size_not_above_filled", 1)])
    # 3 more lots need 299_850 > 100_130 available + 99_950 held.
    check_events(amend(1, new_size="0.004"), [rejected(11, 1, "ledger_insufficient_funds", 1)])
    check_balances(engine, {(1, "USDT"): ("0.10013", "0.09995")})
    # 2 more lots need 199_900 <= 200_080.
    check_events(amend(1, new_size="0.003"), [closed("amended", 12, 1, 1, "buy", "99.9", "0.003")])
    check_balances(engine, {(1, "USDT"): ("0.00018", "0.1999")})
    check_events(
        engine.cancel(account=2, instrument=BTC, order_id=2),  # filled, so not live
        [rejected(13, 2, "matching_unknown_order", 2)],
    )
    order = engine.order(account=1, order_id=1)
    assert (order.size, order.filled_size, order.state) == (D("0.003"), D("0.001"), "partially_filled")


def test_cancel_and_cancel_all(engine_cls):
    engine = venue(engine_cls)
    add_eth(engine, min_size="0.01")  # seq 4 (asset) and 5 (instrument)
    engine.deposit(account=1, asset="BTC", amount="1")  # seq 6
    engine.deposit(account=1, asset="USDT", amount="10")  # seq 7
    engine.deposit(account=2, asset="BTC", amount="1")  # seq 8
    limit(engine, 1, "sell", "101.0", "0.001")  # seq 9, id 1
    limit(engine, 1, "buy", "20.00", "0.01", inst=ETH)  # seq 10, id 2
    limit(engine, 1, "buy", "99.0", "0.001")  # seq 11, id 3
    limit(engine, 2, "sell", "101.0", "0.001")  # seq 12, id 4
    check_events(engine.cancel(account=2, instrument=BTC, order_id=1), [rejected(13, 2, "matching_unknown_order", 1)])
    check_events(engine.cancel(account=1, instrument=ETH, order_id=1), [rejected(14, 1, "matching_unknown_order", 1)])
    check_events(
        engine.cancel_all(account=1, instrument=BTC),
        [closed("canceled", 15, 1, 1, "sell", "101.0", "0.001"), closed("canceled", 15, 3, 1, "buy", "99.0", "0.001")],
    )
    check_events(
        engine.cancel_all(account=1, instrument=None), [closed("canceled", 16, 2, 1, "buy", "20.00", "0.01", inst=ETH)]
    )
    assert engine.cancel_all(account=1, instrument=None) == []  # seq 17, no events
    check_events(engine.cancel(account=1, instrument=BTC, order_id=1), [rejected(18, 1, "matching_unknown_order", 1)])
    check_book(engine, bids=[], asks=[("101.0", "0.001")])
    check_book(engine, bids=[], asks=[], inst=ETH)
    check_balances(engine, {(1, "BTC"): ("1", "0"), (1, "USDT"): ("10", "0")})
    assert engine.order(account=1, order_id=1).state == "canceled"


def test_insufficient_funds_and_ledger_rejections(engine_cls):
    engine = venue(engine_cls)
    check_events(engine.deposit(account=1, asset="USDT", amount="0.1"), [deposited(4, 1, "USDT", "0.1")])
    # The hold includes the highest fee: 100_050 > 100_000, although the notional would fit.
    check_events(limit(engine, 1, "buy", "100.0", "0.001"), [rejected(5, 1, "ledger_insufficient_funds")])
    check_balances(engine, {(1, "USDT"): ("0.1", "0")})
    check_events(limit(engine, 1, "buy", "99.9", "0.001"), [accepted(6, 1, 1, "buy", "99.9", "0.001")])
    check_balances(engine, {(1, "USDT"): ("0.00005", "0.09995")})
    check_events(limit(engine, 1, "sell", "101.0", "0.001"), [rejected(7, 1, "ledger_insufficient_funds")])
    check_events(engine.deposit(account=0, asset="USDT", amount="5"), [rejected(8, 0, "ledger_reserved_account")])
    check_events(engine.deposit(account=1, asset="USDT", amount="0"), [rejected(9, 1, "ledger_amount_invalid")])
    check_events(limit(engine, 0, "buy", "99.9", "0.001"), [rejected(10, 0, "ledger_reserved_account")])
    # A market sell passes the liquidity check (a bid rests) and fails on funds.
    events = engine.place(account=2, instrument=BTC, side="sell", order_type="market", size="0.001")
    check_events(events, [rejected(11, 2, "ledger_insufficient_funds")])
    check_balances(engine, {(2, "BTC"): ("0", "0"), (0, "USDT"): ("0", "0")})
    check_book(engine, bids=[("99.9", "0.001")], asks=[])


def test_input_errors_raise_and_take_no_seq(engine_cls):
    engine = venue(engine_cls)
    add_eth(engine, min_size="0.05")  # seq 4 (asset) and 5 (instrument)
    engine.deposit(account=1, asset="USDT", amount="100")  # seq 6
    limit(engine, 1, "buy", "99.9", "0.001")  # seq 7, id 1
    good = {"account": 1, "instrument": BTC, "side": "buy", "order_type": "limit", "price": "99.9", "size": "0.001"}
    bad_places = [
        {"price": "99.95"},  # off the tick
        {"size": "0.0015"},  # off the lot
        {"size": "0"},  # below min_size
        {"instrument": ETH, "price": "20.00", "size": "0.03"},  # below min_size 0.05
        {"price": "0"},
        {"price": "-0.1"},
        {"price": None},  # a limit order needs a price
        {"instrument": "DOGE-USDT"},
        {"side": "hold"},
        {"order_type": "stop"},
        {"stp": "cancel_everything"},
    ]
    for change in bad_places:
        with pytest.raises(ValueError):
            engine.place(**{**good, **change})
    for bad_amend in ({"new_price": "99.95"}, {"new_size": "0.0015"}, {"new_price": "0"}):
        with pytest.raises(ValueError):
            engine.amend(account=1, instrument=BTC, order_id=1, **bad_amend)
    for asset, amount in (("DOGE", "1"), ("USDT", "0.0000001"), ("USDT", "-1")):
        with pytest.raises(ValueError):
            engine.deposit(account=1, asset=asset, amount=amount)
    with pytest.raises(ValueError):
        engine.cancel(account=1, instrument="DOGE-USDT", order_id=1)
    with pytest.raises(ValueError):
        engine.balance(account=1, asset="DOGE")
    # None of these took a seq or an order id.
    check_events(limit(engine, 1, "buy", "99.8", "0.001"), [accepted(8, 2, 1, "buy", "99.8", "0.001")])
    check_book(engine, bids=[("99.9", "0.001"), ("99.8", "0.001")], asks=[])


def test_add_instrument_creates_unknown_assets_with_8_decimals(engine_cls):
    engine = engine_cls()
    engine.add_instrument(
        "SOL-EUR",
        tick_size="0.01",
        lot_size="0.1",
        min_size="0.1",
        maker_fee_bps=0,
        taker_fee_bps=0,
        market_protection_bps=500,
    )
    # Each new asset is an add_asset of its own: SOL seq 1, EUR seq 2, SOL-EUR seq 3.
    events = engine.deposit(account=1, asset="SOL", amount="0.00000001")
    check_events(events, [deposited(4, 1, "SOL", "0.00000001")])
    assert engine.balance(account=1, asset="SOL") == (D("0.00000001"), D(0))
    assert engine.balance(account=2, asset="EUR") == (D(0), D(0))  # an account never seen
    with pytest.raises(ValueError):
        engine.deposit(account=1, asset="EUR", amount="0.000000001")


def test_client_order_id_retries_get_the_original_outcome(engine_cls):
    engine = venue(engine_cls)
    engine.deposit(account=1, asset="USDT", amount="1000")  # seq 4
    engine.deposit(account=2, asset="USDT", amount="0.1")  # seq 5
    place = {"account": 1, "instrument": BTC, "side": "buy", "order_type": "limit", "price": "100.0"}
    first = engine.place(**place, size="0.002", client_order_id="c-1")  # seq 6, order 1
    check_events(first, [accepted(6, 1, 1, "buy", "100.0", "0.002")])
    # The same place again is a retry: the original accepted event, no new command.
    retry = engine.place(**place, size="0.002", client_order_id="c-1")
    check_events(retry, [accepted(6, 1, 1, "buy", "100.0", "0.002")])
    # The same id with other parameters is refused while the order is known (seq 7: the
    # retry took no sequence number).
    changed = engine.place(**place, size="0.003", client_order_id="c-1")
    check_events(changed, [rejected(7, 1, "order_client_order_id_in_use")])
    # Another account's id space is its own: account 2's 0.1 USDT cannot hold 2 lots (0.2001).
    check_events(
        engine.place(**{**place, "account": 2}, size="0.002", client_order_id="c-1"),
        [rejected(8, 2, "ledger_insufficient_funds")],
    )
    # A canceled order is still known: the retry still gets the original acceptance.
    engine.cancel(account=1, instrument=BTC, order_id=1)  # seq 9
    check_events(
        engine.place(**place, size="0.002", client_order_id="c-1"), [accepted(6, 1, 1, "buy", "100.0", "0.002")]
    )
    # A rejected place leaves no known order: its id may be used again (and is accepted now).
    engine.deposit(account=2, asset="USDT", amount="999.9")  # seq 10
    check_events(
        engine.place(**{**place, "account": 2}, size="0.002", client_order_id="c-1"),
        [accepted(11, 2, 2, "buy", "100.0", "0.002")],
    )
    check_balances(engine, {(1, "USDT"): ("1000", "0"), (2, "USDT"): ("999.7999", "0.2001")})
