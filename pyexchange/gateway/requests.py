"""OKX order-entry requests, checked field by field before anything is queued.

A request either becomes a complete intent (every number already in ticks and lots) or an
`OkxError` naming the field and what is wrong with it; nothing is half-applied, because
nothing reaches the engine until the whole request is valid. The same parsing serves REST
(`POST /api/v5/trade/...`) and WebSocket order entry (`op: order`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from pyexchange import _core, wire
from pyexchange.engine import Instrument
from pyexchange.gateway import okx

CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")  # ASCII digits only: no sign, exponent, space or '_'
ORDER_TYPES = ("limit", "market", "post_only", "fok", "ioc")
STP_MODES = ("cancel_maker", "cancel_taker", "cancel_both")
STP_DEFAULT = "cancel_maker"
NUMBER_CHARS_MAX = 40
STEPS_MAX = 1 << 62  # ticks and lots past this are refused here; the engine's own limits are lower
ORDER_ID_MAX = (1 << 63) - 1


class PlaceIntent(NamedTuple):
    """A valid order to place (a named tuple, not a frozen dataclass: one per order, built in a
    third of the time)."""

    instrument: Instrument
    side: str
    order_type: str
    price: Decimal | None
    size: Decimal
    price_ticks: int
    size_lots: int
    client_order_id: str
    stp: str
    tag: str

    def same_order(self, other: Any) -> bool:
        """Whether an order (`engine.Order`) was placed with exactly these parameters."""
        return bool(
            other.instrument == self.instrument.symbol and other.side == self.side
            and other.order_type == self.order_type and other.size == self.size
            and (self.price is None or other.price == self.price)
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class OrderRef:
    """An existing order named by `ordId` or `clOrdId` in one instrument."""

    instrument: Instrument
    order_id: int | None
    client_order_id: str | None


@dataclass(frozen=True, slots=True)
class AmendIntent:
    ref: OrderRef
    new_size: Decimal | None
    new_price: Decimal | None
    new_size_lots: int
    new_price_ticks: int
    request_id: str


def error(field: str, why: str) -> okx.OkxError:
    return okx.OkxError(okx.PARAMETER_ERROR, f"Parameter {field} error: {why}")


def _text(body: Mapping[str, Any], field: str, *, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise okx.OkxError(okx.PARAMETER_EMPTY, f"Parameter {field} can not be empty")
        return None
    if not isinstance(value, str):
        raise error(field, f"must be a string, not {type(value).__name__}")
    return value


def _number(body: Mapping[str, Any], field: str, *, required: bool = True) -> Decimal | None:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise okx.OkxError(okx.PARAMETER_EMPTY, f"Parameter {field} can not be empty")
        return None
    if isinstance(value, str):  # what clients send; tested first, as `str | int | float` costs an order 0.1 µs
        text = value
    elif isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise error(field, f"must be a decimal string, not {type(value).__name__}")
    if len(text) > NUMBER_CHARS_MAX or not DECIMAL.fullmatch(text):
        raise error(field, f'{text[:NUMBER_CHARS_MAX]!r} is not a plain decimal such as "0.01" (digits, one point)')
    number = Decimal(text)
    if number <= 0:
        raise error(field, f"{text!r} must be positive")
    return number


def _steps(value: Decimal, step: Decimal, field: str, what: str) -> int:
    steps = value / step
    if steps != steps.to_integral_value():
        raise error(field, f"{okx.dec(value)} is not a multiple of the {what} {okx.dec(step)}")
    if steps > STEPS_MAX:
        raise error(field, f"{okx.dec(value)} is too large")
    return int(steps)


def inst_id_code(inst: Instrument) -> int:
    """OKX's numeric instrument code (`instIdCode`), which newer clients send instead of
    `instId`: the engine's instrument id plus one (never 0)."""
    return inst.instrument_id + 1


def instrument(body: Mapping[str, Any], instruments: Mapping[str, Instrument]) -> Instrument:
    code = body.get("instIdCode")
    if body.get("instId") in (None, "") and code not in (None, ""):
        text = str(code) if isinstance(code, int | str) and not isinstance(code, bool) else ""
        if not (text.isascii() and text.isdigit()):
            raise error("instIdCode", f"{str(code)[:40]!r} is not an instrument code")
        by_code = next((i for i in instruments.values() if inst_id_code(i) == int(text[:20])), None)
        if by_code is None:
            raise okx.OkxError(okx.INSTRUMENT_UNKNOWN, f"Instrument code {text[:40]} does not exist")
        return by_code
    symbol = _text(body, "instId")
    assert symbol is not None
    found = instruments.get(symbol)
    if found is None:
        raise okx.OkxError(okx.INSTRUMENT_UNKNOWN, f"Instrument ID {symbol[:40]!r} does not exist")
    return found


def _choice(body: Mapping[str, Any], field: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = _text(body, field, required=default is None)
    if value is None:
        assert default is not None
        return default
    if value not in allowed:
        raise error(field, f"{value[:40]!r} is not one of {', '.join(allowed)}")
    return value


def client_order_id(body: Mapping[str, Any]) -> str:
    value = _text(body, "clOrdId", required=False)
    if value is not None and not CLIENT_ORDER_ID.fullmatch(value):
        raise error("clOrdId", "1 to 32 letters, digits, '-' or '_'")
    return value or ""


def place(body: Any, instruments: Mapping[str, Instrument]) -> PlaceIntent:
    if not isinstance(body, dict):
        raise okx.OkxError(okx.PARAMETER_ERROR, "An order must be a JSON object")
    inst = instrument(body, instruments)
    td_mode = _text(body, "tdMode")
    if td_mode != "cash":
        raise error("tdMode", f'{td_mode!r}: spot trading here is cash only (tdMode "cash")')
    side = _choice(body, "side", wire.SIDES)
    order_type = _choice(body, "ordType", ORDER_TYPES)
    stp = _choice(body, "stpMode", STP_MODES, default=STP_DEFAULT)
    size = _number(body, "sz")
    assert size is not None
    size_lots = _steps(size, inst.lot_size, "sz", "lot size")
    if size < inst.min_size:
        raise okx.OkxError(
            okx.SIZE_BELOW_MIN,
            f"Order amount {okx.dec(size)} is below the minimum {okx.dec(inst.min_size)} of {inst.symbol}",
        )
    price: Decimal | None = None
    price_ticks = 0
    if order_type == "market":
        target = _text(body, "tgtCcy", required=False) or ("quote_ccy" if side == "buy" else "base_ccy")
        if target != "base_ccy":
            raise error("tgtCcy", 'market orders take sz in the base currency here (tgtCcy "base_ccy")')
    else:
        price = _number(body, "px")
        assert price is not None
        price_ticks = _steps(price, inst.tick_size, "px", "tick size")
    tag = _text(body, "tag", required=False) or ""
    return PlaceIntent(
        inst, side, order_type, price, size, price_ticks, size_lots, client_order_id(body), stp, tag[:16]
    )


class PlaceReader:
    """`place`, with a fast path in Rust (`_core.PlaceReader`) for the orders it is sure of:
    a well-formed order whose fields are all strings gets the same `PlaceIntent` in a quarter
    of the time; anything else, and every error, is read by `place`. `read_json` (a REST body)
    and `read_order_op` (a whole WebSocket message) read the usual order from its JSON text, or
    answer None: then the caller parses the text and calls this reader."""

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self._instruments = instruments
        specs = [(symbol, inst, format(inst.tick_size, "f"), format(inst.lot_size, "f"), format(inst.min_size, "f"))
                 for symbol, inst in instruments.items()]  # fmt: skip
        self.fast = _core.PlaceReader(specs, PlaceIntent, Decimal, wire.SIDES, ORDER_TYPES, STP_MODES, STP_DEFAULT)
        # The Rust reader's own methods, not wrappers: no call of ours on every order.
        self.read_json = self.fast.read_json
        self.read_order_op = self.fast.read_order_op

    def __call__(self, body: Any) -> PlaceIntent:
        return self.fast.read(body) or place(body, self._instruments)


def order_ref(body: Any, instruments: Mapping[str, Instrument]) -> OrderRef:
    if not isinstance(body, dict):
        raise okx.OkxError(okx.PARAMETER_ERROR, "A request must be a JSON object")
    inst = instrument(body, instruments)
    order_id = _text(body, "ordId", required=False)
    cid = client_order_id(body) or None
    if order_id is None and cid is None:
        raise okx.OkxError(okx.PARAMETER_EMPTY, "Either parameter ordId or clOrdId is required")
    if order_id is None:
        return OrderRef(inst, None, cid)
    if not (order_id.isascii() and order_id.isdigit()) or len(order_id) > 19 or not 0 < int(order_id) <= ORDER_ID_MAX:
        raise error("ordId", f"{order_id[:40]!r} is not an order id")
    return OrderRef(inst, int(order_id), cid)


def amend(body: Any, instruments: Mapping[str, Instrument]) -> AmendIntent:
    ref = order_ref(body, instruments)
    inst = ref.instrument
    new_size = _number(body, "newSz", required=False)
    new_price = _number(body, "newPx", required=False)
    if new_size is None and new_price is None:
        raise okx.OkxError(okx.PARAMETER_EMPTY, "Either parameter newSz or newPx is required")
    size_lots = 0 if new_size is None else _steps(new_size, inst.lot_size, "newSz", "lot size")
    if new_size is not None and new_size < inst.min_size:
        raise okx.OkxError(
            okx.SIZE_BELOW_MIN,
            f"Order amount {okx.dec(new_size)} is below the minimum {okx.dec(inst.min_size)} of {inst.symbol}",
        )
    price_ticks = 0 if new_price is None else _steps(new_price, inst.tick_size, "newPx", "tick size")
    request_id = _text(body, "reqId", required=False) or ""
    return AmendIntent(ref, new_size, new_price, size_lots, price_ticks, request_id[:32])
