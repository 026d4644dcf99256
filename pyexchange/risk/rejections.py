"""Why the risk checks refused a command: a closed set of reasons, each with its OKX v5 error code.

A rejection is a value, never an exception. Its `reason` is ours, named by subsystem (`risk_...`);
its `code` is the OKX v5 code a client of the OKX dialect already handles; its `msg` names the
limit and its value. Every code used anywhere in `pyexchange.risk` is in `OKX_CODES`, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

REASONS: Final = (
    "risk_account_blocked",
    "risk_market_state_forbids",
    "risk_rate_limited",
    "risk_order_size_above_max",
    "risk_order_notional_above_max",
    "risk_price_outside_band",
    "risk_open_orders_above_max",
)

# Case -> OKX v5 code. A case is a reason, or a reason with a qualifier after a dot where OKX has a
# closer code for that case. Source: the OKX API v5 documentation, "Error Code" > "REST API", the
# General class (500xx) and the Trade class (51xxx); the official message follows each code.
OKX_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # "Order blocked. Please contact customer support for assistance." Our kill switch blocks
        # placing and amending only (the account may still cancel and query), which is what 51009
        # says; 50007 "User blocked." would claim the whole user is shut out.
        "risk_account_blocked": "51009",
        # "Contract suspended." The closest OKX code to "trading in this instrument is stopped";
        # used for halted and cancel_only, where nothing but cancels (or nothing at all) may pass.
        "risk_market_state_forbids": "51022",
        # "You can only place a limit order after Call Auction has started." In pre_open only
        # post_only orders rest; a limit order must wait for the call auction.
        "risk_market_state_forbids.pre_open.place": "51110",
        # "You can only place limit orders during call auction."
        "risk_market_state_forbids.call_auction.place": "51124",
        # "Orders are not allowed to be modified during the call auction."
        "risk_market_state_forbids.call_auction.amend": "51508",
        # "Rate limit reached. Please refer to API documentation and throttle requests accordingly."
        # (HTTP 200, or 429 "Too Many Requests" when the gateway refuses the whole request.)
        "risk_rate_limited": "50011",
        # "Order amount exceeds the limit {param0}."
        "risk_order_size_above_max": "51203",
        # "Market order amount exceeds the maximum amount."
        "risk_order_size_above_max.market": "51202",
        # "The maximum value allowed per order is {maxOrderValue} USD". Our cap is in the
        # instrument's quote currency, not USD; the code is still OKX's per-order value cap.
        "risk_order_notional_above_max": "51185",
        # "The value of a market order can't exceed {param0}."
        "risk_order_notional_above_max.market": "51201",
        # "Order price is not within the price limit (max buy price: {param0} , min sell price: {param1} )"
        "risk_price_outside_band": "51006",
        # "Order failed, number of pending orders for {param0} exceed the limit of {param1}."
        # OKX counts per instrument; we count per account, so {param0} is the account.
        "risk_open_orders_above_max": "51174",
    }
)


@dataclass(frozen=True, slots=True)
class RiskRejection:
    """A refused command: the OKX code, a message naming the limit and its value, and our reason."""

    code: str
    msg: str
    reason: str


def reject(case: str, detail: str) -> RiskRejection:
    """The rejection for `case` (a key of `OKX_CODES`); `detail` says which limit and its value."""
    reason = case.partition(".")[0]
    if reason not in REASONS or case not in OKX_CODES:
        raise AssertionError(f"risk: no OKX code for the case {case!r}")
    return RiskRejection(code=OKX_CODES[case], msg=f"{detail} [{reason}]", reason=reason)
