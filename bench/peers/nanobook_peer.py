"""nanobook (Rust, PyO3): `nanobook.Exchange`, one per instrument.

API used: `submit_limit(side, price, qty, tif)` with tif `"gtc"`/`"ioc"`/`"fok"`,
`submit_market(side, qty)`, `cancel(id)`, `modify(id, new_price, new_qty)`; each returns a
result whose `trades` carry `aggressor_order_id`, `passive_order_id`, `price`, `quantity`.

Semantics against ours: fill price is the maker's; `modify` is cancel-and-replace, so the
order gets a *new* id (the adapter maps it back to ours) and `new_qty` is the new remaining
quantity, not the total (the adapter tracks each order's remaining from its trades); a move
re-enters as a taker and loses priority, as ours does, but so does a size cut, which ours
makes in place. No accounts, so no self-trade
prevention, and market orders have no protection bound. It keeps every event for replay
(memory grows with the run).

Status: 0.19.2 cannot run the exchange-core mix. Cancelling (or modifying) an order after
an order ahead of it at its level was filled leaves the cancelled quantity in the level;
the next order that crosses that level then spins forever, or (after a same-price modify)
trades quantity 0 against the cancelled order. `repro_nanobook.py` shows both in 5 calls.
The adapter stops with an error at the first quantity-0 trade; a hang is caught by the
time limit of `compare.py`.
"""

import time

import nanobook

from bench._wire import AMEND, CANCEL, FOK, IOC, LIMIT, MARKET, PLACE
from bench.peers import PeerResult, columns

NAME = "nanobook"
SUPPORTS = ("limit", "ioc", "fok", "market", "cancel", "amend")

_TIF = {LIMIT: "gtc", IOC: "ioc", FOK: "fok"}
_SIDE = ("buy", "sell")


def run(commands, order_ids=None) -> PeerResult:
    rows = columns(commands, order_ids)
    book = _Books()
    done = 0
    start = time.perf_counter()
    for row, (kind, order_type, side, instrument, order_id, price, size, place_id) in enumerate(rows):
        try:
            if kind == PLACE:
                if not place_id or not book.place(instrument, place_id, order_type, side, price, size):
                    continue
            elif kind == CANCEL:
                book.cancel(instrument, order_id)
            elif kind == AMEND:
                book.amend(instrument, order_id, price, size)
            else:
                continue
        except RuntimeError as error:
            raise RuntimeError(f"command {row}: {error}") from None
        done += 1
    seconds = time.perf_counter() - start
    return PeerResult(NAME, seconds, done, book.fills)


class _Books:
    """One `nanobook.Exchange` per instrument, and the id and size bookkeeping around them."""

    def __init__(self) -> None:
        self.exchanges: dict[int, nanobook.Exchange] = {}
        self.fills: list[tuple[int, int, int, int]] = []
        self.theirs: dict[int, int] = {}  # our id -> nanobook's current id of that order
        self.ours: dict[int, dict[int, int]] = {}  # per instrument: nanobook id -> our id
        self.remaining: dict[int, int] = {}  # our id -> remaining quantity (resting orders)
        self.total: dict[int, int] = {}  # our id -> total size, filled part included
        self.limit: dict[int, int] = {}  # our id -> limit price

    def exchange(self, instrument: int) -> nanobook.Exchange:
        exchange = self.exchanges.get(instrument)
        if exchange is None:  # each exchange numbers its orders from 1
            exchange = self.exchanges[instrument] = nanobook.Exchange()
            self.ours[instrument] = {}
        return exchange

    def place(self, instrument: int, place_id: int, order_type: int, side: int, price: int, size: int) -> bool:
        exchange = self.exchange(instrument)
        if order_type == MARKET:
            result = exchange.submit_market(_SIDE[side], size)
        elif order_type in _TIF:
            result = exchange.submit_limit(_SIDE[side], price, size, _TIF[order_type])
        else:
            return False
        ours = self.ours[instrument]
        ours[result.order_id] = place_id
        self._record(result.trades, ours)
        if result.resting_quantity:
            self.theirs[place_id] = result.order_id
            self.remaining[place_id] = result.resting_quantity
            self.total[place_id] = size
            self.limit[place_id] = price
        return True

    def cancel(self, instrument: int, order_id: int) -> None:
        their_id = self.theirs.pop(order_id, None)
        if their_id is not None:
            self.exchange(instrument).cancel(their_id)
            del self.remaining[order_id]

    def amend(self, instrument: int, order_id: int, price: int, size: int) -> None:
        their_id = self.theirs.get(order_id)
        if their_id is None:
            return
        left = self.remaining[order_id]
        if size:  # ours: the new total; nanobook: the new remaining
            left = size - (self.total[order_id] - left)
            if left <= 0:
                return  # ours refuses a size not above the filled part
            self.total[order_id] = size
            self.remaining[order_id] = left
        price = price or self.limit[order_id]
        result = self.exchange(instrument).modify(their_id, price, left)
        self.limit[order_id] = price
        new_id = result.new_order_id
        assert new_id is not None, result.error
        ours = self.ours[instrument]
        ours[new_id] = order_id
        self.theirs[order_id] = new_id
        taken = self._record(result.trades, ours)
        if taken:
            self._reduce(order_id, taken)

    def _record(self, trades, ours: dict[int, int]) -> int:
        """Appends the trades as fills; forgets filled makers; returns the taker's quantity."""
        taken = 0
        for trade in trades:
            maker, qty = ours[trade.passive_order_id], trade.quantity
            if not qty or maker not in self.remaining:
                # Seen after a cancel behind a filled order: see repro_nanobook.py.
                raise RuntimeError(f"nanobook traded {qty} against order {maker}, which is not resting")
            self.fills.append((ours[trade.aggressor_order_id], maker, trade.price, qty))
            taken += qty
            self._reduce(maker, qty)
        return taken

    def _reduce(self, order_id: int, qty: int) -> None:
        left = self.remaining[order_id] - qty
        if left:
            self.remaining[order_id] = left
        else:  # filled: gone
            del self.remaining[order_id]
            del self.theirs[order_id]
