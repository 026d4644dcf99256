"""The oracle: a slow, obviously correct model of `core_rs/SEMANTICS.md` behind the Python face
of `pyexchange.Engine`, written apart from the Rust design (it shares only the limits of
`core_rs/src/limits.rs`).

Inside, everything is an integer: prices in ticks, sizes in lots, amounts in minor units.
Decimal appears only where values cross the edge. A book side is the list of resting orders of
that side, sorted on every read by (price priority, arrival); nothing is cached or indexed, so
each rule can be read off one short function. Closed orders are kept forever.
"""

import re
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation

FEE_ACCOUNT = 0
BPS_SCALE = 10_000
FEE_BPS_MAX = 1_000
MARKET_PROTECTION_BPS_MAX = 5_000
ASSET_DECIMALS_MAX = 18
PRICE_TICKS_MAX = 1 << 40
SIZE_LOTS_MAX = 1 << 40
ORDERS_LIVE_MAX = 4 << 20
AMOUNT_UNITS_MAX = (1 << 64) - 1
CLIENT_ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")

SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market", "ioc", "fok", "post_only")
STP_MODES = ("cancel_maker", "cancel_taker", "cancel_both", "none")
RESTING_ORDER_TYPES = ("limit", "post_only")
STP_PREVENTED = "matching_self_trade_prevented"


@dataclass(frozen=True)
class Event:
    kind: str
    seq: int
    account: int
    order_id: int | None = None
    instrument: str | None = None
    side: str | None = None
    price: Decimal | None = None
    size: Decimal | None = None
    maker_order_id: int | None = None
    taker_order_id: int | None = None
    maker_account: int | None = None
    taker_account: int | None = None
    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None
    reason: str | None = None
    asset: str | None = None  # deposits only


# Every attribute an event has, in both engines.
EVENT_FIELDS = tuple(f.name for f in fields(Event))


@dataclass(frozen=True)
class Order:
    order_id: int
    account: int
    instrument: str
    side: str
    order_type: str
    price: Decimal
    size: Decimal
    filled_size: Decimal
    average_price: Decimal | None
    state: str
    client_order_id: str | None
    stp: str


def fee_units(notional_units: int, bps: int) -> int:
    """ceil(notional * bps / 10000), in integers."""
    return -(-notional_units * bps // BPS_SCALE)


def to_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{what}: expected str, int or Decimal, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what}: not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{what}: not finite: {value!r}")
    return number


def whole_multiple(value: Decimal, unit: Decimal, what: str) -> int:
    """value / unit, which must be a whole number."""
    try:
        count, rest = divmod(value, unit)
    except InvalidOperation:
        raise ValueError(f"{what}: {value} is out of range") from None
    if rest != 0:
        raise ValueError(f"{what}: {value} is not a multiple of {unit}")
    return int(count)


def scaled(units: int, decimals: int) -> Decimal:
    return Decimal(units).scaleb(-decimals)


@dataclass
class _Instrument:
    symbol: str
    base: str
    quote: str
    quote_decimals: int
    tick_size: Decimal
    lot_size: Decimal
    min_size_lots: int
    maker_fee_bps: int
    taker_fee_bps: int
    market_protection_bps: int
    lot_units: int
    quote_units_per_tick_lot: int

    def notional_units(self, price_ticks: int, size_lots: int) -> int:
        return price_ticks * size_lots * self.quote_units_per_tick_lot

    def hold(self, side: str, price_ticks: int, size_lots: int) -> tuple[str, int]:
        """The asset and amount an open order of this side, limit and remaining size freezes."""
        if side == "sell":
            return self.base, size_lots * self.lot_units
        notional_lot_units = self.notional_units(price_ticks, 1)
        fee_bps_max = max(self.maker_fee_bps, self.taker_fee_bps)
        per_lot_max_units = notional_lot_units + fee_units(notional_lot_units, fee_bps_max)
        return self.quote, size_lots * per_lot_max_units

    def price(self, price_ticks: int) -> Decimal | None:
        return price_ticks * self.tick_size if price_ticks else None

    def size(self, size_lots: int) -> Decimal | None:
        return size_lots * self.lot_size if size_lots else None

    def fee(self, units: int) -> Decimal:
        return scaled(units, self.quote_decimals)


@dataclass(eq=False)
class _Order:
    order_id: int
    account: int
    inst: _Instrument
    side: str
    order_type: str
    price_ticks: int
    size_lots: int
    stp: str
    client_order_id: str | None
    filled_lots: int = 0
    filled_ticks_lots: int = 0  # sum of price_ticks * lots over the fills, for average_price
    closed: bool = False
    arrival: int = 0  # time priority; renewed whenever the order (re)enters the book

    @property
    def remaining_lots(self) -> int:
        return self.size_lots - self.filled_lots

    def hold(self) -> tuple[str, int]:
        return self.inst.hold(self.side, self.price_ticks, self.remaining_lots)


def crosses(side: str, limit_ticks: int, maker_price_ticks: int) -> bool:
    """Whether a taker of `side` with this limit may trade at the maker's price."""
    return maker_price_ticks <= limit_ticks if side == "buy" else maker_price_ticks >= limit_ticks


def opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"{what}: {value!r} is not one of {choices}")


def check_account(account: int) -> None:
    if isinstance(account, bool) or not isinstance(account, int) or not 0 <= account < 1 << 64:
        raise ValueError(f"account: {account!r} is not a u64")


class ReferenceEngine:
    """The methods and return shapes of `pyexchange.Engine`, except that add_asset and add_instrument
    return their (empty) event lists rather than specs."""

    def __init__(self) -> None:
        self._seq = 0
        self._events: list[Event] = []
        self._asset_decimals: dict[str, int] = {}
        self._deposited_units: dict[str, int] = {}
        self._instruments: dict[str, _Instrument] = {}
        self._balances: dict[tuple[int, str], list[int]] = {}  # [available, frozen] in units
        self._orders: dict[int, _Order] = {}
        self._resting: list[_Order] = []  # every order in every book, unsorted
        self._order_id_last = 0
        self._arrival_last = 0
        # (account, client_order_id) -> (the place's parameters, its accepted event)
        self._client_orders: dict[tuple[int, str], tuple[tuple[object, ...], Event]] = {}

    # ---- commands --------------------------------------------------------------------------

    def add_asset(self, asset: str, decimals: int = 8) -> list[Event]:
        if not asset or asset in self._asset_decimals or "-" in asset:
            raise ValueError(f"asset name {asset!r} is empty, taken or contains '-'")
        if not isinstance(decimals, int) or not 0 <= decimals <= ASSET_DECIMALS_MAX:
            raise ValueError(f"decimals {decimals!r} not in 0..={ASSET_DECIMALS_MAX}")
        self._begin()
        self._asset_decimals[asset] = decimals
        self._deposited_units[asset] = 0
        return self._events

    def add_instrument(
        self,
        symbol: str,
        tick_size: object,
        lot_size: object,
        min_size: object,
        maker_fee_bps: int = 0,
        taker_fee_bps: int = 0,
        market_protection_bps: int = 500,
    ) -> list[Event]:
        base, _, quote = symbol.partition("-")
        if symbol in self._instruments or not base or not quote or base == quote or "-" in quote:
            raise ValueError(f"symbol {symbol!r} is taken or not BASE-QUOTE")
        tick = to_decimal(tick_size, "tick_size")
        lot = to_decimal(lot_size, "lot_size")
        minimum = to_decimal(min_size, "min_size")
        if tick <= 0 or lot <= 0 or minimum <= 0:
            raise ValueError("tick_size, lot_size and min_size must be > 0")
        for bps, bps_max in (
            (maker_fee_bps, FEE_BPS_MAX),
            (taker_fee_bps, FEE_BPS_MAX),
            (market_protection_bps, MARKET_PROTECTION_BPS_MAX),
        ):
            if not isinstance(bps, int) or not 0 <= bps <= bps_max:
                raise ValueError(f"basis points {bps!r} not in 0..={bps_max}")
        base_decimals = self._asset_decimals.get(base, 8)
        quote_decimals = self._asset_decimals.get(quote, 8)
        lot_units = whole_multiple(lot.scaleb(base_decimals), Decimal(1), "lot units")
        tick_lot_units = whole_multiple((tick * lot).scaleb(quote_decimals), Decimal(1), "tick*lot")
        if lot_units < 1 or tick_lot_units < 1:
            raise ValueError("lot_size or tick_size * lot_size below one minor unit")
        inst = _Instrument(
            symbol,
            base,
            quote,
            quote_decimals,
            tick,
            lot,
            whole_multiple(minimum, lot, "min_size"),
            maker_fee_bps,
            taker_fee_bps,
            market_protection_bps,
            lot_units,
            tick_lot_units,
        )
        for asset in (base, quote):  # each unknown asset is an add_asset command of its own
            if asset not in self._asset_decimals:
                self.add_asset(asset)
        self._begin()
        self._instruments[symbol] = inst
        return self._events

    def deposit(self, account: int, asset: str, amount: object) -> list[Event]:
        check_account(account)
        decimals = self._decimals(asset)
        units = whole_multiple(to_decimal(amount, "amount"), Decimal(1).scaleb(-decimals), "amount")
        if units < 0:
            raise ValueError(f"amount {amount!r} is negative")
        self._begin()
        echo = {"size": scaled(units, decimals) if units else None, "asset": asset}
        if account == FEE_ACCOUNT:
            self._emit("rejected", account, reason="ledger_reserved_account", **echo)
        elif units == 0 or self._balance(account, asset)[0] + units > AMOUNT_UNITS_MAX:
            self._emit("rejected", account, reason="ledger_amount_invalid", **echo)
        else:
            self._balance(account, asset)[0] += units
            self._deposited_units[asset] += units
            self._emit("deposited", account, **echo)
        return self._events

    def place(
        self,
        account: int,
        instrument: str,
        side: str,
        order_type: str,
        price: object = None,
        size: object = None,
        client_order_id: str | None = None,
        stp: str = "cancel_maker",
    ) -> list[Event]:
        check_account(account)
        inst = self._instrument(instrument)
        check_choice(side, SIDES, "side")
        check_choice(order_type, ORDER_TYPES, "order_type")
        check_choice(stp, STP_MODES, "stp")
        size_lots = self._size_lots(inst, size)
        price_ticks = 0 if order_type == "market" else self._price_ticks(inst, price)
        if client_order_id is not None and not CLIENT_ORDER_ID_PATTERN.fullmatch(client_order_id):
            raise ValueError(f"client_order_id {client_order_id!r}: 1 to 32 of A-Za-z0-9_-")
        params = (inst.symbol, side, order_type, price_ticks, size_lots, stp)
        known = self._client_orders.get((account, client_order_id or ""))
        if known is not None and known[0] == params:
            return [known[1]]  # a retry: the original outcome, no new command
        self._begin()
        if known is not None and account != FEE_ACCOUNT:  # checked right after the reserved account
            limit_ticks, reason = 0, "order_client_order_id_in_use"
        else:
            limit_ticks, reason = self._place_checks(account, inst, side, order_type, price_ticks, size_lots)
        if reason is not None:
            self._reject(account, reason, inst, 0, side, price_ticks, size_lots)
            return self._events
        self._order_id_last += 1
        order = _Order(
            self._order_id_last, account, inst, side, order_type, limit_ticks, size_lots, stp, client_order_id
        )
        self._orders[order.order_id] = order
        self._freeze(order)
        self._emit_order("accepted", order, size_lots)
        if client_order_id is not None:
            self._client_orders[account, client_order_id] = (params, self._events[-1])
        if order_type == "fok" and not self._fok_fillable(order):
            self._close(order, "expired", "matching_fok_not_fillable")
        else:
            self._take(order)
        return self._events

    def cancel(self, account: int, instrument: str, order_id: int) -> list[Event]:
        check_account(account)
        inst = self._instrument(instrument)
        self._begin()
        order = self._live_order(account, inst, order_id)
        if order is None:
            self._reject(account, "matching_unknown_order", inst, order_id)
        else:
            self._close(order, "canceled")
        return self._events

    def amend(
        self, account: int, instrument: str, order_id: int, new_size: object = None, new_price: object = None
    ) -> list[Event]:
        check_account(account)
        inst = self._instrument(instrument)
        size_lots = 0 if new_size is None else self._size_lots(inst, new_size)
        price_ticks = 0 if new_price is None else self._price_ticks(inst, new_price)
        self._begin()
        order = self._live_order(account, inst, order_id)
        reason = self._amend_checks(order, price_ticks, size_lots)
        if reason is not None:
            self._reject(account, reason, inst, order_id, None, price_ticks, size_lots)
            return self._events
        price_ticks = price_ticks or order.price_ticks
        size_lots = size_lots or order.size_lots
        keeps_priority = price_ticks == order.price_ticks and size_lots <= order.size_lots
        self._unfreeze(order, order.remaining_lots, spent_units=0)
        order.price_ticks, order.size_lots = price_ticks, size_lots
        self._freeze(order)
        self._emit_order("amended", order, size_lots)
        if not keeps_priority:
            self._resting.remove(order)
            self._take(order)
        return self._events

    def cancel_all(self, account: int, instrument: str | None = None) -> list[Event]:
        check_account(account)
        inst = None if instrument is None else self._instrument(instrument)
        self._begin()
        for order in sorted(self._resting, key=lambda o: o.order_id):
            if order.account == account and inst in (None, order.inst):
                self._close(order, "canceled")
        return self._events

    # ---- queries ---------------------------------------------------------------------------

    def balance(self, account: int, asset: str) -> tuple[Decimal, Decimal]:
        decimals = self._decimals(asset)
        available, frozen = self._balances.get((account, asset), (0, 0))
        return scaled(available, decimals), scaled(frozen, decimals)

    def book(self, instrument: str, depth: int = 5) -> dict[str, list[tuple[Decimal, Decimal]]]:
        inst = self._instrument(instrument)
        view: dict[str, list[tuple[Decimal, Decimal]]] = {}
        for name, side in (("bids", "buy"), ("asks", "sell")):
            levels: list[list[int]] = []  # [price_ticks, size_lots], best first
            for order in self._queue(inst, side):
                if levels and levels[-1][0] == order.price_ticks:
                    levels[-1][1] += order.remaining_lots
                else:
                    levels.append([order.price_ticks, order.remaining_lots])
            view[name] = [(p * inst.tick_size, s * inst.lot_size) for p, s in levels[:depth]]
        return view

    def order(self, account: int, order_id: int) -> Order | None:
        order = self._orders.get(order_id)
        if order is None or order.account != account:
            return None
        inst = order.inst
        average_price = None
        if order.filled_lots:
            average_price = inst.tick_size * Decimal(order.filled_ticks_lots) / order.filled_lots
        if order.closed:
            state = "filled" if order.remaining_lots == 0 else "canceled"
        else:
            state = "partially_filled" if order.filled_lots else "live"
        return Order(
            order.order_id,
            order.account,
            inst.symbol,
            order.side,
            order.order_type,
            order.price_ticks * inst.tick_size,
            order.size_lots * inst.lot_size,
            order.filled_lots * inst.lot_size,
            average_price,
            state,
            order.client_order_id,
            order.stp,
        )

    def check_invariants(self) -> None:
        for inst in self._instruments.values():
            bids, asks = self._queue(inst, "buy"), self._queue(inst, "sell")
            if bids and asks and bids[0].price_ticks >= asks[0].price_ticks:
                raise AssertionError(f"book_not_crossed: {inst.symbol} is crossed")
        required: dict[tuple[int, str], int] = {}
        for order in self._resting:
            if order.closed or order.remaining_lots <= 0:
                raise AssertionError(f"resting_orders_open: order {order.order_id}")
            asset, units = order.hold()
            required[(order.account, asset)] = required.get((order.account, asset), 0) + units
        if any(not o.closed and o not in self._resting for o in self._orders.values()):
            raise AssertionError("open_orders_resting: an open order is missing from its book")
        totals: dict[str, int] = dict.fromkeys(self._asset_decimals, 0)
        for key in set(self._balances) | set(required):
            available, frozen = self._balances.get(key, (0, 0))
            if available < 0 or frozen != required.get(key, 0):
                raise AssertionError(f"frozen_equals_holds: {key} has {available}, {frozen}")
            totals[key[1]] += available + frozen
        if totals != self._deposited_units:
            raise AssertionError(f"assets_conserved: {totals} != {self._deposited_units}")

    # ---- place, match, settle --------------------------------------------------------------

    def _place_checks(
        self, account: int, inst: _Instrument, side: str, order_type: str, price_ticks: int, size_lots: int
    ) -> tuple[int, str | None]:
        """(limit_ticks, None), or (0, the reason of the first failed check of `place`)."""
        if account == FEE_ACCOUNT:
            return 0, "ledger_reserved_account"
        # Sizes below min_size and prices <= 0 are ValueErrors at the edge; only the maxima remain.
        if size_lots > SIZE_LOTS_MAX:
            return 0, "instrument_size_invalid"
        if price_ticks > PRICE_TICKS_MAX:
            return 0, "instrument_price_invalid"
        limit_ticks = price_ticks
        if order_type == "market":
            makers = self._queue(inst, opposite(side))
            if not makers:
                return 0, "matching_no_liquidity"
            limit_ticks = self._protection_bound(inst, side, makers[0].price_ticks)
        if order_type == "post_only" and self._crossing_makers(inst, side, limit_ticks):
            return 0, "matching_post_only_would_cross"
        if len(self._resting) >= ORDERS_LIVE_MAX:
            return 0, "matching_book_full"
        asset, hold_units = inst.hold(side, limit_ticks, size_lots)
        if hold_units > self._balance(account, asset)[0]:
            return 0, "ledger_insufficient_funds"
        return limit_ticks, None

    @staticmethod
    def _protection_bound(inst: _Instrument, side: str, best_ticks: int) -> int:
        bps = inst.market_protection_bps
        if side == "buy":
            return best_ticks * (BPS_SCALE + bps) // BPS_SCALE
        return max(1, -(-best_ticks * (BPS_SCALE - bps) // BPS_SCALE))

    def _fok_fillable(self, taker: _Order) -> bool:
        """Walk the crossing makers as matching would, without touching anything."""
        fillable_lots = 0
        for maker in self._crossing_makers(taker.inst, taker.side, taker.price_ticks):
            if maker.account == taker.account and taker.stp == "cancel_maker":
                continue
            if maker.account == taker.account and taker.stp != "none":
                return False
            fillable_lots += maker.remaining_lots
            if fillable_lots >= taker.remaining_lots:
                return True
        return False

    def _take(self, taker: _Order) -> None:
        """Match the taker against the opposite side, then rest or expire what is left."""
        while taker.remaining_lots > 0:
            makers = self._crossing_makers(taker.inst, taker.side, taker.price_ticks)
            if not makers:
                break
            maker = makers[0]
            if maker.account != taker.account or taker.stp == "none":
                self._fill(taker, maker)
                continue
            if taker.stp in ("cancel_maker", "cancel_both"):
                self._close(maker, "expired", STP_PREVENTED)
            if taker.stp in ("cancel_taker", "cancel_both"):
                self._close(taker, "expired", STP_PREVENTED)
                return
        if taker.remaining_lots == 0:
            return
        if taker.order_type in RESTING_ORDER_TYPES:
            self._arrival_last += 1
            taker.arrival = self._arrival_last
            self._resting.append(taker)
        else:
            self._close(taker, "expired", "matching_immediate_remainder")

    def _fill(self, taker: _Order, maker: _Order) -> None:
        inst = taker.inst
        lots = min(taker.remaining_lots, maker.remaining_lots)
        notional_units = inst.notional_units(maker.price_ticks, lots)
        taker_fee_units = fee_units(notional_units, inst.taker_fee_bps)
        maker_fee_units = fee_units(notional_units, inst.maker_fee_bps)
        buyer, seller = (taker, maker) if taker.side == "buy" else (maker, taker)
        buyer_fee_units = taker_fee_units if buyer is taker else maker_fee_units
        seller_fee_units = maker_fee_units if buyer is taker else taker_fee_units
        self._unfreeze(buyer, lots, spent_units=notional_units + buyer_fee_units)
        self._balance(buyer.account, inst.base)[0] += lots * inst.lot_units
        self._unfreeze(seller, lots, spent_units=lots * inst.lot_units)
        self._balance(seller.account, inst.quote)[0] += notional_units - seller_fee_units
        self._balance(FEE_ACCOUNT, inst.quote)[0] += taker_fee_units + maker_fee_units
        for order in (taker, maker):
            order.filled_lots += lots
            order.filled_ticks_lots += maker.price_ticks * lots
        if maker.remaining_lots == 0:
            maker.closed = True
            self._resting.remove(maker)
        taker.closed = taker.remaining_lots == 0
        self._emit(
            "fill",
            taker.account,
            order_id=taker.order_id,
            instrument=inst.symbol,
            side=taker.side,
            price=inst.price(maker.price_ticks),
            size=inst.size(lots),
            maker_order_id=maker.order_id,
            taker_order_id=taker.order_id,
            maker_account=maker.account,
            taker_account=taker.account,
            maker_fee=inst.fee(maker_fee_units),
            taker_fee=inst.fee(taker_fee_units),
        )

    def _close(self, order: _Order, kind: str, reason: str | None = None) -> None:
        """Cancel or expire the remaining size: release its hold, take it off the book."""
        self._unfreeze(order, order.remaining_lots, spent_units=0)
        if order in self._resting:
            self._resting.remove(order)
        order.closed = True
        self._emit_order(kind, order, order.remaining_lots, reason)

    # ---- helpers ---------------------------------------------------------------------------

    def _amend_checks(self, order: _Order | None, price_ticks: int, size_lots: int) -> str | None:
        if order is None:
            return "matching_unknown_order"
        if price_ticks == 0 and size_lots == 0:
            return "matching_amend_no_change"
        if price_ticks > PRICE_TICKS_MAX:
            return "instrument_price_invalid"
        if size_lots > SIZE_LOTS_MAX:
            return "instrument_size_invalid"
        new_price_ticks = price_ticks or order.price_ticks
        new_size_lots = size_lots or order.size_lots
        if new_size_lots <= order.filled_lots:
            return "matching_amend_size_not_above_filled"
        inst = order.inst
        if order.order_type == "post_only" and self._crossing_makers(inst, order.side, new_price_ticks):
            return "matching_post_only_would_cross"
        asset, hold_now_units = order.hold()
        _, hold_new_units = inst.hold(order.side, new_price_ticks, new_size_lots - order.filled_lots)
        if hold_new_units > self._balance(order.account, asset)[0] + hold_now_units:
            return "ledger_insufficient_funds"
        return None

    def _queue(self, inst: _Instrument, side: str) -> list[_Order]:
        """One side of one book, best first: by price, then by arrival."""
        orders = [o for o in self._resting if o.inst is inst and o.side == side]
        sign = -1 if side == "buy" else 1
        return sorted(orders, key=lambda o: (sign * o.price_ticks, o.arrival))

    def _crossing_makers(self, inst: _Instrument, side: str, limit_ticks: int) -> list[_Order]:
        makers = self._queue(inst, opposite(side))
        return [m for m in makers if crosses(side, limit_ticks, m.price_ticks)]

    def _live_order(self, account: int, inst: _Instrument, order_id: int) -> _Order | None:
        order = self._orders.get(order_id)
        if order is None or order.closed or order.account != account or order.inst is not inst:
            return None
        return order

    def _freeze(self, order: _Order) -> None:
        asset, units = order.hold()
        balance = self._balance(order.account, asset)
        balance[0] -= units
        balance[1] += units

    def _unfreeze(self, order: _Order, lots: int, spent_units: int) -> None:
        """Release the hold of `lots` of the order; `spent_units` of it leave the account."""
        asset, units = order.inst.hold(order.side, order.price_ticks, lots)
        balance = self._balance(order.account, asset)
        balance[1] -= units
        balance[0] += units - spent_units

    def _balance(self, account: int, asset: str) -> list[int]:
        return self._balances.setdefault((account, asset), [0, 0])

    def _instrument(self, symbol: str) -> _Instrument:
        if symbol not in self._instruments:
            raise ValueError(f"unknown instrument {symbol!r}")
        return self._instruments[symbol]

    def _decimals(self, asset: str) -> int:
        if asset not in self._asset_decimals:
            raise ValueError(f"unknown asset {asset!r}")
        return self._asset_decimals[asset]

    @staticmethod
    def _price_ticks(inst: _Instrument, price: object) -> int:
        if price is None:
            raise ValueError("price is required for limit, ioc, fok and post_only orders")
        number = to_decimal(price, "price")
        if number <= 0:
            raise ValueError(f"price {price!r} must be > 0")
        return whole_multiple(number, inst.tick_size, "price")

    @staticmethod
    def _size_lots(inst: _Instrument, size: object) -> int:
        size_lots = whole_multiple(to_decimal(size, "size"), inst.lot_size, "size")
        if size_lots < inst.min_size_lots:
            raise ValueError(f"size {size!r} is below min_size {inst.min_size_lots * inst.lot_size}")
        return size_lots

    def _begin(self) -> None:
        self._seq += 1
        self._events = []

    def _emit(self, kind: str, account: int, *fields: object, **named: object) -> None:
        """Fields after `account` in the order of `Event`, or by name."""
        self._events.append(Event(kind, self._seq, account, *fields, **named))  # type: ignore[arg-type]

    def _reject(
        self,
        account: int,
        reason: str,
        inst: _Instrument,
        order_id: int,
        side: str | None = None,
        price_ticks: int = 0,
        size_lots: int = 0,
    ) -> None:
        """A refused place, cancel or amend: the command's own fields, echoed."""
        price, size = inst.price(price_ticks), inst.size(size_lots)
        self._emit("rejected", account, order_id or None, inst.symbol, side, price, size, reason=reason)

    def _emit_order(self, kind: str, order: _Order, size_lots: int, reason: str | None = None) -> None:
        inst = order.inst
        self._emit(
            kind,
            order.account,
            order_id=order.order_id,
            instrument=inst.symbol,
            side=order.side,
            price=inst.price(order.price_ticks),
            size=inst.size(size_lots),
            reason=reason,
        )
