"""Checks a load's records against the exchange's final state, read through its REST API only
(so the same checker serves one zone and a cluster behind several gateways).

What it reads, per account of the report: every order of the instrument listed by
`orders-pending` and `orders-history` (all pages, `after` = the last ordId), and every place
looked up by `GET /api/v5/trade/order?clOrdId=`, which goes through the exchange's own
clOrdId index. What it finds (each a `Finding`; a checker that cannot fail proves nothing, and
tests/test_chaos_load.py feeds it doctored reports):
- acked_lost: an acknowledged place the exchange does not know by its clOrdId, whose ordId is
  not the one acknowledged, or whose instrument, side, type, price or size differ from what was
  sent (counted per record).
- duplicate_executions: a clOrdId that maps to more than one exchange order, a record whose
  answers named more than one ordId, or an order filled beyond its size (counted per clOrdId).
- rejected_but_present: a place answered with a definite rejection that exists all the same.
- state_mismatches: an order of ours not in the state the records imply: `live` with nothing
  filled (the load's orders never cross), or `canceled` after a cancel of unknown fate.
- cancels_ok: every acknowledged cancel's order shows `canceled` (a `cancel_not_applied`
  finding otherwise, not also counted as a state mismatch).
- unknown_resolved / unknown_absent: ops of unknown outcome that turned out to have happened or
  not; neither is a fault.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from pyexchange.accounts import Credentials
from pyexchange.chaos.load import (
    ACKED,
    CANCEL,
    PLACE,
    REJECTED,
    UNKNOWN,
    LoadReport,
    OrderRecord,
    credentials_of,
    signed_headers,
)

PAGE_LIMIT_MAX = 100  # OKX's most per page
PAGES_MAX = 10_000
READ_ATTEMPTS_MAX = 8
READ_BACKOFF_S = 0.25
READ_TIMEOUT_S = 10.0
LOOKUPS_IN_FLIGHT_MAX = 16
ORDER_UNKNOWN_CODE = "51603"
COMPARED_FIELDS = ("instId", "side", "ordType", "px", "sz")
NUMERIC_FIELDS = ("px", "sz")


class CheckerError(Exception):
    """The final state could not be read (not a finding about the orders)."""


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # acked_lost, duplicate_execution, rejected_but_present, state_mismatch, cancel_not_applied
    client_order_id: str
    detail: str


@dataclass(slots=True)
class CheckResult:
    places_checked: int = 0
    orders_listed: int = 0  # orders of the checked places found by paging through the lists
    cancels_checked: int = 0
    acked_lost: int = 0
    duplicate_executions: int = 0
    rejected_but_present: int = 0
    state_mismatches: int = 0
    cancels_ok: bool = True
    unknown_resolved: int = 0
    unknown_absent: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.acked_lost or self.duplicate_executions or self.rejected_but_present
                    or self.state_mismatches or not self.cancels_ok)  # fmt: skip


class StateReader:
    """Signed GETs against one gateway, retried through short outages."""

    def __init__(self, http: httpx.AsyncClient, gateway_url: str, creds: Credentials, page_limit: int) -> None:
        assert 1 <= page_limit <= PAGE_LIMIT_MAX
        self.http, self.url, self.creds, self.page_limit = http, gateway_url.rstrip("/"), creds, page_limit

    async def get(self, path: str, *, unknown_ok: bool = False) -> list[dict[str, Any]]:
        """`data` of a GET; [] for an unknown order when `unknown_ok`; CheckerError otherwise."""
        problem = ""
        for _ in range(READ_ATTEMPTS_MAX):
            try:
                response = await self.http.get(self.url + path, headers=signed_headers(self.creds, "GET", path, ""))
                doc = response.json()
            except (httpx.TransportError, ValueError) as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                code = str(doc.get("code")) if isinstance(doc, dict) else ""
                if code == "0":
                    return list(doc["data"])
                if unknown_ok and code == ORDER_UNKNOWN_CODE:
                    return []
                problem = f"HTTP {response.status_code}: {str(doc)[:200]}"
                if response.status_code not in (429, 500, 502, 503, 504):
                    break
            await asyncio.sleep(READ_BACKOFF_S)
        raise CheckerError(f"GET {path} on {self.url} as account {self.creds.account}: {problem}")

    async def all_orders(self, instrument: str) -> list[dict[str, Any]]:
        """Every order of the instrument, open and closed, through all pages of both lists."""
        orders: list[dict[str, Any]] = []
        for listing in ("orders-pending", "orders-history"):
            after = ""
            for _ in range(PAGES_MAX):
                page = await self.get(f"/api/v5/trade/{listing}?instType=SPOT&instId={instrument}"
                                      f"&limit={self.page_limit}{after}")  # fmt: skip
                orders += page
                if len(page) < self.page_limit:
                    break
                after = f"&after={page[-1]['ordId']}"
            else:
                raise CheckerError(f"{listing} has more than {PAGES_MAX} pages")
        return orders

    async def order_by_client_id(self, instrument: str, client_order_id: str) -> dict[str, Any] | None:
        found = await self.get(f"/api/v5/trade/order?instId={instrument}&clOrdId={client_order_id}", unknown_ok=True)
        return found[0] if found else None


async def check_orders_async(report: LoadReport, gateway_url: str,
                             credentials: Sequence[Credentials | Mapping[str, Any]], *,
                             page_limit: int = PAGE_LIMIT_MAX) -> CheckResult:  # fmt: skip
    """`check_orders` for callers already inside an event loop."""
    creds = {c.account: c for c in credentials_of(credentials)}
    accounts = sorted({r.account for r in report.records})
    missing = [a for a in accounts if a not in creds]
    if missing:
        raise CheckerError(f"no credentials for accounts {missing}")
    async with httpx.AsyncClient(timeout=READ_TIMEOUT_S) as http:
        readers = [StateReader(http, gateway_url, creds[a], page_limit) for a in accounts]
        states = await asyncio.gather(*(_account_state(reader, report) for reader in readers))
    by_cid: dict[str, dict[str, dict[str, Any]]] = {}
    for state, _ in states:
        by_cid.update(state)
    result = judge_records(report.records, by_cid)
    result.orders_listed = sum(listed for _, listed in states)
    return result


def check_orders(report: LoadReport, gateway_url: str, credentials: Sequence[Credentials | Mapping[str, Any]], *,
                 page_limit: int = PAGE_LIMIT_MAX) -> CheckResult:  # fmt: skip
    """Reads the final state through `gateway_url` and checks every record of `report` against
    it (see the module doc); `page_limit` is the page size of the lists (1-100). Blocking; use
    `check_orders_async` inside an event loop."""
    return asyncio.run(check_orders_async(report, gateway_url, credentials, page_limit=page_limit))


async def _account_state(reader: StateReader, report: LoadReport) -> tuple[dict[str, dict[str, dict[str, Any]]], int]:
    """(clOrdId -> {ordId: order} for the account's places, from the lists and the lookups;
    how many of those orders the lists held)."""
    account = reader.creds.account
    ours = {r.client_order_id for r in report.records if r.account == account and r.kind == PLACE}
    by_cid: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    listed = 0
    for order in await reader.all_orders(report.instrument):
        if order.get("clOrdId") in ours:
            listed += order["ordId"] not in by_cid[order["clOrdId"]]
            by_cid[order["clOrdId"]][order["ordId"]] = order
    gate = asyncio.Semaphore(LOOKUPS_IN_FLIGHT_MAX)

    async def lookup(cid: str) -> None:
        async with gate:
            order = await reader.order_by_client_id(report.instrument, cid)
        if order is not None:
            by_cid[cid].setdefault(order["ordId"], order)

    await asyncio.gather(*(lookup(cid) for cid in sorted(ours)))
    return {cid: by_cid.get(cid, {}) for cid in ours}, listed


def judge_records(records: Sequence[OrderRecord], by_cid: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> CheckResult:
    """The findings of the records against the exchange's orders (clOrdId -> {ordId: order})."""
    result = CheckResult()
    cancels_of: dict[int, list[OrderRecord]] = defaultdict(list)
    for record in records:
        if record.kind == CANCEL and record.target_op is not None:
            cancels_of[record.target_op].append(record)
    duplicated: set[str] = set()
    for record in records:
        if record.kind != PLACE:
            continue
        result.places_checked += 1
        found = by_cid.get(record.client_order_id, {})
        _check_place(result, record, found, duplicated)
        if found:
            _check_state(result, record, found, cancels_of.get(record.op, []))
    result.duplicate_executions = len(duplicated)
    result.cancels_ok = not any(f.kind == "cancel_not_applied" for f in result.findings)
    return result


def _add(result: CheckResult, kind: str, record: OrderRecord, detail: str) -> None:
    where = f"op {record.op} (account {record.account})"
    result.findings.append(Finding(kind, record.client_order_id, f"{where}: {detail}"))


def _check_place(result: CheckResult, record: OrderRecord, found: Mapping[str, Mapping[str, Any]],
                 duplicated: set[str]) -> None:  # fmt: skip
    if len(found) > 1:
        duplicated.add(record.client_order_id)
        _add(result, "duplicate_execution", record, f"one clOrdId, orders {sorted(found)}")
    if len(set(record.ord_ids_seen)) > 1:
        duplicated.add(record.client_order_id)
        _add(result, "duplicate_execution", record, f"the answers named orders {record.ord_ids_seen}")
    for order in found.values():
        if Decimal(order.get("accFillSz") or "0") > Decimal(order["sz"]):
            duplicated.add(record.client_order_id)
            _add(result, "duplicate_execution", record, f"order {order['ordId']} filled {order['accFillSz']} "
                 f"of {order['sz']}")  # fmt: skip
    if record.outcome == ACKED:
        problem = _acked_problem(record, found)
        if problem:
            result.acked_lost += 1
            _add(result, "acked_lost", record, problem)
    elif record.outcome == UNKNOWN:
        if found:
            result.unknown_resolved += 1
        else:
            result.unknown_absent += 1
    elif record.outcome == REJECTED and found:
        result.rejected_but_present += 1
        _add(result, "rejected_but_present", record, f"rejected ({record.s_code}) but orders {sorted(found)} exist")


def _acked_problem(record: OrderRecord, found: Mapping[str, Mapping[str, Any]]) -> str:
    if not found:
        return f"acknowledged as order {record.ord_id}, unknown to the exchange"
    order = found.get(record.ord_id)
    if order is None:
        return f"acknowledged as order {record.ord_id}, the exchange has {sorted(found)} for its clOrdId"
    differ = [f"{name} sent {record.params.get(name)!r}, held {order.get(name)!r}" for name in COMPARED_FIELDS
              if not _same(name, record.params.get(name), order.get(name))]  # fmt: skip
    return "; ".join(differ)


def _same(name: str, sent: Any, held: Any) -> bool:
    if name in NUMERIC_FIELDS:
        try:
            return Decimal(str(sent)) == Decimal(str(held))
        except ArithmeticError:
            return False
    return bool(sent == held)


def _check_state(result: CheckResult, record: OrderRecord, found: Mapping[str, Mapping[str, Any]],
                 cancels: list[OrderRecord]) -> None:  # fmt: skip
    """The state of the order the place made (the acknowledged one, else any) against the
    cancels that named it; cancels count towards `cancels_checked`."""
    order = found.get(record.ord_id) or next(iter(found.values()))
    state = str(order.get("state"))
    acked = [c for c in cancels if c.outcome == ACKED]
    maybe = [c for c in cancels if c.outcome == UNKNOWN]
    result.cancels_checked += len(acked)
    if state == "canceled":
        result.unknown_resolved += len(maybe)
    else:
        result.unknown_absent += len(maybe)
    expected = {"canceled"} if acked else {"live", "canceled"} if maybe else {"live"}
    filled = Decimal(order.get("accFillSz") or "0")
    if acked and state != "canceled":
        _add(result, "cancel_not_applied", record, f"cancel op {acked[0].op} was acknowledged, order "
             f"{order['ordId']} is {state}")  # fmt: skip
    elif state not in expected or filled != 0:
        result.state_mismatches += 1
        _add(result, "state_mismatch", record, f"order {order['ordId']} is {state} with {filled} filled, expected "
             f"{' or '.join(sorted(expected))} with nothing filled")  # fmt: skip
