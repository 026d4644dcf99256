"""LiquiBook (C++) through its SWIG wrapper, the `liquibook` package.

API used: `liquibook_book_OrderBook` (the plain `OrderBook<shared_ptr<SimpleOrder>>`; the
`DepthOrderBook` also keeps 5 levels of depth, `SimpleOrderBook` has no `add` in the
wrapper), `SimpleOrder(is_buy, price, qty)`, `add(order, conditions)`, `cancel(order)`,
`replace(order, size_delta, new_price)`, and an `OrderListener` subclass for callbacks.

What the adapter must do for the book to stay right (LiquiBook's own `SimpleOrderBook`
does it in C++): on `on_accept` call `order.accept()` and on `on_replace` call
`order.replace(size_delta, new_price)` (which does nothing to an order not accepted), since
the book finds a resting order and prices its fills by the order object's `price()`.
Without both, a moved order keeps its old price on the object: its later fills are priced
wrong and the next move or cancel of it is refused as not found.

Semantics against ours: fill price is the maker's; IOC via `oc_immediate_or_cancel`;
`replace` always takes the order out and adds it again (a size-only change loses priority
too, where ours keeps it in place when the size does not grow); a size cut below the
filled part cancels what is open, where ours refuses it; quantities are `uint32`. Every callback crosses from C++ into
Python (a SWIG director), which is most of its cost here.
"""

import time

import liquibook as lb

from bench._wire import AMEND, CANCEL, IOC, LIMIT, PLACE
from bench.peers import PeerResult, columns

NAME = "liquibook"
SUPPORTS = ("limit", "ioc", "cancel", "amend")


class _Listener(lb.OrderListener):
    """Records fills in our ids and keeps each moved `SimpleOrder` at its new price."""

    def __init__(self, fills: list[tuple[int, int, int, int]], our_id: dict[int, int]) -> None:
        lb.OrderListener.__init__(self)
        self.fills = fills
        self.our_id = our_id

    def on_fill(self, order, matched_order, fill_qty, fill_price):
        # The wrapper passes the cross price (the maker's) where the C++ names `fill_cost`.
        self.fills.append((self.our_id[order.order_id_], self.our_id[matched_order.order_id_], fill_price, fill_qty))

    def on_replace(self, order, size_delta, new_price):
        order.replace(size_delta, new_price)

    def on_accept(self, order):
        order.accept()  # `SimpleOrder.replace` changes nothing unless the order is accepted

    def on_cancel(self, order):
        pass

    def on_reject(self, order, reason):
        raise RuntimeError(f"liquibook rejected order {order.order_id_}: {reason}")

    def on_replace_reject(self, order, reason):
        pass  # the order is gone (filled); ours rejects with matching_unknown_order too

    def on_cancel_reject(self, order, reason):
        pass


def run(commands, order_ids=None) -> PeerResult:
    rows = columns(commands, order_ids)
    fills: list[tuple[int, int, int, int]] = []
    our_id: dict[int, int] = {}  # liquibook's order id -> ours
    orders: dict[int, lb.SimpleOrder] = {}  # ours -> the order object (kept alive here)
    listener = _Listener(fills, our_id)
    books: dict[int, lb.liquibook_book_OrderBook] = {}
    no_conditions, ioc_condition = lb.oc_no_conditions, lb.oc_immediate_or_cancel
    done = 0
    start = time.perf_counter()
    for kind, order_type, side, instrument, order_id, price, size, place_id in rows:
        book = books.get(instrument)
        if book is None:
            book = books[instrument] = lb.liquibook_book_OrderBook()
            book.set_order_listener(listener)
        if kind == PLACE:
            if not place_id or (order_type != LIMIT and order_type != IOC):
                continue
            order = lb.SimpleOrder(side == 0, price, size)
            our_id[order.order_id_] = place_id
            if order_type == LIMIT:
                orders[place_id] = order
                book.add(order, no_conditions)
            else:
                book.add(order, ioc_condition)
        elif kind == CANCEL:
            order = orders.pop(order_id, None)
            if order is not None:
                book.cancel(order)
        elif kind == AMEND:
            order = orders.get(order_id)
            if order is not None:
                # Ours takes the new total size (0: unchanged); liquibook a change of it.
                delta = size - order.order_qty() if size else 0
                book.replace(order, delta, price)
        else:
            continue
        done += 1
    seconds = time.perf_counter() - start
    return PeerResult(NAME, seconds, done, fills)
