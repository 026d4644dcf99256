"""The orchestrator of a local cluster: `pyexchange cluster supervise` (started by `cluster up`).

Every `poll_ms` it asks each zone for its Raft status, and:
- restarts a zone whose process died (after `restart_delay_s`, doubling while it keeps dying,
  up to `restart_delay_s_max`), unless told not to (a drill restarts zones itself);
- records every change of leader as a `failover` incident, with how long no zone led;
- halts trading on every zone it can reach when no zone has led for `quorum_loss_ms` (no
  majority: nothing can be committed, so clients are told so at once instead of waiting);
  this halt is a gateway flag, not a log command, because without a majority no command can
  be logged; a zone that missed it (down, unreachable) is told at the next poll;
- when a leader is back after such a halt, and when the cluster was restarted whole
  (`reopen_on_start`), reopens through the plan: it has the leader's zone halt every
  instrument (sequenced market states, which the gateway flag lets through), lifts the flag,
  and starts the reopening plan there (`[reopen]`: cancel-only, pre-open, call auction,
  continuous; seeded with the leader's term), recording a `reopening` incident; a step that
  fails is tried again at the next poll;
- after a failover, finishes a reopening the old leader's zone was running: instruments the
  new leader shows between halted and continuous (`cancel_only`, `pre_open`, `call_auction`)
  with no reopening under way there go through the plan again from its start (an instrument
  an operator halted stays halted);
- halts trading when a replica reports that it diverged, naming the zone, and keeps it
  halted for as long as it runs (an operator investigates, then restarts the supervisor);
- records a `lagging` incident when a follower stays more than `lag_entries_max` entries
  behind the leader for `lag_ms` (and `caught_up` when it is back).

Incidents go to `<cluster dir>/incidents.jsonl`, one JSON object per line with the wall-clock
time (`ts_ms`), its kind and the zones concerned; the status page issue shows them.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyexchange.cluster import local

INCIDENTS_FILE = "incidents.jsonl"
MID_PLAN_STATES = ("cancel_only", "pre_open", "call_auction")  # only a reopening puts instruments there


@dataclass
class SupervisorPolicy:
    poll_ms: int = 100
    restart: bool = True
    restart_delay_s: float = 0.5
    restart_delay_s_max: float = 10.0
    quorum_loss_ms: int = 2_000
    # A leader no majority has acknowledged for longer than this (the zones' election
    # timeout) leads nothing: it cannot commit.
    lease_ms: int = 300
    lag_entries_max: int = 10_000
    lag_ms: int = 5_000
    # The cluster was restarted whole (`cluster up` on a stopped cluster's directory): reopen
    # through the plan once a zone leads.
    reopen_on_start: bool = False


@dataclass
class _Watch:
    """What the supervisor remembers between polls."""

    leader: int | None = None
    leader_term: int | None = None
    leaderless_since: float | None = None
    halted: str | None = None  # why trading is halted, if it is
    diverged: set[int] = field(default_factory=set)
    lagging_since: dict[int, float] = field(default_factory=dict)
    lagging: set[int] = field(default_factory=set)
    restart_at: dict[int, float] = field(default_factory=dict)
    restart_delay_s: dict[int, float] = field(default_factory=dict)
    reopen_due: str | None = None  # why the markets must go through the reopening plan
    plan_check_due: bool = False  # a failover: did the old leader leave a reopening half done?


class Supervisor:
    """Watches the zones of `root` (see the module doc); `run` until `stop` is set."""

    def __init__(self, root: Path, zones: list[local.ZoneProcess], policy: SupervisorPolicy, token: str) -> None:
        self.root, self.zones, self.policy, self._token = root, zones, policy, token
        self._watch = _Watch(reopen_due="the cluster restarted" if policy.reopen_on_start else None)
        self.incidents: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def record(self, kind: str, **details: Any) -> None:
        incident = {"ts_ms": time.time_ns() // 1_000_000, "kind": kind, **details}
        self.incidents.append(incident)
        with (self.root / INCIDENTS_FILE).open("a") as out:
            out.write(json.dumps(incident) + "\n")

    def run(self) -> None:
        while not self.stop.wait(self.policy.poll_ms / 1000):
            self.poll()

    def poll(self) -> None:
        now = time.monotonic()
        statuses = {z.zone: local.zone_status(z) for z in self.zones}
        if self.policy.restart:
            self._restart_dead(now)
        raft = {zone: s["raft"] for zone, s in statuses.items() if s is not None}
        self._watch_leader(now, raft)
        self._watch_divergence(raft)
        self._watch_lag(now, raft)
        self._enforce_halt(statuses)

    def _restart_dead(self, now: float) -> None:
        policy, watch = self.policy, self._watch
        for index, zone in enumerate(self.zones):
            if zone.pid is None or local.alive(zone.pid):
                continue
            delay_s = watch.restart_delay_s.get(zone.zone, policy.restart_delay_s)
            if now < watch.restart_at.setdefault(zone.zone, now + delay_s):
                continue
            self.zones[index] = local.start_zone(zone)
            watch.restart_delay_s[zone.zone] = min(delay_s * 2, policy.restart_delay_s_max)
            del watch.restart_at[zone.zone]
            local.record(self.root, self.zones)
            self.record("zone_restarted", zone=zone.zone, pid=self.zones[index].pid)

    def _watch_leader(self, now: float, raft: dict[int, dict[str, Any]]) -> None:
        watch = self._watch
        lease_ms = self.policy.lease_ms
        leaders = {zone: r for zone, r in raft.items() if r["role"] == "leader"
                   and (r["quorum_ack_ms_ago"] is None or r["quorum_ack_ms_ago"] <= lease_ms)}  # fmt: skip
        # The leader with the highest term: a deposed leader may not know it yet.
        leader = max(leaders, key=lambda zone: leaders[zone]["term"], default=None)
        if leader is None:
            if watch.leaderless_since is None:
                watch.leaderless_since = now
            leaderless_ms = (now - watch.leaderless_since) * 1000
            if leaderless_ms >= self.policy.quorum_loss_ms and watch.halted is None:
                self._halt(f"no quorum: no zone has led for {leaderless_ms:.0f} ms")
                self.record("quorum_lost", leaderless_ms=round(leaderless_ms), zones_up=sorted(raft))
            return
        if leader != watch.leader:
            gap_ms = None if watch.leaderless_since is None else round((now - watch.leaderless_since) * 1000)
            if watch.leader is not None:
                self.record("failover", from_zone=watch.leader, to_zone=leader, term=leaders[leader]["term"],
                            leaderless_ms=gap_ms)  # fmt: skip
                watch.plan_check_due = True
            watch.leader = leader
        watch.leaderless_since = None
        if watch.halted is not None and watch.halted.startswith("no quorum") and watch.reopen_due is None:
            self.record("quorum_restored", leader=leader, term=leaders[leader]["term"])
            watch.reopen_due = "quorum restored"
        if watch.reopen_due is not None:
            self._start_reopening(leader, leaders[leader]["term"])
        elif watch.plan_check_due:
            self._finish_reopening(leader, leaders[leader]["term"])

    def _finish_reopening(self, leader: int, term: int) -> None:
        """After a failover: the plan again for the instruments a reopening left half done."""
        url = f"{self._gateway(leader)}/operator/v1/market"
        try:
            found = local.get_json(url, token=self._token)["data"][0]
            under_way = found["reopening"] is not None and not found["reopening"]["done"]
            half_done = [m["instId"] for m in found["markets"] if m["marketState"] in MID_PLAN_STATES]
            if half_done and not under_way:
                local.post_json(url, {"action": "reopen", "instId": ",".join(half_done), "seed": term}, self._token)
                self.record("reopening", zone=leader, why="resumed after a failover", seed=term, instruments=half_done)
        except (OSError, ValueError, KeyError):
            return  # asked again at the next poll
        self._watch.plan_check_due = False

    def _start_reopening(self, leader: int, term: int) -> None:
        """Every instrument halted by a sequenced command, the quorum halt lifted, then the plan
        (see the module doc). A step that fails leaves the rest to the next poll."""
        watch = self._watch
        url = f"{self._gateway(leader)}/operator/v1/market"
        try:
            local.post_json(url, {"action": "halt", "all": True}, self._token)
        except (OSError, ValueError):
            return
        if watch.halted is not None and watch.halted.startswith("no quorum"):
            self._reopen()
        try:
            answer = local.post_json(url, {"action": "reopen", "all": True, "seed": term}, self._token)
        except (OSError, ValueError):
            return
        self.record("reopening", zone=leader, why=watch.reopen_due, seed=term, instruments=answer["data"][0]["instIds"])
        watch.reopen_due = None

    def _gateway(self, zone: int) -> str:
        return next(z.gateway for z in self.zones if z.zone == zone)

    def _watch_divergence(self, raft: dict[int, dict[str, Any]]) -> None:
        for zone, r in raft.items():
            if r["diverged"] and zone not in self._watch.diverged:
                self._watch.diverged.add(zone)
                self._halt(f"zone {zone}'s replica diverged: {r['diverged']}")
                self.record("replica_diverged", zone=zone, detail=r["diverged"])

    def _watch_lag(self, now: float, raft: dict[int, dict[str, Any]]) -> None:
        watch, policy = self._watch, self.policy
        leader = raft.get(watch.leader) if watch.leader is not None else None
        if leader is None or leader["role"] != "leader":
            return
        last = leader["last_log_index"] or 0
        for zone_key, matched in (leader["matched"] or {}).items():
            zone = int(zone_key)
            behind = last - (matched if matched is not None else -1)
            if behind <= policy.lag_entries_max:
                watch.lagging_since.pop(zone, None)
                if zone in watch.lagging:
                    watch.lagging.discard(zone)
                    self.record("caught_up", zone=zone)
                continue
            since = watch.lagging_since.setdefault(zone, now)
            if (now - since) * 1000 >= policy.lag_ms and zone not in watch.lagging:
                watch.lagging.add(zone)
                self.record("lagging", zone=zone, entries_behind=behind)

    def _halt(self, reason: str) -> None:
        self._watch.halted = reason

    def _reopen(self) -> None:
        self._watch.halted = None

    def _enforce_halt(self, statuses: dict[int, dict[str, Any] | None]) -> None:
        """Tells every zone that answers and disagrees (a zone back from the dead included)."""
        wanted = self._watch.halted
        for zone in self.zones:
            status = statuses.get(zone.zone)
            if status is None or status.get("halted") == wanted:
                continue
            action, body = ("halt", {"reason": wanted}) if wanted is not None else ("reopen", {})
            with contextlib.suppress(OSError):  # it is asked again at the next poll
                local.post_json(f"{zone.gateway}/cluster/v1/{action}", body, self._token)


def supervise(root: Path, policy: SupervisorPolicy) -> int:
    """`pyexchange cluster supervise`: watches the cluster of `root` until SIGTERM."""
    from pyexchange.gateway.operator import operator_token

    supervisor = Supervisor(root, local.recorded(root), policy, operator_token(root / "shared"))
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop.set())
    supervisor.record("supervisor_started", zones=[z.zone for z in supervisor.zones])
    supervisor.run()
    return 0
