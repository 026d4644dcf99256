"""The FastAPI application of one zone: REST and WebSocket in OKX's v5 dialect.

Errors of every kind leave as OKX envelopes: `OkxError` with its code and HTTP status (429
with `Retry-After` for 50011), FastAPI's own validation errors as 51000, an unknown path as
404 with 51000, and anything unexpected as 500 with 50026 (the tests hold that none
happens). Admission: past `requests_in_flight_max` requests at once, a new request is
refused at once with 429 / 50011, except cancels, which are always let in.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from pyexchange.gateway import cluster_api, okx, operator, rest, ws
from pyexchange.gateway.auth import Authenticator
from pyexchange.gateway.exchange import Exchange
from pyexchange.gateway.websocket import WebSocketProtocol

log = logging.getLogger("pyexchange.gateway")
GC_FREEZE_EVERY_S = 1.0
GC_FULL_EVERY_S = 600.0
GC_GEN2_AFTER_GEN1_COLLECTIONS = 1_000_000  # never, in practice: gen2 is frozen every second
BODY_BYTES_MAX = 64 * 1024  # a batch of 20 orders is about 4 KiB
ALWAYS_ADMITTED = ("/api/v5/trade/cancel-order", "/api/v5/trade/cancel-batch-orders")
UNEXPECTED = okx.OkxError("50026", "System error, please try again later", http_status=500)
JSON_CONTENT_TYPE = okx.JSON_MEDIA_TYPE.encode()


def _error_response(error: okx.OkxError) -> Response:
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    return okx.OrjsonResponse(okx.envelope([], error.code, error.msg), status_code=error.http_status, headers=headers)


def create_app(exchange: Exchange, auth: Authenticator) -> Gateway:
    hub = ws.Hub()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        exchange.start(asyncio.get_running_loop(), hub)
        tasks = [asyncio.create_task(exchange.run_dead_man_switches()), asyncio.create_task(exchange.watch_loop_lag()),
                 asyncio.create_task(keep_gc_pauses_short())]  # fmt: skip
        if exchange.link is not None:
            tasks.append(asyncio.create_task(exchange.link.watch_leadership()))  # restarts the ramp on a failover
        try:
            yield {"exchange": exchange, "hub": hub, "auth": auth}  # the WebSocket sessions' (`WebSocketProtocol`)
        finally:
            for task in tasks:
                task.cancel()
            exchange.stop()
            if exchange.link is not None:
                await exchange.link.close()

    # FastAPI's OpenTelemetry hooks are off: nothing here exports through them, and looking for a
    # configured provider cost every request a few environment and provider lookups.
    app = Gateway(title="pyexchange", summary="An exchange trading core: OKX v5 dialect", version="0.1.0",
                  lifespan=lifespan, default_response_class=okx.OrjsonResponse,
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False})  # fmt: skip
    app.state.exchange, app.state.auth, app.state.hub = exchange, auth, hub
    app.state.operator_token = operator.operator_token(exchange.data_dir)
    for account in operator.load_blocked(exchange.data_dir):
        exchange.risk.block_account(account)
    add_routers(app, (rest.router, operator.router) + ((cluster_api.router,) if exchange.link else ()))
    _add_error_handlers(app)
    admission = exchange.config.admission
    app.front = Admission(OrderEntry(app.serve_routed, rest.ENTRY_ENDPOINTS),
                          limit=admission.requests_in_flight_max, retry_after_s=admission.retry_after_s)  # fmt: skip
    return app


def run(app: Gateway, host: str, port: int) -> None:
    """Serves `app` with uvicorn, which hands the WebSocket endpoints to `WebSocketProtocol`. No
    access log: at level warning its lines are never shown, yet uvicorn would build each."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", ws=WebSocketProtocol, access_log=False)


def add_routers(app: FastAPI, routers: tuple[APIRouter, ...]) -> None:
    """The routers' routes become the app's own. `include_router` would keep each router as one
    branch that a request is matched through twice, once to choose it and once within it: 140 µs
    of a request to the order-entry routes, 20-odd routes down the REST router. (So each router
    has the app's default response class, `okx.OrjsonResponse`, itself.)"""
    for router in routers:
        app.router.routes.extend(router.routes)


class Gateway(FastAPI):
    """The FastAPI application, with a front that every HTTP request passes first (`front`:
    admission, then REST order entry): only what the front does not serve itself goes on to
    FastAPI's middleware and routing (`serve_routed`). Lifespan events go straight to FastAPI;
    the WebSocket endpoints never reach the app (`run`)."""

    front: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as Starlette sets it: endpoints find the exchange in `app.state`
        await self.front(scope, receive, send)

    async def serve_routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


class Admission:
    """Counts the HTTP requests in flight; past the limit a new one is refused at once with
    429 / 50011 (cancels always pass), and a body declared larger than `BODY_BYTES_MAX` with 413.
    A plain ASGI wrapper: Starlette's `BaseHTTPMiddleware` would add a task and a stream per
    request, tripling the cost of a cheap one."""

    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int) -> None:
        self.app, self.limit, self.retry_after_s = app, limit, retry_after_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _content_length(scope) > BODY_BYTES_MAX:
            await _error_response(_body_too_large())(scope, receive, send)
            return
        if self.in_flight >= self.limit and scope["path"] not in ALWAYS_ADMITTED:
            error = okx.OkxError(okx.RATE_LIMITED, f"Rate limit reached: {self.limit} requests are in flight "
                                 "(admission.requests_in_flight_max)", retry_after_s=self.retry_after_s)  # fmt: skip
            await _error_response(error)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class OrderEntry:
    """Serves REST order entry (`POST /api/v5/trade/order` and the other entry routes) ahead of
    FastAPI's middleware and routing: a REST order goes straight to its endpoint with its body.
    No request object, no middleware, no route matching, no dependency solving, which cost a
    REST order more than the gateway's own work on it (py-spy under load). The endpoints answer
    errors as the app's handlers would (an unexpected one: logged, 500 with 50026), and the
    entry routes stay in the router for the OpenAPI schema and other methods' 405. (The
    WebSocket endpoints are not the app's: `run` has uvicorn hand them to
    `websocket.WebSocketProtocol`.)"""

    def __init__(self, app: ASGIApp, endpoints: dict[str, rest.EntryEndpoint]) -> None:
        self.app, self.endpoints = app, endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        try:
            answer = await endpoint(scope, await _body(receive))
        except okx.OkxError as error:
            response = _error_response(error)
        except Exception:
            log.exception("unexpected error")
            response = _error_response(UNEXPECTED)
        else:  # as Starlette's `Response` sends it
            headers = [(b"content-length", b"%d" % len(answer)), (b"content-type", JSON_CONTENT_TYPE)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            return
        await response(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    """The request's body, read to its end (the client may stop sending: what came, then)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
        if len(body) > BODY_BYTES_MAX:  # sent without a Content-Length that said so
            raise _body_too_large()
    return body


def _body_too_large() -> okx.OkxError:
    return okx.OkxError(okx.PARAMETER_ERROR, f"The request body is larger than {BODY_BYTES_MAX} bytes", http_status=413)


async def keep_gc_pauses_short() -> None:
    """A collection walks every object the collector tracks. The views keep their orders in Rust
    (`_core.PrivateViews`), out of its reach, but the rest of the heap is still hundreds of
    thousands of objects. So every second what survived is frozen (moved out of the collector's
    reach; freed by reference counting as usual), the collector's own full collections are
    turned off, and a full collection runs only every `GC_FULL_EVERY_S`, to reclaim any
    reference cycles that died while frozen. It takes 40-50 ms, with a hundred thousand orders
    in the views as with a million (0.7 s when each order was two tracked Python objects;
    bench/README.md)."""
    gen0, gen1, _gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, GC_GEN2_AFTER_GEN1_COLLECTIONS)  # only the full collection below walks it all
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(GC_FREEZE_EVERY_S)
        if time.monotonic() - last_full >= GC_FULL_EVERY_S:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        gc.freeze()


def _content_length(scope: Any) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 16 else BODY_BYTES_MAX + 1
    return 0


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(okx.OkxError)
    async def okx_error(_request: Request, error: okx.OkxError) -> Response:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> Response:
        first: dict[str, Any] = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(okx.OkxError(okx.PARAMETER_ERROR, f"Parameter {where} error: {first.get('msg', '')}"))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> Response:
        code = okx.PARAMETER_ERROR if error.status_code < 500 else okx.SERVICE_UNAVAILABLE
        return _error_response(okx.OkxError(code, str(error.detail), http_status=error.status_code))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> Response:
        log.exception("unexpected error")
        return _error_response(UNEXPECTED)
