"""The REST API in OKX's v5 dialect: public market data and private trading.

Query parameters are read as strings and checked here, so that a bad value gets OKX's
code and a message (not FastAPI's 422). Every route answers a ready response (`okx.answer`),
which FastAPI passes on without validating or serializing it again. Private queries take the
signed key through `Depends(private)`; order entry, the hot path, calls `private` itself (a
dependency costs FastAPI more than the call) and goes through `Exchange`, which answers each
order with `sCode`/`sMsg`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.types import Scope

from pyexchange import _core
from pyexchange.accounts import ApiKey
from pyexchange.gateway import okx, requests
from pyexchange.gateway.auth import Authenticator
from pyexchange.gateway.exchange import Exchange, run_ops
from pyexchange.gateway.sequencer import Overloaded
from pyexchange.gateway.views import OrderView, fill_json, order_json, trade_json

BATCH_ORDERS_MAX = 20
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
T = TypeVar("T")
Q = Annotated[str | None, Query()]


async def ex(request: Request) -> Exchange:
    exchange: Exchange = request.app.state.exchange
    return exchange


async def private(request: Request) -> ApiKey:
    return await _signer(request.app.state.auth, request.scope, await request.body())


def _signer(auth: Authenticator, scope: Scope, body: bytes) -> Awaitable[ApiKey]:
    """The key that signed this request (`auth.Authenticator.rest`). (The check itself is what
    the caller awaits: no coroutine of its own on every request.)"""
    query = scope["query_string"].decode("utf-8", errors="replace")
    path = scope["path"] + (f"?{query}" if query else "")  # a route's own path: nothing to escape
    access = _core.okx_access_headers(scope["headers"])
    return auth.rest(access, scope["method"], path, body.decode("utf-8", errors="replace"))


Ex = Annotated[Exchange, Depends(ex)]
Key = Annotated[ApiKey, Depends(private)]
router = APIRouter(prefix="/api/v5", default_response_class=okx.OrjsonResponse)


def _limit(value: str | None, default: int, most: int, name: str = "limit") -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or not 1 <= int(value) <= 10**9:
        raise requests.error(name, f"{value[:20]!r} must be a positive integer")
    return min(int(value), most)


def _int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise requests.error(name, f"{value[:20]!r} must be a non-negative integer")
    return int(value)


def _inst_type(value: str | None, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise okx.OkxError(okx.PARAMETER_EMPTY, "Parameter instType can not be empty")
        return None
    if value not in INST_TYPES:
        raise requests.error("instType", f"{value[:20]!r} is not one of {', '.join(INST_TYPES)}")
    return value


def _instrument(exchange: Exchange, inst_id: str | None) -> str:
    return requests.instrument({"instId": inst_id}, exchange.instruments).symbol


def _page(items: Sequence[T], key: Callable[[T], int], after: str | None, before: str | None, limit: int) -> list[T]:
    """OKX pagination over items sorted newest first: `after` = older than, `before` = newer than."""
    after_key, before_key = _int_param(after, "after"), _int_param(before, "before")
    chosen = [
        i for i in items if (after_key is None or key(i) < after_key) and (before_key is None or key(i) > before_key)
    ]
    return chosen[-limit:] if before_key is not None and after_key is None else chosen[:limit]


async def _json_body(request: Request) -> Any:
    return _json(await request.body())


def _json(raw: bytes) -> Any:
    if not raw.strip():
        raise okx.OkxError(okx.BODY_EMPTY, "Body can not be empty")
    try:
        return orjson.loads(raw)  # strict: lone surrogates and non-finite numbers are invalid JSON
    except (orjson.JSONDecodeError, RecursionError):
        raise okx.OkxError(okx.JSON_INVALID, "Invalid JSON body") from None


# ---- public ----


@router.get("/public/time")
async def public_time() -> Response:
    return okx.answer([{"ts": str(time.time_ns() // 1_000_000)}])


@router.get("/system/status")
async def system_status(exchange: Ex, state: Q = None) -> Response:
    return okx.answer(exchange.status_events(state))


@router.get("/public/instruments")
async def instruments(exchange: Ex, instType: Q = None, instId: Q = None) -> Response:
    if _inst_type(instType, required=True) != "SPOT":
        return okx.answer([])
    symbols = [_instrument(exchange, instId)] if instId else list(exchange.instruments)
    return okx.answer([exchange.instrument_json(s) for s in symbols])


def _book(exchange: Exchange, inst_id: str | None, sz: str | None, most: int) -> Response:
    symbol = _instrument(exchange, inst_id)
    depth = _limit(sz, 1, most, "sz")
    book = exchange.engine.book(symbol, depth)
    rows = [[[okx.dec(p), okx.dec(s), "0", "0"] for p, s in book[side]] for side in ("asks", "bids")]
    return okx.answer([{"asks": rows[0], "bids": rows[1], "ts": str(time.time_ns() // 1_000_000)}])


@router.get("/market/books")
async def books(exchange: Ex, instId: Q = None, sz: Q = None) -> Response:
    return _book(exchange, instId, sz, 400)


@router.get("/market/books-full")
async def books_full(exchange: Ex, instId: Q = None, sz: Q = None) -> Response:
    return _book(exchange, instId, sz, 5000)


@router.get("/market/ticker")
async def ticker(exchange: Ex, instId: Q = None) -> Response:
    return okx.answer([exchange.ticker_json(_instrument(exchange, instId))])


@router.get("/market/call-auction-details")
async def call_auction_details(exchange: Ex, instId: Q = None) -> Response:
    return okx.answer([exchange.auction_json(_instrument(exchange, instId))])


@router.get("/market/tickers")
async def tickers(exchange: Ex, instType: Q = None) -> Response:
    if _inst_type(instType, required=True) != "SPOT":
        return okx.answer([])
    return okx.answer([exchange.ticker_json(s) for s in exchange.instruments])


@router.get("/market/trades")
async def trades(exchange: Ex, instId: Q = None, limit: Q = None) -> Response:
    symbol = _instrument(exchange, instId)
    newest = list(reversed(exchange.views.trades[symbol]))[: _limit(limit, 100, 500)]
    return okx.answer([trade_json(symbol, t) for t in newest])


@router.get("/market/history-trades")
async def history_trades(exchange: Ex, instId: Q = None, after: Q = None, before: Q = None, limit: Q = None,
                         type: Q = None) -> Response:  # fmt: skip
    symbol = _instrument(exchange, instId)
    newest = list(reversed(exchange.views.trades[symbol]))
    page = _page(newest, lambda t: t.trade_id, after, before, _limit(limit, 100, 100))
    return okx.answer([trade_json(symbol, t) for t in page])


def _candles(exchange: Exchange, inst_id: str | None, bar: str | None, after: str | None, before: str | None,
             limit: str | None) -> Response:  # fmt: skip
    symbol = _instrument(exchange, inst_id)
    try:
        rows = exchange.views.candles[symbol].rows(
            bar or "1m", after_ms=_int_param(after, "after"), before_ms=_int_param(before, "before"),
            limit=_limit(limit, 100, 300), now_ms=time.time_ns() // 1_000_000,
        )  # fmt: skip
    except ValueError as error:
        raise requests.error("bar", str(error)) from None
    return okx.answer(rows)


@router.get("/market/candles")
async def candles(exchange: Ex, instId: Q = None, bar: Q = None, after: Q = None, before: Q = None,
                  limit: Q = None) -> Response:  # fmt: skip
    return _candles(exchange, instId, bar, after, before, limit)


@router.get("/market/history-candles")
async def history_candles(exchange: Ex, instId: Q = None, bar: Q = None, after: Q = None, before: Q = None,
                          limit: Q = None) -> Response:  # fmt: skip
    return _candles(exchange, instId, bar, after, before, limit)


# ---- private: account ----


@router.get("/asset/currencies")
async def currencies(exchange: Ex, key: Key, ccy: Q = None) -> Response:
    wanted = set(ccy.split(",")) if ccy else None
    return okx.answer([exchange.currency_json(a) for a in exchange.engine.assets() if not wanted or a.name in wanted])


@router.get("/account/balance")
async def balance(exchange: Ex, key: Key, ccy: Q = None) -> Response:
    names = exchange.engine.asset_names()
    if ccy:
        unknown = [c for c in ccy.split(",") if c not in names]
        if unknown:
            raise requests.error("ccy", f"unknown currency {unknown[0][:20]!r}")
        names = ccy.split(",")
    balances = exchange.balances(key.account, names)
    return okx.answer([exchange.balance_json(key.account, balances, time.time_ns() // 1_000_000)])


@router.get("/account/config")
async def account_config(key: Key) -> Response:
    uid = str(key.account)
    return okx.answer([{"uid": uid, "mainUid": uid, "acctLv": "1", "posMode": "net_mode", "autoLoan": False,
                        "greeksType": "PA", "level": "Lv1", "levelTmp": "", "ctIsoMode": "automatic",
                        "mgnIsoMode": "automatic", "roleType": "0", "traderInsts": [], "spotRoleType": "0",
                        "spotTraderInsts": [], "opAuth": "0", "kycLv": "0", "label": key.label, "ip": "",
                        "perm": "read_only,trade"}])  # fmt: skip


@router.get("/account/trade-fee")
async def trade_fee(exchange: Ex, key: Key, instType: Q = None, instId: Q = None) -> Response:
    """The fee rates (negative: charged, as OKX signs them) of one instrument, or the highest
    of all for the whole instrument type."""
    if _inst_type(instType, required=True) != "SPOT":
        return okx.answer([])
    specs = exchange.config.instruments
    if instId:
        symbol = _instrument(exchange, instId)
        specs = tuple(spec for spec in specs if spec.symbol == symbol)
    maker = max(spec.maker_fee_bps for spec in specs)
    taker = max(spec.taker_fee_bps for spec in specs)
    return okx.answer([{"category": "1", "delivery": "", "exercise": "", "instType": "SPOT", "level": "Lv1",
                        "maker": okx.dec(-Decimal(maker).scaleb(-4)), "taker": okx.dec(-Decimal(taker).scaleb(-4)),
                        "makerU": "", "takerU": "", "ts": str(time.time_ns() // 1_000_000)}])  # fmt: skip


# ---- private: order entry ----


def _order_body_schema(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": required}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_S = {"type": "string"}
PLACE_SCHEMA = {"instId": _S, "tdMode": _S, "side": _S, "ordType": _S, "sz": _S, "px": _S, "clOrdId": _S,
                "tag": _S, "tgtCcy": _S, "stpMode": _S}  # fmt: skip
REF_SCHEMA = {"instId": _S, "ordId": _S, "clOrdId": _S}
AMEND_SCHEMA = {**REF_SCHEMA, "newSz": _S, "newPx": _S, "reqId": _S, "cxlOnFail": {"type": "boolean"}}


def _list_of(schema: dict[str, Any]) -> dict[str, Any]:
    body = {"type": "array", "items": schema["requestBody"]["content"]["application/json"]["schema"]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


def _batch(body: Any) -> list[Any]:
    if not isinstance(body, list) or not body:
        raise okx.OkxError(okx.PARAMETER_ERROR, "The body must be a non-empty JSON array of requests")
    if len(body) > BATCH_ORDERS_MAX:
        raise okx.OkxError(okx.BATCH_TOO_LARGE, f"At most {BATCH_ORDERS_MAX} orders in one batch, not {len(body)}")
    return body


async def _entry(scope: Scope, body: bytes, op: str, *, batch: bool) -> bytes:
    """The answer's JSON (status 200), or an `OkxError` to answer."""
    app = scope["app"]
    key = await _signer(app.state.auth, scope, body)
    exchange: Exchange = app.state.exchange
    if batch and op != "cancel":
        try:  # the whole batch at once, before any of its orders is read or checked
            exchange.admit_new_orders()
        except Overloaded as refused:
            raise okx.OkxError(okx.RATE_LIMITED, f"Rate limit reached: {refused}",
                               retry_after_s=exchange.config.admission.retry_after_s) from None  # fmt: skip
    intent = exchange.read_place.read_json(body) if op == "place" and not batch else None
    if intent is not None:  # the usual order, read from its JSON by the fast path
        items = [intent]
    else:
        parsed = _json(body)
        items = _batch(parsed) if batch else [parsed]
    outcomes = await run_ops(exchange, key.account, op, items)
    codes = {o["sCode"] for o in outcomes}
    if codes == {okx.RATE_LIMITED}:
        raise okx.OkxError(okx.RATE_LIMITED, outcomes[0]["sMsg"], retry_after_s=exchange.config.admission.retry_after_s)
    if not batch and outcomes[0]["sCode"] in (okx.SERVICE_UNAVAILABLE, okx.REQUEST_TIMEOUT):
        raise okx.OkxError(outcomes[0]["sCode"], outcomes[0]["sMsg"])
    return orjson.dumps(okx.envelope(outcomes, *okx.batch_code(outcomes, single=not batch)))


# An order-entry endpoint: the request's scope and whole body in, the JSON of its 200 answer out
# (`app.OrderEntry` sends it as it is: no response object on every order).
EntryEndpoint = Callable[[Scope, bytes], Awaitable[bytes]]


def _as_route(endpoint: EntryEndpoint) -> Callable[[Request], Awaitable[Response]]:
    """An entry endpoint as a route's (which only the OpenAPI schema and other methods' 405 use:
    `app.OrderEntry` answers the POSTs first)."""

    async def route(request: Request) -> Response:
        return Response(await endpoint(request.scope, await request.body()), media_type=okx.JSON_MEDIA_TYPE)

    return route


# Order entry: (path, operation name, step, batch, body schema, required fields).
ENTRY_ROUTES = (
    ("/trade/order", "place_order", "place", False, PLACE_SCHEMA, ["instId", "tdMode", "side", "ordType", "sz"]),
    ("/trade/batch-orders", "batch_orders", "place", True, PLACE_SCHEMA, ["instId"]),
    ("/trade/cancel-order", "cancel_order", "cancel", False, REF_SCHEMA, ["instId"]),
    ("/trade/cancel-batch-orders", "cancel_batch_orders", "cancel", True, REF_SCHEMA, ["instId"]),
    ("/trade/amend-order", "amend_order", "amend", False, AMEND_SCHEMA, ["instId"]),
    ("/trade/amend-batch-orders", "amend_batch_orders", "amend", True, AMEND_SCHEMA, ["instId"]),
)
# Their POST endpoints by full path, for `app.OrderEntry`, which answers them before FastAPI's
# routing. The routes below stay in the router for the OpenAPI schema and for other methods' 405.
ENTRY_ENDPOINTS: dict[str, EntryEndpoint] = {}
for _path, _name, _op, _many, _fields, _required in ENTRY_ROUTES:
    _schema = _order_body_schema(_fields, _required)
    # A partial, not a wrapper: no coroutine of its own per request.
    _endpoint: EntryEndpoint = functools.partial(_entry, op=_op, batch=_many)
    ENTRY_ENDPOINTS[router.prefix + _path] = _endpoint
    router.add_api_route(_path, _as_route(_endpoint), methods=["POST"], name=_name,
                         operation_id=f"{_name}_api_v5{_path.replace('/', '_').replace('-', '_')}_post",
                         openapi_extra=_list_of(_schema) if _many else _schema)  # fmt: skip


@router.post("/trade/cancel-all-after", openapi_extra=_order_body_schema({"timeOut": _S, "tag": _S}, ["timeOut"]))
async def cancel_all_after(request: Request, exchange: Ex, key: Key) -> Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise okx.OkxError(okx.PARAMETER_ERROR, "The body must be a JSON object")
    timeout = body.get("timeOut")
    if timeout is None or timeout == "":
        raise okx.OkxError(okx.PARAMETER_EMPTY, "Parameter timeOut can not be empty")
    text = str(timeout) if isinstance(timeout, str | int) and not isinstance(timeout, bool) else ""
    if not text.encode().isdigit() or len(text) > 9:
        raise requests.error("timeOut", 'seconds as a string: "0" (off) or 10 to 120')
    seconds = int(text)
    if seconds != 0 and not 10 <= seconds <= 120:
        raise requests.error("timeOut", f"{seconds} must be 0 (off) or from 10 to 120 seconds")
    trigger_ms = exchange.cancel_all_after(key.account, seconds)
    tag = body.get("tag") if isinstance(body.get("tag"), str) else ""
    return okx.answer([{"triggerTime": str(trigger_ms) if trigger_ms else "0", "tag": tag,
                        "ts": str(time.time_ns() // 1_000_000)}])  # fmt: skip


# ---- private: order queries ----


@router.get("/trade/order")
async def get_order(exchange: Ex, key: Key, instId: Q = None, ordId: Q = None, clOrdId: Q = None) -> Response:
    ref = requests.order_ref({"instId": instId, "ordId": ordId, "clOrdId": clOrdId}, exchange.instruments)
    view = exchange.views.order_of(key.account, ref.order_id, ref.client_order_id)
    if view is None or view.order.instrument != ref.instrument.symbol:
        raise okx.OkxError(okx.ORDER_UNKNOWN, "Order does not exist")
    return okx.answer([order_json(view)])


def _orders(exchange: Exchange, ids: Iterable[int], inst_id: str | None, ord_type: str | None,
            state: str | None) -> list[OrderView]:  # fmt: skip
    symbol = _instrument(exchange, inst_id) if inst_id else None
    found = []
    for order_id in ids:
        view = exchange.views.view(order_id)
        if view is None:
            continue
        o = view.order
        if (
            (symbol and o.instrument != symbol)
            or (ord_type and o.order_type != ord_type)
            or (state and o.state != state)
        ):
            continue
        found.append(view)
    return found


@router.get("/trade/orders-pending")
async def orders_pending(exchange: Ex, key: Key, instType: Q = None, instId: Q = None, ordType: Q = None,
                         state: Q = None, after: Q = None, before: Q = None,
                         limit: Q = None) -> Response:  # fmt: skip
    if _inst_type(instType, required=False) not in (None, "SPOT"):
        return okx.answer([])
    ids = reversed(exchange.views.open_ids(key.account))
    views = _orders(exchange, ids, instId, ordType, state)
    return okx.answer([order_json(v) for v in _page(views, lambda v: v.order.order_id, after, before,
                                                    _limit(limit, 100, 100))])  # fmt: skip


@router.get("/trade/orders-history")
async def orders_history(exchange: Ex, key: Key, instType: Q = None, instId: Q = None, ordType: Q = None,
                         state: Q = None, after: Q = None, before: Q = None, begin: Q = None, end: Q = None,
                         limit: Q = None) -> Response:  # fmt: skip
    if _inst_type(instType, required=True) != "SPOT":
        return okx.answer([])
    if state not in (None, "", "canceled", "filled"):
        raise requests.error("state", f"{state[:20]!r} is not one of canceled, filled")
    begin_ms, end_ms = _int_param(begin, "begin"), _int_param(end, "end")
    ids = sorted(exchange.views.closed_ids(key.account), reverse=True)
    views = [v for v in _orders(exchange, ids, instId, ordType, state or None)
             if (begin_ms is None or v.u_time_ms >= begin_ms)
             and (end_ms is None or v.u_time_ms <= end_ms)]  # fmt: skip
    return okx.answer([order_json(v) for v in _page(views, lambda v: v.order.order_id, after, before,
                                                    _limit(limit, 100, 100))])  # fmt: skip


async def _fills(exchange: Exchange, key: ApiKey, inst_type: str | None, inst_id: str | None, ord_id: str | None,
                 after: str | None, before: str | None, begin: str | None, end: str | None,
                 limit: str | None, *, inst_type_required: bool) -> Response:  # fmt: skip
    if _inst_type(inst_type, required=inst_type_required) not in (None, "SPOT"):
        return okx.answer([])
    symbol = _instrument(exchange, inst_id) if inst_id else None
    order_id = _int_param(ord_id, "ordId")
    begin_ms, end_ms = _int_param(begin, "begin"), _int_param(end, "end")
    fills = [f for f in reversed(exchange.views.fills(key.account))
             if (symbol is None or f.instrument == symbol) and (order_id is None or f.order_id == order_id)
             and (begin_ms is None or f.ts_ms >= begin_ms) and (end_ms is None or f.ts_ms <= end_ms)]  # fmt: skip
    page = _page(fills, lambda f: int(f.trade_id), after, before, _limit(limit, 100, 100))
    return okx.answer([fill_json(f) for f in page])


@router.get("/trade/fills-history")
async def fills_history(exchange: Ex, key: Key, instType: Q = None, instId: Q = None, ordId: Q = None,
                        after: Q = None, before: Q = None, begin: Q = None, end: Q = None,
                        limit: Q = None) -> Response:  # fmt: skip
    return await _fills(exchange, key, instType, instId, ordId, after, before, begin, end, limit,
                        inst_type_required=True)  # fmt: skip


@router.get("/trade/fills")
async def fills(
    exchange: Ex,
    key: Key,
    instType: Q = None,
    instId: Q = None,
    ordId: Q = None,
    after: Q = None,
    before: Q = None,
    begin: Q = None,
    end: Q = None,
    limit: Q = None,
) -> Response:
    return await _fills(exchange, key, instType, instId, ordId, after, before, begin, end, limit,
                        inst_type_required=False)  # fmt: skip
