"""The gateway of one zone of a cluster: its views follow its replica, and its order entry
goes to the leader's zone.

- `Follower`, a thread, takes what this zone's replica applied (every zone applies the same
  committed log) and hands it to the event loop as batches, which update the views and push
  to WebSocket subscribers exactly as the single-zone sequencer's batches do. So every zone's
  views are hot, and a zone that becomes leader serves at once.
- `LeaderLink` knows who leads (this replica's Raft status) and forwards a command that this
  zone cannot sequence to the leader's gateway (`POST /cluster/v1/submit`, with the cluster
  token). The answer carries the command's event records; the zone answers its client once
  its own views have applied them, so a client may query its order at the zone it used.
- While no zone leads (an election), a command waits up to `leader_wait_ms`, then is refused
  with 50001 and `Retry-After`: the client retries, and `clOrdId` makes the retry safe. A zone
  whose replica diverged from the leader's, or a leader cut off from the majority, refuses at
  once.
- A zone first seen leading a new term (a failover, a transfer) calls `on_lead`: the gateway
  restarts its admission ramp (`gateway.ramp`). Leadership is seen on every command's way in
  and by `watch_leadership`, every `LEADER_WATCH_S`, so the ramp starts with the term even
  before the first order arrives, and no order gets in ahead of it.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import orjson

from pyexchange import wire
from pyexchange.engine import Engine
from pyexchange.gateway import okx
from pyexchange.gateway.sequencer import Batch, Command, Followed, Overloaded, collect

log = logging.getLogger("pyexchange.replication")
TAKE_TIMEOUT_MS = 100
LEADER_POLL_S = 0.01
LEADER_WATCH_S = 0.05
CLUSTER_TOKEN_HEADER = "Authorization"
FORWARDS_MAX = 256


class Follower:
    """The thread that keeps a zone's views from what its replica applies (see the module doc)."""

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Batch], None],
        followed: Followed,
        reset: Callable[[], None],
    ) -> None:
        self._engine, self._loop, self._deliver, self._followed, self._reset = engine, loop, deliver, followed, reset
        self._cond = threading.Condition()
        self._stopping = False
        self.delivered_index = -1
        self._thread = threading.Thread(target=self._run, name="pyexchange-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping:
            for item in self._engine.take_applied(TAKE_TIMEOUT_MS):
                try:
                    self._hand_over(item)
                except RuntimeError:  # the loop is closed: nobody is listening any more
                    return

    def _hand_over(self, item: tuple[Any, ...]) -> None:
        if item[0] == "reset":
            _, index, _seq = item
            log.error("this zone's replica was replaced by a snapshot at entry %d: the views restart from the "
                      "engine's state and lose the history before it", index)  # fmt: skip
            self._loop.call_soon_threadsafe(self._reset)
            self._advance(index)
            return
        _, index, first_seq, _last_seq, records, events, refused = item
        if refused is None and records:
            batch = collect(self._engine, records, first_seq, np.frombuffer(events, dtype=wire.EVENT_DTYPE),
                            self._followed)  # fmt: skip
            self._loop.call_soon_threadsafe(self._deliver, batch)
        self._advance(index)

    def _advance(self, index: int) -> None:
        with self._cond:
            self.delivered_index = max(self.delivered_index, index)
            self._cond.notify_all()

    def caught_up(self, index: int, timeout_s: float = 2.0) -> bool:
        """Waits until the entry at `index` was handed to the loop (the sequencer thread asks)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.delivered_index >= index, timeout_s)


class LeaderLink:
    """Who leads, and the way to the leader's gateway (see the module doc)."""

    def __init__(self, engine: Engine, zone: int, gateways: dict[int, str], token: str, *, leader_wait_ms: int,
                 lease_ms: int) -> None:  # fmt: skip
        """`lease_ms`: a leader that no majority has acknowledged for longer than this (the
        election timeout) is cut off from the others, and refuses rather than waits."""
        self._engine, self.zone, self.gateways, self._token = engine, zone, gateways, token
        self._leader_wait_s, self._lease_ms = leader_wait_ms / 1000, lease_ms
        self._client: aiohttp.ClientSession | None = None
        self._led_term: int | None = None  # the last term this zone was seen leading
        self.on_lead: Callable[[], None] | None = None  # called once per term this zone is seen leading

    def _seen(self, status: dict[str, Any]) -> dict[str, Any]:
        """Notes who leads in `status` (calls `on_lead` for a new term of ours); returns it."""
        if status["role"] == "leader" and status["term"] != self._led_term:
            self._led_term = status["term"]
            log.info("zone %d leads term %s", self.zone, status["term"])
            if self.on_lead is not None:
                self.on_lead()
        return status

    async def watch_leadership(self) -> None:
        """Looks at who leads every `LEADER_WATCH_S` (a task for the server's life)."""
        while True:
            self._seen(self._engine.zone_status())
            await asyncio.sleep(LEADER_WATCH_S)

    def _cut_off(self, status: dict[str, Any]) -> bool:
        acked_ms_ago = status["quorum_ack_ms_ago"]
        return acked_ms_ago is not None and acked_ms_ago > self._lease_ms

    def leading(self) -> bool:
        status = self._seen(self._engine.zone_status())
        return bool(status["role"] == "leader" and not self._cut_off(status))

    def authorized(self, header: str | None) -> bool:
        return hmac.compare_digest((header or "").encode(), f"Bearer {self._token}".encode())

    async def leader_gateway(self) -> str | None:
        """The leader's gateway URL, or None when this zone leads; waits through an election."""
        deadline = time.monotonic() + self._leader_wait_s
        while True:
            status = self._seen(self._engine.zone_status())
            if status["diverged"] is not None:
                raise okx.OkxError(okx.SERVICE_UNAVAILABLE, f"This zone stopped trading: {status['diverged']}",
                                   http_status=503, retry_after_s=1)  # fmt: skip
            if status["role"] == "leader":
                if self._cut_off(status):
                    raise okx.OkxError(okx.SERVICE_UNAVAILABLE, "This zone cannot reach a majority of the zones; "
                                       "retry at another zone (the same clOrdId is safe)", http_status=503,
                                       retry_after_s=1)  # fmt: skip
                return None
            leader = status["leader"]
            if leader is not None and leader != self.zone and status["role"] == "follower":
                return self.gateways[leader]
            if time.monotonic() >= deadline:
                raise okx.OkxError(okx.SERVICE_UNAVAILABLE, "No zone leads right now (an election is under way); "
                                   "retry in a moment (the same clOrdId is safe)", http_status=503,
                                   retry_after_s=1)  # fmt: skip
            await asyncio.sleep(LEADER_POLL_S)

    async def forward(self, gateway: str, command: Command, timeout_s: float) -> bytes:
        """Sends `command` to the leader's gateway; its event records once sequenced there."""
        if self._client is None:
            # Every forward in flight keeps its connection (up to FORWARDS_MAX), so a burst does
            # not pay a new connection per forward; aiohttp's client costs a fraction of httpx's.
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=FORWARDS_MAX),
                                                 timeout=aiohttp.ClientTimeout(total=timeout_s))  # fmt: skip
        fields: dict[str, Any] = {name: getattr(command, name) for name in FORWARDED_FIELDS}
        fields["client_order_id"] = command.client_order_id.hex()
        headers = {CLUSTER_TOKEN_HEADER: f"Bearer {self._token}", "Content-Type": "application/json"}
        try:
            async with self._client.post(f"{gateway}/cluster/v1/submit", data=orjson.dumps(fields),
                                         headers=headers) as answer:  # fmt: skip
                body = orjson.loads(await answer.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
            raise okx.OkxError(okx.REQUEST_TIMEOUT, f"The leader's zone did not answer ({type(error).__name__}); "
                               "the outcome is unknown: query the order or retry with the same clOrdId",
                               http_status=503, retry_after_s=1) from None  # fmt: skip
        refusal = body.get("error")
        if refusal is not None:
            if refusal["code"] == okx.RATE_LIMITED:
                raise Overloaded(refusal["msg"])
            raise okx.OkxError(refusal["code"], refusal["msg"], http_status=refusal.get("http_status"),
                               retry_after_s=refusal.get("retry_after_s"))  # fmt: skip
        return base64.b64decode(body["events"])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


FORWARDED_FIELDS = ("kind", "account", "instrument_id", "side", "order_type", "stp", "price_ticks", "size_lots",
                    "order_id")  # fmt: skip


def command_of(fields: dict[str, Any]) -> Command:
    """The command a forwarding zone sent (`LeaderLink.forward`); ValueError if malformed."""
    try:
        kind, account, instrument_id, side, order_type, stp, price_ticks, size_lots, order_id = (
            int(fields[name]) for name in FORWARDED_FIELDS
        )
        return Command(kind, account, instrument_id, side, order_type, stp, price_ticks, size_lots, order_id,
                       bytes.fromhex(str(fields["client_order_id"])), forwarded=True)  # fmt: skip
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"a forwarded command is malformed: {error}") from None


def error_json(error: okx.OkxError) -> dict[str, Any]:
    return {
        "code": error.code,
        "msg": error.msg,
        "http_status": error.http_status,
        "retry_after_s": error.retry_after_s,
    }
