"""The reopening drill, `pyexchange drill reopen`: halt, the reopening plan and a reconnect storm
on a fresh local cluster under load, then the checks; one JSON verdict.

One run, on a fresh cluster (`drill.LocalCluster`) whose config (`config_text`) has a short
`[reopen]` plan and an admission ramp scaled to the normal rate:
1. a continuous trade at the load's reference price (the auction's band is measured from it);
2. a steady, seeded order load through every zone's gateway (`chaos.load.OrderLoad`), and a
   few resting orders placed beside it, to be canceled during the storm;
3. every instrument halted through the operator API of the leader's zone; then the reopening
   plan started there, seeded (the leader's gateway runs it and restarts the ramp, which
   admits new orders only in the leader's zone). In each phase one probe that the phase
   forbids must be refused with its OKX code (`PROBES`); in the call auction a crossing pair
   rests, so the uncross has volume;
4. the moment continuous trading resumes, the storm (`chaos.storm`): `storm_clients` clients at
   `storm_multiplier` times the normal rate, each refusal retried after its Retry-After with
   the same clOrdId, while one client cancels the resting orders throughout, and the zones'
   RSS is sampled;
5. the load ends, every zone catches up, and every order is checked against each zone's final
   state (`chaos.checker`); the replicas must agree (same seq and state hash) and keep their
   invariants.

The verdict holds the phases (planned and measured), the auction (price and volume per
instrument that uncrossed, extensions), the probes, the storm's figures, the load's figures
and the checks; `ok` is all the checks. Every order of the load, the resting set and the
storm is planned from `seed` (the plan's seed draws the auction's end): a run replays.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from pyexchange import config as config_module
from pyexchange.accounts import Credentials
from pyexchange.chaos import storm as storm_clients
from pyexchange.chaos.checker import CheckResult, check_orders_async
from pyexchange.chaos.load import ACKED, REJECTED, LoadReport, OrderLoad, OrderRecord, credentials_of, signed_headers
from pyexchange.cluster import local
from pyexchange.cluster.drill import LocalCluster, load_figures, verdict, warm_up

INSTRUMENT = "BTC-USDT"  # the load's, the storm's and the auction's
REFERENCE_PX = "30000"  # the load's reference price: its buys rest below it, its sells above
TRADE_SZ = "0.001"  # the continuous trade that sets the reference price
AUCTION_SZ = "0.01"  # each side of the crossing pair of the call auction, at REFERENCE_PX
PROBE_PX = "29000"  # below every buy of the load: a probe let in by mistake rests and never trades
# What each state forbids, and the code it is refused with: the drill's probe in that phase.
PROBES = {
    "halted": ("limit", "51022"),
    "cancel_only": ("post_only", "51022"),
    "pre_open": ("limit", "51110"),
    "call_auction": ("ioc", "51124"),
}
PHASE_STATES = ("halted", "cancel_only", "pre_open", "call_auction", "continuous")
STATE_POLL_S = 0.05
REOPEN_SLACK_S = 30.0  # past the plan's length, how long the drill waits for continuous trading
REQUEST_TIMEOUT_S = 10.0
STORM_FIRST_OP = 1_000_000  # the storm's ops (resting set, places, cancels) are numbered from here


@dataclass(frozen=True)
class ReopenPlan:
    """One run of the drill: its seed, the cluster, the rates, how long each part lasts, and
    the storm's bounds. The `[reopen]` plan and the ramp go into the cluster's config."""

    seed: int = 1
    zones: int = 3
    accounts: int = 5
    rate_per_s: float = 10.0  # the normal rate: the load's and the resting orders'; the storm is a multiple
    resting_orders: int = 20
    before_halt_s: float = 1.0
    halted_s: float = 1.0
    phases: tuple[tuple[str, float], ...] = (("cancel_only", 2.0), ("pre_open", 2.0), ("call_auction", 3.0))
    auction_random_end_s: float = 1.0
    auction_band_bps: int = 1000
    auction_extension_s: float = 1.0
    storm_multiplier: int = 10
    storm_clients: int = 50
    storm_s: float = 2.0
    after_storm_s: float = 1.0
    # Bounds of the storm. The gateway's own bound on any answer is admission.reply_timeout_ms
    # (5 s); the accepted orders' and the refusals' p99 stay under four times
    # admission.queue_delay_ms_max (the bench's "overloaded" p99).
    accepted_p99_ms_max: float = 1000.0
    refused_p99_ms_max: float = 1000.0
    rss_mib_max: float = 400.0

    def __post_init__(self) -> None:
        assert self.rate_per_s > 0 and self.storm_multiplier >= 1 and self.storm_clients >= 1 and self.storm_s > 0
        assert self.zones >= 1 and self.accounts >= 2, "the crossing pair needs two accounts"

    @property
    def storm_rate_per_s(self) -> float:
        return self.storm_multiplier * self.rate_per_s

    @property
    def ramp_orders_per_s(self) -> list[list[int]]:
        """The admission ramp, scaled to the normal rate r: 2.5 r at the start, 7.5 r at 2 s,
        15 r at 4 s (its end), so a storm of 10 r meets it and is let in within a few seconds."""
        r = self.rate_per_s
        return [[0, math.ceil(2.5 * r)], [2, math.ceil(7.5 * r)], [4, math.ceil(15 * r)]]

    @property
    def ramp_burst_orders(self) -> int:
        return max(1, math.ceil(self.rate_per_s / 2))

    @property
    def load_s(self) -> float:
        """The load runs through the halt, the whole plan and the storm."""
        plan_s = sum(seconds for _, seconds in self.phases)
        return self.before_halt_s + self.halted_s + plan_s + self.storm_s + self.after_storm_s


def config_text(plan: ReopenPlan) -> str:
    """The built-in config with the plan's `[reopen]`, admission ramp and demo accounts."""
    text = resources.files("pyexchange").joinpath(config_module.DEFAULT_CONFIG).read_text()
    reopen = "\n".join([f"phases = {json.dumps([list(p) for p in plan.phases])}",
                        f"auction_random_end_s = {plan.auction_random_end_s}",
                        f"auction_band_bps = {plan.auction_band_bps}",
                        f"auction_extension_s = {plan.auction_extension_s}"])  # fmt: skip
    text = _replace_table(text, "reopen", reopen)
    values = {"ramp_orders_per_s": json.dumps(plan.ramp_orders_per_s), "ramp_burst_orders": str(plan.ramp_burst_orders),
              "accounts": str(plan.accounts)}  # fmt: skip
    for key, value in values.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
        assert count == 1, f"the built-in config has {count} lines {key} = ..."
    return text


def _replace_table(text: str, table: str, body: str) -> str:
    start = text.index(f"\n[{table}]\n") + len(f"\n[{table}]\n")
    end = text.index("\n[", start)
    return text[:start] + body + "\n" + text[end:]


@dataclass
class Timeline:
    """What the drill saw while it drove the markets."""

    halted_ms: int = 0  # wall clock: the halt was answered
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # by state
    states_seen: list[str] = field(default_factory=list)  # the instrument's states, in order
    crossing: list[str] = field(default_factory=list)  # the crossing pair's sCodes
    indicative: dict[str, str] = field(default_factory=dict)  # the call's uncross after the pair
    reopening: dict[str, Any] = field(default_factory=dict)  # the leader's record of the plan


class Operator:
    """The drill's hands on one gateway: the operator API, and signed order entry for probes."""

    def __init__(self, http: httpx.AsyncClient, gateway: str, token: str, creds: list[Credentials]) -> None:
        self.http, self.gateway, self.token, self.creds = http, gateway, token, creds

    async def market(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST `body` to /operator/v1/market (GET without one); its `data[0]`."""
        headers = {"Authorization": f"Bearer {self.token}"}
        url = f"{self.gateway}/operator/v1/market"
        answer = await (self.http.get(url, headers=headers) if body is None else
                        self.http.post(url, json=body, headers=headers))  # fmt: skip
        doc = answer.json()
        if doc.get("code") != "0":
            raise RuntimeError(f"the operator API refused {body}: {doc}")
        data: dict[str, Any] = doc["data"][0]
        return data

    async def place(self, n: int, side: str, ord_type: str, px: str, sz: str) -> str:
        """A place by account `n` of the credentials; its sCode."""
        body = json.dumps({"instId": INSTRUMENT, "tdMode": "cash", "side": side, "ordType": ord_type, "px": px,
                           "sz": sz})  # fmt: skip
        path = "/api/v5/trade/order"
        answer = await self.http.post(self.gateway + path, content=body,
                                      headers=signed_headers(self.creds[n], "POST", path, body))  # fmt: skip
        doc = answer.json()
        return str(doc["data"][0]["sCode"] if doc.get("data") else doc.get("code"))


def _state_of(market: dict[str, Any]) -> str:
    return str(next(m["marketState"] for m in market["markets"] if m["instId"] == INSTRUMENT))


async def _probe(ops: Operator, state: str, timeline: Timeline) -> None:
    """Sends what `state` forbids; it must be refused with the state's code. An answer that
    came after the phase ended proves nothing either way (`raced`)."""
    ord_type, expected = PROBES[state]
    got = await ops.place(0, "buy", ord_type, PROBE_PX, TRADE_SZ)
    raced = got != expected and _state_of(await ops.market()) != state
    timeline.probes[state] = {"ordType": ord_type, "expected": expected, "got": got, "raced": raced,
                              "ok": got == expected or raced}  # fmt: skip


async def _on_state(ops: Operator, state: str, timeline: Timeline) -> None:
    timeline.states_seen.append(state)
    if state in PROBES:
        await _probe(ops, state, timeline)
    if state == "call_auction":  # a crossing pair from two accounts (no self-trade): the uncross's volume
        timeline.crossing = [await ops.place(0, "buy", "limit", REFERENCE_PX, AUCTION_SZ),
                             await ops.place(1, "sell", "limit", REFERENCE_PX, AUCTION_SZ)]  # fmt: skip
        market = await ops.market()
        row = next(m for m in market["markets"] if m["instId"] == INSTRUMENT)
        timeline.indicative = {"eqPx": row["eqPx"], "matchedSz": row["matchedSz"], "unmatchedSz": row["unmatchedSz"]}


async def _reopen(ops: Operator, plan: ReopenPlan, timeline: Timeline) -> None:
    """Halts every instrument, waits, starts the plan and follows it until the instrument
    trades continuously again, probing each phase."""
    await ops.market({"action": "halt", "all": True})
    timeline.halted_ms = time.time_ns() // 1_000_000
    await _until(ops, lambda market: _state_of(market) == "halted", REOPEN_SLACK_S, "halted")
    await _on_state(ops, "halted", timeline)
    await asyncio.sleep(max(0.0, timeline.halted_ms / 1000 + plan.halted_s - time.time()))
    await ops.market({"action": "reopen", "all": True, "seed": plan.seed})

    def moved_on(market: dict[str, Any]) -> bool:
        return _state_of(market) != timeline.states_seen[-1]

    deadline_s = sum(seconds for _, seconds in plan.phases) + REOPEN_SLACK_S
    while timeline.states_seen[-1] != "continuous":
        await _on_state(ops, _state_of(await _until(ops, moved_on, deadline_s, "continuous trading")), timeline)


async def _until(ops: Operator, done: Callable[[dict[str, Any]], bool], timeout_s: float, what: str) -> dict[str, Any]:
    """Polls the operator's market view until `done` holds; that view."""
    deadline = time.monotonic() + timeout_s
    while not done(market := await ops.market()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{INSTRUMENT} did not reach {what} within {timeout_s:.0f} s: {market}")
        await asyncio.sleep(STATE_POLL_S)
    return market


@dataclass
class StormRun:
    storm: storm_clients.Storm
    resting: list[OrderRecord]
    places: list[OrderRecord] = field(default_factory=list)
    cancels: list[OrderRecord] = field(default_factory=list)
    started_ns: int = 0
    ended_ns: int = 0

    @property
    def records(self) -> list[OrderRecord]:
        return self.resting + self.places + self.cancels


async def _storm(cluster: LocalCluster, plan: ReopenPlan, run: StormRun) -> None:
    """The reconnect storm, the moment trading resumes (see the module doc)."""
    urls = [z.gateway for z in cluster.zones]
    first_op = STORM_FIRST_OP + len(run.resting)
    _, run.places, due_s = storm_clients.plan_places(cluster.credentials, plan.storm_rate_per_s, plan.storm_s,
                                                     plan.seed + 2, first_op, instrument=INSTRUMENT)  # fmt: skip
    run.cancels = storm_clients.cancels_of(run.resting, first_op + len(run.places))
    every_s = plan.storm_s / max(1, len(run.cancels))  # spread over the storm
    run.started_ns = time.monotonic_ns()
    pids = [z.pid for z in cluster.zones if z.pid is not None]
    await storm_clients.run(urls, run.places, due_s, run.cancels, run.storm, clients=plan.storm_clients,
                            cancel_every_s=every_s, pids=pids)  # fmt: skip
    run.ended_ns = time.monotonic_ns()


async def _drive(cluster: LocalCluster, plan: ReopenPlan, leader: str, token: str) -> tuple[
        LoadReport, Timeline, StormRun]:  # fmt: skip
    """Steps 2 to 4 of the module doc, through the `leader` gateway's operator API."""
    urls = [z.gateway for z in cluster.zones]
    creds = credentials_of(cluster.credentials)
    load = OrderLoad(urls, creds, instrument=INSTRUMENT, rate_per_s=plan.rate_per_s, duration_s=plan.load_s,
                     seed=plan.seed, reference_price=REFERENCE_PX)  # fmt: skip
    _, resting, due_s = storm_clients.plan_places(creds, plan.rate_per_s, plan.resting_orders / plan.rate_per_s,
                                                  plan.seed + 1, STORM_FIRST_OP, instrument=INSTRUMENT)  # fmt: skip
    run = StormRun(storm_clients.Storm.of(creds), resting[: plan.resting_orders])
    run_resting = storm_clients.Storm.of(creds)  # the resting set's answers: not the storm's
    timeline = Timeline()
    started = time.monotonic()
    loading = asyncio.create_task(load.run())
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
        ops = Operator(http, leader, token, creds)
        await storm_clients.open_loop(urls, run.resting, due_s[: len(run.resting)], run_resting, len(creds))
        await asyncio.sleep(max(0.0, started + plan.before_halt_s - time.monotonic()))
        await _reopen(ops, plan, timeline)
        await _storm(cluster, plan, run)
        market = await _until(ops, lambda m: bool(m["reopening"]["done"]), REOPEN_SLACK_S, "the plan's end")
        timeline.reopening = market["reopening"]
    return await loading, timeline, run


def _continuous_trade(cluster: LocalCluster, gateway: str) -> None:
    """One trade at the reference price (two accounts), so the auction's band has a reference."""
    creds = credentials_of(cluster.credentials)
    path = "/api/v5/trade/order"
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        for n, side in ((0, "buy"), (1, "sell")):
            body = json.dumps({"instId": INSTRUMENT, "tdMode": "cash", "side": side, "ordType": "limit",
                               "px": REFERENCE_PX, "sz": TRADE_SZ})  # fmt: skip
            doc = http.post(gateway + path, content=body, headers=signed_headers(creds[n], "POST", path, body)).json()
            if doc["data"][0]["sCode"] != "0":
                raise RuntimeError(f"the reference trade was refused: {doc}")


def _phases(timeline: Timeline, plan: ReopenPlan) -> list[dict[str, Any]]:
    """Each state the instrument went through: planned and measured length (ms)."""
    recorded = timeline.reopening.get("phases", [])
    first_ms = recorded[0]["beginMs"] if recorded else timeline.halted_ms
    halted_ms = first_ms - timeline.halted_ms
    rows = [{"state": "halted", "planned_ms": round(plan.halted_s * 1000), "duration_ms": halted_ms}]
    rows += [{"state": p["state"], "planned_ms": round(p["plannedS"] * 1000), "duration_ms": p["endMs"] - p["beginMs"]}
             for p in recorded]  # fmt: skip
    return rows


def _auction(timeline: Timeline) -> dict[str, Any]:
    phases: list[dict[str, Any]] = timeline.reopening.get("phases", [])
    none: dict[str, Any] = {"uncross": {}, "extensions": 0}
    call = next((p for p in phases if p["state"] == "call_auction"), none)
    opened = next((p for p in phases if p["state"] == "continuous"), none)  # an uncross without an auction
    uncrossed = {**opened["uncross"], **call["uncross"]}
    return {"uncrossed": uncrossed, "extensions": call["extensions"], "seed": timeline.reopening.get("seed"),
            "crossing_pair": timeline.crossing, "indicative": timeline.indicative}  # fmt: skip


def _storm_figures(cluster: LocalCluster, plan: ReopenPlan, run: StormRun, alive: bool) -> dict[str, Any]:
    rss_kib = run.storm.rss_kib
    return {
        "resting_placed": sum(r.outcome == ACKED for r in run.resting),
        "clients": plan.storm_clients, "multiplier": plan.storm_multiplier,
        "offered_rate_per_s": plan.storm_rate_per_s, "duration_s": plan.storm_s,
        "all_placed_s": round((run.ended_ns - run.started_ns) / 1e9, 2),
        "ramp_orders_per_s": plan.ramp_orders_per_s, "ramp_burst_orders": plan.ramp_burst_orders,
        **storm_clients.figures(run.storm, run.places, run.cancels), "zones_alive": alive,
        "rss_mib_peak_by_zone": {z.zone: round(max(rss_kib.get(z.pid or 0, [0])) / 1024, 1) for z in cluster.zones},
    }  # fmt: skip


def _rejected_by_code(report: LoadReport) -> dict[str, int]:
    """The load's definite rejections by sCode: the halt and the phases refuse its orders."""
    codes = [r.s_code for r in report.records if r.outcome == REJECTED]
    return {code: codes.count(code) for code in sorted(set(codes))}


def _checks(result: dict[str, Any], plan: ReopenPlan, run: StormRun) -> dict[str, bool]:
    storm, auction = result["storm"], result["auction"]
    uncross = auction["uncrossed"].get(INSTRUMENT, {"px": "0", "sz": "0"})
    return {
        "phases_in_order": [p["state"] for p in result["phases"]] == list(PHASE_STATES),
        "probes_refused": len(result["probes"]) == len(PROBES) and all(p["ok"] for p in result["probes"].values()),
        "auction_uncrossed": (Decimal(uncross["px"]), Decimal(uncross["sz"])) == (Decimal(REFERENCE_PX),
                                                                                  Decimal(AUCTION_SZ)),
        "storm_refusals_429_50011": storm["refusals_429_50011_retry_after"] and storm["odd_answers"] == 0,
        "storm_all_placed": storm["accepted"] == storm["places"],
        "storm_cancels_ok": storm["resting_placed"] == storm["cancels_ok"] == plan.resting_orders
                            and all(r.attempts == 1 for r in run.cancels),
        "storm_accepted_p99": storm["accepted_ms_p99"] <= plan.accepted_p99_ms_max,
        "storm_refused_p99": storm["refused_ms_p99"] <= plan.refused_p99_ms_max,
        "storm_rss": storm["rss_mib_peak"] <= plan.rss_mib_max,
        "zones_alive": storm["zones_alive"],
        "nothing_lost": result["acked_lost"] == 0,
        "nothing_twice": result["duplicate_executions"] == 0,
        "states_as_expected": result["state_mismatches"] == 0 and result["rejected_but_present"] == 0,
        "replicas_agree": result["replicas_agree"],
        "invariants_ok": result["invariants_ok"],
    }  # fmt: skip


def _check_everywhere(report: LoadReport, cluster: LocalCluster) -> list[CheckResult]:
    async def every_zone() -> list[CheckResult]:
        return list(await asyncio.gather(*(check_orders_async(report, z.gateway, cluster.credentials)
                                           for z in cluster.zones)))  # fmt: skip

    return asyncio.run(every_zone())


class Stopwatch:
    """Seconds spent in each part of the drill, for the verdict."""

    def __init__(self) -> None:
        self.laps_s: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps_s[name] = round(now - self._last, 2)
        self._last = now


def drill_on(cluster: LocalCluster, plan: ReopenPlan) -> dict[str, Any]:
    """The drill on a fresh, running cluster started with `config_text(plan)`; its verdict."""
    from pyexchange.gateway.operator import operator_token

    clock = Stopwatch()
    leader_before = local.wait_ready(cluster.zones)
    warm_up(cluster)
    leader = cluster.leader().gateway
    _continuous_trade(cluster, leader)
    clock.lap("ready")
    load_report, timeline, run = asyncio.run(_drive(cluster, plan, leader, operator_token(cluster.root / "shared")))
    clock.lap("drive")
    alive = all(local.alive(z.pid) for z in cluster.zones if z.pid is not None)
    leader_after = local.wait_ready(cluster.zones)
    states = cluster.wait_caught_up()
    clock.lap("catch_up")
    checked = replace(load_report, records=load_report.records + run.records)
    checks = _check_everywhere(checked, cluster)
    clock.lap("check")
    result: dict[str, Any] = {
        "drill": "reopen", "seed": plan.seed, "zones": plan.zones, "network": cluster.network,
        "leader_before": leader_before, "leader_after": leader_after,
        "phases": _phases(timeline, plan), "states_seen": timeline.states_seen, "auction": _auction(timeline),
        "probes": timeline.probes,
        "storm": _storm_figures(cluster, plan, run, alive),
        "load": {**load_figures(load_report), "rejected_by_code": _rejected_by_code(load_report)},
        "orders_checked": checks[0].places_checked if checks else 0,
        **verdict(checks, states, plan.zones),
        "rejected_but_present": max(c.rejected_but_present for c in checks),
        "timings_s": clock.laps_s,
    }  # fmt: skip
    result["checks"] = _checks(result, plan, run)
    result["ok"] = all(result["checks"].values())
    return result


def run(plan: ReopenPlan, root: Path | None = None, *, network: str = "auto") -> dict[str, Any]:
    """The drill on a fresh cluster in `root` (a temporary directory if None, removed
    afterwards); its verdict, with `wall_s`, the whole run's time."""
    clock = Stopwatch()
    owned = root is None
    root = Path(tempfile.mkdtemp(prefix="pyexchange-reopen-")) if root is None else root
    try:
        root.mkdir(parents=True, exist_ok=True)
        config = root / "exchange.toml"
        config.write_text(config_text(plan))
        config_module.load(config)  # a bad plan is refused here, naming the key
        with LocalCluster(root, plan.zones, network=network, config_path=str(config)) as cluster:
            clock.lap("start")
            result = drill_on(cluster, plan)
            clock.lap("drill")
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
    clock.lap("stop")
    result["timings_s"] = {"start": clock.laps_s["start"], **result["timings_s"], "stop": clock.laps_s["stop"]}
    result["wall_s"] = round(sum(clock.laps_s.values()), 1)
    return result
