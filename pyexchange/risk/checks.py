"""The pre-trade risk checks the gateway runs before a command reaches the engine.

Order of the checks, first refusal wins:
  place:  kill switch, market state, rate limit, max size, max notional, price band, max open orders
  amend:  kill switch, market state, rate limit, max size, max notional, price band
  cancel: market state only (a blocked account may still cancel; cancels are never rate limited)

Rules kept:
- The rate limit charges a token as soon as the kill switch and the market state let a place or an
  amend through, and keeps it when a later check refuses: a refused order cost us the same parsing,
  checking and reply, and refunding would let a client probe the limits at any speed. The kill
  switch and the market state come first and cost no token, so an account hammering a halted
  market does not find its bucket empty when trading resumes.
- The price band is inclusive: with reference R and pct P, a price p passes iff
  R * (100 - P) / 100 <= p <= R * (100 + P) / 100; one step outside fails. It applies only when the
  command carries a price and a reference price is known.
- Max size and max notional are inclusive too (size == max passes). A market order's notional uses
  the reference price, and is not checked without one.
- Decisions are exact: Decimal arithmetic in a context whose precision holds every product of
  the numbers the gateway lets in (40 characters each), with `Inexact` trapped, so a rounded
  result raises instead of deciding.
- Every instrument the checks are asked about must be configured: an unknown one is the caller's
  bug and raises ValueError, as do an unknown order type, side or market state.
- Market state per instrument, default continuous. What each state lets through is `ALLOWED_BY_STATE`.
- The checks read no clock: time enters as `now_ns` (monotonic nanoseconds from the caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Context, Decimal, Inexact, localcontext
from types import MappingProxyType
from typing import Final

from pyexchange.risk.buckets import TokenBuckets
from pyexchange.risk.limits import InstrumentLimits, RiskConfig
from pyexchange.risk.rejections import OKX_CODES, RiskRejection, reject

ORDER_TYPES: Final = ("limit", "market", "post_only", "ioc", "fok")
SIDES: Final = ("buy", "sell")
MARKET_STATES: Final = ("halted", "cancel_only", "pre_open", "call_auction", "continuous")
MARKET_STATE_DEFAULT: Final = "continuous"

# State -> the actions it lets through: an order type (a place of that type), "amend" or "cancel".
# Queries are not the risk checks' business and pass in every state.
ALLOWED_BY_STATE: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "halted": frozenset(),
        "cancel_only": frozenset({"cancel"}),
        "pre_open": frozenset({"post_only", "amend", "cancel"}),
        "call_auction": frozenset({"limit", "post_only", "cancel"}),
        "continuous": frozenset({*ORDER_TYPES, "amend", "cancel"}),
    }
)

_DISPLAY: Final = Context(prec=100)  # wide enough that a message never shows a rounded number
_EXACT: Final = Context(prec=200, traps=[Inexact])


class RiskChecks:
    """Pre-trade checks for every account and instrument of one zone, plus the operator's switches."""

    __slots__ = ("_band_edges", "_blocked", "_buckets", "_config", "_states")

    def __init__(self, config: RiskConfig) -> None:
        self._config: Final = config
        self._blocked: set[int] = set()
        self._states: dict[str, str] = {}  # only instruments not in MARKET_STATE_DEFAULT
        self._buckets: Final = TokenBuckets(config.orders_per_second_per_account, config.orders_burst_per_account)
        # (reference price, its band's low and high edges x 100): the reference changes at a trade, and
        # the orders in between are checked against the same edges.
        self._band_edges: tuple[Decimal, Decimal, Decimal] | None = None

    def check_place(
        self,
        *,
        account: int,
        instrument: str,
        side: str,
        order_type: str,
        price: Decimal | None,
        size: Decimal,
        reference_price: Decimal | None,
        open_orders: int,
        now_ns: int,
    ) -> RiskRejection | None:
        """None if a new order may go to the engine, else why not. `price` is None for market orders
        only; `open_orders` is the account's count of live orders now."""
        limits = self._limits(instrument)
        _check_place_args(side, order_type, price, size)
        market = order_type == "market"
        # The kill switch and the market state pass at a glance for most orders (not blocked, continuous).
        if account in self._blocked or instrument in self._states:
            rejection = self._check_blocked(account) or self._check_state(instrument, order_type)
            if rejection is not None:
                return rejection
        return (
            self._check_rate(account, now_ns)
            or _check_size(instrument, limits, size, market=market)
            or _check_notional(instrument, limits, reference_price if market else price, size, market=market)
            or self._check_band(side, price, reference_price)
            or self._check_open_orders(account, open_orders)
        )

    def check_amend(
        self,
        *,
        account: int,
        instrument: str,
        new_price: Decimal | None,
        new_size: Decimal | None,
        reference_price: Decimal | None,
        now_ns: int,
        order_price: Decimal | None = None,
        order_size: Decimal | None = None,
        side: str | None = None,
    ) -> RiskRejection | None:
        """None if the amend may go to the engine, else why not. `order_price` and `order_size`, the
        live order's current values, are optional: with them an amend that changes only one of price
        and size still has its notional checked; without them such an amend skips the notional."""
        limits = self._limits(instrument)
        for name, value in (("new_price", new_price), ("new_size", new_size)):
            if value is not None and not value > 0:
                raise ValueError(f"risk: {name} must be positive, not {value}")
        changed = new_price is not None or new_size is not None
        price = new_price if new_price is not None else order_price
        size = new_size if new_size is not None else order_size
        return (
            self._check_blocked(account)
            or self._check_state(instrument, "amend")
            or self._check_rate(account, now_ns)
            or (_check_size(instrument, limits, new_size, market=False) if new_size is not None else None)
            or (_check_notional(instrument, limits, price, size, market=False) if changed else None)
            or self._check_band(side, new_price, reference_price)
        )

    def check_cancel(self, *, account: int, instrument: str) -> RiskRejection | None:
        """None unless the instrument is halted. `account` does not matter: a blocked account may
        still cancel, and cancels are never rate limited."""
        self._limits(instrument)
        return self._check_state(instrument, "cancel")

    def block_account(self, account: int) -> None:
        """The operator's kill switch: the account may no longer place or amend (it may cancel)."""
        self._blocked.add(account)

    def unblock_account(self, account: int) -> None:
        self._blocked.discard(account)

    def blocked_accounts(self) -> frozenset[int]:
        return frozenset(self._blocked)

    def set_market_state(self, instrument: str, state: str) -> None:
        self._limits(instrument)
        if state not in ALLOWED_BY_STATE:
            raise ValueError(f"risk: unknown market state {state!r} (known: {', '.join(MARKET_STATES)})")
        if state == MARKET_STATE_DEFAULT:
            self._states.pop(instrument, None)
        else:
            self._states[instrument] = state

    def market_state(self, instrument: str) -> str:
        self._limits(instrument)
        return self._states.get(instrument, MARKET_STATE_DEFAULT)

    def rate_buckets_tracked(self) -> int:
        """How many accounts' token buckets are in memory (every other account's bucket is full)."""
        return self._buckets.tracked()

    def check_invariants(self) -> None:
        self._buckets.check_invariants()
        for instrument, state in self._states.items():
            if instrument not in self._config.instruments or state not in MARKET_STATES:
                raise AssertionError(f"risk: market state {state!r} of {instrument!r} is not a known pair")
            if state == MARKET_STATE_DEFAULT:
                raise AssertionError(f"risk: the default market state of {instrument} is stored")

    def _limits(self, instrument: str) -> InstrumentLimits:
        limits = self._config.instruments.get(instrument)
        if limits is None:
            raise ValueError(f"risk: instrument {instrument!r} is not configured")
        return limits

    def _check_blocked(self, account: int) -> RiskRejection | None:
        if account not in self._blocked:
            return None
        return reject(
            "risk_account_blocked",
            f"Account {account} is blocked by the operator's kill switch: it may cancel orders but not place or amend",
        )

    def _check_state(self, instrument: str, action: str) -> RiskRejection | None:
        state = self._states.get(instrument, MARKET_STATE_DEFAULT)
        allowed = ALLOWED_BY_STATE[state]
        if action in allowed:
            return None
        kind = "place" if action in ORDER_TYPES else action
        case = f"risk_market_state_forbids.{state}.{kind}"
        return reject(
            case if case in OKX_CODES else "risk_market_state_forbids",
            f"{instrument} is in the {state} state: {_action_name(action)} are not allowed; "
            f"allowed: {_allowed_text(allowed)}",
        )

    def _check_rate(self, account: int, now_ns: int) -> RiskRejection | None:
        if self._buckets.take(account, now_ns):
            return None
        config = self._config
        return reject(
            "risk_rate_limited",
            f"Account {account} is over its rate limit of {_show(config.orders_per_second_per_account)} orders and "
            f"amends per second, with bursts of up to {config.orders_burst_per_account}",
        )

    def _check_band(
        self, side: str | None, price: Decimal | None, reference_price: Decimal | None
    ) -> RiskRejection | None:
        """OKX's price limit: a buy may not be priced above the reference + pct, a sell not below the
        reference - pct (the side that could sweep the book); a passive order far from the market is
        fine. Without a side (an amend of an order whose side is unknown) both edges apply."""
        if price is None or reference_price is None:
            return None
        edges = self._band_edges
        if edges is None or edges[0] != reference_price:
            band_pct = self._config.price_band_pct
            low_x100 = _EXACT.multiply(reference_price, _EXACT.subtract(100, band_pct))
            high_x100 = _EXACT.multiply(reference_price, _EXACT.add(100, band_pct))
            self._band_edges = edges = (reference_price, low_x100, high_x100)
        _, low_x100, high_x100 = edges
        price_x100 = _EXACT.multiply(price, 100)
        if (side == "sell" or price_x100 <= high_x100) and (side == "buy" or low_x100 <= price_x100):
            return None
        band_pct = self._config.price_band_pct
        with localcontext(_DISPLAY):
            low, high = reference_price * (100 - band_pct) / 100, reference_price * (100 + band_pct) / 100
        return reject(
            "risk_price_outside_band",
            f"Order price {_show(price)} is not within the price limit (max buy price: {_show(high)}, min sell "
            f"price: {_show(low)}; ±{_show(band_pct)}% of the reference price {_show(reference_price)})",
        )

    def _check_open_orders(self, account: int, open_orders: int) -> RiskRejection | None:
        open_orders_max = self._config.open_orders_per_account_max
        if open_orders < open_orders_max:
            return None
        return reject(
            "risk_open_orders_above_max",
            f"Account {account} has {open_orders} open orders; the maximum is {open_orders_max}",
        )


def _check_place_args(side: str, order_type: str, price: Decimal | None, size: Decimal) -> None:
    if side not in SIDES:
        raise ValueError(f"risk: unknown side {side!r} (known: {', '.join(SIDES)})")
    if order_type not in ORDER_TYPES:
        raise ValueError(f"risk: unknown order type {order_type!r} (known: {', '.join(ORDER_TYPES)})")
    if (price is None) != (order_type == "market"):
        raise ValueError(f"risk: a {order_type} order {'must not' if order_type == 'market' else 'must'} have a price")
    if price is not None and not price > 0:
        raise ValueError(f"risk: price must be positive, not {price}")
    if not size > 0:
        raise ValueError(f"risk: size must be positive, not {size}")


def _check_size(instrument: str, limits: InstrumentLimits, size: Decimal, *, market: bool) -> RiskRejection | None:
    size_max = limits.max_order_size
    if size_max is None or size <= size_max:
        return None
    return reject(
        "risk_order_size_above_max.market" if market else "risk_order_size_above_max",
        f"Order size {_show(size)} is above the maximum order size {_show(size_max)} for {instrument}",
    )


def _check_notional(
    instrument: str, limits: InstrumentLimits, price: Decimal | None, size: Decimal | None, *, market: bool
) -> RiskRejection | None:
    notional_max = limits.max_order_notional
    if notional_max is None or price is None or size is None:
        return None
    if _EXACT.multiply(price, size) <= notional_max:
        return None
    with localcontext(_DISPLAY):
        notional = price * size
    at = "the reference price " if market else ""
    return reject(
        "risk_order_notional_above_max.market" if market else "risk_order_notional_above_max",
        f"Order notional {_show(notional)} ({_show(size)} at {at}{_show(price)}) is above the maximum order "
        f"notional {_show(notional_max)} for {instrument}",
    )


def _action_name(action: str) -> str:
    return f"{action}s" if action in ("amend", "cancel") else f"{action} orders"


def _allowed_text(allowed: frozenset[str]) -> str:
    if not allowed:
        return "nothing but queries"
    return ", ".join(_action_name(a) for a in (*ORDER_TYPES, "amend", "cancel") if a in allowed)


def _show(number: Decimal) -> str:
    """A decimal as plain digits without trailing zeros: 27000, 0.5."""
    return format(number.normalize(_DISPLAY), "f")
