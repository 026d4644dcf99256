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

The private views (orders, client order ids, fills) are kept in Rust (`_core.PrivateViews`),
as integers: following a batch in Python cost each WebSocket order about 3.5 µs of the event
loop, and a million orders as Python objects held it 0.2 s at every full garbage collection
(bench/README.md). Queries turn them into decimals and names here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from pyexchange import _core, wire
from pyexchange.engine import AuctionFigures, Event, Instrument, Order, order_of_fields
from pyexchange.gateway.market_data import Candles, Trade
from pyexchange.gateway.okx import dec
from pyexchange.gateway.sequencer import Batch

CLOSED_ORDERS_MAX = 200_000
FILLS_PER_ACCOUNT_MAX = 2_000
TRADES_PER_INSTRUMENT_MAX = 1_000
FILLS_PER_COMMAND_MAX = 1_000_000
OPEN_STATES = ("live", "partially_filled")


class OrderView(NamedTuple):
    """An order as the views know it: the engine's order and what the gateway adds. A snapshot,
    built for each query (`Views.view`)."""

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
    listed_open: bool = True  # among the account's open orders


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
    def __init__(self, instruments: list[Instrument], closed_orders_max: int = CLOSED_ORDERS_MAX,
                 fills_per_account_max: int = FILLS_PER_ACCOUNT_MAX) -> None:  # fmt: skip
        self.instruments = {inst.symbol: inst for inst in instruments}
        self._by_id = {inst.instrument_id: inst for inst in instruments}
        self._private = _core.PrivateViews(closed_orders_max, fills_per_account_max, FILLS_PER_COMMAND_MAX)
        self.trades: dict[str, deque[Trade]] = {s: deque(maxlen=TRADES_PER_INSTRUMENT_MAX) for s in self.instruments}
        self.candles: dict[str, Candles] = {s: Candles() for s in self.instruments}
        self.last_price: dict[str, Decimal] = {}
        self.last_size: dict[str, Decimal] = {}
        self.markets: dict[str, Market] = {s: Market() for s in self.instruments}

    def apply(self, batch: Batch) -> tuple[dict[int, int], list[tuple[str, Trade]], list[str]]:
        """Follows one batch; returns the orders it changed (order id -> account), its public trades
        and the instruments whose market state or indicative auction it changed (for pushes)."""
        assert batch.touched is not None, "a batch read by `collect`"
        changed = self._private.apply(batch.event_records, batch.first_seq, batch.last_seq, batch.touched)
        if not batch.public:
            return changed, [], []
        trades: list[tuple[str, Trade]] = []
        markets: list[str] = []
        for events in batch.events:
            fills_seen = 0
            for event in events:
                if event.kind == "fill":
                    # An uncross (its events end with the market state) prints one public trade.
                    if events[-1].kind != "market_state":
                        trades.append((event.instrument or "", self._fill_trade(event, fills_seen)))
                    fills_seen += 1
                elif event.kind == "uncross":
                    trades.append((event.instrument or "", self._print(event, fills_seen)))
                elif event.kind in ("market_state", "auction"):
                    markets.append(self._market(event))
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

    def _fill_trade(self, event: Event, n: int) -> Trade:
        """The public trade of a fill (the n-th of its command) in continuous trading."""
        assert event.instrument and event.price is not None and event.size is not None and event.side
        trade = Trade(trade_id=event.seq * FILLS_PER_COMMAND_MAX + n, ts_ms=event.ts_ns // 1_000_000,
                      price=event.price, size=event.size, side=event.side)  # fmt: skip
        self._trade(event.instrument, trade)
        return trade

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

    # ---- queries ----

    def view(self, order_id: int) -> OrderView | None:
        found = self._private.order(order_id)
        if found is None:
            return None
        fields, cid, c_time_ms, u_time_ms, fee_units, fill, listed_open = found
        inst = self._by_id[fields[2]]
        quote = inst.quote
        fill_ms, fill_px, fill_sz, trade_id = 0, None, None, ""
        if fill is not None:
            fill_ms, price_ticks, lots, trade_number = fill
            fill_px, fill_sz, trade_id = inst.price(price_ticks), inst.size(lots), str(trade_number)
        return OrderView(order_of_fields(inst, fields), cid.decode(), c_time_ms, u_time_ms, quote.amount(fee_units),
                         quote.name, fill_ms, fill_px, fill_sz, trade_id, listed_open)  # fmt: skip

    def order_of(self, account: int, order_id: int | None, client_order_id: str | None) -> OrderView | None:
        if order_id is None and client_order_id:
            order_id = self._private.order_id_of(account, client_order_id)
        view = self.view(order_id) if order_id is not None else None
        return view if view is not None and view.order.account == account else None

    def open_count(self, account: int) -> int:
        return self._private.open_count(account)

    def open_ids(self, account: int) -> list[int]:
        """The account's open orders, oldest first."""
        return self._private.open_ids(account)

    def closed_ids(self, account: int) -> list[int]:
        """The account's retained closed orders, in the order they closed."""
        return self._private.closed_ids(account)

    def fills(self, account: int) -> list[Fill]:
        """The account's retained fills, oldest first."""
        found = []
        for (
            instrument_id,
            trade_id,
            order_id,
            cid,
            side,
            price_ticks,
            lots,
            fee_units,
            maker,
            ts_ms,
        ) in self._private.fills(account):
            inst = self._by_id[instrument_id]
            found.append(Fill(account, inst.symbol, str(trade_id), order_id, cid.decode(), wire.SIDES[side],
                              inst.price(price_ticks), inst.size(lots), inst.quote.amount(fee_units), inst.quote.name,
                              maker, ts_ms))  # fmt: skip
        return found


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
