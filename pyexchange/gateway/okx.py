"""The OKX v5 dialect: the response envelope, error codes and the formats of numbers and times.

Every answer is `{"code": "0", "msg": "", "data": [...]}`; an error has OKX's code and a
message that says what was wrong. Per-order outcomes of order entry carry `sCode`/`sMsg`.
Codes and messages follow OKX's published v5 error list; the engine's reject reasons map
onto them in `REASON_CODES`, and our reason name is appended to the message in brackets so
that nothing is lost in translation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from fastapi.responses import Response

from pyexchange.gateway.market_data import decimal_str

# General and authentication errors (OKX "Error Code" list, REST section 50000-50114).
BODY_EMPTY = "50000"
SERVICE_UNAVAILABLE = "50001"
JSON_MEDIA_TYPE = "application/json"
JSON_INVALID = "50002"
REQUEST_TIMEOUT = "50004"
RATE_LIMITED = "50011"
SYSTEM_BUSY = "50013"
PARAMETER_EMPTY = "50014"
TIMESTAMP_EXPIRED = "50102"
KEY_HEADER_EMPTY = "50103"
PASSPHRASE_HEADER_EMPTY = "50104"
PASSPHRASE_INCORRECT = "50105"
SIGN_HEADER_EMPTY = "50106"
TIMESTAMP_HEADER_EMPTY = "50107"
KEY_INVALID = "50111"
TIMESTAMP_INVALID = "50112"
SIGNATURE_INVALID = "50113"
# Trade errors (51000-51xxx).
PARAMETER_ERROR = "51000"
INSTRUMENT_UNKNOWN = "51001"
BATCH_TOO_LARGE = "51004"  # reused for "too many orders in one batch" with its own message
PRICE_OUT_OF_RANGE = "51006"
INSUFFICIENT_BALANCE = "51008"
CLIENT_ORDER_ID_DUPLICATED = "51016"
SIZE_BELOW_MIN = "51020"
ORDER_CANCELED_OR_UNKNOWN = "51400"
ORDER_UNKNOWN = "51603"
BATCH_PARTLY_FAILED = "2"
ALL_FAILED = "1"

HTTP_STATUS = {
    RATE_LIMITED: 429, SERVICE_UNAVAILABLE: 503, SYSTEM_BUSY: 503, REQUEST_TIMEOUT: 504,
    TIMESTAMP_EXPIRED: 401, KEY_HEADER_EMPTY: 401, PASSPHRASE_HEADER_EMPTY: 401, PASSPHRASE_INCORRECT: 401,
    SIGN_HEADER_EMPTY: 401, TIMESTAMP_HEADER_EMPTY: 401, KEY_INVALID: 401, TIMESTAMP_INVALID: 401,
    SIGNATURE_INVALID: 401,
}  # fmt: skip

# The engine's reject reasons as OKX order errors: (sCode, message). Reasons that only end an
# order already accepted (FOK not fillable, self-trade prevention, an immediate remainder)
# are not here: OKX, like the engine, reports those as a canceled order, not an error.
REASON_CODES: dict[str, tuple[str, str]] = {
    "instrument_unknown": (INSTRUMENT_UNKNOWN, "Instrument ID does not exist"),
    "instrument_size_invalid": ("51121", "Order quantity must be a multiple of the lot size and within its limits"),
    "instrument_price_invalid": (PRICE_OUT_OF_RANGE, "Order price is out of the allowed range"),
    "matching_no_liquidity": (PARAMETER_ERROR, "No liquidity on the opposite side for a market order"),
    # OKX's code for a post-only order that would take liquidity (as its clients know it).
    "matching_post_only_would_cross": ("51019", "A post-only order would take liquidity and was not placed"),
    "matching_book_full": (SYSTEM_BUSY, "The order book is full"),
    "matching_unknown_order": (ORDER_CANCELED_OR_UNKNOWN, "Order does not exist or is already closed"),
    "matching_amend_no_change": (PARAMETER_ERROR, "The amendment changes nothing"),
    "matching_amend_size_not_above_filled": (PARAMETER_ERROR, "The new size must be above the size already filled"),
    "ledger_insufficient_funds": (INSUFFICIENT_BALANCE, "Order failed: insufficient balance"),
    "ledger_reserved_account": (PARAMETER_ERROR, "The account is reserved"),
    "ledger_unknown_asset": (PARAMETER_ERROR, "Unknown currency"),
    "ledger_amount_invalid": (PARAMETER_ERROR, "Invalid amount"),
    "order_client_order_id_in_use": (CLIENT_ORDER_ID_DUPLICATED, "Duplicated client order ID"),
    # The engine's market-state gate (the gateway's risk checks usually answer first, with the
    # same codes: `pyexchange/risk/rejections.py`).
    "market_halted": ("51022", "Trading in this instrument is halted: queries only"),
    "market_cancel_only": ("51022", "This instrument is in cancel-only: only cancels are taken"),
    "market_pre_open": ("51110", "This instrument is in pre-open: only post-only orders that do not cross"),
    "market_call_auction": ("51124", "This instrument is in its call auction: only limit and post-only orders"),
}


class OkxError(Exception):
    """An error answer: OKX code, message, and the HTTP status it travels with."""

    def __init__(self, code: str, msg: str, *, http_status: int | None = None, retry_after_s: int | None = None):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg = code, msg
        self.http_status = http_status if http_status is not None else HTTP_STATUS.get(code, 400)
        self.retry_after_s = retry_after_s


def envelope(data: list[Any], code: str = "0", msg: str = "") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def answer(data: list[Any], code: str = "0", msg: str = "") -> OrjsonResponse:
    """An envelope as a ready response."""
    return OrjsonResponse(envelope(data, code, msg))


def batch_code(outcomes: list[dict[str, str]], *, single: bool) -> tuple[str, str]:
    """(code, msg) of an order-entry answer from its per-order `sCode`s: "0" all placed, "1"
    all failed, "2" some failed (REST and WebSocket alike)."""
    failed = 0
    for outcome in outcomes:  # (not `sum` of a generator: most answers have one outcome)
        if outcome["sCode"] != "0":
            failed += 1
    if failed == 0:
        return "0", ""
    if failed == len(outcomes):
        return ALL_FAILED, "Operation failed." if single else "All operations failed"
    return BATCH_PARTLY_FAILED, "Bulk operation partially succeeded."


def reason_error(reason: str) -> tuple[str, str]:
    """(sCode, sMsg) for an engine reject reason."""
    code, msg = REASON_CODES.get(reason, (PARAMETER_ERROR, "Order rejected"))
    return code, f"{msg} [{reason}]"


def dec(value: Decimal | None) -> str:
    """A canonical decimal string (no exponent, no trailing zeros); '' for None."""
    return "" if value is None else decimal_str(value)


class OrjsonResponse(Response):
    """JSON by orjson: answers are plain dicts and lists of strings, rendered without a model.
    The default response class of the app and of each of its routers (see `app.add_routers`)."""

    media_type = JSON_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
