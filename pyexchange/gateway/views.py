"""What the gateway derives from durable batches: orders by account, fills, public trades,
candles, the last price, and the market state and indicative auction of each instrument.

The engine owns the trading state; these views are rebuilt from the journal on start
(`Exchange.rebuild`) and then follow every batch, in sequence order, on the event loop.
They are bounded: closed orders beyond `CLOSED_ORDERS_MAX`, fills beyond
`FILLS_PER_ACCOUNT_MAX` per account and trades beyond `TRADES_PER_INSTRUMENT_MAX` per
instrument are forgotten, oldest first. Trade ids are `seq * 1_000_000 + n` (the n-th fill of
the command with that seq), so they are the same on every replay. A call auction's uncross
is one public trade (its print, numbered after the uncross's fills), while each of its fills
is the private fill of both orders.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, NamedTuple, TypeVar

from pyexchange import wire
from pyexchange.engine import AuctionFigures, Event, Instrument, Order
from pyexchange.gateway.market_data import Candles, Trade
from pyexchange.gateway.okx import dec
from pyexchange.gateway.sequencer import Batch

CLOSED_ORDERS_MAX = 200_000
FILLS_PER_ACCOUNT_MAX = 2_000
TRADES_PER_INSTRUMENT_MAX = 1_000
FILLS_PER_COMMAND_MAX = 1_000_000
OPEN_STATES = ("live", "partially_filled")
ZERO = Decimal(0)
# A command record's kind and client order id only (`wire.COMMAND_STRUCT`, the other fields skipped).
_KIND_AND_CLIENT_ID = struct.Struct("<44xB3x32s")
assert _KIND_AND_CLIENT_ID.size == wire.COMMAND_STRUCT.size

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
GRADED_SHARDS = 64
GRADED_ROUTES = 16_384  # a power of two, so that a key's route is its hash's low bits


def graded_routes(shards: int, routes: int) -> list[int]:
    """The shard of each route: shard i takes a share of the routes proportional to
    2 ** (i / shards), rounded by largest remainder, so their shares spread over one doubling.
    Each shard's routes are spread evenly over the list, so that keys whose hashes run in
    sequence (order ids) reach every shard at its own rate, not in turns."""
    weights = [2 ** (i / shards) for i in range(shards)]
    total = sum(weights)
    quotas = [routes * weight / total for weight in weights]
    counts = [int(quota) for quota in quotas]
    for i in sorted(range(shards), key=lambda i: counts[i] - quotas[i])[: routes - sum(counts)]:
        counts[i] += 1
    return [shard for _, shard in sorted(((k + 0.5) / count, shard) for shard, count in enumerate(counts)
                                         for k in range(count))]  # fmt: skip


_GRADED_ROUTE_SHARDS = graded_routes(GRADED_SHARDS, GRADED_ROUTES)


class GradedDict(Generic[K, V]):
    """A dict of up to millions of entries whose growth never holds the event loop long.

    A dict that fills up copies its whole table into one twice the size within one insertion:
    the views' orders and client order ids held the loop 263 ms in the batch that took them
    past 699,050 orders, 731 ms past 1,398,101. Split evenly by hash, the shards would fill at
    one rate and all double within a few hundred insertions of each other. Here shard i takes
    keys in proportion to 2 ** (i / GRADED_SHARDS): at any size their tables stand at points
    spread over one doubling, so they double at their own times, each moving at most about
    1.4 / GRADED_SHARDS of the entries (and no run of n / 64 insertions copies n / 4 entries:
    `tests/test_views.py`). As a dict, a shard's table is sized again for the entries it holds
    when it next fills, so the memory follows the count as entries come and go."""

    __slots__ = ("_by_route", "shards")

    def __init__(self) -> None:
        self.shards: list[dict[K, V]] = [{} for _ in range(GRADED_SHARDS)]
        self._by_route = [self.shards[shard] for shard in _GRADED_ROUTE_SHARDS]

    def get(self, key: K) -> V | None:
        return self._by_route[hash(key) & (GRADED_ROUTES - 1)].get(key)

    def __contains__(self, key: K) -> bool:
        return key in self._by_route[hash(key) & (GRADED_ROUTES - 1)]

    def __setitem__(self, key: K, value: V) -> None:
        self._by_route[hash(key) & (GRADED_ROUTES - 1)][key] = value

    def setdefault(self, key: K, value: V) -> V:
        return self._by_route[hash(key) & (GRADED_ROUTES - 1)].setdefault(key, value)

    def pop(self, key: K) -> V | None:
        return self._by_route[hash(key) & (GRADED_ROUTES - 1)].pop(key, None)


class OrderView(NamedTuple):
    """An order as the views know it: the engine's order and what the gateway adds. A snapshot,
    built for each query from the record the views keep (`Views.view`)."""

    order: Order
    client_order_id: str
    c_time_ms: int
    u_time_ms: int
    fee: Decimal
    fee_ccy: str
    fill_time_ms: int = 0
    fill_px: Decimal | None = None
    fill_sz: Decimal | None = None
    trade_id: str = ""
    listed_open: bool = True  # in `open_by_account`


# The record the views keep for an order: the order's fields, then the rest of `OrderView`'s, in
# one plain tuple. A plain tuple of numbers, strings and decimals is one the garbage collector
# stops tracking at the first collection that sees it (a tuple inside it would keep it tracked
# until a later one); an object of any class it tracks for life. As two such objects an order,
# the server's full collection (`app.keep_gc_pauses_short`) held the event loop 0.7 s with a
# million orders in the views, 0.2 s as a record (bench/README.md).
_ORDER_FIELDS = len(Order._fields)
_ACCOUNT = Order._fields.index("account")
_CLIENT_ID, _C_TIME, _U_TIME, _FEE, _FEE_CCY, _FILL_TIME, _FILL_PX, _FILL_SZ, _TRADE_ID, _LISTED_OPEN = range(
    _ORDER_FIELDS, _ORDER_FIELDS + len(OrderView._fields) - 1
)
_new_tuple = tuple.__new__  # (a named tuple's own `__new__` is a Python function)


def _view(record: tuple[Any, ...]) -> OrderView:
    return _new_tuple(OrderView, (_new_tuple(Order, record[:_ORDER_FIELDS]), *record[_CLIENT_ID:]))


@dataclass(slots=True)
class Market:
    """An instrument's market state since `since_ms` (0: not known, as when seeded from an engine
    restored from a snapshot), and during a call auction the latest indicative uncross."""

    state: str = "continuous"
    since_ms: int = 0
    auction: AuctionFigures | None = None


@dataclass(slots=True)
class Fill:
    account: int
    instrument: str
    trade_id: str
    order_id: int
    client_order_id: str
    side: str
    price: Decimal
    size: Decimal
    fee: Decimal
    fee_ccy: str
    maker: bool
    ts_ms: int


class Views:
    def __init__(self, instruments: list[Instrument]) -> None:
        self.instruments = {inst.symbol: inst for inst in instruments}
        self._orders: GradedDict[int, tuple[Any, ...]] = GradedDict()  # order id -> record (`_view`)
        self.open_by_account: dict[int, dict[int, None]] = {}
        self.closed_by_account: dict[int, deque[int]] = {}
        self._closed: deque[int] = deque()
        self.by_client_id: GradedDict[tuple[int, str], int] = GradedDict()
        self.fills: dict[int, deque[Fill]] = {}
        self.trades: dict[str, deque[Trade]] = {s: deque(maxlen=TRADES_PER_INSTRUMENT_MAX) for s in self.instruments}
        self.candles: dict[str, Candles] = {s: Candles() for s in self.instruments}
        self.last_price: dict[str, Decimal] = {}
        self.last_size: dict[str, Decimal] = {}
        self.markets: dict[str, Market] = {s: Market() for s in self.instruments}

    def apply(self, batch: Batch) -> tuple[dict[int, int], list[tuple[str, Trade]], list[str]]:
        """Follows one batch; returns the orders it changed (order id -> account), its public trades
        and the instruments whose market state or indicative auction it changed (for pushes)."""
        changed: dict[int, int] = {}
        trades: list[tuple[str, Trade]] = []
        markets: list[str] = []
        touched_ms: dict[int, int] = {}  # order id -> time of the last event that named it
        place = wire.PLACE
        client_ids = [client_order_id.rstrip(b"\0").decode() if kind == place else ""
                      for kind, client_order_id in _KIND_AND_CLIENT_ID.iter_unpack(batch.records)]  # fmt: skip
        for client_id, events in zip(client_ids, batch.events, strict=True):
            fills_seen = 0
            for event in events:
                if event.kind == "accepted":
                    self._accepted(event, client_id, batch.orders)
                elif event.kind == "fill":
                    # An uncross (its events end with the market state) prints one public trade.
                    public = events[-1].kind != "market_state"
                    trade = self._fill(event, fills_seen, public=public)
                    if public:
                        trades.append((event.instrument or "", trade))
                    fills_seen += 1
                    touched_ms[event.maker_order_id or 0] = event.ts_ns // 1_000_000
                elif event.kind == "uncross":
                    trades.append((event.instrument or "", self._print(event, fills_seen)))
                elif event.kind in ("market_state", "auction"):
                    markets.append(self._market(event))
                if event.order_id is not None:
                    touched_ms[event.order_id] = event.ts_ns // 1_000_000
        for order_id, order in batch.orders.items():
            record = self._orders.get(order_id)
            if record is not None:
                self._update(order_id, record, order, touched_ms.get(order_id, record[_U_TIME]))
                changed[order_id] = order.account
        return changed, trades, list(dict.fromkeys(markets))

    def _market(self, event: Event) -> str:
        assert event.instrument is not None
        market = self.markets[event.instrument]
        if event.kind == "auction":
            assert event.size is not None and event.imbalance is not None
            market.auction = AuctionFigures(event.price, event.size, event.imbalance, event.side)
        elif event.market_state != market.state or not market.since_ms:  # not known: seeded from the engine
            assert event.market_state is not None
            market.state, market.since_ms = event.market_state, event.ts_ns // 1_000_000
            if market.state != "call_auction":
                market.auction = None
        return event.instrument

    def _print(self, event: Event, fills: int) -> Trade:
        """The one public trade of a call auction's uncross, at the auction price; its side is
        the side that had lots left over (buy when neither did)."""
        assert event.instrument and event.price is not None and event.size is not None
        t = event.ts_ns // 1_000_000
        trade = Trade(trade_id=event.seq * FILLS_PER_COMMAND_MAX + fills, ts_ms=t, price=event.price,
                      size=event.size, side=event.side or "buy")  # fmt: skip
        self._trade(event.instrument, trade)
        return trade

    def _trade(self, symbol: str, trade: Trade) -> None:
        self.trades[symbol].append(trade)
        self.candles[symbol].add_trade(trade.ts_ms, trade.price, trade.size)
        self.last_price[symbol], self.last_size[symbol] = trade.price, trade.size

    def _accepted(self, event: Event, cid: str, orders: dict[int, Order]) -> None:
        assert event.order_id is not None and event.account is not None
        order = orders.get(event.order_id)
        if order is None:
            return
        t = event.ts_ns // 1_000_000
        record = (*order, cid, t, t, ZERO, self.instruments[order.instrument].quote.name, 0, None, None, "", True)
        if self._orders.setdefault(event.order_id, record) is not record:
            return  # known already
        open_orders = self.open_by_account.get(event.account)
        if open_orders is None:
            open_orders = self.open_by_account[event.account] = {}
        open_orders[event.order_id] = None
        if cid:
            self.by_client_id[(event.account, cid)] = event.order_id

    def _fill(self, event: Event, n: int, *, public: bool) -> Trade:
        assert event.instrument and event.price is not None and event.size is not None and event.side
        assert n < FILLS_PER_COMMAND_MAX
        trade_id = event.seq * FILLS_PER_COMMAND_MAX + n
        t = event.ts_ns // 1_000_000
        trade = Trade(trade_id=trade_id, ts_ms=t, price=event.price, size=event.size, side=event.side)
        if public:
            self._trade(event.instrument, trade)
        maker_side = "sell" if event.side == "buy" else "buy"
        trade_id_text = str(trade_id)
        for account, order_id, side, fee, maker in (
            (event.taker_account, event.taker_order_id, event.side, event.taker_fee, False),
            (event.maker_account, event.maker_order_id, maker_side, event.maker_fee, True),
        ):
            assert account is not None and order_id is not None and fee is not None
            record = self._orders.get(order_id)
            if record is None:
                continue
            self._orders[order_id] = (*record[:_FEE], record[_FEE] + fee, record[_FEE_CCY], t, event.price, event.size,
                                      trade_id_text, record[_LISTED_OPEN])  # fmt: skip
            fills = self.fills.setdefault(account, deque(maxlen=FILLS_PER_ACCOUNT_MAX))
            fills.append(Fill(account, event.instrument, trade_id_text, order_id, record[_CLIENT_ID], side,
                              event.price, event.size, fee, record[_FEE_CCY], maker, t))  # fmt: skip
        return trade

    def _update(self, order_id: int, record: tuple[Any, ...], order: Order, u_time_ms: int) -> None:
        """The order as the engine now has it, touched at `u_time_ms`; a closed order moves from
        the account's open orders to its closed ones."""
        closes = record[_LISTED_OPEN] and order.state not in OPEN_STATES
        if not closes and record[_U_TIME] == u_time_ms and record[:_ORDER_FIELDS] == order:
            return  # as it was (the usual case: an order this batch placed, resting)
        self._orders[order_id] = (*order, record[_CLIENT_ID], record[_C_TIME], u_time_ms, *record[_FEE:_LISTED_OPEN],
                                  record[_LISTED_OPEN] and not closes)  # fmt: skip
        if closes:
            self.open_by_account.get(order.account, {}).pop(order_id, None)
            self.closed_by_account.setdefault(order.account, deque()).append(order_id)
            self._closed.append(order_id)
            while len(self._closed) > CLOSED_ORDERS_MAX:
                self._forget(self._closed.popleft())

    def _forget(self, order_id: int) -> None:
        record = self._orders.pop(order_id)
        if record is None:
            return
        account = record[_ACCOUNT]
        closed = self.closed_by_account.get(account)
        if closed and closed[0] == order_id:
            closed.popleft()
        if record[_CLIENT_ID]:
            self.by_client_id.pop((account, record[_CLIENT_ID]))

    def view(self, order_id: int) -> OrderView | None:
        record = self._orders.get(order_id)
        return None if record is None else _view(record)

    def order_of(self, account: int, order_id: int | None, client_order_id: str | None) -> OrderView | None:
        if order_id is None and client_order_id:
            order_id = self.by_client_id.get((account, client_order_id))
        record = self._orders.get(order_id) if order_id is not None else None
        return _view(record) if record is not None and record[_ACCOUNT] == account else None


def order_json(view: OrderView) -> dict[str, str]:
    """An order as OKX's GET /api/v5/trade/order answers it."""
    o = view.order
    market = o.order_type == "market"
    return {
        "instType": "SPOT", "instId": o.instrument, "tgtCcy": "base_ccy" if market else "", "ccy": "",
        "ordId": str(o.order_id), "clOrdId": view.client_order_id, "tag": "",
        "px": "" if market else dec(o.price), "pxUsd": "", "pxVol": "", "pxType": "",
        "sz": dec(o.size), "pnl": "0", "ordType": o.order_type, "side": o.side, "posSide": "net",
        "tdMode": "cash", "accFillSz": dec(o.filled_size), "fillPx": dec(view.fill_px),
        "tradeId": view.trade_id, "fillSz": dec(view.fill_sz),
        "fillTime": str(view.fill_time_ms) if view.fill_time_ms else "",
        "avgPx": dec(o.average_price), "state": o.state, "stpId": "", "stpMode": o.stp,
        "lever": "", "attachAlgoClOrdId": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tpOrdPx": "",
        "slTriggerPx": "", "slTriggerPxType": "", "slOrdPx": "", "attachAlgoOrds": [],  # type: ignore[dict-item]
        "feeCcy": view.fee_ccy, "fee": dec(-view.fee), "rebateCcy": view.fee_ccy, "rebate": "0",
        "source": "", "category": "normal", "reduceOnly": "false", "cancelSource": "",
        "quickMgnType": "", "algoClOrdId": "", "algoId": "", "isTpLimit": "false",
        "uTime": str(view.u_time_ms), "cTime": str(view.c_time_ms),
    }  # fmt: skip


def fill_json(fill: Fill) -> dict[str, str]:
    """A fill as OKX's GET /api/v5/trade/fills-history answers it."""
    return {
        "instType": "SPOT", "instId": fill.instrument, "tradeId": fill.trade_id, "ordId": str(fill.order_id),
        "clOrdId": fill.client_order_id, "billId": fill.trade_id, "subType": "1", "tag": "",
        "fillPx": dec(fill.price), "fillSz": dec(fill.size), "fillIdxPx": "", "fillPnl": "0",
        "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "", "fillFwdPx": "", "fillMarkPx": "",
        "side": fill.side, "posSide": "net", "execType": "M" if fill.maker else "T",
        "feeCcy": fill.fee_ccy, "fee": dec(-fill.fee), "ts": str(fill.ts_ms), "fillTime": str(fill.ts_ms),
    }  # fmt: skip


def trade_json(symbol: str, trade: Trade) -> dict[str, str]:
    """A public trade as OKX's GET /api/v5/market/trades and the `trades` channel give it."""
    return {"instId": symbol, "tradeId": str(trade.trade_id), "px": dec(trade.price), "sz": dec(trade.size),
            "side": trade.side, "source": "0", "ts": str(trade.ts_ms), "count": "1"}  # fmt: skip
