"""A plain-Python price ladder: the baseline peer and the fills reference.

One book per instrument, strict price-time priority, fills at the maker's price. Each side
is a dict `price -> deque of order ids` (a level, oldest first) plus a heap of prices with
lazy deletion: a heap entry whose level is gone is dropped when it reaches the top. Orders
are `id -> [side, price_ticks, remaining_lots, total_lots]`; an order is live exactly while
it is in that dict, and then it is in exactly one level. Commands: limit (rests), ioc
(remainder expires), cancel, and amend per `core_rs/SEMANTICS.md` (a new price or a larger
size leaves the book and re-enters as a taker at the tail; else it stays in place). No
accounts, so no self-trade prevention (STP_NONE) and no ledger.
"""

from collections import deque
from heapq import heappop, heappush

BUY, SELL = 0, 1


class PlainLadder:
    """A single-instrument book; `fills` collects (taker_id, maker_id, price, size)."""

    __slots__ = ("fills", "heaps", "levels", "live", "orders")

    def __init__(self) -> None:
        self.orders: dict[int, list[int]] = {}
        self.levels: tuple[dict[int, deque[int]], dict[int, deque[int]]] = ({}, {})
        # Heap keys: -price for bids (best = highest), price for asks (best = lowest).
        self.heaps: tuple[list[int], list[int]] = ([], [])
        self.live = [0, 0]  # resting orders per side
        self.fills: list[tuple[int, int, int, int]] = []

    def place(self, order_id: int, side: int, price: int, size: int, ioc: bool = False) -> None:
        remaining = self._match(order_id, side, price, size)
        if remaining and not ioc:
            self.orders[order_id] = [side, price, remaining, size]
            self._rest(order_id, side, price)

    def cancel(self, order_id: int) -> bool:
        order = self.orders.pop(order_id, None)
        if order is None:
            return False
        self._unlink(order_id, order)
        return True

    def amend(self, order_id: int, new_price: int, new_size: int = 0) -> bool:
        """`0` means unchanged; `new_size` is the new total size, filled part included."""
        order = self.orders.get(order_id)
        if order is None or (new_price == 0 and new_size == 0):
            return False
        side, price, remaining, total = order
        new_price = new_price or price
        new_size = new_size or total
        filled = total - remaining
        if new_size <= filled:
            return False
        order[2], order[3] = new_size - filled, new_size
        if new_price == price and new_size <= total:
            return True  # stays in place, keeps priority
        self._unlink(order_id, order)
        del self.orders[order_id]
        self.place(order_id, side, new_price, order[2])
        if order_id in self.orders:
            self.orders[order_id][3] = new_size  # the filled part stays counted
        return True

    def book(self, side: int) -> list[tuple[int, int]]:
        """(price, total remaining) per level, best first."""
        levels, orders = self.levels[side], self.orders
        prices = sorted(levels, reverse=side == BUY)
        return [(p, sum(orders[i][2] for i in levels[p])) for p in prices]

    def _match(self, taker_id: int, side: int, limit: int, qty: int) -> int:
        other = 1 - side
        levels, heap, orders, fills = self.levels[other], self.heaps[other], self.orders, self.fills
        limit_key = limit if side == BUY else -limit  # a maker crosses while key <= limit_key
        while qty and heap:
            key = heap[0]
            price = key if side == BUY else -key
            level = levels.get(price)
            if level is None:
                heappop(heap)  # stale: the level emptied by cancels
                continue
            if key > limit_key:
                break
            while qty and level:
                maker_id = level[0]
                maker = orders[maker_id]
                q = qty if qty < maker[2] else maker[2]
                fills.append((taker_id, maker_id, price, q))
                qty -= q
                maker[2] -= q
                if not maker[2]:
                    level.popleft()
                    del orders[maker_id]
                    self.live[other] -= 1
            if not level:
                del levels[price]
                heappop(heap)
        return qty

    def _rest(self, order_id: int, side: int, price: int) -> None:
        level = self.levels[side].get(price)
        if level is None:
            self.levels[side][price] = deque((order_id,))
            heappush(self.heaps[side], -price if side == BUY else price)
        else:
            level.append(order_id)
        self.live[side] += 1

    def _unlink(self, order_id: int, order: list[int]) -> None:
        side, price = order[0], order[1]
        level = self.levels[side][price]
        level.remove(order_id)
        if not level:
            del self.levels[side][price]
        self.live[side] -= 1


# --- peer adapter -------------------------------------------------------------------------

NAME = "plain_ladder"
SUPPORTS = ("limit", "ioc", "cancel", "amend")


def run(commands, order_ids=None):
    """Runs the supported commands, one `PlainLadder` per instrument."""
    import time

    from bench._wire import AMEND, CANCEL, IOC, LIMIT, PLACE
    from bench.peers import PeerResult, columns

    rows = columns(commands, order_ids)
    fills: list[tuple[int, int, int, int]] = []
    books: dict[int, PlainLadder] = {}
    done = 0
    start = time.perf_counter()
    for kind, order_type, side, instrument, order_id, price, size, place_id in rows:
        book = books.get(instrument)
        if book is None:
            book = books[instrument] = PlainLadder()
            book.fills = fills
        if kind == PLACE:
            if not place_id or (order_type != LIMIT and order_type != IOC):
                continue
            book.place(place_id, side, price, size, order_type == IOC)
        elif kind == CANCEL:
            book.cancel(order_id)
        elif kind == AMEND:
            book.amend(order_id, price, size)
        else:
            continue
        done += 1
    seconds = time.perf_counter() - start
    result = PeerResult(NAME, seconds, done, fills)
    result.books = {i: (b.book(BUY), b.book(SELL)) for i, b in books.items()}
    return result
