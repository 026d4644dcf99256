"""A plain-Python model of the engine's contract (`core_rs/SEMANTICS.md`) for the venue mix.

It exists so `workloads.venue_mix` knows, while generating, which places our engine accepts
(ids go only to accepted places, so a cancel or amend can name the right id), which orders
still rest, and the fills to expect. It follows the page rule by rule: checks in the listed
order, holds (`per_lot_max`), market protection bounds, post-only, fok fillability, the four
self-trade prevention modes, fees rounded up, settlement, amend in place or re-entry.

Invariants (`check_invariants`): per asset, balances (fee account included) sum to what was
deposited; per account and asset, `frozen` equals the holds of its live orders; no book is
crossed; every resting order is in exactly one level. Slow and plain on purpose; it is not
a peer and is not timed. `bench/test_peers.py` checks it against the test oracle
(`tests/reference.py`, written apart): same ids and fills on a generated venue mix.
"""

from collections import Counter, deque
from dataclasses import dataclass
from heapq import heappop, heappush

from bench._wire import BUY, CANCEL_BOTH, CANCEL_MAKER, FOK, LIMIT, MARKET, POST_ONLY, STP_NONE

PRICE_TICKS_MAX = 1 << 40
SIZE_LOTS_MAX = 1 << 40
FEE_ACCOUNT = 0
UNITS_TOTAL_MAX = (1 << 64) - 1  # the engine keeps each asset's total deposited within u64
BPS = 10_000

# Order record fields (a list per order, mutated in place).
ACCOUNT, INSTRUMENT, SIDE, TYPE, STP, LIMIT_TICKS, REMAINING, TOTAL = range(8)


@dataclass(frozen=True)
class InstrumentUnits:
    base: int
    quote: int
    lot_units: int
    quote_units_per_tick_lot: int
    min_size_lots: int
    maker_fee_bps: int
    taker_fee_bps: int
    market_protection_bps: int

    def notional(self, price_ticks: int, size_lots: int) -> int:
        return price_ticks * size_lots * self.quote_units_per_tick_lot

    def per_lot_max(self, price_ticks: int) -> int:
        n = self.notional(price_ticks, 1)
        return n + fee(n, max(self.maker_fee_bps, self.taker_fee_bps))


def fee(notional_units: int, bps: int) -> int:
    return -(-notional_units * bps // BPS)


class _Book:
    __slots__ = ("count", "heaps", "levels")

    def __init__(self) -> None:
        self.levels: tuple[dict[int, deque[int]], dict[int, deque[int]]] = ({}, {})
        self.heaps: tuple[list[int], list[int]] = ([], [])  # -price for bids, price for asks
        self.count = 0  # resting orders

    def best(self, side: int) -> int | None:
        levels, heap = self.levels[side], self.heaps[side]
        while heap:
            price = -heap[0] if side == BUY else heap[0]
            if price in levels:
                return price
            heappop(heap)
        return None

    def push(self, side: int, price: int, order_id: int) -> None:
        level = self.levels[side].get(price)
        if level is None:
            self.levels[side][price] = deque((order_id,))
            heappush(self.heaps[side], -price if side == BUY else price)
        else:
            level.append(order_id)
        self.count += 1

    def unlink(self, side: int, price: int, order_id: int) -> None:
        level = self.levels[side][price]
        level.remove(order_id)
        if not level:
            del self.levels[side][price]
        self.count -= 1


class VenueModel:
    """Engine state for the venue mix: books, live orders, the ledger, fills, rejections."""

    def __init__(self, instruments: list[InstrumentUnits]) -> None:
        self.instruments = instruments
        self.books = [_Book() for _ in instruments]
        self.orders: dict[int, list[int]] = {}
        self.balances: dict[tuple[int, int], list[int]] = {}  # (account, asset) -> [available, frozen]
        self.deposited: Counter[int] = Counter()
        self.next_id = 1
        self.fills: list[tuple[int, int, int, int]] = []
        self.rejected: Counter[str] = Counter()
        self.expired: Counter[str] = Counter()

    # --- commands -------------------------------------------------------------------------

    def deposit(self, account: int, asset: int, amount_units: int) -> bool:
        if account == FEE_ACCOUNT or amount_units <= 0 or self.deposited[asset] + amount_units > UNITS_TOTAL_MAX:
            self.rejected["deposit"] += 1
            return False
        self._balance(account, asset)[0] += amount_units
        self.deposited[asset] += amount_units
        return True

    def place(self, account: int, instrument: int, side: int, order_type: int, price: int, size: int, stp: int) -> int:
        """The id given, or 0 when rejected (the reason is counted in `rejected`)."""
        spec, book = self.instruments[instrument], self.books[instrument]
        if account == FEE_ACCOUNT:
            return self._reject("ledger_reserved_account")
        if size < spec.min_size_lots or size > SIZE_LOTS_MAX:
            return self._reject("instrument_size_invalid")
        if order_type != MARKET and not 1 <= price <= PRICE_TICKS_MAX:
            return self._reject("instrument_price_invalid")
        limit = price
        if order_type == MARKET:
            best = book.best(1 - side)
            if best is None:
                return self._reject("matching_no_liquidity")
            bps = spec.market_protection_bps
            limit = best * (BPS + bps) // BPS if side == BUY else max(1, -(-best * (BPS - bps) // BPS))
        if order_type == POST_ONLY and self._crosses(book, side, limit):
            return self._reject("matching_post_only_would_cross")
        asset, hold = self._hold(spec, side, limit, size)
        balance = self.balances.get((account, asset))
        if balance is None or balance[0] < hold:
            return self._reject("ledger_insufficient_funds")
        balance[0] -= hold
        balance[1] += hold
        order_id = self.next_id
        self.next_id += 1
        order = [account, instrument, side, order_type, stp, limit, size, size]
        self.orders[order_id] = order
        if order_type == FOK and not self._fok_fillable(book, order):
            self._close(order_id, order, "matching_fok_not_fillable")
            return order_id
        self._enter(order_id, order)
        return order_id

    def cancel(self, account: int, instrument: int, order_id: int) -> bool:
        order = self.orders.get(order_id)
        if order is None or order[ACCOUNT] != account or order[INSTRUMENT] != instrument:
            self._reject("matching_unknown_order")
            return False
        self.books[instrument].unlink(order[SIDE], order[LIMIT_TICKS], order_id)
        self._close(order_id, order, "")
        return True

    def amend(self, account: int, instrument: int, order_id: int, new_price: int, new_size: int) -> bool:
        order = self.orders.get(order_id)
        if order is None or order[ACCOUNT] != account or order[INSTRUMENT] != instrument:
            return bool(self._reject("matching_unknown_order"))
        spec, book = self.instruments[instrument], self.books[instrument]
        if new_price == 0 and new_size == 0:
            return bool(self._reject("matching_amend_no_change"))
        if new_price and not 1 <= new_price <= PRICE_TICKS_MAX:
            return bool(self._reject("instrument_price_invalid"))
        if new_size and (new_size < spec.min_size_lots or new_size > SIZE_LOTS_MAX):
            return bool(self._reject("instrument_size_invalid"))
        side, price, total = order[SIDE], new_price or order[LIMIT_TICKS], new_size or order[TOTAL]
        filled = order[TOTAL] - order[REMAINING]
        if total <= filled:
            return bool(self._reject("matching_amend_size_not_above_filled"))
        if order[TYPE] == POST_ONLY and self._crosses(book, side, price):
            return bool(self._reject("matching_post_only_would_cross"))
        asset, held = self._hold(spec, side, order[LIMIT_TICKS], order[REMAINING])
        _, hold = self._hold(spec, side, price, total - filled)
        balance = self.balances[(account, asset)]
        if hold > balance[0] + held:
            return bool(self._reject("ledger_insufficient_funds"))
        balance[0] += held - hold
        balance[1] += hold - held
        in_place = price == order[LIMIT_TICKS] and total <= order[TOTAL]
        if not in_place:
            book.unlink(side, order[LIMIT_TICKS], order_id)
        order[LIMIT_TICKS], order[REMAINING], order[TOTAL] = price, total - filled, total
        if not in_place:
            self._enter(order_id, order)
        return True

    # --- queries --------------------------------------------------------------------------

    def best(self, instrument: int, side: int) -> int | None:
        return self.books[instrument].best(side)

    def resting(self, instrument: int) -> int:
        return self.books[instrument].count

    def check_invariants(self) -> None:
        totals: Counter[int] = Counter()
        for (_, asset), (available, frozen) in self.balances.items():
            assert available >= 0 and frozen >= 0
            totals[asset] += available + frozen
        assert +totals == +self.deposited, (totals, self.deposited)
        holds: Counter[tuple[int, int]] = Counter()
        for order in self.orders.values():
            spec = self.instruments[order[INSTRUMENT]]
            asset, hold = self._hold(spec, order[SIDE], order[LIMIT_TICKS], order[REMAINING])
            holds[(order[ACCOUNT], asset)] += hold
        frozen = Counter({key: b[1] for key, b in self.balances.items() if b[1]})
        assert +holds == frozen
        resting = sorted(i for book in self.books for side in book.levels for level in side.values() for i in level)
        assert resting == sorted(self.orders)
        assert sum(book.count for book in self.books) == len(self.orders)
        for book in self.books:
            bid, ask = book.best(BUY), book.best(1 - BUY)
            assert bid is None or ask is None or bid < ask

    # --- rules ----------------------------------------------------------------------------

    def _enter(self, order_id: int, order: list[int]) -> None:
        """Matches as a taker; the remainder rests (limit, post_only) or expires."""
        stopped = self._match(order_id, order)
        if not order[REMAINING]:
            del self.orders[order_id]
        elif stopped:
            self._close(order_id, order, "matching_self_trade_prevented")
        elif order[TYPE] == LIMIT or order[TYPE] == POST_ONLY:
            self.books[order[INSTRUMENT]].push(order[SIDE], order[LIMIT_TICKS], order_id)
        else:
            self._close(order_id, order, "matching_immediate_remainder")

    def _match(self, taker_id: int, taker: list[int]) -> bool:
        """Fills while the opposite best crosses; True when self-trade prevention stopped it."""
        book, spec = self.books[taker[INSTRUMENT]], self.instruments[taker[INSTRUMENT]]
        side, other = taker[SIDE], 1 - taker[SIDE]
        while taker[REMAINING]:
            price = book.best(other)
            if price is None or not self._crosses_at(side, taker[LIMIT_TICKS], price):
                return False
            level = book.levels[other][price]
            maker_id = level[0]
            maker = self.orders[maker_id]
            if maker[ACCOUNT] == taker[ACCOUNT] and taker[STP] != STP_NONE:
                if taker[STP] == CANCEL_MAKER or taker[STP] == CANCEL_BOTH:
                    book.unlink(other, price, maker_id)
                    self._close(maker_id, maker, "matching_self_trade_prevented")
                if taker[STP] != CANCEL_MAKER:
                    return True
                continue
            q = min(taker[REMAINING], maker[REMAINING])
            self._settle(spec, taker, maker, price, q)
            self.fills.append((taker_id, maker_id, price, q))
            if not maker[REMAINING]:
                level.popleft()
                book.count -= 1
                if not level:
                    del book.levels[other][price]
                del self.orders[maker_id]
        return False

    def _settle(self, spec: InstrumentUnits, taker: list[int], maker: list[int], price: int, q: int) -> None:
        buyer, seller = (taker, maker) if taker[SIDE] == BUY else (maker, taker)
        notional = spec.notional(price, q)
        taker_fee, maker_fee = fee(notional, spec.taker_fee_bps), fee(notional, spec.maker_fee_bps)
        buyer_fee, seller_fee = (taker_fee, maker_fee) if buyer is taker else (maker_fee, taker_fee)
        released = q * spec.per_lot_max(buyer[LIMIT_TICKS])
        buyer_quote = self.balances[(buyer[ACCOUNT], spec.quote)]
        buyer_quote[1] -= released
        buyer_quote[0] += released - notional - buyer_fee
        self._balance(buyer[ACCOUNT], spec.base)[0] += q * spec.lot_units
        self.balances[(seller[ACCOUNT], spec.base)][1] -= q * spec.lot_units
        self._balance(seller[ACCOUNT], spec.quote)[0] += notional - seller_fee
        self._balance(FEE_ACCOUNT, spec.quote)[0] += taker_fee + maker_fee
        buyer[REMAINING] -= q
        seller[REMAINING] -= q

    def _fok_fillable(self, book: _Book, order: list[int]) -> bool:
        side, other, need = order[SIDE], 1 - order[SIDE], order[REMAINING]
        prices = sorted(book.levels[other], reverse=other == BUY)
        for price in prices:
            if not self._crosses_at(side, order[LIMIT_TICKS], price):
                return False
            for maker_id in book.levels[other][price]:
                maker = self.orders[maker_id]
                if maker[ACCOUNT] == order[ACCOUNT] and order[STP] != STP_NONE:
                    if order[STP] == CANCEL_MAKER:
                        continue
                    return False
                need -= maker[REMAINING]
                if need <= 0:
                    return True
        return False

    def _close(self, order_id: int, order: list[int], reason: str) -> None:
        """Takes a live order out of `orders` and releases its hold (the book is done by the caller)."""
        spec = self.instruments[order[INSTRUMENT]]
        asset, hold = self._hold(spec, order[SIDE], order[LIMIT_TICKS], order[REMAINING])
        balance = self.balances[(order[ACCOUNT], asset)]
        balance[0] += hold
        balance[1] -= hold
        del self.orders[order_id]
        if reason:
            self.expired[reason] += 1

    def _hold(self, spec: InstrumentUnits, side: int, limit: int, lots: int) -> tuple[int, int]:
        if side == BUY:
            return spec.quote, lots * spec.per_lot_max(limit)
        return spec.base, lots * spec.lot_units

    def _balance(self, account: int, asset: int) -> list[int]:
        balance = self.balances.get((account, asset))
        if balance is None:
            balance = self.balances[(account, asset)] = [0, 0]
        return balance

    def _reject(self, reason: str) -> int:
        self.rejected[reason] += 1
        return 0

    @staticmethod
    def _crosses_at(side: int, limit: int, price: int) -> bool:
        return price <= limit if side == BUY else price >= limit

    def _crosses(self, book: _Book, side: int, limit: int) -> bool:
        best = book.best(1 - side)
        return best is not None and self._crosses_at(side, limit, best)
