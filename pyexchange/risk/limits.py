"""The risk limits, declared once and checked when they are made.

Invariants (checked in `__post_init__`, so no `RiskChecks` ever holds a nonsense limit):
- 0 < price_band_pct < 100, so the band's lower edge stays above zero.
- 1 <= open_orders_per_account_max <= COUNT_MAX and 1 <= orders_burst_per_account <= COUNT_MAX:
  one order must be able to pass, and a count fits a signed 32-bit field.
- 0 < orders_per_second_per_account <= ORDERS_PER_SECOND_MAX (at most one order per nanosecond).
- a per-instrument limit is positive, or None for no limit.
Numbers are Decimal read from their text, never float arithmetic: "0.1" is exactly one tenth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final

PRICE_BAND_PCT_MAX: Final = Decimal(100)  # exclusive
COUNT_MAX: Final = (1 << 31) - 1
ORDERS_PER_SECOND_MAX: Final = Decimal(1_000_000_000)
RISK_KEYS: Final = (
    "price_band_pct",
    "open_orders_per_account_max",
    "orders_per_second_per_account",
    "orders_burst_per_account",
)
INSTRUMENT_KEYS: Final = ("max_order_size", "max_order_notional")


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """Per-order limits of one instrument; None means no limit."""

    max_order_size: Decimal | None  # base units
    max_order_notional: Decimal | None  # quote units (price * size)

    def __post_init__(self) -> None:
        for key in INSTRUMENT_KEYS:
            value = getattr(self, key)
            if value is not None and not _positive(value):
                raise ValueError(f"{key} must be a positive decimal or absent, not {value!r}")


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Every limit the risk checks keep; `from_dict` reads them from the parsed TOML."""

    price_band_pct: Decimal  # a limit price must lie within ±pct of the reference price, edges included
    open_orders_per_account_max: int
    orders_per_second_per_account: Decimal  # token bucket refill rate (orders and amends)
    orders_burst_per_account: int  # token bucket capacity
    instruments: Mapping[str, InstrumentLimits]  # by symbol, e.g. "BTC-USDT"

    def __post_init__(self) -> None:
        if not _positive(self.price_band_pct) or self.price_band_pct >= PRICE_BAND_PCT_MAX:
            raise ValueError(f"risk.price_band_pct must be above 0 and below 100, not {self.price_band_pct!r}")
        rate = self.orders_per_second_per_account
        if not _positive(rate) or rate > ORDERS_PER_SECOND_MAX:
            raise ValueError(f"risk.orders_per_second_per_account must be above 0 and at most 1e9, not {rate!r}")
        for key in ("open_orders_per_account_max", "orders_burst_per_account"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= COUNT_MAX:
                raise ValueError(f"risk.{key} must be an integer from 1 to {COUNT_MAX}, not {value!r}")
        for symbol, limits in self.instruments.items():
            if not isinstance(symbol, str) or not isinstance(limits, InstrumentLimits):
                raise ValueError(f"risk instruments: {symbol!r} must map a symbol to InstrumentLimits")
        object.__setattr__(self, "instruments", MappingProxyType(dict(self.instruments)))

    @classmethod
    def from_dict(cls, risk: Mapping[str, Any], instruments: Mapping[str, Mapping[str, Any]]) -> RiskConfig:
        """From the parsed TOML: `risk` is the [risk] table, `instruments` maps each symbol to its
        [[instruments]] table (keys other than max_order_size and max_order_notional are not ours
        and are ignored). A missing or bad value is a ValueError naming the key."""
        unknown = sorted(set(risk) - set(RISK_KEYS))
        if unknown:
            raise ValueError(f"[risk] has unknown keys: {', '.join(unknown)} (known: {', '.join(RISK_KEYS)})")
        return cls(
            price_band_pct=_decimal(risk, "price_band_pct", "risk."),
            open_orders_per_account_max=_count(risk, "open_orders_per_account_max"),
            orders_per_second_per_account=_decimal(risk, "orders_per_second_per_account", "risk."),
            orders_burst_per_account=_count(risk, "orders_burst_per_account"),
            instruments={symbol: _instrument(symbol, table) for symbol, table in instruments.items()},
        )


def _instrument(symbol: str, table: Mapping[str, Any]) -> InstrumentLimits:
    if not isinstance(table, Mapping):
        raise ValueError(f"instrument {symbol}: its table must be a table, not {table!r}")
    where = f"instrument {symbol}: "
    return InstrumentLimits(
        max_order_size=_decimal_or_none(table, "max_order_size", where),
        max_order_notional=_decimal_or_none(table, "max_order_notional", where),
    )


def _decimal_or_none(table: Mapping[str, Any], key: str, where: str) -> Decimal | None:
    return None if table.get(key) is None else _decimal(table, key, where)


def _decimal(table: Mapping[str, Any], key: str, where: str) -> Decimal:
    """A positive decimal from a string, an integer or a TOML float (read as its shortest text)."""
    value = table.get(key)
    if value is None:
        raise ValueError(f"{where}{key} is missing")
    number: Decimal | None = None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
    if number is None or not _positive(number):
        raise ValueError(f'{where}{key} must be a positive number (a string such as "0.5"), not {value!r}')
    return number


def _count(table: Mapping[str, Any], key: str) -> int:
    value = table.get(key)
    if value is None:
        raise ValueError(f"risk.{key} is missing")
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= COUNT_MAX:
        raise ValueError(f"risk.{key} must be an integer from 1 to {COUNT_MAX}, not {value!r}")
    return value


def _positive(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value > 0
