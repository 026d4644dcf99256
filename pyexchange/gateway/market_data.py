"""Public market data in OKX v5 shapes: the `books` channel of one instrument, its candles, its 24h figures.

It owns what subscribers have been sent, not the book: the engine's top levels come in after each durable
batch, with times as arguments (ms since the epoch); there is no wall clock here.

`BookFeed` keeps these rules:
- It holds at most `depth` levels a side (`depth` <= 400, the `books` channel's depth and the depth ccxt cuts
  its copy to), bids strictly descending and asks strictly ascending by price, every size above zero.
- A client that takes `snapshot()` and then applies every later `update()` in order, by OKX's merge rule
  (size "0" deletes the price, any other size inserts or replaces it), holds exactly `top(depth)`. So a level
  that falls below the tracked depth is sent with size "0", and a level that rises into it is sent in full:
  a client never keeps a level we no longer show, and never misses one we do.
- An update holds only the levels that changed, each price once, in book order; no change sends nothing.
- seqId starts at 0 and rises by one per update; an update's prevSeqId is the seqId before it; a snapshot
  carries the current seqId and prevSeqId -1; a heartbeat repeats the seqId as its prevSeqId (OKX's message
  after a quiet minute). ccxt rejects an update whose prevSeqId is not -1 and not the seqId it last saw, so
  the gateway must send a subscriber its snapshot and then every update after it, none before it.
- The checksum is OKX's: CRC32 of the top 25 bids and asks interleaved as "bidPx:bidSz:askPx:askSz:...",
  a side's missing levels left out, over the strings exactly as sent, as a signed 32-bit integer.
  (OKX announced in 2026 that it sends 0 there from 23 June 2026, and ccxt 4.5.90 no longer checks it;
  we still send the real value, which clients written for the old OKX, ccxt before 2026 among them, check.)

`Candles` keeps these:
- At most `minutes_max` one-minute candles, those within `minutes_max` minutes of the newest trade's minute;
  a minute without trades has no candle. Longer bars are built from them when asked; a bar that may have
  lost minutes to that bound is never returned, so every bar returned is exact.
- Trades arrive in time order; sums of size and of price * size are exact (a `ValueError` if not).
- Bars follow OKX: 1m-4H are aligned to UTC; 6H, 12H and 1D to Hong Kong time (UTC+8); 6Hutc, 12Hutc and
  1Dutc to UTC (ccxt asks for "1Dutc" for its "1d"). `after` and `before` exclude the ts they name, rows come
  newest first, and `limit` (default 100) is clamped to 300 as OKX does.
"""

from __future__ import annotations

import decimal
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import dropwhile, groupby, pairwise, takewhile
from typing import Any

# Limits and fixed values, all here.
BOOKS_DEPTH_MAX = 400  # the OKX `books` channel's depth; ccxt truncates its copy of the book to it
CHECKSUM_LEVELS = 25  # levels a side in OKX's order book checksum
ORDERS_COUNT_UNKNOWN = "0"  # 4th element of a level row (orders at the level); ccxt 4.5.90 ignores it
LIQUIDATED_ORDERS = "0"  # 3rd element of a level row; OKX deprecated it and always sends "0"
SIZE_REMOVED = "0"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MINUTES = 1_440
DAY_MS = DAY_MINUTES * MINUTE_MS
CANDLES_MINUTES_DEFAULT = 7 * DAY_MINUTES
CANDLES_LIMIT_DEFAULT = 100  # OKX GET /api/v5/market/candles default `limit`
CANDLES_LIMIT_MAX = 300  # its maximum; OKX answers a larger limit with this many rows
HONG_KONG_OFFSET_MS = 8 * HOUR_MS
# OKX `bar` name: (bar length in ms, offset of the time zone the bar is aligned to, ms east of UTC).
BARS: dict[str, tuple[int, int]] = {
    "1m": (MINUTE_MS, 0),
    "3m": (3 * MINUTE_MS, 0),
    "5m": (5 * MINUTE_MS, 0),
    "15m": (15 * MINUTE_MS, 0),
    "30m": (30 * MINUTE_MS, 0),
    "1H": (HOUR_MS, 0),
    "2H": (2 * HOUR_MS, 0),
    "4H": (4 * HOUR_MS, 0),
    "6H": (6 * HOUR_MS, HONG_KONG_OFFSET_MS),
    "12H": (12 * HOUR_MS, HONG_KONG_OFFSET_MS),
    "1D": (DAY_MS, HONG_KONG_OFFSET_MS),
    "6Hutc": (6 * HOUR_MS, 0),
    "12Hutc": (12 * HOUR_MS, 0),
    "1Dutc": (DAY_MS, 0),
}
assert CHECKSUM_LEVELS <= BOOKS_DEPTH_MAX
assert CANDLES_LIMIT_DEFAULT <= CANDLES_LIMIT_MAX
assert CANDLES_MINUTES_DEFAULT >= DAY_MINUTES  # a full day of minutes for 1D bars and the 24h figures
assert all(DAY_MS % bar_ms == 0 and bar_ms % MINUTE_MS == 0 for bar_ms, _ in BARS.values())

# Sums and products of trade sizes and prices: exact, or an error, never silently rounded.
_EXACT = decimal.Context(prec=100, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])

Level = tuple[Decimal, Decimal]  # (price, size)
Row = tuple[str, str, str, str]  # an OKX level row: price, size, liquidated orders, orders


def decimal_str(value: Decimal) -> str:
    """`value` as a canonical decimal string: no exponent, no trailing zeros, "0" for any zero."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    if value == 0:
        return "0"
    text = format(value, "f")  # exact, whatever the context's precision
    return text.rstrip("0").rstrip(".") if "." in text else text


def okx_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """OKX's order book checksum over (price, size) strings, best first: a signed 32-bit CRC32."""
    parts: list[str] = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    crc = zlib.crc32(":".join(parts).encode("ascii"))
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _row(price: Decimal, size: Decimal) -> Row:
    return (decimal_str(price), decimal_str(size), LIQUIDATED_ORDERS, ORDERS_COUNT_UNKNOWN)


def _removed(price: Decimal) -> Row:
    return (decimal_str(price), SIZE_REMOVED, LIQUIDATED_ORDERS, SIZE_REMOVED)


def _check_levels(levels: Sequence[Level], descending: bool, name: str) -> None:
    for i, (price, size) in enumerate(levels):
        if not (price.is_finite() and size.is_finite() and size > 0):
            raise ValueError(f"{name}[{i}]: price and size must be finite and the size above zero: {price}, {size}")
        if i and (levels[i - 1][0] <= price if descending else levels[i - 1][0] >= price):
            raise ValueError(f"{name}[{i}]: prices must strictly {'fall' if descending else 'rise'}: {price}")


class _Side:
    """One side as sent: levels in book order and their rows, by price."""

    __slots__ = ("descending", "levels", "rows")

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.levels: list[Level] = []
        self.rows: dict[Decimal, Row] = {}  # price -> row; insertion order is book order

    def replace(self, levels: Sequence[Level]) -> list[Row]:
        """Take `levels` as what is shown; return the rows that turn the old view into it, in book order."""
        old_sizes = dict(self.levels)
        new_rows: dict[Decimal, Row] = {}
        delta: list[tuple[Decimal, Row]] = []
        for price, size in levels:
            if old_sizes.get(price) == size:
                new_rows[price] = self.rows[price]
            else:
                new_rows[price] = _row(price, size)
                delta.append((price, new_rows[price]))
        delta += [(price, _removed(price)) for price in old_sizes if price not in new_rows]
        delta.sort(key=lambda item: item[0], reverse=self.descending)
        self.levels, self.rows = list(levels), new_rows
        return [row for _, row in delta]

    def top(self, depth: int) -> list[Row]:
        return [self.rows[price] for price, _ in self.levels[:depth]]


def _okx_rows(rows: Iterable[Row]) -> list[list[str]]:
    return [list(row) for row in rows]


class BookFeed:
    """OKX `books` channel state for one instrument: what subscribers have been sent."""

    __slots__ = ("_asks", "_bids", "_depth", "_seq_id")

    def __init__(self, depth: int = BOOKS_DEPTH_MAX) -> None:
        if not 1 <= depth <= BOOKS_DEPTH_MAX:
            raise ValueError(f"depth must be 1..{BOOKS_DEPTH_MAX}, not {depth}")
        self._depth = depth
        self._seq_id = 0
        self._bids = _Side(descending=True)
        self._asks = _Side(descending=False)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def seq_id(self) -> int:
        """The seqId of the last update sent (0 before any)."""
        return self._seq_id

    def update(self, bids: Sequence[Level], asks: Sequence[Level], ts_ms: int) -> dict[str, Any] | None:
        """Show the engine's top levels (best first; levels past `depth` are ignored).

        Returns the OKX incremental data item with only the changed levels, or None if nothing changed.
        """
        bids, asks = bids[: self._depth], asks[: self._depth]
        _check_levels(bids, True, "bids")  # both checked before either side changes
        _check_levels(asks, False, "asks")
        bid_rows, ask_rows = self._bids.replace(bids), self._asks.replace(asks)
        if not bid_rows and not ask_rows:
            return None
        self._seq_id += 1
        return self._item(ask_rows, bid_rows, ts_ms, prev_seq_id=self._seq_id - 1)

    def snapshot(self, ts_ms: int) -> dict[str, Any]:
        """The whole book as sent so far, as the OKX "snapshot" data item (prevSeqId -1)."""
        return self._item(self._asks.top(self._depth), self._bids.top(self._depth), ts_ms, prev_seq_id=-1)

    def heartbeat(self, ts_ms: int) -> dict[str, Any]:
        """An empty update repeating the last seqId, as OKX sends when the book has not changed for a while."""
        return self._item([], [], ts_ms, prev_seq_id=self._seq_id)

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        """(asks, bids) as OKX rows, at most `depth` a side: for books5, bbo-tbt and GET market/books."""
        return _okx_rows(self._asks.top(depth)), _okx_rows(self._bids.top(depth))

    def checksum(self) -> int:
        bids = [(row[0], row[1]) for row in self._bids.top(CHECKSUM_LEVELS)]
        asks = [(row[0], row[1]) for row in self._asks.top(CHECKSUM_LEVELS)]
        return okx_checksum(bids, asks)

    def check_invariants(self) -> None:
        for side, name in ((self._bids, "bids"), (self._asks, "asks")):
            assert len(side.levels) <= self._depth, name
            _check_levels(side.levels, side.descending, name)
            assert list(side.rows) == [price for price, _ in side.levels], name
            assert all(side.rows[p] == _row(p, s) for p, s in side.levels), name
        assert self._seq_id >= 0

    def _item(self, asks: Iterable[Row], bids: Iterable[Row], ts_ms: int, prev_seq_id: int) -> dict[str, Any]:
        return {
            "asks": _okx_rows(asks),
            "bids": _okx_rows(bids),
            "ts": str(ts_ms),
            "checksum": self.checksum(),
            "prevSeqId": prev_seq_id,
            "seqId": self._seq_id,
        }


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade; `side` is the taker's, "buy" or "sell"."""

    trade_id: int
    ts_ms: int
    price: Decimal
    size: Decimal
    side: str


class _Minute:
    """A one-minute candle; volumes are base (size) and quote (price * size)."""

    __slots__ = ("close", "high", "low", "open", "start_ms", "vol", "vol_quote")

    def __init__(self, start_ms: int, price: Decimal, size: Decimal) -> None:
        self.start_ms = start_ms
        self.open = self.high = self.low = self.close = price
        self.vol = size
        self.vol_quote = _EXACT.multiply(price, size)

    def add(self, price: Decimal, size: Decimal) -> None:
        self.high, self.low, self.close = max(self.high, price), min(self.low, price), price
        self.vol = _EXACT.add(self.vol, size)
        self.vol_quote = _EXACT.add(self.vol_quote, _EXACT.multiply(price, size))


def _sum_exact(values: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = _EXACT.add(total, value)
    return total


def _bar_start_ms(ts_ms: int, bar_ms: int, offset_ms: int) -> int:
    return (ts_ms + offset_ms) // bar_ms * bar_ms - offset_ms


def _bar_row(start_ms: int, minutes: list[_Minute], closed: bool) -> list[str]:
    """An OKX candle row from a bar's minutes, newest first."""
    vol_quote = decimal_str(_sum_exact(m.vol_quote for m in minutes))
    return [
        str(start_ms),
        decimal_str(minutes[-1].open),
        decimal_str(max(m.high for m in minutes)),
        decimal_str(min(m.low for m in minutes)),
        decimal_str(minutes[0].close),
        decimal_str(_sum_exact(m.vol for m in minutes)),
        vol_quote,  # volCcy: for SPOT, the quote currency
        vol_quote,  # volCcyQuote
        "1" if closed else "0",
    ]


def bar_spec(bar: str) -> tuple[int, int]:
    """(bar length ms, time zone offset ms) of an OKX bar name; `ValueError` naming the allowed ones."""
    spec = BARS.get(bar)
    if spec is None:
        raise ValueError(f"unknown bar {bar!r}; allowed: {', '.join(BARS)}")
    return spec


class Candles:
    """OHLCV for one instrument from its trades; bounded memory."""

    __slots__ = ("_complete_from_ms", "_minutes", "_minutes_max", "_ts_ms_last")

    def __init__(self, minutes_max: int = CANDLES_MINUTES_DEFAULT) -> None:
        if minutes_max < DAY_MINUTES:
            raise ValueError(f"minutes_max must be at least {DAY_MINUTES} (a day), not {minutes_max}")
        self._minutes_max = minutes_max
        self._minutes: deque[_Minute] = deque()
        self._ts_ms_last: int | None = None
        self._complete_from_ms: int | None = None  # minutes before this may have been dropped

    def __len__(self) -> int:
        """One-minute candles held."""
        return len(self._minutes)

    def add_trade(self, ts_ms: int, price: Decimal, size: Decimal) -> None:
        if self._ts_ms_last is not None and ts_ms < self._ts_ms_last:
            raise ValueError(f"trade at {ts_ms} ms is before the last one at {self._ts_ms_last} ms")
        if not (price.is_finite() and size.is_finite() and price > 0 and size > 0):
            raise ValueError(f"a trade's price and size must be above zero: {price}, {size}")
        start_ms = ts_ms - ts_ms % MINUTE_MS
        if self._minutes and self._minutes[-1].start_ms == start_ms:
            self._minutes[-1].add(price, size)
        else:
            self._minutes.append(_Minute(start_ms, price, size))
            self._drop_before(start_ms - (self._minutes_max - 1) * MINUTE_MS)
        self._ts_ms_last = ts_ms

    def rows(
        self, bar: str, *, after_ms: int | None, before_ms: int | None, limit: int, now_ms: int
    ) -> list[list[str]]:
        """OKX GET /api/v5/market/candles rows, newest first: bars that start before `after_ms` and after
        `before_ms` (both excluded, either may be None), at most `limit` (clamped to 300) of them."""
        bar_ms, offset_ms = bar_spec(bar)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        count = min(limit, CANDLES_LIMIT_MAX)
        rows: list[list[str]] = []
        minutes = self._bar_minutes(bar_ms, offset_ms, after_ms, before_ms)
        for start_ms, group in groupby(minutes, key=lambda m: _bar_start_ms(m.start_ms, bar_ms, offset_ms)):
            rows.append(_bar_row(start_ms, list(group), closed=now_ms >= start_ms + bar_ms))
            if len(rows) == count:
                break
        return rows

    def stats_24h(self, now_ms: int) -> tuple[Decimal | None, Decimal | None, Decimal | None, Decimal, Decimal]:
        """(open24h, high24h, low24h, vol24h, volCcy24h) over the 1,440 one-minute candles up to and including
        the minute of `now_ms`; the prices are None and the volumes 0 without trades in it."""
        last_ms = now_ms - now_ms % MINUTE_MS
        first_ms = last_ms - (DAY_MINUTES - 1) * MINUTE_MS
        newer = dropwhile(lambda m: m.start_ms > last_ms, reversed(self._minutes))
        window = list(takewhile(lambda m: m.start_ms >= first_ms, newer))
        if not window:
            return None, None, None, Decimal(0), Decimal(0)
        return (
            window[-1].open,
            max(m.high for m in window),
            min(m.low for m in window),
            _sum_exact(m.vol for m in window),
            _sum_exact(m.vol_quote for m in window),
        )

    def check_invariants(self) -> None:
        starts = [m.start_ms for m in self._minutes]
        assert len(starts) <= self._minutes_max
        assert all(a < b for a, b in pairwise(starts))
        assert all(s % MINUTE_MS == 0 for s in starts)
        if starts:
            assert starts[-1] - starts[0] < self._minutes_max * MINUTE_MS
            assert self._complete_from_ms is None or self._complete_from_ms <= starts[0]
        for m in self._minutes:
            assert m.low <= min(m.open, m.close) and m.high >= max(m.open, m.close) and m.vol > 0

    def _drop_before(self, first_ms: int) -> None:
        while self._minutes[0].start_ms < first_ms:
            self._complete_from_ms = self._minutes.popleft().start_ms + MINUTE_MS

    def _bar_minutes(
        self, bar_ms: int, offset_ms: int, after_ms: int | None, before_ms: int | None
    ) -> Iterator[_Minute]:
        """The minutes, newest first, of the bars in (before_ms, after_ms) that lost none to the bound."""

        def start_ms(m: _Minute) -> int:
            return _bar_start_ms(m.start_ms, bar_ms, offset_ms)

        low_ms = -(1 << 62)  # bars start at or after this
        if before_ms is not None:
            low_ms = before_ms + 1
        if self._complete_from_ms is not None:
            low_ms = max(low_ms, self._complete_from_ms)
        newest = reversed(self._minutes)
        if after_ms is not None:
            newest = dropwhile(lambda m: start_ms(m) >= after_ms, newest)
        return takewhile(lambda m: start_ms(m) >= low_ms, newest)
