"""Pre-trade risk: the checks the gateway runs on every place, amend and cancel before the engine sees it.

What this package owns and the rules it keeps (each module states its own in full):
- `limits`: the limits, declared once in `RiskConfig` (read from the [risk] table and each
  instrument's max_order_size / max_order_notional), with their ranges and relations checked on
  construction.
- `rejections`: a refusal is a value, `RiskRejection(code, msg, reason)`; reasons are a closed set
  named `risk_...`, and every OKX v5 code used is in one table, `OKX_CODES`.
- `buckets`: per-account token buckets (orders and amends), exact integer arithmetic; a bucket
  untouched for burst / rate seconds is full and forgotten, so memory is bounded by recent activity.
- `checks`: `RiskChecks`, in a fixed order (kill switch, market state, rate limit, size, notional,
  band, open orders); the token is charged once the kill switch and market state pass, and kept
  when a later check refuses. Band, size and notional limits include their edges.
No check reads a clock: time enters as `now_ns`.
"""

from __future__ import annotations

from pyexchange.risk.checks import ALLOWED_BY_STATE, MARKET_STATES, ORDER_TYPES, SIDES, RiskChecks
from pyexchange.risk.limits import InstrumentLimits, RiskConfig
from pyexchange.risk.rejections import OKX_CODES, REASONS, RiskRejection

__all__ = [
    "ALLOWED_BY_STATE",
    "MARKET_STATES",
    "OKX_CODES",
    "ORDER_TYPES",
    "REASONS",
    "SIDES",
    "InstrumentLimits",
    "RiskChecks",
    "RiskConfig",
    "RiskRejection",
]
