"""A reconnect storm's clients: many clients place orders at once over lean keep-alive
HTTP/1.1 connections, retry each refusal after its Retry-After, while one client cancels
resting orders throughout; what every attempt saw. The client side of the reconnect-storm test
(tests/test_admission_ramp.py) and of `pyexchange drill reopen` (`cluster.reopen_drill`).

Rules it keeps:
- Open loop: each place is launched at its due time whatever happened to the others
  (`open_loop`), on clients of their own (one connection each, spread over the gateways round
  robin), so a slow answer does not slow the offered rate down.
- Retries are safe: a refused place is sent again with the same body (same clOrdId), signed
  anew, after the refusal's Retry-After; a connection lost without an answer is retried after
  a second, and the record counts an attempt of unknown fate. Any other answer is final.
- A refusal must be HTTP 429 with code 50011 and a Retry-After of whole seconds; anything else
  is an improper refusal, and any answer that is neither placed nor a proper refusal is `odd`.
- Latencies are samples (when the request was written, ms from then to its answer) kept by
  kind of answer: accepted, refused, cancel. Times are `time.monotonic_ns()`, as the load's.
- The records are `chaos.load.OrderRecord`s (ops numbered by the caller), so the chaos checker
  judges them against the final state like any load's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyexchange.accounts import Credentials
from pyexchange.chaos.load import (
    ACKED,
    CANCEL,
    CANCEL_PATH,
    PLACE,
    PLACE_PATH,
    REJECTED,
    UNKNOWN,
    OrderLoad,
    OrderRecord,
    credentials_of,
    percentile,
    signed_headers,
)

RATE_LIMITED_CODE = "50011"
RETRY_AFTER_S_DEFAULT = 1  # what a client waits after a refusal that names no Retry-After
RECONNECT_WAIT_S = 1.0  # after a connection lost without an answer
RSS_SAMPLE_S = 0.05
PLACE_DEADLINE_S = 30.0  # after the last place is due: how long a place may go on being retried

Sample = tuple[int, float]  # (sent_ns, ms from the write of the request to its answer)


@dataclass
class Storm:
    """What the clients saw: every attempt's answer, and the latencies by kind of answer."""

    creds: dict[int, Credentials]  # by account
    accepted: list[Sample] = field(default_factory=list)  # each attempt's, by its answer
    refused_429: list[Sample] = field(default_factory=list)
    canceled: list[Sample] = field(default_factory=list)
    improper_refusals: int = 0  # refusals without 429, 50011 and a Retry-After
    odd: list[str] = field(default_factory=list)  # any answer that is neither placed nor a proper 429
    rss_kib: dict[int, list[int]] = field(default_factory=dict)  # samples by pid

    @classmethod
    def of(cls, credentials: Sequence[Credentials | Mapping[str, Any]]) -> Storm:
        return cls({c.account: c for c in credentials_of(credentials)})

    def rss_mib_peak(self) -> float:
        """The largest RSS sampled of any watched process, in MiB (0 without samples)."""
        return max((max(samples) for samples in self.rss_kib.values() if samples), default=0) / 1024


def rss_kib(pid: int) -> int | None:
    """A process's resident set size, in KiB; None if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None  # a zombie has no VmRSS


class Connection:
    """One client's keep-alive HTTP/1.1 connection to one gateway, one request at a time,
    opened at its first request. Lean on purpose: httpx spends about a millisecond of CPU a
    request, and the clients share the machine with the servers they storm."""

    def __init__(self, gateway_url: str) -> None:
        url = urlsplit(gateway_url)
        assert url.scheme == "http" and url.hostname and url.port, gateway_url
        self.host, self.port = url.hostname, url.port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.lock = asyncio.Lock()

    async def post(self, creds: Credentials, path: str, body: str) -> tuple[int, dict[str, str], bytes, Sample]:
        """(status, headers, body, (when it was written, ms from then to the answer));
        ConnectionError if the answer did not come (the request may have been executed)."""
        async with self.lock:
            try:
                if self.streams is None or self.streams[0].at_eof():
                    self.streams = await asyncio.open_connection(self.host, self.port)
            except OSError as error:
                raise ConnectionError(f"not connected: {error!r}") from None
            reader, writer = self.streams
            signed = signed_headers(creds, "POST", path, body)
            head = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
            data = body.encode()
            sent_ns = time.monotonic_ns()
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{head}Content-Length: {len(data)}\r\n\r\n"
                         .encode() + data)  # fmt: skip
            try:
                lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                content = await reader.readexactly(int(headers["content-length"]))
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as error:
                self.streams = None
                raise ConnectionError(f"no answer: {error!r}") from None
            return int(lines[0].split()[1]), headers, content, (sent_ns, (time.monotonic_ns() - sent_ns) / 1e6)

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


def retry_after_s(status: int, headers: Mapping[str, str], doc: Mapping[str, Any]) -> int | None:
    """The seconds a proper refusal (429, 50011, Retry-After in whole seconds) asks to wait;
    None if the refusal is not one."""
    retry_after = headers.get("retry-after", "")
    if status != 429 or doc.get("code") != RATE_LIMITED_CODE or not retry_after.isdigit():
        return None
    return int(retry_after)


async def place_until_answered(conn: Connection, storm: Storm, record: OrderRecord, deadline: float) -> None:
    """Sends the place until it is placed; a 429 must be 50011 with Retry-After, and is retried
    after it with the same body (same clOrdId)."""
    body = json.dumps(record.params, separators=(",", ":"))
    while time.monotonic() < deadline:
        record.attempts += 1
        sent_ns = time.monotonic_ns()
        record.send_ns = record.send_ns or sent_ns
        try:
            status, headers, content, sample = await conn.post(storm.creds[record.account], PLACE_PATH, body)
        except ConnectionError as error:
            record.unknown_attempts += 1
            storm.odd.append(f"{record.client_order_id}: {error}")
            await asyncio.sleep(RECONNECT_WAIT_S)
            continue
        doc = _json(content)
        if status == 429:
            storm.refused_429.append(sample)
            wait_s = retry_after_s(status, headers, doc)
            if wait_s is None:
                storm.improper_refusals += 1
                storm.odd.append(f"429 without 50011 and Retry-After: {headers} {doc}")
            await asyncio.sleep(RETRY_AFTER_S_DEFAULT if wait_s is None else wait_s)
            continue
        item = doc["data"][0] if doc.get("data") else {}
        if status != 200 or doc.get("code") != "0" or item.get("sCode") != "0":
            storm.odd.append(f"{record.client_order_id}: HTTP {status} {doc}")
            record.outcome, record.s_code = REJECTED, str(item.get("sCode", doc.get("code")))
            return
        record.ack_ns, record.answered_send_ns, record.outcome = time.monotonic_ns(), sent_ns, ACKED
        record.ord_id = item["ordId"]
        record.ord_ids_seen.append(item["ordId"])
        storm.accepted.append(sample)
        return
    record.outcome = UNKNOWN if record.unknown_attempts else REJECTED


def _json(content: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(content)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


async def open_loop(gateway_urls: Sequence[str], plan: list[OrderRecord], due_s: list[float], storm: Storm,
                    clients: int) -> None:  # fmt: skip
    """Launches each place at its due time whatever happened to the others (open loop), on
    `clients` clients of their own (one connection each, to the gateways round robin), the
    places dealt to the clients round robin."""
    assert clients >= 1 and gateway_urls and len(plan) == len(due_s)
    if not plan:
        return
    conns = [Connection(gateway_urls[i % len(gateway_urls)]) for i in range(clients)]
    try:
        start = time.monotonic()
        deadline = start + due_s[-1] + PLACE_DEADLINE_S
        tasks = []
        for i, (record, due) in enumerate(zip(plan, due_s, strict=True)):
            await asyncio.sleep(max(0.0, start + due - time.monotonic()))
            record.intended_ns = time.monotonic_ns()
            tasks.append(asyncio.create_task(place_until_answered(conns[i % clients], storm, record, deadline)))
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.close() for c in conns))


async def cancel_throughout(gateway_url: str, cancels: list[OrderRecord], storm: Storm, every_s: float) -> None:
    """One client cancels the resting orders one by one, every `every_s`: each must succeed
    at its first attempt (a cancel never waits for the ramp)."""
    conn = Connection(gateway_url)
    try:
        for record in cancels:
            await asyncio.sleep(every_s)
            body = json.dumps(record.params, separators=(",", ":"))
            record.attempts = 1
            record.send_ns = time.monotonic_ns()
            try:
                status, _, content, sample = await conn.post(storm.creds[record.account], CANCEL_PATH, body)
            except ConnectionError as error:
                record.unknown_attempts, record.outcome = 1, UNKNOWN
                storm.odd.append(f"cancel {record.params}: {error}")
                continue
            record.ack_ns, record.answered_send_ns = time.monotonic_ns(), sample[0]
            storm.canceled.append(sample)
            doc = _json(content)
            ok = status == 200 and doc.get("code") == "0" and doc["data"][0]["sCode"] == "0"
            record.outcome, record.s_code = (ACKED if ok else REJECTED), str(doc.get("code"))
            if not ok:
                storm.odd.append(f"cancel {record.params}: HTTP {status} {doc}")
    finally:
        await conn.close()


async def watch_rss(pids: Sequence[int], storm: Storm, stop: asyncio.Event) -> None:
    """Samples the processes' RSS every RSS_SAMPLE_S until `stop` (a process gone is skipped)."""
    while not stop.is_set():
        for pid in pids:
            kib = rss_kib(pid)
            if kib is not None:
                storm.rss_kib.setdefault(pid, []).append(kib)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_SAMPLE_S)


async def run(gateway_urls: Sequence[str], places: list[OrderRecord], due_s: list[float], cancels: list[OrderRecord],
              storm: Storm, *, clients: int, cancel_every_s: float, pids: Sequence[int]) -> None:  # fmt: skip
    """The storm: the places from `clients` clients (open loop), the cancels from one more
    client (to the first gateway), and the RSS of `pids` sampled until both are done."""
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_rss(pids, storm, stop))
    try:
        await asyncio.gather(open_loop(gateway_urls, places, due_s, storm, clients),
                             cancel_throughout(gateway_urls[0], cancels, storm, cancel_every_s))  # fmt: skip
    finally:
        stop.set()
        await watcher


def plan_places(credentials: Sequence[Credentials | Mapping[str, Any]], rate_per_s: float, duration_s: float,
                seed: int, first_op: int, **load: Any) -> tuple[OrderLoad, list[OrderRecord], list[float]]:  # fmt: skip
    """Places only (no cancels), seeded, numbered from `first_op`, with their due times (s);
    `load` goes to `OrderLoad` (instrument, prices, sizes). They never cross (see chaos.load)."""
    load_plan = OrderLoad(["http://unused"], credentials, rate_per_s=rate_per_s, duration_s=duration_s, seed=seed,
                          cancel_ratio=0.0, **load)  # fmt: skip
    plan = load_plan.plan()
    creds = credentials_of(credentials)
    records = [OrderRecord(first_op + p.op, PLACE, creds[p.client].account, p.client_order_id, dict(p.params), 0)
               for p in plan]  # fmt: skip
    return load_plan, records, [p.due_s for p in plan]


def cancels_of(placed: list[OrderRecord], first_op: int) -> list[OrderRecord]:
    """A cancel of every acknowledged place, numbered from `first_op`, naming it by ordId."""
    acked = [r for r in placed if r.outcome == ACKED]
    return [OrderRecord(first_op + i, CANCEL, r.account, r.client_order_id,
                        {"instId": r.params["instId"], "ordId": r.ord_id}, 0, r.op)
            for i, r in enumerate(acked)]  # fmt: skip


def latencies_ms(samples: list[Sample], sent_after_ns: int = 0) -> list[float]:
    """The latencies of the samples sent after `sent_after_ns`, sorted."""
    return sorted(ms for sent_ns, ms in samples if sent_ns > sent_after_ns)


def figures(storm: Storm, places: list[OrderRecord], cancels: list[OrderRecord]) -> dict[str, Any]:
    """The storm's figures for a verdict: counts, latency percentiles (ms), RSS peak (MiB)."""
    accepted, refused, canceled = (latencies_ms(s) for s in (storm.accepted, storm.refused_429, storm.canceled))
    return {
        "places": len(places), "accepted": sum(r.outcome == ACKED for r in places),
        "accepted_ms_p50": round(percentile(accepted, 50), 2), "accepted_ms_p99": round(percentile(accepted, 99), 2),
        "refused": len(storm.refused_429), "refused_ms_p99": round(percentile(refused, 99), 2),
        "refusals_429_50011_retry_after": storm.improper_refusals == 0,
        "attempts_max": max((r.attempts for r in places), default=0),
        "cancels_ok": sum(r.outcome == ACKED for r in cancels),
        "cancels_failed": sum(r.outcome != ACKED for r in cancels),
        "cancel_ms_p99": round(percentile(canceled, 99), 2),
        "odd_answers": len(storm.odd), "rss_mib_peak": round(storm.rss_mib_peak(), 1),
    }  # fmt: skip
