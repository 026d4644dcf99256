"""nautilus_trader's order book: book maintenance only, it does not match.

`nautilus_trader.model.book.OrderBook` (L3_MBO, Rust core behind Cython) keeps a book
from market data: `add`, `update` and `delete` of `BookOrder(side, price, size, order_id)`.
It never matches: an `add` that crosses leaves the book crossed (a bid above the best
ask). Its `simulate_fills(order)` reads what an order *would* fill without changing the
book, and the backtest `OrderMatchingEngine` fills a strategy's own orders against that
market-data book (which stays unchanged), not participants' orders against each other. So
nautilus has no matching engine to put next to ours.

What is benchmarked, honestly labelled: the book-maintenance part of the workload. Before
the clock starts, the reference (`plain_ladder`) turns the commands into the L3 deltas an
exchange would publish (a place that rests -> add; a fill -> update or delete of the maker;
cancel -> delete; move -> delete, maker updates, add at the new price). The timed loop
applies those deltas to nautilus's book (building the `BookOrder`s included, as a user
feeding it would). It produces no fills; the check is that its final book equals the
reference's, level by level. Its commands/s are therefore not comparable with a matcher's:
it does less work per command.
"""

import time

from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder
from nautilus_trader.model.enums import BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity

from bench._wire import AMEND, CANCEL, IOC, LIMIT, PLACE
from bench.peers import PeerResult, columns
from bench.peers.plain_ladder import BUY, SELL, PlainLadder

NAME = "nautilus_trader"
SUPPORTS = ("limit", "ioc", "cancel", "amend")  # as book deltas; it matches nothing
PRODUCES_FILLS = False

ADD, UPDATE, DELETE = 1, 2, 3
_SIDES = (OrderSide.BUY, OrderSide.SELL)


def l3_deltas(commands, order_ids=None):
    """(deltas, commands used, reference books); a delta is (instrument, action, side,
    price, size, order id), in the order an exchange would publish them."""
    deltas: list[tuple[int, int, int, int, int, int]] = []
    books: dict[int, PlainLadder] = {}
    used = 0
    for kind, order_type, side, instrument, order_id, price, size, place_id in columns(commands, order_ids):
        book = books.get(instrument)
        if book is None:
            book = books[instrument] = PlainLadder()
        orders, fills = book.orders, book.fills
        if kind == PLACE:
            if not place_id or (order_type != LIMIT and order_type != IOC):
                continue
            book.place(place_id, side, price, size, order_type == IOC)
            rested = place_id
        elif kind == CANCEL:
            order = orders.get(order_id)
            if order is not None:
                deltas.append((instrument, DELETE, order[0], order[1], 0, order_id))
            book.cancel(order_id)
            rested = 0
        elif kind == AMEND:
            order = orders.get(order_id)
            rested = _amend(book, instrument, order_id, price, size, deltas)
            if not rested:
                used += 1  # refused, or changed in place: nothing more to publish
                continue
            side = order[0]
        else:
            continue
        used += 1
        for _, maker_id, fill_price, _ in fills:  # makers are on the taker's other side
            maker = orders.get(maker_id)
            if maker is None:
                deltas.append((instrument, DELETE, 1 - side, fill_price, 0, maker_id))
            else:
                deltas.append((instrument, UPDATE, maker[0], maker[1], maker[2], maker_id))
        fills.clear()
        order = orders.get(rested) if rested else None
        if order is not None:
            deltas.append((instrument, ADD, order[0], order[1], order[2], rested))
    return deltas, used, books


def _amend(book: PlainLadder, instrument: int, order_id: int, price: int, size: int, deltas: list) -> int:
    """Applies an amend; returns the id when it left the book and re-entered (else 0)."""
    order = book.orders.get(order_id)
    if order is None or not book.amend(order_id, price, size):
        return 0
    if book.orders.get(order_id) is order:  # stayed in place: the same record
        deltas.append((instrument, UPDATE, order[0], order[1], order[2], order_id))
        return 0
    deltas.append((instrument, DELETE, order[0], order[1], 0, order_id))  # the old record's price
    return order_id


def run(commands, order_ids=None) -> PeerResult:
    deltas, used, reference = l3_deltas(commands, order_ids)
    books: dict[int, OrderBook] = {}
    start = time.perf_counter()
    for instrument, action, side, price, size, order_id in deltas:
        book = books.get(instrument)
        if book is None:
            book = books[instrument] = OrderBook(InstrumentId.from_str(f"I{instrument}.SIM"), BookType.L3_MBO)
        order = BookOrder(_SIDES[side], Price(price, 0), Quantity(size, 0), order_id)
        if action == ADD:
            book.add(order, 0)
        elif action == UPDATE:
            book.update(order, 0)
        else:
            book.delete(order, 0)
    seconds = time.perf_counter() - start
    result = PeerResult(NAME, seconds, used, [], notes=f"book maintenance only: {len(deltas)} L3 deltas")
    result.books = {i: (_levels(b.bids()), _levels(b.asks())) for i, b in books.items()}
    want = {i: (b.book(BUY), b.book(SELL)) for i, b in reference.items()}
    if {i: v for i, v in want.items() if v != ([], [])} != {i: v for i, v in result.books.items() if v != ([], [])}:
        result.error = "final book differs from the reference"
    return result


def _levels(levels) -> list[tuple[int, int]]:
    return [(round(level.price.as_double()), round(level.size())) for level in levels]
