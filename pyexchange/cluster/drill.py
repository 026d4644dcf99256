"""Fault drills on a fresh local cluster: `pyexchange drill zone-loss` and the fault suite.

One round: a steady, seeded order load through every zone's gateway from clients that record
each acknowledgement (`chaos.load.OrderLoad`); at a seeded moment a fault; the load goes on;
the fault is repaired (the zone restarted, resumed or reconnected); the load ends; every zone
catches up; then the verdict, one JSON object:

- `rto_ms`: from the fault to the first acknowledgement of an order *sent after* it (an answer
  already on its way does not count as recovery); `first_ack_after_fault_ms` counts any.
- `acked_lost`, `duplicate_executions`, `state_mismatches`: from the final state, read through
  the REST API of every zone (`chaos.checker`); `replicas_agree`: every zone has the same seq
  and state hash; `invariants_ok`: each replica's own invariant check.
- the load figures, what happened (the zone hit, which zone led before and after), and the
  incidents the orchestrator (`supervisor`, watching, leaving repairs to the drill) recorded.

Faults (`FAULTS`): `kill-leader` (SIGKILL to every process of the leader's zone, restart after
`down_s`), `wipe-leader` (the same, restarted with an empty data dir), `kill-follower`,
`pause-leader` (SIGSTOP for `pause_s`, then SIGCONT: it must step down and rejoin),
`partition-leader` (cut off from the other zones for `down_s`: network namespaces when root,
a fault-injecting proxy between zones otherwise), `transfer` (planned leadership transfer;
`transfer_ms` is how long it took).

`ok` is false if anything was lost or executed twice, the replicas disagree, or an invariant
is broken. `--seed` replays a round: the plan of orders, the moment of the fault and the zone
it hits come from it. Several rounds may share one cluster (`rounds`), each with its own seed.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from pyexchange.chaos.checker import CheckResult, check_orders
from pyexchange.chaos.load import LoadReport, OrderLoad
from pyexchange.chaos.netns import NetworkLab
from pyexchange.chaos.proxy import ProxyMesh
from pyexchange.cluster import FAULTS, local
from pyexchange.cluster.supervisor import Supervisor, SupervisorPolicy

CATCH_UP_TIMEOUT_S = 60.0
TRANSFER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DrillPlan:
    fault: str = "kill-leader"
    seed: int = 1
    zones: int = 3
    rate_per_s: float = 100.0
    before_fault_s: float = 3.0
    fault_jitter_s: float = 1.0  # a seeded part of it added, so the fault lands anywhere in a batch
    down_s: float = 3.0
    pause_s: float = 5.0
    after_repair_s: float = 3.0

    @property
    def duration_s(self) -> float:
        outage_s = self.pause_s if self.fault == "pause-leader" else self.down_s
        return self.before_fault_s + self.fault_jitter_s + outage_s + self.after_repair_s


class LocalCluster:
    """Zone processes of a drill on this machine, and the means to hurt them."""

    def __init__(self, root: Path, zones: int, *, network: str = "auto", config_path: str | None = None) -> None:
        """`network`: "netns" (each zone in its own network namespace; root only), "proxy"
        (loopback, zones dial each other through fault-injecting proxies), or "auto".
        `config_path`: the exchange's TOML config for every zone (default: the built-in one)."""
        if network == "auto":
            network = "netns" if NetworkLab.available()[0] else "proxy"
        self.root, self.network, self.config_path = root, network, config_path
        self.lab: NetworkLab | None = None
        self.mesh: ProxyMesh | None = None
        self.credentials = local.prepare_shared(root / "shared", config_path)
        try:
            self.zones = self._start(zones)
        except BaseException:
            self.close()
            raise

    def _start(self, count: int) -> list[local.ZoneProcess]:
        hosts, dial = None, None
        prefixes: dict[int, tuple[str, ...]] = {z: () for z in range(1, count + 1)}
        if self.network == "netns":
            self.lab = NetworkLab([str(z) for z in range(1, count + 1)])
            hosts = {z: self.lab.address(str(z)) for z in range(1, count + 1)}
            prefixes = {z: tuple(self.lab.command(str(z), [])) for z in range(1, count + 1)}
        members = local.plan_members(count, hosts=hosts)
        if self.network == "proxy":
            raft = {str(m.zone): _address(m.raft_addr) for m in members}
            self.mesh = ProxyMesh(raft)
            dial = {int(z): {int(p): f"{h}:{port}" for p, (h, port) in peers.items()}
                    for z, peers in self.mesh.start().items()}  # fmt: skip
        files = local.write_zone_files(self.root, members, self.config_path, dial=dial)
        return [local.start_zone(f, prefixes[f.zone]) for f in files]

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for zone in getattr(self, "zones", []):
            local.kill_zone(zone)
            local.kill_zone(zone, signal.SIGCONT)  # a paused zone must die too
        if self.mesh is not None:
            self.mesh.stop()
        if self.lab is not None:
            self.lab.close()

    def supervisor(self) -> Supervisor:
        """An orchestrator that watches and records, but leaves restarts to the drill."""
        from pyexchange.gateway.operator import operator_token

        policy = SupervisorPolicy(restart=False)
        return Supervisor(self.root, self.zones, policy, operator_token(self.root / "shared"))

    def zone(self, zone_id: int) -> local.ZoneProcess:
        return next(z for z in self.zones if z.zone == zone_id)

    def leader(self) -> local.ZoneProcess:
        return local.leader_of(self.zones)

    def followers(self) -> list[local.ZoneProcess]:
        leader = self.leader()
        return [z for z in self.zones if z.zone != leader.zone]

    def restart(self, zone: local.ZoneProcess, *, wipe: bool = False) -> None:
        local.kill_zone(zone)
        if wipe:
            shutil.rmtree(zone.config.parent / "data", ignore_errors=True)
        self.zones[self.zones.index(zone)] = local.start_zone(zone)

    def partition(self, zone: local.ZoneProcess) -> None:
        if self.lab is not None:
            self.lab.partition(str(zone.zone))
        elif self.mesh is not None:
            self.mesh.partition(str(zone.zone))
        else:
            raise RuntimeError("this cluster has no way to cut the network")

    def heal(self, zone: local.ZoneProcess) -> None:
        if self.lab is not None:
            self.lab.heal(str(zone.zone))
        elif self.mesh is not None:
            self.mesh.heal_all()

    def transfer(self, to: local.ZoneProcess) -> float:
        """Moves leadership to `to`; the time from asking until `to` leads, in ms."""
        from pyexchange.gateway.operator import operator_token

        started = time.monotonic()
        local.post_json(f"{self.leader().gateway}/cluster/v1/transfer", {"to": to.zone},
                        operator_token(self.root / "shared"))  # fmt: skip
        while (status := local.zone_status(to)) is None or status["raft"]["role"] != "leader":
            if time.monotonic() - started > TRANSFER_TIMEOUT_S:
                raise RuntimeError(f"zone {to.zone} did not take the lead within {TRANSFER_TIMEOUT_S:.0f} s")
            time.sleep(0.002)
        return (time.monotonic() - started) * 1000

    def states(self) -> list[dict[str, Any]]:
        return [local.get_json(f"{z.gateway}/cluster/v1/state", timeout_s=10.0) for z in self.zones]

    def wait_caught_up(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> list[dict[str, Any]]:
        """Waits until every zone answers with the same seq (the load has ended); their states."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                states = self.states()
            except OSError:
                states = []
            if states and len({s["seq"] for s in states}) == 1:
                return states
            if time.monotonic() >= deadline:
                return states
            time.sleep(0.05)


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def _inject(plan: DrillPlan, cluster: LocalCluster, rng: random.Random) -> dict[str, Any]:
    """Waits, applies the plan's fault, repairs it; what happened."""
    await asyncio.sleep(plan.before_fault_s + plan.fault_jitter_s * rng.random())
    leader = await asyncio.to_thread(cluster.leader)
    target = leader
    if plan.fault in ("kill-follower", "transfer"):
        followers = [z for z in cluster.zones if z.zone != leader.zone]
        target = followers[rng.randrange(len(followers))]
    happened: dict[str, Any] = {"fault": plan.fault, "zone_hit": target.zone, "fault_ns": time.monotonic_ns()}
    if plan.fault == "transfer":
        happened["transfer_ms"] = round(await asyncio.to_thread(cluster.transfer, target), 1)
    elif plan.fault == "pause-leader":
        local.kill_zone(target, signal.SIGSTOP)
        await asyncio.sleep(plan.pause_s)
        local.kill_zone(target, signal.SIGCONT)
    elif plan.fault == "partition-leader":
        cluster.partition(target)
        await asyncio.sleep(plan.down_s)
        cluster.heal(target)
    else:  # kill-leader, wipe-leader, kill-follower
        local.kill_zone(target)
        await asyncio.sleep(plan.down_s)
        cluster.restart(target, wipe=plan.fault == "wipe-leader")
    return happened


def load_figures(report: LoadReport) -> dict[str, Any]:
    return {
        "offered_rate_per_s": round(report.offered_rate_per_s, 1),
        "achieved_rate_per_s": round(report.achieved_rate_per_s, 1),
        "sent": report.sent, "acked": report.acked, "rejected": report.rejected, "unknown": report.unknown,
        "retries": report.retries, "latency_ms_p50": round(report.latency_ms_p50, 2),
        "latency_ms_p99": round(report.latency_ms_p99, 2), "latency_ms_max": round(report.latency_ms_max, 2),
    }  # fmt: skip


def warm_up(cluster: LocalCluster) -> None:
    """One signed request per API key at every zone, before the clock runs: a zone checks a
    key's passphrase (scrypt, slow on purpose) once, and a real exchange has done so long ago."""
    import httpx

    from pyexchange.chaos.load import credentials_of, signed_headers

    path = "/api/v5/account/balance"
    with httpx.Client(timeout=30.0) as client:
        for zone in cluster.zones:
            for creds in credentials_of(cluster.credentials):
                client.get(zone.gateway + path, headers=signed_headers(creds, "GET", path, "")).raise_for_status()


def round_on(cluster: LocalCluster, plan: DrillPlan) -> dict[str, Any]:
    """One round of `plan` on a running, healthy cluster; its verdict."""
    leader_before = local.wait_ready(cluster.zones)
    warm_up(cluster)
    rng = random.Random(plan.seed)
    load = OrderLoad([z.gateway for z in cluster.zones], cluster.credentials, rate_per_s=plan.rate_per_s,
                     duration_s=plan.duration_s, seed=plan.seed)  # fmt: skip

    async def drive() -> tuple[LoadReport, dict[str, Any]]:
        fault = asyncio.create_task(_inject(plan, cluster, rng))
        report = await load.run()
        return report, await fault

    watcher = cluster.supervisor()
    watching = threading.Thread(target=watcher.run, name="drill-supervisor", daemon=True)
    watching.start()
    try:
        report, happened = asyncio.run(drive())
        leader_after = local.wait_ready(cluster.zones)
    finally:
        watcher.stop.set()
        watching.join()
    states = cluster.wait_caught_up()
    checks = [check_orders(report, z.gateway, cluster.credentials) for z in cluster.zones]
    fault_ns = happened.pop("fault_ns")
    result = {
        "drill": plan.fault, "seed": plan.seed, "zones": plan.zones, "network": cluster.network, **happened,
        "leader_before": leader_before, "leader_after": leader_after,
        "rto_ms": _rounded(report.first_ack_after(fault_ns, attempt_sent_after=True)),
        "first_ack_after_fault_ms": _rounded(report.first_ack_after(fault_ns)),
        **verdict(checks, states, plan.zones),
        "incidents": [{k: v for k, v in i.items() if k != "ts_ms"} for i in watcher.incidents],
        "load": load_figures(report),
    }  # fmt: skip
    result["ok"] = bool(result["acked_lost"] == 0 and result["duplicate_executions"] == 0
                        and result["state_mismatches"] == 0 and result["replicas_agree"]
                        and result["invariants_ok"])  # fmt: skip
    return result


def verdict(checks: list[CheckResult], states: list[dict[str, Any]], zones: int) -> dict[str, Any]:
    """What every drill checks at the end: from each zone's orders (`checks`, the worst zone
    counts) and every zone's state (`states`: all `zones` answered, one seq and state hash,
    invariants held)."""
    hashes = {(s["seq"], s["state_hash"]) for s in states}
    return {
        "acked_lost": max(c.acked_lost for c in checks),
        "duplicate_executions": max(c.duplicate_executions for c in checks),
        "state_mismatches": max(c.state_mismatches for c in checks),
        "replicas_agree": len(states) == zones and len(hashes) == 1,
        "invariants_ok": len(states) == zones and all(s["invariants_ok"] for s in states),
        "seq": states[0]["seq"] if states else None,
    }


def run(plan: DrillPlan, root: Path | None = None, *, rounds: int = 1, network: str = "auto") -> list[dict[str, Any]]:
    """`rounds` rounds of `plan` (seeds plan.seed, plan.seed + 1, ...) on one fresh cluster in
    `root` (a temporary directory if None, removed afterwards)."""
    if plan.fault not in FAULTS:
        raise ValueError(f"unknown fault {plan.fault!r}; the faults are {', '.join(FAULTS)}")
    owned = root is None
    root = Path(tempfile.mkdtemp(prefix="pyexchange-drill-")) if root is None else root
    try:
        with LocalCluster(root, plan.zones, network=network) as cluster:
            return [round_on(cluster, replace(plan, seed=plan.seed + n)) for n in range(rounds)]
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
