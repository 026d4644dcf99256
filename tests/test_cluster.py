"""A local three-zone cluster driven through its command line and its gateways: `cluster up`,
`status`, `transfer`, `down`; an order entered at any zone is sequenced once by the leader and
seen at every zone; and the zone file's errors name the key at fault."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyexchange.chaos.load import credentials_of, signed_headers
from pyexchange.cluster import local
from pyexchange.cluster.zone import load_zone
from pyexchange.gateway import operator

ORDER_PATH = "/api/v5/trade/order"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyexchange", *args], capture_output=True, text=True, timeout=120)


def signed(creds: Any, method: str, path: str, body: str = "") -> dict[str, str]:
    return {**signed_headers(creds, method, path, body), "Content-Type": "application/json"}


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    root = tmp_path / "cluster"
    up = cli("cluster", "up", "--dir", str(root))
    assert up.returncode == 0, up.stderr
    try:
        yield root
    finally:
        down = cli("cluster", "down", "--dir", str(root))
        assert down.returncode == 0, down.stderr


def statuses(root: Path) -> list[dict[str, Any]]:
    answer = cli("cluster", "status", "--dir", str(root), "--json")
    assert answer.returncode == 0, answer.stderr
    rows: list[dict[str, Any]] = json.loads(answer.stdout)
    return rows


def test_cluster_commands_and_an_order_at_every_zone(cluster: Path) -> None:
    rows = statuses(cluster)
    assert [r["zone"] for r in rows] == [1, 2, 3]
    leaders = [r["zone"] for r in rows if r["role"] == "leader"]
    assert len(leaders) == 1 and all(r["leader"] == leaders[0] and r["healthy"] for r in rows)
    assert all(r["lag"] is not None and r["lag"] >= 0 for r in rows)

    zones = local.recorded(cluster)
    creds = credentials_of(json.loads((cluster / "shared" / "demo-credentials.json").read_text()))[0]
    follower = next(z for z in zones if z.zone != leaders[0])
    body = json.dumps({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "25000",
                       "sz": "0.01", "clOrdId": "anyzone1"})  # fmt: skip
    with httpx.Client(timeout=30) as client:
        placed = client.post(
            follower.gateway + ORDER_PATH, content=body, headers=signed(creds, "POST", ORDER_PATH, body)
        )
        assert placed.json()["code"] == "0", placed.text
        order_id = placed.json()["data"][0]["ordId"]
        retried = client.post(
            follower.gateway + ORDER_PATH, content=body, headers=signed(creds, "POST", ORDER_PATH, body)
        )
        assert retried.json()["data"][0]["ordId"] == order_id  # the clOrdId retry is the same order
        query = f"{ORDER_PATH}?instId=BTC-USDT&ordId={order_id}"
        for zone in zones:  # every zone's views follow its replica
            deadline = time.monotonic() + 10
            while (seen := client.get(zone.gateway + query, headers=signed(creds, "GET", query))).json()["code"] != "0":
                assert time.monotonic() < deadline, seen.text
                time.sleep(0.05)
            assert seen.json()["data"][0]["state"] == "live"

    to = next(z.zone for z in zones if z.zone not in leaders)
    moved = cli("cluster", "transfer", "--dir", str(cluster), "--to", str(to))
    assert moved.returncode == 0, moved.stderr
    assert f"zone {to} leads" in moved.stdout
    assert [r["zone"] for r in statuses(cluster) if r["role"] == "leader"] == [to]
    states = [local.get_json(f"{z.gateway}/cluster/v1/state") for z in zones]
    assert len({(s["seq"], s["state_hash"]) for s in states}) == 1
    assert all(s["invariants_ok"] for s in states)


def test_cluster_up_refuses_a_directory_in_use(tmp_path: Path) -> None:
    local.record(tmp_path, [])  # a cluster.json, as a running cluster leaves it
    again = cli("cluster", "up", "--dir", str(tmp_path))
    assert again.returncode == 2 and "holds a cluster already" in again.stderr
    assert not (tmp_path / "shared").exists()  # refused before anything was made


@pytest.mark.parametrize(("text", "error"), [
    ('[zone]\nid = 1\n[[members]]\nid = 1\nraft_addr = "a:1"\ngateway = "g"\n', "zone.data_dir is missing"),
    ('[zone]\nid = 4\ndata_dir = "d"\nshared_dir = "s"\nraft_addr = "a:1"\nhost = "h"\nport = 1\n'
     '[[members]]\nid = 1\nraft_addr = "a:1"\ngateway = "http://h:1"\n', "zone.id 4 is not among the [[members]]"),
    ('[zone]\nid = 1\n[raft]\nheartbeat = 5\n', "raft.heartbeat is not a setting"),
    ('[zone]\nid = "1"\n[[members]]\nid = 1\nraft_addr = "a:1"\ngateway = "g"\n', "zone.id must be int"),
])  # fmt: skip
def test_zone_file_errors_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "zone.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(error)):
        load_zone(path)


def incidents(root: Path) -> list[dict[str, Any]]:
    path = root / "incidents.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(0.1)
    return value


def test_supervisor_restarts_a_dead_zone_and_halts_without_quorum(cluster: Path) -> None:
    zones = local.recorded(cluster)
    victim = zones[0]
    local.kill_zone(victim)
    restarted = wait_for(lambda: [i for i in incidents(cluster) if i["kind"] == "zone_restarted"], "restart")
    assert restarted[0]["zone"] == victim.zone
    wait_for(lambda: local.zone_status(local.recorded(cluster)[0]), "the restarted zone's gateway")

    leader = local.leader_of(local.recorded(cluster))
    paused = [z for z in local.recorded(cluster) if z.zone != leader.zone]
    creds = credentials_of(json.loads((cluster / "shared" / "demo-credentials.json").read_text()))[0]
    for zone in paused:  # alive but silent: no majority, and nothing to restart
        local.kill_zone(zone, signal.SIGSTOP)
    try:
        wait_for(lambda: [i for i in incidents(cluster) if i["kind"] == "quorum_lost"], "quorum loss")
        status = wait_for(lambda: (s := local.zone_status(leader)) and s["halted"] and s, "a halt")
        assert status["halted"].startswith("no quorum")
        body = json.dumps({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "25000",
                           "sz": "0.01"})  # fmt: skip
        with httpx.Client(timeout=30) as client:
            refused = client.post(
                leader.gateway + ORDER_PATH, content=body, headers=signed(creds, "POST", ORDER_PATH, body)
            )
            assert refused.status_code == 503 and refused.json()["code"] == "50001", refused.text
            assert "Trading is halted: no quorum" in refused.json()["msg"]
            ongoing = client.get(leader.gateway + "/api/v5/system/status").json()["data"]
            assert ongoing and ongoing[0]["state"] == "ongoing"
    finally:
        for zone in paused:
            local.kill_zone(zone, signal.SIGCONT)
    wait_for(lambda: [i for i in incidents(cluster) if i["kind"] == "quorum_restored"], "quorum back")
    wait_for(lambda: all((s := local.zone_status(z)) and s["halted"] is None for z in local.recorded(cluster)),
             "the zones reopened")  # fmt: skip
    # Reopened through the plan: every instrument halted in the log, then the plan's first phase.
    reopening = wait_for(lambda: [i for i in incidents(cluster) if i["kind"] == "reopening"], "the reopening")
    assert reopening[0]["why"] == "quorum restored" and "BTC-USDT" in reopening[0]["instruments"]
    with httpx.Client(timeout=30) as client:
        rows = client.get(leader.gateway + "/api/v5/public/instruments?instType=SPOT").json()["data"]
        assert {row["marketState"] for row in rows} == {"cancel_only"}, "the shipped plan: 2 min of cancels only"
        headers = signed(creds, "POST", ORDER_PATH, body)
        refused = client.post(leader.gateway + ORDER_PATH, content=body, headers=headers)
        assert refused.json()["data"][0]["sCode"] == "51022", refused.text


def test_a_zone_that_never_answers_is_named_with_its_log(tmp_path: Path) -> None:
    config = tmp_path / "zone-2" / "zone.toml"
    config.parent.mkdir()
    (config.parent / "zone.log").write_text("".join(f"line {n}\n" for n in range(30)) + "RuntimeError: boom\n")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    port = local.free_ports(1)[0]  # nothing listens there
    zone = local.ZoneProcess(2, config, f"http://127.0.0.1:{port}", "127.0.0.1:1", exited.pid)
    with pytest.raises(RuntimeError) as raised:
        local.wait_ready([zone], timeout_s=0.0)
    message = str(raised.value)
    assert f"zone 2 (pid {exited.pid}, not running)" in message
    assert message.endswith("line 29\nRuntimeError: boom")
    assert "line 10\n" not in message  # only the log's end


class StoppedReplica:
    """A zone's engine whose Raft member stopped (a storage error) before it held the market."""

    def refresh_configuration(self) -> None:
        pass

    def instruments(self) -> list[Any]:
        return []

    def zone_status(self) -> dict[str, Any]:
        return {"zone": 2, "role": "follower", "stopped": "storage error: truncating the log"}


def test_a_zone_whose_replica_stopped_says_why_instead_of_waiting(tmp_path: Path) -> None:
    from pyexchange import config as config_module
    from pyexchange.cluster.zone import ensure_market

    with pytest.raises(RuntimeError, match="zone 2: the replica stopped before it held the market: storage error"):
        ensure_market(StoppedReplica(), config_module.load(None), tmp_path)  # type: ignore[arg-type]


def test_zones_making_the_operator_token_at_once_all_read_the_one_that_won(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The zones of a cluster share `shared/` and start at once: two may both find no operator
    token and make one. The second used to crash on start (FileExistsError, seen in
    `test_cluster_faults.py`); now it reads the first one's token, written whole."""
    first = operator.operator_token(tmp_path)
    monkeypatch.setattr(Path, "exists", lambda _path: False)  # as if it had looked just before the first
    second = operator.operator_token(tmp_path)
    assert len(first) >= 40 and second == first
    assert [p.name for p in tmp_path.iterdir()] == [operator.TOKEN_FILE]  # no file of the loser's left
    assert (tmp_path / operator.TOKEN_FILE).stat().st_mode & 0o777 == 0o600
