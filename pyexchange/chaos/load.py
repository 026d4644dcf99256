"""An open-loop order load over OKX's v5 REST API that records every acknowledgement: the
client side of the zone-loss drill. It needs httpx (the `test` extra).

Rules it keeps:
- Replayable: the plan (`OrderLoad.plan()`: which account, side, price, size, clOrdId, which
  earlier order a cancel names, when each is due) is a pure function of the parameters and the
  seed, drawn from one `random.Random(seed)`. Only the timing of the answers differs between runs.
  ClOrdIds are a function of the seed too: the same seed twice against one exchange replays into
  its idempotency (the second run's places answer the first run's orders).
- Open loop: op i is launched at start + i / rate_per_s whether or not earlier ops were answered,
  so an outage does not slow the offered load down (no coordinated omission).
- Nothing crosses: buys at reference - k * price_step, sells at reference + k * price_step,
  1 <= k <= price_levels, so every accepted order rests until the load itself cancels it
  (assuming no other orders inside that range). Place and cancel are the only operations.
- A cancel names a place of the same account planned earlier; it waits for that place's
  definite outcome and is sent only if the place was acknowledged (otherwise it is `skipped`).
- Retries: every attempt of an op sends the same body (same clOrdId, same parameters), signed
  anew. A connection error, a timeout, HTTP 429/421/500/502/503/504, codes 50001/50004/50011/50013
  or a not-leader answer (a message naming the leader) is not an answer: the client moves its
  current gateway on to the next URL, backs off (20 ms doubling to 250 ms) and tries again, until a
  definite answer or the deadline (end of the schedule + drain_s).
- Outcomes: `acked` (sCode 0), `rejected` (any other definite sCode; also an op whose every
  attempt was certainly refused unsent — connection refused, 429, 503, not leader — recorded
  with the last code), `unknown` (the deadline came after at least one attempt whose fate is
  unknown: timeout, connection lost after sending, 500/502/504, 50004) and `skipped`. An unknown
  outcome is not a lost order; the checker resolves it from the final state. A cancel whose retry
  answers 51400 (already closed) after an attempt of unknown fate is `acked`: our orders never
  fill, so only that attempt can have closed it (the checker verifies the order shows canceled).
- Times are `time.monotonic_ns()` (CLOCK_MONOTONIC, one clock for every process of the machine),
  so a drill can compare the moment it killed a zone with the acknowledgement times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from pyexchange.accounts import Credentials
from pyexchange.gateway.auth import sign

ACKED, REJECTED, UNKNOWN, SKIPPED, PENDING = "acked", "rejected", "unknown", "skipped", "pending"
PLACE, CANCEL = "place", "cancel"
PLACE_PATH = "/api/v5/trade/order"
CANCEL_PATH = "/api/v5/trade/cancel-order"
# Answers that are no answer. Refused: certainly not executed, try again. Unknown: may have run.
REFUSED_HTTP = frozenset({421, 429, 503})
UNKNOWN_HTTP = frozenset({500, 502, 504})
REFUSED_CODES = frozenset({"50001", "50011", "50013"})  # unavailable, rate limited, system busy
UNKNOWN_CODES = frozenset({"50004"})  # the gateway's own timeout: "the outcome is unknown"
NOT_LEADER_WORDS = ("not leader", "not the leader", "no leader", "leader unknown")
ORDER_CLOSED_CODE = "51400"
BACKOFF_S_MIN = 0.02
BACKOFF_S_MAX = 0.25
TIMELINE_STEP_MS = 100
CLIENT_ORDER_ID_PREFIX = "cl"


@dataclass(frozen=True, slots=True)
class PlannedOp:
    """One step of the plan: a place (its body) or a cancel of an earlier place (`target_op`)."""

    op: int
    kind: str
    client: int  # index into the credentials
    due_s: float  # after the start of the run
    client_order_id: str  # a place's own; a cancel's target's
    params: dict[str, str]  # a place's body; a cancel's body is known once its target is acked
    target_op: int | None = None


@dataclass(slots=True)
class OrderRecord:
    """What happened to one planned op. Times are monotonic ns; 0 means it did not happen."""

    op: int
    kind: str
    account: int
    client_order_id: str
    params: dict[str, str]  # the body every attempt sent
    intended_ns: int  # when the open-loop schedule meant to launch it
    target_op: int | None = None
    send_ns: int = 0  # the first attempt
    ack_ns: int = 0  # the definite answer (acked or rejected) arrived
    answered_send_ns: int = 0  # the attempt that got the definite answer was sent
    ord_id: str = ""
    outcome: str = PENDING
    s_code: str = ""
    s_msg: str = ""
    attempts: int = 0
    unknown_attempts: int = 0  # attempts whose fate is unknown (may have been executed)
    ord_ids_seen: list[str] = field(default_factory=list)  # every ordId any answer named
    gateway: str = ""  # the URL that gave the definite answer

    @property
    def latency_ms(self) -> float | None:
        """From the first send to the acknowledgement (retries included)."""
        return (self.ack_ns - self.send_ns) / 1e6 if self.outcome == ACKED else None


@dataclass(slots=True)
class LoadReport:
    """The records of one run and its figures; counts cover places and cancels alike."""

    seed: int
    instrument: str
    rate_per_s: float
    duration_s: float
    start_ns: int
    schedule_end_ns: int
    end_ns: int
    records: list[OrderRecord]
    sent: int  # ops sent at least once
    acked: int
    rejected: int
    unknown: int
    skipped: int
    retries: int  # attempts beyond each op's first
    offered_rate_per_s: float  # ops sent / duration_s
    achieved_rate_per_s: float  # acked / (last ack - start)
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_max: float
    timeline_acks: list[int]  # acks received per TIMELINE_STEP_MS since start_ns
    timeline_step_ms: int = TIMELINE_STEP_MS

    def latencies_ms(self) -> list[float]:
        """Every acknowledged op's latency, sorted."""
        return sorted(r.latency_ms for r in self.records if r.latency_ms is not None)

    def first_ack_after(self, t_ns: int, *, attempt_sent_after: bool = False) -> float | None:
        """The recovery time of an event at `t_ns` (monotonic ns), in ms: from `t_ns` to the first
        acknowledgement *received* after it, whenever its op was first sent (an op sent before the
        kill and acknowledged after it counts, by the time its ack arrived). An answer the dying
        server had already written but the client read after `t_ns` counts too; with
        `attempt_sent_after` only acks of attempts sent after `t_ns` count, which excludes those.
        None if nothing was acknowledged after `t_ns`."""
        acks = [r.ack_ns for r in self.records if r.outcome == ACKED and r.ack_ns > t_ns
                and (not attempt_sent_after or r.answered_send_ns > t_ns)]  # fmt: skip
        return (min(acks) - t_ns) / 1e6 if acks else None


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: str  # ACKED, REJECTED, or "refused" / UNKNOWN (try again)
    s_code: str
    s_msg: str
    ord_id: str = ""


REFUSED = "refused"


def credentials_of(items: Sequence[Credentials | Mapping[str, Any]]) -> list[Credentials]:
    """Credentials from `demo-credentials.json` entries (account, apiKey, secretKey, passphrase)."""
    return [c if isinstance(c, Credentials) else
            Credentials(int(c["account"]), str(c["apiKey"]), str(c["secretKey"]), str(c["passphrase"]))
            for c in items]  # fmt: skip


def signed_headers(creds: Credentials, method: str, path: str, body: str) -> dict[str, str]:
    """OKX's signature headers for one request (`path` with its query string)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"OK-ACCESS-KEY": creds.api_key, "OK-ACCESS-PASSPHRASE": creds.passphrase,
            "OK-ACCESS-TIMESTAMP": stamp, "OK-ACCESS-SIGN": sign(creds.secret_key, stamp + method + path + body),
            "Content-Type": "application/json"}  # fmt: skip


def judge(status: int, content: bytes) -> Answer:
    """What one HTTP answer to an order-entry request means for the op."""
    try:
        doc = json.loads(content)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return Answer(REFUSED if status in REFUSED_HTTP else UNKNOWN, str(status), "not an OKX answer")
    code, msg = str(doc.get("code", "")), str(doc.get("msg", ""))
    data = doc.get("data")
    item = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    s_code, s_msg = str(item.get("sCode", code)), str(item.get("sMsg", msg))
    ord_id = str(item.get("ordId", ""))
    not_leader = any(w in f"{msg} {s_msg}".lower() for w in NOT_LEADER_WORDS)
    if not_leader or status in REFUSED_HTTP or {code, s_code} & REFUSED_CODES:
        return Answer(REFUSED, s_code, s_msg, ord_id)
    if status in UNKNOWN_HTTP or {code, s_code} & UNKNOWN_CODES:
        return Answer(UNKNOWN, s_code, s_msg, ord_id)
    return Answer(ACKED if code == "0" and s_code == "0" else REJECTED, s_code, s_msg, ord_id)


class GatewayClient:
    """One account's view of the gateways: its own connection pool and a current gateway, moved
    on to the next URL when the current one fails to answer."""

    def __init__(self, creds: Credentials, urls: Sequence[str], timeout_s: float, connections_max: int) -> None:
        assert urls, "at least one gateway URL"
        self.creds, self.urls, self.current = creds, [u.rstrip("/") for u in urls], 0
        limits = httpx.Limits(max_connections=connections_max, max_keepalive_connections=connections_max)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits)

    async def post(self, path: str, body: str) -> tuple[int, Answer]:
        """(index of the gateway asked, its answer); transport failures become answers."""
        index = self.current
        headers = signed_headers(self.creds, "POST", path, body)
        try:
            response = await self.http.post(self.urls[index] + path, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            return index, Answer(REFUSED, "", f"not sent: {type(error).__name__}")
        except httpx.TransportError as error:  # sent, or maybe sent: its fate is unknown
            return index, Answer(UNKNOWN, "", f"no answer: {type(error).__name__}")
        return index, judge(response.status_code, response.content)

    def move_on(self, failed: int) -> None:
        if self.current == failed:  # many ops may fail at once: move one step, not one per op
            self.current = (failed + 1) % len(self.urls)

    async def aclose(self) -> None:
        await self.http.aclose()


class OrderLoad:
    """A seeded open-loop load of limit orders and cancels spread over the given accounts.

    Demo funds (10 BTC, 1,000,000 USDT per account) and the default risk limits (500 orders/s
    and 5,000 open orders per account) bound what a run may offer: keep rate_per_s * duration_s
    * (1 - cancel_ratio) under 5,000 per account."""

    def __init__(self, gateway_urls: Sequence[str], credentials: Sequence[Credentials | Mapping[str, Any]], *,
                 instrument: str = "BTC-USDT", rate_per_s: float = 50.0, duration_s: float = 5.0, seed: int = 0,
                 reference_price: str = "30000", price_step: str = "10", price_levels: int = 20,
                 sizes: Sequence[str] = ("0.0001", "0.0002", "0.0005", "0.001"), cancel_ratio: float = 0.2,
                 request_timeout_s: float = 3.0, drain_s: float = 15.0, connections_max: int = 64) -> None:  # fmt: skip
        assert rate_per_s > 0 and duration_s > 0 and price_levels >= 1 and sizes and 0 <= cancel_ratio < 1
        assert Decimal(reference_price) - price_levels * Decimal(price_step) > 0, "buys must be priced above 0"
        self.urls = list(gateway_urls)
        self.credentials = credentials_of(credentials)
        assert self.urls and self.credentials
        self.instrument, self.rate_per_s, self.duration_s, self.seed = instrument, rate_per_s, duration_s, seed
        self.reference_price, self.price_step, self.price_levels = (
            Decimal(reference_price), Decimal(price_step), price_levels)  # fmt: skip
        self.sizes, self.cancel_ratio = tuple(sizes), cancel_ratio
        self.request_timeout_s, self.drain_s, self.connections_max = request_timeout_s, drain_s, connections_max
        self._records: list[OrderRecord] = []

    def in_flight(self, sent_ms_ago_min: float = 0) -> int:
        """Ops of the run under way that were sent at least `sent_ms_ago_min` ago and have no
        definite answer yet (another thread may ask: a test waits for some before it kills a
        zone). An op counts from its first attempt, before its request is written: only some
        time after that is the request surely at the server."""
        sent_before_ns = time.monotonic_ns() - int(sent_ms_ago_min * 1_000_000)
        return sum(r.attempts > 0 and r.outcome == PENDING and r.send_ns <= sent_before_ns for r in self._records)

    def plan(self) -> list[PlannedOp]:
        """Every op of the run, in launch order; the same for the same parameters and seed."""
        rng = random.Random(self.seed)
        places_of: list[list[PlannedOp]] = [[] for _ in self.credentials]  # not yet named by a cancel
        ops: list[PlannedOp] = []
        for i in range(math.ceil(self.rate_per_s * self.duration_s)):
            client = rng.randrange(len(self.credentials))
            due_s = i / self.rate_per_s
            candidates = places_of[client]
            if candidates and rng.random() < self.cancel_ratio:
                target = candidates.pop(rng.randrange(len(candidates)))
                ops.append(PlannedOp(i, CANCEL, client, due_s, target.client_order_id, {}, target.op))
                continue
            side = rng.choice(("buy", "sell"))
            offset = rng.randint(1, self.price_levels) * self.price_step
            price = self.reference_price - offset if side == "buy" else self.reference_price + offset
            cid = f"{CLIENT_ORDER_ID_PREFIX}{rng.getrandbits(64):016x}{i:x}"
            params = {"instId": self.instrument, "tdMode": "cash", "side": side, "ordType": "limit",
                      "px": format(price.normalize(), "f"), "sz": rng.choice(self.sizes), "clOrdId": cid}  # fmt: skip
            ops.append(PlannedOp(i, PLACE, client, due_s, cid, params))
            candidates.append(ops[-1])
        return ops

    async def run(self) -> LoadReport:
        """Runs the plan against the gateways; returns when every op has a definite answer or
        the deadline (end of the schedule + drain_s) has passed."""
        plan = self.plan()
        clients = [GatewayClient(c, self.urls, self.request_timeout_s, self.connections_max) for c in self.credentials]
        start_ns = time.monotonic_ns()
        schedule_end_ns = start_ns + int(self.duration_s * 1e9)
        deadline_ns = schedule_end_ns + int(self.drain_s * 1e9)
        records = [OrderRecord(p.op, p.kind, self.credentials[p.client].account, p.client_order_id, dict(p.params),
                               0, p.target_op) for p in plan]  # fmt: skip
        self._records = records
        done = [asyncio.Event() for _ in plan]
        try:
            tasks = []
            for p in plan:
                records[p.op].intended_ns = start_ns + int(p.due_s * 1e9)
                await _sleep_until(records[p.op].intended_ns)
                tasks.append(asyncio.create_task(self._run_op(p, clients[p.client], records, done, deadline_ns)))
            await asyncio.gather(*tasks)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        return build_report(self, records, start_ns, schedule_end_ns, time.monotonic_ns())

    async def _run_op(self, p: PlannedOp, client: GatewayClient, records: list[OrderRecord],
                      done: list[asyncio.Event], deadline_ns: int) -> None:  # fmt: skip
        record = records[p.op]
        try:
            if p.kind == CANCEL:
                assert p.target_op is not None
                target = records[p.target_op]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done[p.target_op].wait(), _left_s(deadline_ns))
                if target.outcome != ACKED:
                    record.outcome = SKIPPED
                    return
                record.params = {"instId": self.instrument, "ordId": target.ord_id}
            await _attempt_until_answered(client, record, deadline_ns)
        finally:
            done[p.op].set()


def _left_s(deadline_ns: int) -> float:
    return max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)


async def _sleep_until(t_ns: int) -> None:
    delay_s = (t_ns - time.monotonic_ns()) / 1e9
    if delay_s > 0:
        await asyncio.sleep(delay_s)


async def _attempt_until_answered(client: GatewayClient, record: OrderRecord, deadline_ns: int) -> None:
    """Sends the record's body until a definite answer or the deadline, always the same body."""
    path = PLACE_PATH if record.kind == PLACE else CANCEL_PATH
    body = json.dumps(record.params, separators=(",", ":"))
    backoff_s = BACKOFF_S_MIN
    last = Answer(REFUSED, "", "not sent: the deadline had passed")
    while time.monotonic_ns() < deadline_ns:
        record.attempts += 1
        sent_ns = time.monotonic_ns()
        record.send_ns = record.send_ns or sent_ns
        index, last = await client.post(path, body)
        if last.ord_id and last.ord_id not in record.ord_ids_seen:
            record.ord_ids_seen.append(last.ord_id)
        if last.verdict in (ACKED, REJECTED):
            _settle(record, last, sent_ns, client.urls[index])
            return
        record.unknown_attempts += last.verdict == UNKNOWN
        client.move_on(index)
        await asyncio.sleep(min(backoff_s, _left_s(deadline_ns)))
        backoff_s = min(2 * backoff_s, BACKOFF_S_MAX)
    if record.attempts == 0:
        record.outcome = SKIPPED  # its target was answered only at the deadline
        return
    record.outcome = UNKNOWN if record.unknown_attempts else REJECTED
    record.s_code, record.s_msg = last.s_code, last.s_msg


def _settle(record: OrderRecord, answer: Answer, sent_ns: int, gateway: str) -> None:
    record.ack_ns, record.answered_send_ns, record.gateway = time.monotonic_ns(), sent_ns, gateway
    record.s_code, record.s_msg = answer.s_code, answer.s_msg
    closed_by_us = record.kind == CANCEL and answer.s_code == ORDER_CLOSED_CODE and record.unknown_attempts > 0
    record.outcome = ACKED if answer.verdict == ACKED or closed_by_us else REJECTED
    if record.outcome == ACKED:
        record.ord_id = answer.ord_id or record.params.get("ordId", "")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (exact: every sample is kept); 0.0 without samples."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def build_report(load: OrderLoad, records: list[OrderRecord], start_ns: int, schedule_end_ns: int,
                 end_ns: int) -> LoadReport:  # fmt: skip
    latencies = sorted(r.latency_ms for r in records if r.latency_ms is not None)
    acks_ns = [r.ack_ns for r in records if r.outcome == ACKED]
    step_ns = TIMELINE_STEP_MS * 1_000_000
    timeline = [0] * max(1, math.ceil((end_ns - start_ns) / step_ns))
    for t in acks_ns:
        timeline[min(len(timeline) - 1, (t - start_ns) // step_ns)] += 1
    sent = sum(r.attempts > 0 for r in records)
    span_s = (max(acks_ns) - start_ns) / 1e9 if acks_ns else 0.0
    return LoadReport(
        seed=load.seed, instrument=load.instrument, rate_per_s=load.rate_per_s, duration_s=load.duration_s,
        start_ns=start_ns, schedule_end_ns=schedule_end_ns, end_ns=end_ns, records=records, sent=sent,
        acked=len(acks_ns), rejected=sum(r.outcome == REJECTED for r in records),
        unknown=sum(r.outcome == UNKNOWN for r in records), skipped=sum(r.outcome == SKIPPED for r in records),
        retries=sum(max(0, r.attempts - 1) for r in records), offered_rate_per_s=sent / load.duration_s,
        achieved_rate_per_s=len(acks_ns) / span_s if span_s > 0 else 0.0,
        latency_ms_p50=percentile(latencies, 50), latency_ms_p99=percentile(latencies, 99),
        latency_ms_max=latencies[-1] if latencies else 0.0, timeline_acks=timeline,
    )  # fmt: skip
