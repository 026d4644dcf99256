"""A zone's cluster API, beside the OKX dialect: its Raft status and replica state for
`pyexchange cluster status` and the drills, leadership transfer, and the door through which
the other zones' gateways forward commands to the leader (`replication.LeaderLink`).

Reading is open (status and state hashes say nothing about accounts); everything that acts
needs the cluster's operator token as a bearer token, compared in constant time.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pyexchange.gateway import okx
from pyexchange.gateway.exchange import Exchange
from pyexchange.gateway.replication import command_of, error_json
from pyexchange.gateway.sequencer import Overloaded

router = APIRouter(prefix="/cluster/v1", default_response_class=okx.OrjsonResponse)


def _exchange(request: Request) -> Exchange:
    exchange: Exchange = request.app.state.exchange
    return exchange


def _refused(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "msg": msg, "http_status": status}}, status_code=status)


def _unauthorized(exchange: Exchange, request: Request) -> JSONResponse | None:
    """The refusal of a request without the cluster's operator token; None if it has it."""
    assert exchange.link is not None
    if exchange.link.authorized(request.headers.get("Authorization")):
        return None
    return _refused(401, "50113", "the cluster's operator token is required")


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """This zone's Raft status and how far its views follow its replica."""
    exchange = _exchange(request)
    assert exchange.link is not None
    follower = exchange.follower
    return {"zone": exchange.link.zone, "gateways": exchange.link.gateways, "raft": exchange.engine.zone_status(),
            "seq": exchange.engine.seq, "views_index": follower.delivered_index if follower else None,
            "halted": exchange.halted}  # fmt: skip


@router.get("/state")
async def state(request: Request) -> dict[str, Any]:
    """The replica's seq, state hash and invariants, for comparing zones after a drill."""
    engine = _exchange(request).engine
    try:
        engine.check_invariants()
        broken = None
    except AssertionError as error:
        broken = str(error)
    applied_index = engine.zone_status()["applied_index"]
    return {"applied_index": applied_index, "seq": engine.seq, "state_hash": engine.state_hash(),
            "invariants_ok": broken is None, "invariants_broken": broken}  # fmt: skip


@router.post("/transfer")
async def transfer(request: Request) -> Any:
    """Moves leadership to `{"to": zone}` (asked of the leader; returns once asked)."""
    exchange = _exchange(request)
    if (refusal := _unauthorized(exchange, request)) is not None:
        return refusal
    try:
        to = int(orjson.loads(await request.body())["to"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return _refused(400, okx.PARAMETER_ERROR, 'the body must be {"to": <zone id>}')
    assert exchange.link is not None
    if to not in exchange.link.gateways:
        return _refused(400, okx.PARAMETER_ERROR, f"there is no zone {to}")
    try:
        exchange.engine.transfer_leader(to)
    except RuntimeError as error:
        return _refused(409, okx.SERVICE_UNAVAILABLE, str(error))
    return {"transfer_to": to}


@router.post("/submit")
async def submit(request: Request) -> Any:
    """Sequences a command another zone's gateway forwarded (that zone checked it already)."""
    exchange = _exchange(request)
    if (refusal := _unauthorized(exchange, request)) is not None:
        return refusal
    try:
        command = command_of(orjson.loads(await request.body()))
    except (orjson.JSONDecodeError, ValueError) as error:
        return _refused(400, okx.PARAMETER_ERROR, str(error))
    assert exchange.link is not None
    if not exchange.link.leading():
        return _refused(503, okx.SERVICE_UNAVAILABLE, "this zone no longer leads, nothing was done; retry")
    try:
        await exchange.submit_here(command)
    except Overloaded as error:
        return {"error": {"code": okx.RATE_LIMITED, "msg": str(error)}}
    except okx.OkxError as error:
        return {"error": error_json(error)}
    return {"events": base64.b64encode(command.raw_events).decode()}


@router.post("/halt")
async def halt(request: Request) -> Any:
    """Halts trading at this zone: `{"reason": text}` (the orchestrator, on quorum loss)."""
    exchange = _exchange(request)
    if (refusal := _unauthorized(exchange, request)) is not None:
        return refusal
    try:
        reason = str(orjson.loads(await request.body())["reason"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _refused(400, okx.PARAMETER_ERROR, 'the body must be {"reason": <text>}')
    exchange.halt(reason)
    return {"halted": reason}


@router.post("/reopen")
async def reopen(request: Request) -> Any:
    """Lets this zone trade again."""
    exchange = _exchange(request)
    if (refusal := _unauthorized(exchange, request)) is not None:
        return refusal
    exchange.halt(None)
    return {"halted": None}
