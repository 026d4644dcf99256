"""The operator API: the per-account kill switch, outside the OKX dialect and with its own
credential — a bearer token in `<data-dir>/operator-token` (mode 0600, made on first start),
compared in constant time.

`POST /operator/v1/kill-switch {"account": N, "action": "block"}` blocks new orders and
amends of the account (risk `risk_account_blocked`) and cancels every live order it has;
`"unblock"` lets it trade again. Blocked accounts are kept in
`<data-dir>/blocked-accounts.json`, so a restart does not unblock anyone.
`GET /operator/v1/kill-switch` lists them.

`POST /operator/v1/market {"action": "halt" | "reopen", "instId": "ID[,ID...]" | "all": true,
"seed": N}` halts instruments (queries only; a sequenced market-state command each) or starts the
reopening plan of `[reopen]` for them (`gateway.reopen`; `seed`, default the engine's
sequence number, draws the call auction's end). `GET /operator/v1/market` shows each
instrument's state and indicative auction, and the last reopening started here, phase by
phase.

`GET /operator/v1/admission` says where the admission ramp after a restart or failover is
(`gateway.ramp`): seconds since it started, the rate now, what it admitted and refused.

`GET /operator/v1/journal?seconds=60` gives the journal's health and counters, and its group
commits of the last `seconds` (of the 65,536 newest): how many, the records they held, the
percentiles of their write-and-sync times, the disk's share of every acknowledgement, and the
longest of each second (`sync_us_max_by_s`, oldest second first, 0 for a second without one).

`GET /operator/v1/loop?seconds=60` says how late the event loop ran its timer ticks (one every
20 ms) over the last `seconds`, with the latest tick of each second (`late_ms_max_by_s`, oldest
first): a stall of the gateway's own thread shows as a late tick, and `behind_ms` is what
admission refuses new orders by (`admission.queue_delay_ms_max`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request

from pyexchange.accounts import fsync_directory, write_json_atomically
from pyexchange.gateway import okx
from pyexchange.gateway.exchange import Exchange, LoopLag

TOKEN_FILE = "operator-token"
BLOCKED_FILE = "blocked-accounts.json"
router = APIRouter(prefix="/operator/v1", default_response_class=okx.OrjsonResponse)


def operator_token(data_dir: Path) -> str:
    """The data directory's operator token, made on first use. The zones of a cluster share
    one directory and start at once, so two may make it together: each writes a token whole
    to a file of its own and links that into place, which only the first link does; every
    zone then reads the token that won (never a half-written one, never an error)."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        fd, mine = tempfile.mkstemp(dir=data_dir, prefix=f".{TOKEN_FILE}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another zone's token won
                os.link(mine, path)
                fsync_directory(data_dir)
        finally:
            os.unlink(mine)
    return path.read_text().strip()


def load_blocked(data_dir: Path) -> list[int]:
    path = data_dir / BLOCKED_FILE
    return [int(a) for a in json.loads(path.read_text())] if path.exists() else []


async def _operator(request: Request) -> Exchange:
    sent = request.headers.get("Authorization", "")
    expected = f"Bearer {request.app.state.operator_token}"
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise okx.OkxError(okx.KEY_INVALID, "Operator API: Authorization: Bearer <operator-token> required",
                           http_status=401)  # fmt: skip
    exchange: Exchange = request.app.state.exchange
    return exchange


Operator = Annotated[Exchange, Depends(_operator)]


async def _object_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 50002 for JSON that does not parse, 51000 for another value."""
    try:
        body = orjson.loads(await request.body())
    except (orjson.JSONDecodeError, RecursionError):
        raise okx.OkxError(okx.JSON_INVALID, "Invalid JSON body") from None
    if not isinstance(body, dict):
        raise okx.OkxError(okx.PARAMETER_ERROR, "The body must be a JSON object")
    return body


@router.get("/kill-switch")
async def blocked(exchange: Operator) -> dict[str, Any]:
    return okx.envelope([{"account": str(a)} for a in sorted(exchange.risk.blocked_accounts())])


@router.post(
    "/kill-switch",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["account", "action"],
        "properties": {"account": {"type": "integer"}, "action": {"type": "string", "enum": ["block", "unblock"]}},
    }}}}},
)  # fmt: skip
async def kill_switch(request: Request, exchange: Operator) -> dict[str, Any]:
    body = await _object_body(request)
    account, action = body.get("account"), body.get("action")
    if not isinstance(account, int) or isinstance(account, bool) or not 0 < account < 1 << 63:
        raise okx.OkxError(okx.PARAMETER_ERROR, "Parameter account error: a positive integer account id")
    if action not in ("block", "unblock"):
        raise okx.OkxError(okx.PARAMETER_ERROR, 'Parameter action error: "block" or "unblock"')
    canceled = 0
    if action == "block":
        exchange.risk.block_account(account)
        canceled = sum(e.kind == "canceled" for e in await exchange.cancel_all(account))
    else:
        exchange.risk.unblock_account(account)
    write_json_atomically(exchange.data_dir / BLOCKED_FILE, sorted(exchange.risk.blocked_accounts()))
    return okx.envelope([{"account": str(account), "action": action, "canceled": str(canceled)}])


@router.get("/admission")
async def admission(exchange: Operator) -> dict[str, Any]:
    return okx.envelope([{"ramp": exchange.ramp.state(time.monotonic_ns())}])


@router.get("/journal")
async def journal(exchange: Operator, seconds: Annotated[int, Query(ge=1, le=3600)] = 60) -> dict[str, Any]:
    if exchange.link is not None:  # a replica: its log is Raft's
        raise okx.OkxError(okx.PARAMETER_ERROR, "This zone's log is replicated: see /cluster/v1/status",
                           http_status=404)  # fmt: skip
    window = exchange.engine.sync_window(seconds)  # summed up in Rust: a look holds the loop well under 1 ms
    return okx.envelope([{**exchange.engine.journal_status(), "window": window}])


@router.get("/loop")
async def loop(exchange: Operator, seconds: Annotated[int, Query(ge=1, le=3600)] = 60) -> dict[str, Any]:
    return okx.envelope([loop_window(exchange.loop_lag, seconds, time.monotonic_ns())])


def loop_window(lag: LoopLag, seconds: int, now_ns: int) -> dict[str, Any]:
    """The loop's ticks of the last `seconds`: how many, and how late they ran (ms); a stall of
    the loop is a late tick."""
    ticks = lag.ticks_since(now_ns - seconds * 1_000_000_000)
    late_ms = [late for _, late in ticks]
    figures = [None if v is None else round(v, 1) for v in nearest_ranks(late_ms)]
    by_s = max_by_second(seconds, [((now_ns - at_ns) // 1_000_000_000, late) for at_ns, late in ticks])
    return {"seconds": seconds, "ticks": len(late_ms), "behind_ms": round(lag.behind_ms, 1),
            **dict(zip(("late_ms_p50", "late_ms_p99", "late_ms_max"), figures, strict=True)),
            "late_ms_max_by_s": [round(v, 1) for v in by_s]}  # fmt: skip


def max_by_second(seconds: int, aged: list[tuple[int, float]]) -> list[float]:
    """The largest value of each of the last `seconds` seconds, oldest first (0 where none), of
    `(whole seconds ago, value)` pairs within the window (one `seconds` ago counts in its first second)."""
    by_s: list[float] = [0] * seconds
    for age_s, value in aged:
        at = seconds - 1 - min(age_s, seconds - 1)
        by_s[at] = max(by_s[at], value)
    return by_s


def nearest_ranks(values: list[int] | list[float]) -> list[float] | list[None]:
    """The p50, p99 and max of `values` by nearest rank (figures that occurred), or Nones."""
    if not values:
        return [None] * 3
    ranks: list[float] = np.percentile(values, [50, 99, 100], method="inverted_cdf").tolist()
    return ranks


def _instruments(exchange: Exchange, body: dict[str, Any]) -> list[str]:
    inst_id, every = body.get("instId"), body.get("all")
    if (inst_id is None) == (every is not True):
        raise okx.OkxError(okx.PARAMETER_ERROR, 'Parameter instId error: give "instId": ID or "all": true')
    if every is True:
        return list(exchange.instruments)
    symbols = inst_id.split(",") if isinstance(inst_id, str) else [str(inst_id)]
    for symbol in symbols:
        if symbol not in exchange.instruments:
            raise okx.OkxError(okx.INSTRUMENT_UNKNOWN, f"Instrument ID {str(symbol)[:40]!r} does not exist")
    return list(dict.fromkeys(symbols))


@router.get("/market")
async def markets(exchange: Operator) -> dict[str, Any]:
    reopening = exchange.reopening.json() if exchange.reopening else None
    return okx.envelope([{"markets": [exchange.auction_json(s) for s in exchange.instruments],
                          "reopening": reopening}])  # fmt: skip


@router.post(
    "/market",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["action"],
        "properties": {"action": {"type": "string", "enum": ["halt", "reopen"]}, "instId": {"type": "string"},
                       "all": {"type": "boolean"}, "seed": {"type": "integer"}},
    }}}}},
)  # fmt: skip
async def market(request: Request, exchange: Operator) -> dict[str, Any]:
    body = await _object_body(request)
    action, seed = body.get("action"), body.get("seed", exchange.engine.seq)
    if action not in ("halt", "reopen"):
        raise okx.OkxError(okx.PARAMETER_ERROR, 'Parameter action error: "halt" or "reopen"')
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 63:
        raise okx.OkxError(okx.PARAMETER_ERROR, "Parameter seed error: a non-negative integer")
    symbols = _instruments(exchange, body)
    if action == "halt":
        await exchange.halt_markets(symbols)
        return okx.envelope([{"instIds": symbols, "state": "halted"}])
    return okx.envelope([exchange.reopen_markets(symbols, seed).json()])
