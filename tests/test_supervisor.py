"""The orchestrator's decisions, driven poll by poll with scripted zone statuses (no
processes): failovers recorded with the leaderless time, a halt when no zone leads and the
reopening through the plan when one does (and after a whole restart), a halt naming a
diverged replica, lag incidents, and a zone that missed a halt told again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pyexchange.cluster import local
from pyexchange.cluster.supervisor import Supervisor, SupervisorPolicy


def raft(role: str, term: int, leader: int | None, *, last: int = 10, matched: dict[str, int] | None = None,
         diverged: str | None = None, acked_ms_ago: int | None = 5) -> dict[str, Any]:  # fmt: skip
    return {"role": role, "term": term, "leader": leader, "last_log_index": last, "matched": matched,
            "quorum_ack_ms_ago": acked_ms_ago if role == "leader" else None, "diverged": diverged}  # fmt: skip


class Zones:
    """Scripted answers of three zones, and what the supervisor told them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.raft: dict[int, dict[str, Any] | None] = {1: raft("leader", 1, 1), 2: raft("follower", 1, 1),
                                                        3: raft("follower", 1, 1)}  # fmt: skip
        self.halted: dict[int, str | None] = {1: None, 2: None, 3: None}
        self.told: list[tuple[int, str]] = []
        self.market_refusals = 0  # how many operator market calls fail before one answers
        self.market_states = {"BTC-USDT": "continuous", "ETH-USDT": "continuous"}
        self.reopening: dict[str, Any] | None = None  # the reopening the leader's gateway runs
        monkeypatch.setattr(local, "get_json", self.get)
        monkeypatch.setattr(local, "zone_status", self.status)
        monkeypatch.setattr(local, "post_json", self.post)

    def status(self, zone: local.ZoneProcess) -> dict[str, Any] | None:
        found = self.raft[zone.zone]
        return None if found is None else {"raft": found, "halted": self.halted[zone.zone]}

    def get(self, url: str, timeout_s: float = 1.0, token: str | None = None) -> dict[str, Any]:
        assert url.endswith("/operator/v1/market") and token == "token"
        markets = [{"instId": symbol, "marketState": state} for symbol, state in self.market_states.items()]
        return {"data": [{"markets": markets, "reopening": self.reopening}]}

    def post(self, url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        zone = int(url.split("//zone")[1].split("/")[0])
        action = url.rsplit("/", 1)[1]
        assert token == "token"
        if action == "market":
            if self.market_refusals:
                self.market_refusals -= 1
                raise ConnectionRefusedError("the gateway is starting")
            self.told.append((zone, f"market {body['action']} {body.get('instId', 'all')}"))
            return {"data": [{"instIds": ["BTC-USDT"], "seed": body.get("seed")}]}
        self.told.append((zone, action))
        self.halted[zone] = body["reason"] if action == "halt" else None
        return {}


@pytest.fixture
def zones(monkeypatch: pytest.MonkeyPatch) -> Zones:
    return Zones(monkeypatch)


def supervisor(tmp_path: Path, **policy: Any) -> Supervisor:
    processes = [local.ZoneProcess(z, tmp_path / f"zone-{z}.toml", f"http://zone{z}", f"127.0.0.1:{z}", None)
                 for z in (1, 2, 3)]  # fmt: skip
    return Supervisor(tmp_path, processes, SupervisorPolicy(**policy), "token")


def kinds(s: Supervisor) -> list[str]:
    return [i["kind"] for i in s.incidents]


def test_failover_quorum_loss_and_reopening(tmp_path: Path, zones: Zones) -> None:
    s = supervisor(tmp_path, quorum_loss_ms=50)
    s.poll()
    assert s.incidents == []
    zones.raft[1] = None  # the leader's zone is gone
    zones.raft[2], zones.raft[3] = raft("candidate", 2, None), raft("follower", 1, None)
    s.poll()
    zones.raft[2], zones.raft[3] = raft("leader", 2, 2), raft("follower", 2, 2)
    s.poll()
    assert kinds(s) == ["failover"]
    assert s.incidents[0]["from_zone"] == 1 and s.incidents[0]["to_zone"] == 2 and s.incidents[0]["term"] == 2
    assert s.incidents[0]["leaderless_ms"] >= 0

    # A leader that no majority has acknowledged for longer than the lease leads nothing.
    zones.raft[2] = raft("leader", 2, 2, acked_ms_ago=5_000)
    zones.raft[3] = None
    s.poll()
    time.sleep(0.06)
    s.poll()
    assert kinds(s) == ["failover", "quorum_lost"]
    assert zones.halted[2] is not None and zones.halted[2].startswith("no quorum")
    assert (2, "halt") in zones.told and zones.halted[1] is None  # zone 1 does not answer

    zones.raft[1], zones.raft[3] = raft("follower", 3, 3), raft("leader", 3, 3)
    zones.told.clear()
    s.poll()
    assert kinds(s)[-3:] == ["failover", "quorum_restored", "reopening"]
    assert s.incidents[-1]["why"] == "quorum restored" and s.incidents[-1]["seed"] == 3
    assert all(reason is None for reason in zones.halted.values())
    # The markets are halted in the log before the flag is lifted, then the plan starts.
    assert zones.told[:2] == [(3, "market halt all"), (3, "market reopen all")]
    assert {action for _, action in zones.told[2:]} == {"reopen"}
    assert (1, "halt") not in zones.told  # zone 1 came back after the reopening: nothing to undo
    s.poll()
    assert kinds(s)[-1] == "reopening" and zones.told.count((3, "market reopen all")) == 1, "once"


def test_a_whole_restart_reopens_through_the_plan_once_a_zone_leads(tmp_path: Path, zones: Zones) -> None:
    s = supervisor(tmp_path, reopen_on_start=True)
    zones.raft = {1: raft("candidate", 4, None), 2: raft("follower", 4, None), 3: None}
    s.poll()
    assert zones.told == []
    zones.raft[1] = raft("leader", 4, 1)
    zones.market_refusals = 1  # the leader's gateway is not serving yet
    s.poll()
    assert kinds(s) == [] and zones.told == []
    s.poll()
    assert zones.told == [(1, "market halt all"), (1, "market reopen all")]
    assert kinds(s) == ["reopening"] and s.incidents[0]["why"] == "the cluster restarted"


def test_a_zone_that_missed_the_halt_is_told_when_it_answers(tmp_path: Path, zones: Zones) -> None:
    s = supervisor(tmp_path, quorum_loss_ms=0)
    zones.raft = {1: raft("candidate", 2, None), 2: None, 3: raft("follower", 1, None)}
    s.poll()
    assert kinds(s) == ["quorum_lost"] and zones.halted[1] and zones.halted[3] and zones.halted[2] is None
    zones.raft[2] = raft("follower", 1, None)
    s.poll()
    assert zones.halted[2] == zones.halted[1]


def test_a_diverged_replica_halts_trading_and_is_named(tmp_path: Path, zones: Zones) -> None:
    s = supervisor(tmp_path)
    s.poll()
    zones.raft[3] = raft("follower", 1, 1, diverged="zone 3 diverged from the leader at entry 1000")
    s.poll()
    s.poll()
    assert kinds(s) == ["replica_diverged"] and s.incidents[0]["zone"] == 3
    assert all(reason is not None and "zone 3's replica diverged" in reason for reason in zones.halted.values())


def test_a_follower_far_behind_is_reported_then_caught_up(tmp_path: Path, zones: Zones) -> None:
    s = supervisor(tmp_path, lag_entries_max=100, lag_ms=0)
    zones.raft[1] = raft("leader", 1, 1, last=5_000, matched={"1": 5_000, "2": 4_990, "3": 200})
    s.poll()
    s.poll()
    assert kinds(s) == ["lagging"] and s.incidents[0]["zone"] == 3 and s.incidents[0]["entries_behind"] == 4_800
    zones.raft[1] = raft("leader", 1, 1, last=5_010, matched={"1": 5_010, "2": 5_010, "3": 5_000})
    s.poll()
    assert kinds(s) == ["lagging", "caught_up"]


def test_a_reopening_cut_short_by_a_failover_is_finished_by_the_new_leader(tmp_path: Path, zones: Zones) -> None:
    s = supervisor(tmp_path)
    s.poll()
    zones.market_states = {"BTC-USDT": "pre_open", "ETH-USDT": "halted", "SOL-USDT": "call_auction"}
    zones.raft[1], zones.raft[2] = None, raft("leader", 2, 2)  # zone 1 ran the plan, and died
    zones.market_refusals = 1
    s.poll()
    assert kinds(s) == ["failover"], "the new leader's gateway did not answer yet: asked again"
    s.poll()
    assert zones.told == [(2, "market reopen BTC-USDT,SOL-USDT")], "the operator's halt of ETH stays"
    assert kinds(s) == ["failover", "reopening"] and s.incidents[-1]["why"] == "resumed after a failover"
    s.poll()
    assert len(zones.told) == 1, "once"

    zones.reopening = {"done": False}  # a failover while the new leader runs a reopening itself
    zones.raft[2], zones.raft[3] = None, raft("leader", 3, 3)
    s.poll()
    assert kinds(s)[-1] == "failover" and len(zones.told) == 1
