"""Market data against slow, obvious models and against ccxt's own OKX code: hypothesis drives random books
and trade streams, and after every step a dict-based subscriber, ccxt.pro's okx order book handler and a
brute-force candle builder must agree with what the module sends.

Set HYPOTHESIS_PROFILE=long for a deeper run.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any

import ccxt
import ccxt.pro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyexchange.gateway.market_data import (
    BARS,
    BOOKS_DEPTH_MAX,
    CANDLES_LIMIT_MAX,
    DAY_MINUTES,
    MINUTE_MS,
    BookFeed,
    Candles,
    Level,
    Trade,
    decimal_str,
    okx_checksum,
)

EXAMPLES_MAX = 2_000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 150
SETTINGS = settings(max_examples=EXAMPLES_MAX, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CANONICAL = re.compile(r"^-?(0|[1-9]\d*)(\.\d*[1-9])?$")  # no exponent, no trailing zeros, no leading zeros
INST_ID, SYMBOL = "BTC-USDT", "BTC/USDT"
# An OKX GET /api/v5/public/instruments item, for ccxt's markets.
SPOT_INSTRUMENT = {
    "instType": "SPOT", "instId": INST_ID, "uly": "", "instFamily": "", "baseCcy": "BTC", "quoteCcy": "USDT",
    "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "", "stk": "", "listTime": "1606468572000",
    "expTime": "", "lever": "10", "tickSz": "0.1", "lotSz": "0.00000001", "minSz": "0.00001", "ctType": "",
    "alias": "", "state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000", "ruleType": "normal",
}  # fmt: skip
T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


# ---------------------------------------------------------------------------------------------------------
# decimal_str and okx_checksum


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("30000.10", "30000.1"),
        ("1E+1", "10"),
        ("0", "0"),
        ("-0", "0"),
        ("0E-8", "0"),
        ("0.00000001", "0.00000001"),
        ("1E-8", "0.00000001"),
        ("100", "100"),
        ("100.000", "100"),
        ("1.2300E+3", "1230"),
        ("-2.50", "-2.5"),
        ("123456789012345678901234567890.1234567890", "123456789012345678901234567890.123456789"),
    ],
)
def test_decimal_str_is_canonical(value: str, text: str) -> None:
    assert decimal_str(Decimal(value)) == text


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_str_round_trips_and_is_canonical(value: Decimal) -> None:
    text = decimal_str(value)
    assert CANONICAL.match(text), text
    assert Decimal(text) == value


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_decimal_str_refuses_non_finite(value: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        decimal_str(Decimal(value))


def test_okx_checksum_matches_okx_documented_examples() -> None:
    # OKX's checksum examples; the values are the ones OKX's v3 depth docs print next to these books.
    assert okx_checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == -1881014294
    assert okx_checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")]) == 831078360


def reference_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX's rule written out the long way: "bid1:ask1:bid2:ask2:...", 25 a side, signed CRC32."""
    pairs = [f"{px}:{sz}" for i in range(25) for side in (bids, asks) if i < len(side) for px, sz in [side[i]]]
    unsigned = zlib.crc32(":".join(pairs).encode())
    return int.from_bytes(unsigned.to_bytes(4, "big"), "big", signed=True)


def test_okx_checksum_takes_only_the_top_25_a_side() -> None:
    bids = [(str(1000 - i), str(i + 1)) for i in range(30)]
    asks = [(str(1001 + i), "2") for i in range(3)]
    text = ":".join(f"{b[0]}:{b[1]}:{a[0]}:{a[1]}" for b, a in zip(bids, asks, strict=False))
    text += "".join(f":{px}:{sz}" for px, sz in bids[3:25])
    assert okx_checksum(bids, asks) == reference_checksum(bids, asks)
    assert okx_checksum(bids, asks) == int.from_bytes(zlib.crc32(text.encode()).to_bytes(4, "big"), "big", signed=True)
    assert okx_checksum([*bids[:24], ("976", "99"), *bids[25:]], asks) != okx_checksum(bids, asks)  # level 25 counts
    assert okx_checksum([*bids[:25], ("975", "99"), *bids[26:]], asks) == okx_checksum(bids, asks)  # level 26 does not
    assert okx_checksum([], []) == 0


# ---------------------------------------------------------------------------------------------------------
# BookFeed: a subscriber that applies snapshot + updates holds our top levels, and so does ccxt


class DictClient:
    """An OKX `books` subscriber written from OKX's merge rules, checking everything it can on the way."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        assert snapshot["prevSeqId"] == -1
        self.books: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
        for name, book in self.books.items():
            for px, sz, liquidated, orders in snapshot[name]:
                assert px not in book and sz != "0" and (liquidated, orders) == ("0", "0")
                book[px] = sz
        self.seq_id: int = snapshot["seqId"]
        self.check_message(snapshot)

    def apply(self, item: dict[str, Any]) -> None:
        assert item["prevSeqId"] == self.seq_id
        assert item["seqId"] == self.seq_id + (1 if item["bids"] or item["asks"] else 0)
        for name, book in self.books.items():
            for px, sz, _, _ in item[name]:
                before = book.get(px)
                if sz == "0":
                    assert before is not None, f"{name} {px}: deleting a level the client does not have"
                    del book[px]
                else:
                    assert before != sz, f"{name} {px}: an update row that changes nothing"
                    book[px] = sz
        self.seq_id = item["seqId"]
        self.check_message(item)

    def check_message(self, item: dict[str, Any]) -> None:
        assert isinstance(item["ts"], str) and int(item["ts"]) >= 0
        for name in self.books:
            prices = [Decimal(row[0]) for row in item[name]]
            assert prices == sorted(set(prices), reverse=name == "bids"), f"{name}: book order, each price once"
            assert all(CANONICAL.match(text) for row in item[name] for text in row[:2])
        assert item["checksum"] == reference_checksum(self.pairs("bids"), self.pairs("asks"))

    def pairs(self, name: str) -> list[tuple[str, str]]:
        return sorted(self.books[name].items(), key=lambda kv: Decimal(kv[0]), reverse=name == "bids")

    def levels(self, name: str) -> list[Level]:
        return [(Decimal(px), Decimal(sz)) for px, sz in self.pairs(name)]


class FakeWsClient:
    """What ccxt's handlers need of a websocket client: subscriptions, resolve and reject."""

    def __init__(self, message_hash: str) -> None:
        self.subscriptions: dict[str, Any] = {message_hash: True}
        self.resolved: list[str] = []
        self.rejected: list[tuple[Exception, str | None]] = []

    def resolve(self, result: object, message_hash: str) -> None:
        self.resolved.append(message_hash)

    def reject(self, error: Exception, message_hash: str | None = None) -> None:
        self.rejected.append((error, message_hash))


def ccxt_pro_okx() -> Any:
    exchange = ccxt.pro.okx()
    exchange.set_markets([exchange.parse_market(SPOT_INSTRUMENT)])
    return exchange


def ccxt_legacy_checksum(exchange: Any, book: Any) -> int:
    """The checksum ccxt's okx computed over its own book (floats) until it dropped the check in 2026."""
    payload: list[str] = []
    for i in range(25):
        for side in (book["bids"], book["asks"]):
            if i < len(side):
                payload += [exchange.number_to_string(side[i][0]), exchange.number_to_string(side[i][1])]
    return int(exchange.crc32(":".join(payload), True))


class CcxtClient:
    """ccxt.pro's okx, fed the messages a websocket would carry, with no network."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.exchange = ccxt_pro_okx()  # one each: a client's book is its exchange object's
        self.ws = FakeWsClient(f"books:{SYMBOL}")
        self.send("snapshot", snapshot)

    @property
    def seq_id(self) -> int:
        return int(self.exchange.orderbooks[SYMBOL]["nonce"])

    def apply(self, item: dict[str, Any]) -> None:
        self.send("update", item)

    def send(self, action: str, item: dict[str, Any]) -> None:
        self.exchange.handle_message(
            self.ws, {"arg": {"channel": "books", "instId": INST_ID}, "action": action, "data": [item]}
        )
        assert self.ws.rejected == [] and self.ws.subscriptions[f"books:{SYMBOL}"] is True
        book = self.exchange.orderbooks[SYMBOL]
        assert book["nonce"] == item["seqId"] and book["timestamp"] == int(item["ts"])
        assert ccxt_legacy_checksum(self.exchange, book) == item["checksum"]

    def levels(self, name: str) -> list[Level]:
        side = self.exchange.orderbooks[SYMBOL].limit()[name]  # what watch_order_book hands the user
        return [(Decimal(repr(px)), Decimal(repr(sz))) for px, sz in side]


Stream = tuple[int, Decimal, int, bool, list[list[tuple[bool, int, Decimal]]], int]
SIZES = [Decimal(s) for s in ("0", "0", "0.001", "1", "2.50", "3", "12345.6789", "1E-8")]  # "0": remove


@st.composite
def book_streams(draw: st.DrawFn) -> Stream:
    """(depth, tick, extra zeros in the engine's decimals, whether the engine passes levels past the depth,
    steps of (is_bid, price index, size) changes, the step before which a second subscriber joins)."""
    depth = draw(st.sampled_from([1, 2, 5, 25, 30]))
    tick = draw(st.sampled_from([Decimal("0.5"), Decimal("0.01"), Decimal("1E-8"), Decimal("10")]))
    change = st.tuples(st.booleans(), st.integers(0, depth + 6), st.sampled_from(SIZES))
    steps = draw(st.lists(st.lists(change, max_size=10), min_size=1, max_size=25))
    # The first step fills some levels a side, so that books past 25 levels and past the depth are common.
    fills = [(is_bid, i, SIZES[2 + i % 6]) for is_bid in (True, False) for i in range(draw(st.integers(0, depth + 6)))]
    steps[0] = fills + steps[0]
    return depth, tick, draw(st.integers(0, 3)), draw(st.booleans()), steps, draw(st.integers(0, len(steps)))


class Engine:
    """The engine's book, as far as market data sees it: price -> size a side."""

    def __init__(self, tick: Decimal, zeros: int) -> None:
        self.tick, self.exponent = tick, Decimal(1).scaleb(min(int(tick.as_tuple().exponent), 0) - zeros)
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def change(self, is_bid: bool, index: int, size: Decimal) -> None:
        price = (1000 - index * self.tick if is_bid else 1000 + (index + 1) * self.tick).quantize(self.exponent)
        book = self.bids if is_bid else self.asks
        if size:
            book[price] = size
        else:
            book.pop(price, None)

    def top(self, depth: int | None) -> tuple[list[Level], list[Level]]:
        bids = sorted(self.bids.items(), reverse=True)[:depth]
        return bids, sorted(self.asks.items())[:depth]


def run_stream(stream: Stream, client: type) -> None:
    depth, tick, zeros, past_depth, steps, join_at = stream
    engine, feed = Engine(tick, zeros), BookFeed(depth)
    clients = [client(feed.snapshot(T0_MS))]
    for i, step in enumerate(steps):
        if i == join_at:
            clients.append(client(feed.snapshot(T0_MS + i)))
        before = engine.top(depth)
        for change in step:
            engine.change(*change)
        bids, asks = engine.top(None if past_depth else depth)
        item = feed.update(bids, asks, T0_MS + i)
        feed.check_invariants()
        assert (item is None) == (engine.top(depth) == before)
        for c in clients:
            c.apply(feed.heartbeat(T0_MS + i) if item is None else item)
            assert (c.levels("bids"), c.levels("asks")) == engine.top(depth)
    assert feed.seq_id == clients[0].seq_id == clients[-1].seq_id


@SETTINGS
@given(book_streams())
def test_a_subscriber_applying_snapshot_and_updates_holds_our_top_levels(stream: Stream) -> None:
    run_stream(stream, DictClient)


@SETTINGS
@given(book_streams())
def test_ccxt_pro_okx_applying_our_messages_holds_our_top_levels(stream: Stream) -> None:
    run_stream(stream, CcxtClient)


def test_ccxt_pro_okx_rejects_a_gap_in_seq_ids() -> None:
    """The harness can fail: ccxt checks prevSeqId, so a lost update is caught."""
    feed = BookFeed(5)
    client = CcxtClient(feed.snapshot(T0_MS))
    feed.update([(Decimal(100), Decimal(1))], [], T0_MS + 1)  # lost on the way
    item = feed.update([(Decimal(100), Decimal(2))], [], T0_MS + 2)
    assert item is not None
    client.exchange.handle_message(
        client.ws, {"arg": {"channel": "books", "instId": INST_ID}, "action": "update", "data": [item]}
    )
    assert [type(error).__name__ for error, _ in client.ws.rejected] == ["InvalidNonce"]
    assert client.ws.subscriptions[f"books:{SYMBOL}"] == "resync"


def levels(*pairs: tuple[str, str]) -> list[Level]:
    return [(Decimal(px), Decimal(sz)) for px, sz in pairs]


def test_levels_crossing_the_tracked_depth_are_removed_and_added() -> None:
    feed = BookFeed(2)
    first = feed.update(levels(("100", "1"), ("99", "2")), [], T0_MS)
    assert first is not None and first["bids"] == [["100", "1", "0", "0"], ["99", "2", "0", "0"]]
    assert (first["seqId"], first["prevSeqId"]) == (1, 0)
    pushed_out = feed.update(levels(("101", "5"), ("100", "1"), ("99", "2")), [], T0_MS + 1)
    assert pushed_out is not None and pushed_out["bids"] == [["101", "5", "0", "0"], ["99", "0", "0", "0"]]
    back_in = feed.update(levels(("100", "1"), ("99", "2")), [], T0_MS + 2)
    assert back_in is not None and back_in["bids"] == [["101", "0", "0", "0"], ["99", "2", "0", "0"]]
    assert (back_in["seqId"], back_in["prevSeqId"], back_in["asks"]) == (3, 2, [])
    assert feed.update(levels(("100.00", "1.0"), ("99", "2")), [], T0_MS + 3) is None  # same numbers
    assert feed.seq_id == 3


def test_snapshot_heartbeat_and_top() -> None:
    feed = BookFeed()
    empty = feed.snapshot(T0_MS)
    assert empty == {"asks": [], "bids": [], "ts": str(T0_MS), "checksum": 0, "prevSeqId": -1, "seqId": 0}
    feed.update(levels(("100.50", "1"), ("100", "2")), levels(("101", "3"), ("102", "0.5")), T0_MS + 1)
    snapshot = feed.snapshot(T0_MS + 2)
    assert (snapshot["seqId"], snapshot["prevSeqId"], snapshot["ts"]) == (1, -1, str(T0_MS + 2))
    assert snapshot["bids"] == [["100.5", "1", "0", "0"], ["100", "2", "0", "0"]]
    assert snapshot["checksum"] == reference_checksum([("100.5", "1"), ("100", "2")], [("101", "3"), ("102", "0.5")])
    assert feed.top(1) == ([["101", "3", "0", "0"]], [["100.5", "1", "0", "0"]])
    heartbeat = feed.heartbeat(T0_MS + 3)
    assert (heartbeat["asks"], heartbeat["bids"], heartbeat["seqId"], heartbeat["prevSeqId"]) == ([], [], 1, 1)
    assert heartbeat["checksum"] == snapshot["checksum"]


GOOD_BIDS, GOOD_ASKS = levels(("95", "1"), ("94", "1")), levels(("105", "1"), ("106", "1"))


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        (levels(("99", "1"), ("100", "1")), GOOD_ASKS),  # bids rising
        (levels(("100", "1"), ("100", "2")), GOOD_ASKS),  # a price twice
        (GOOD_BIDS, levels(("101", "1"), ("100", "1"))),  # asks falling
        (GOOD_BIDS, levels(("101", "0"))),  # a zero size
        (GOOD_BIDS, [(Decimal("NaN"), Decimal(1))]),
    ],
)
def test_update_refuses_bad_levels_and_changes_nothing(bids: list[Level], asks: list[Level]) -> None:
    feed = BookFeed(5)
    feed.update(levels(("90", "1")), levels(("110", "1")), T0_MS)
    before = feed.snapshot(T0_MS + 1)
    with pytest.raises(ValueError):
        feed.update(bids, asks, T0_MS + 1)
    assert feed.snapshot(T0_MS + 1) == before
    feed.check_invariants()
    assert feed.update(GOOD_BIDS, GOOD_ASKS, T0_MS + 2) is not None  # the good halves alone are accepted


@pytest.mark.parametrize("depth", [0, BOOKS_DEPTH_MAX + 1])
def test_depth_is_bounded_by_the_books_channel(depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        BookFeed(depth)


@pytest.mark.parametrize(("channel", "depth"), [("books5", 5), ("bbo-tbt", 1)])
def test_ccxt_pro_okx_reads_top_as_snapshot_channels(channel: str, depth: int) -> None:
    feed = BookFeed()
    feed.update(levels(*[(str(100 - i), f"{i + 1}.5") for i in range(8)]), levels(("101", "0.1"), ("102", "7")), 1)
    asks, bids = feed.top(depth)
    exchange, ws = ccxt_pro_okx(), FakeWsClient(f"{channel}:{SYMBOL}")
    data = {"asks": asks, "bids": bids, "instId": INST_ID, "ts": "5", "seqId": feed.seq_id}
    exchange.handle_message(ws, {"arg": {"channel": channel, "instId": INST_ID}, "data": [data]})
    book = exchange.orderbooks[SYMBOL]
    assert ws.rejected == [] and ws.resolved
    assert [row[:2] for row in book["bids"]] == [[100.0, 1.5], [99.0, 2.5], [98.0, 3.5], [97.0, 4.5], [96.0, 5.5]][
        :depth
    ]
    assert [row[:2] for row in book["asks"]] == [[101.0, 0.1], [102.0, 7.0]][:depth]


def test_ccxt_okx_fetch_order_book_reads_top() -> None:
    feed = BookFeed()
    feed.update(levels(("100", "1.25"), ("99.9", "3")), levels(("100.1", "0.5")), T0_MS)
    exchange = ccxt.okx()
    exchange.set_markets([exchange.parse_market(SPOT_INSTRUMENT)])
    requests: list[dict[str, Any]] = []

    def books(params: dict[str, Any]) -> dict[str, Any]:
        requests.append(params)
        asks, bids = feed.top(int(params["sz"]))
        return {"code": "0", "msg": "", "data": [{"asks": asks, "bids": bids, "ts": str(T0_MS)}]}

    exchange.publicGetMarketBooks = books
    book = exchange.fetch_order_book(SYMBOL, 5)
    assert requests == [{"instId": INST_ID, "sz": 5}]
    assert [row[:2] for row in book["bids"]] == [[100.0, 1.25], [99.9, 3.0]]
    assert [row[:2] for row in book["asks"]] == [[100.1, 0.5]] and book["timestamp"] == T0_MS


def test_trade_is_a_frozen_record() -> None:
    trade = Trade(trade_id=7, ts_ms=T0_MS, price=Decimal("100.5"), size=Decimal("0.2"), side="buy")
    assert (trade.trade_id, trade.ts_ms, trade.price, trade.size, trade.side) == (
        7,
        T0_MS,
        Decimal("100.5"),
        Decimal("0.2"),
        "buy",
    )
    with pytest.raises(FrozenInstanceError):
        trade.price = Decimal(1)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# Candles: against a builder that keeps every trade and computes bar starts with calendar arithmetic

HONG_KONG = timezone(timedelta(hours=8))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def model_bar_start_ms(ts_ms: int, bar: str) -> int:
    zone = HONG_KONG if bar in ("6H", "12H", "1D") else UTC
    t = (EPOCH + timedelta(milliseconds=ts_ms)).astimezone(zone).replace(second=0, microsecond=0)
    count, unit = int(bar.removesuffix("utc")[:-1]), bar.removesuffix("utc")[-1]
    if unit == "m":
        t = t.replace(minute=t.minute - t.minute % count)
    elif unit == "H":
        t = t.replace(hour=t.hour - t.hour % count, minute=0)
    else:
        t = t.replace(hour=0, minute=0)
    return (t - EPOCH) // timedelta(milliseconds=1)


def model_bar_ms(bar: str) -> int:
    count, unit = int(bar.removesuffix("utc")[:-1]), bar.removesuffix("utc")[-1]
    return count * {"m": 60_000, "H": 3_600_000, "D": 86_400_000}[unit]


Trades = list[tuple[int, Decimal, Decimal]]


def model_rows(
    trades: Trades, bar: str, after_ms: int | None, before_ms: int | None, limit: int, now_ms: int, minutes_max: int
) -> list[list[Decimal]]:
    """Every bar from scratch; a bar is left out if one of its minutes fell out of the last `minutes_max`."""
    minute = [ts - ts % 60_000 for ts, _, _ in trades]
    kept_from = minute[-1] - (minutes_max - 1) * 60_000
    dropped = [m for m in minute if m < kept_from]
    bars: dict[int, Trades] = {}
    for (ts, price, size), m in zip(trades, minute, strict=True):
        if m >= kept_from:
            bars.setdefault(model_bar_start_ms(ts, bar), []).append((ts, price, size))
    rows = []
    for start in sorted(bars, reverse=True):
        if (dropped and start < max(dropped) + 60_000) or (after_ms is not None and start >= after_ms):
            continue
        if before_ms is not None and start <= before_ms:
            continue
        prices = [p for _, p, _ in bars[start]]
        with localcontext() as context:
            context.prec = 200
            vol, vol_quote = sum(s for _, _, s in bars[start]), sum(p * s for _, p, s in bars[start])
        closed = Decimal(1 if now_ms >= start + model_bar_ms(bar) else 0)
        rows.append(
            [Decimal(start), prices[0], max(prices), min(prices), prices[-1], vol, vol_quote, vol_quote, closed]
        )
    return rows[: min(limit, 300)]


GAPS_MS = [0, 0, 1, 999, 59_999, 60_000, 61_000, 3_600_000, 4 * 3_600_000 + 7, 11 * 3_600_000, 30 * 3_600_000]
PRICES = [Decimal(p) for p in ("100", "100.5", "99.25", "101", "0.00000001", "123456.789")]
QUANTITIES = [Decimal(s) for s in ("1", "0.001", "2.50", "1E-8", "1000")]


@st.composite
def candle_queries(draw: st.DrawFn) -> tuple[Trades, str, int | None, int | None, int, int]:
    """(trades, bar, after_ms, before_ms, limit, now_ms); the bounds fall on and next to bar starts."""
    ts, trades = T0_MS + draw(st.integers(0, 86_400_000)), []
    for _ in range(draw(st.integers(1, 40))):
        ts += draw(st.sampled_from(GAPS_MS))
        trades.append((ts, draw(st.sampled_from(PRICES)), draw(st.sampled_from(QUANTITIES))))
    bar = draw(st.sampled_from(list(BARS)))
    edge = st.builds(
        lambda t, d: model_bar_start_ms(t[0], bar) + d, st.sampled_from(trades), st.sampled_from([-1, 0, 1])
    )
    after_ms, before_ms = draw(st.none() | edge), draw(st.none() | edge)
    limit = draw(st.sampled_from([1, 2, 3, 5, 100, 300, 301]))
    now_ms = trades[-1][0] + draw(st.sampled_from([0, 1, 59_999, 60_000, 3_600_000, 86_400_000]))
    return trades, bar, after_ms, before_ms, limit, now_ms


@SETTINGS
@given(candle_queries())
def test_candle_rows_match_a_model_built_from_every_trade(
    query: tuple[Trades, str, int | None, int | None, int, int],
) -> None:
    trades, bar, after_ms, before_ms, limit, now_ms = query
    candles = Candles(minutes_max=DAY_MINUTES)
    for ts, price, size in trades:
        candles.add_trade(ts, price, size)
        candles.check_invariants()
    rows = candles.rows(bar, after_ms=after_ms, before_ms=before_ms, limit=limit, now_ms=now_ms)
    assert all(CANONICAL.match(text) for row in rows for text in row), rows
    assert [[Decimal(text) for text in row] for row in rows] == model_rows(
        trades, bar, after_ms, before_ms, limit, now_ms, DAY_MINUTES
    )


def minutes(candles: Candles, *prices_by_minute: tuple[int, str, str]) -> Candles:
    for minute, price, size in prices_by_minute:
        candles.add_trade(T0_MS // MINUTE_MS * MINUTE_MS + minute * MINUTE_MS, Decimal(price), Decimal(size))
    return candles


def test_candle_row_layout_and_confirm_flag() -> None:
    start = T0_MS // MINUTE_MS * MINUTE_MS
    candles = Candles()
    for offset_ms, price, size in [(5, "100", "1"), (10, "102.50", "2"), (30_000, "99", "0.5"), (59_999, "101", "1")]:
        candles.add_trade(start + offset_ms, Decimal(price), Decimal(size))
    row = [str(start), "100", "102.5", "99", "101", "4.5", "455.5", "455.5"]
    assert candles.rows("1m", after_ms=None, before_ms=None, limit=100, now_ms=start + 59_999) == [[*row, "0"]]
    assert candles.rows("1m", after_ms=None, before_ms=None, limit=100, now_ms=start + 60_000) == [[*row, "1"]]
    hour = model_bar_start_ms(start, "1H")
    assert candles.rows("1H", after_ms=None, before_ms=None, limit=100, now_ms=hour + 3_599_999)[0][8] == "0"
    assert candles.rows("1H", after_ms=None, before_ms=None, limit=100, now_ms=hour + 3_600_000)[0][8] == "1"


def test_candle_pagination_follows_okx() -> None:
    candles = minutes(Candles(), *[(i, str(100 + i), "1") for i in range(5)])
    t = [T0_MS // MINUTE_MS * MINUTE_MS + i * MINUTE_MS for i in range(5)]

    def stamps(after_ms: int | None, before_ms: int | None, limit: int = 100) -> list[int]:
        rows = candles.rows("1m", after_ms=after_ms, before_ms=before_ms, limit=limit, now_ms=t[4] + MINUTE_MS)
        return [int(row[0]) for row in rows]

    assert stamps(None, None) == t[::-1]
    assert stamps(t[3], None) == [t[2], t[1], t[0]]  # after: earlier than, excluded
    assert stamps(t[3] + 1, None) == [t[3], t[2], t[1], t[0]]
    assert stamps(None, t[1]) == [t[4], t[3], t[2]]  # before: newer than, excluded
    assert stamps(None, t[0], limit=2) == [t[4], t[3]]  # before alone gives the latest
    assert stamps(t[4], t[1]) == [t[3], t[2]]
    assert stamps(t[1], t[3]) == []


def test_candle_limit_is_clamped_to_300_and_must_be_positive() -> None:
    candles = minutes(Candles(), *[(i, "100", "1") for i in range(CANDLES_LIMIT_MAX + 5)])
    now_ms = T0_MS + 400 * MINUTE_MS
    assert len(candles.rows("1m", after_ms=None, before_ms=None, limit=CANDLES_LIMIT_MAX + 1, now_ms=now_ms)) == 300
    assert len(candles.rows("1m", after_ms=None, before_ms=None, limit=7, now_ms=now_ms)) == 7
    with pytest.raises(ValueError, match="limit"):
        candles.rows("1m", after_ms=None, before_ms=None, limit=0, now_ms=now_ms)


def test_unknown_bar_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown bar '1h'; allowed: 1m, 3m, 5m, 15m, 30m, 1H, 2H, 4H, 6H, 12H, 1D, "):
        Candles().rows("1h", after_ms=None, before_ms=None, limit=1, now_ms=T0_MS)


def test_candles_refuse_trades_out_of_order_and_bad_values() -> None:
    candles = minutes(Candles(), (5, "100", "1"))
    with pytest.raises(ValueError, match="before the last"):
        minutes(candles, (4, "100", "1"))
    with pytest.raises(ValueError, match="above zero"):
        minutes(candles, (5, "0", "1"))
    with pytest.raises(ValueError, match="above zero"):
        minutes(candles, (5, "100", "-1"))
    with pytest.raises(ValueError, match="minutes_max"):
        Candles(minutes_max=DAY_MINUTES - 1)
    assert len(candles) == 1


def test_candles_memory_is_bounded_and_partial_bars_are_left_out() -> None:
    day0 = (T0_MS // 86_400_000 + 1) * 86_400_000  # a UTC midnight
    candles = Candles(minutes_max=DAY_MINUTES)
    for i in range(3_000):
        candles.add_trade(day0 + i * MINUTE_MS, Decimal(100 + i % 7), Decimal(1))
    candles.check_invariants()
    assert len(candles) == DAY_MINUTES
    days = candles.rows("1Dutc", after_ms=None, before_ms=None, limit=10, now_ms=day0 + 3_000 * MINUTE_MS)
    assert [int(row[0]) for row in days] == [day0 + 2 * 86_400_000]  # day 1 lost minutes 1440..1559, day 0 all
    assert days[0][5] == str(3_000 - 2 * DAY_MINUTES)
    oldest = candles.rows(
        "1m", after_ms=day0 + 1_561 * MINUTE_MS, before_ms=None, limit=10, now_ms=day0 + 3_000 * MINUTE_MS
    )
    assert [int(row[0]) for row in oldest] == [day0 + 1_560 * MINUTE_MS]


def test_stats_24h_window_edges() -> None:
    start = T0_MS // MINUTE_MS * MINUTE_MS
    candles = Candles()
    assert candles.stats_24h(start) == (None, None, None, Decimal(0), Decimal(0))
    minutes(candles, (0, "10", "1"), (1, "12", "2"), (1439, "9", "1"), (1440, "11", "3"))
    last_ms = start + 1439 * MINUTE_MS  # the minute holding now
    assert candles.stats_24h(last_ms + 59_999) == (Decimal(10), Decimal(12), Decimal(9), Decimal(4), Decimal(43))
    assert candles.stats_24h(last_ms + 60_000) == (Decimal(12), Decimal(12), Decimal(9), Decimal(6), Decimal(66))
    assert candles.stats_24h(start + 30_000) == (Decimal(10), Decimal(10), Decimal(10), Decimal(1), Decimal(10))
    assert candles.stats_24h(start - 1) == (None, None, None, Decimal(0), Decimal(0))  # trades after now: not counted
    assert candles.stats_24h(start + 2 * 1440 * MINUTE_MS) == (None, None, None, Decimal(0), Decimal(0))


def test_ccxt_okx_fetch_ohlcv_reads_our_rows() -> None:
    """ccxt's okx fetch_ohlcv, its request answered by `Candles.rows`: the bar names, since and limit it sends."""
    day0 = (T0_MS // 86_400_000 + 1) * 86_400_000
    candles = Candles()
    for i in range(600):
        candles.add_trade(day0 + i * 5 * MINUTE_MS + 1, Decimal(100 + i % 11), Decimal("0.5"))
    now_ms = day0 + 3_000 * MINUTE_MS
    exchange = ccxt.okx()
    exchange.set_markets([exchange.parse_market(SPOT_INSTRUMENT)])
    requests: list[dict[str, Any]] = []

    def answer(params: dict[str, Any]) -> dict[str, Any]:
        requests.append(params)
        after, before = params.get("after"), params.get("before")
        rows = candles.rows(
            params["bar"],
            after_ms=None if after is None else int(after),
            before_ms=None if before is None else int(before),
            limit=int(params["limit"]),
            now_ms=now_ms,
        )
        return {"code": "0", "msg": "", "data": rows}

    exchange.publicGetMarketCandles = exchange.publicGetMarketHistoryCandles = answer
    since = day0 + 50 * MINUTE_MS
    ohlcv = exchange.fetch_ohlcv(SYMBOL, "5m", since, 3)
    assert requests[-1]["bar"] == "5m" and int(requests[-1]["limit"]) == 3
    assert requests[-1]["before"] == since - 1 and requests[-1]["after"] == since + 3 * 5 * MINUTE_MS
    prices = [float(100 + (10 + i) % 11) for i in range(3)]
    assert ohlcv == [[since + i * 5 * MINUTE_MS, p, p, p, p, 0.5] for i, p in enumerate(prices)]
    latest = exchange.fetch_ohlcv(SYMBOL, "1h", None, 2)
    assert [row[0] for row in latest] == [day0 + 48 * 3_600_000, day0 + 49 * 3_600_000] and requests[-1]["bar"] == "1H"
    assert latest[-1][5] == 6.0  # 12 trades of 0.5 in the hour, base volume
    daily = exchange.fetch_ohlcv(SYMBOL, "1d", day0, 5)
    assert requests[-1]["bar"] == "1Dutc"  # ccxt asks for UTC days
    assert [row[0] for row in daily] == [day0, day0 + 86_400_000, day0 + 2 * 86_400_000]
    assert [row[5] for row in daily] == [144.0, 144.0, 12.0]
