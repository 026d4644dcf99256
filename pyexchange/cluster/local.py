"""A cluster of zones on one machine, on loopback: `pyexchange cluster up|status|transfer|down`.

`up` lays out a cluster directory — `shared/` (accounts, API keys, demo credentials, the
operator token: the same for every zone) and `zone-N/zone.toml` per zone with its own data
dir and ports — then starts one `pyexchange zone` process per zone, each in its own session
(so one signal reaches all of a zone's processes), and records them in `cluster.json`.
`status` asks every zone for its Raft view; `transfer` asks the leader to hand over;
`down` stops every zone. A zone's output goes to `zone-N/zone.log`. `up` on the directory of
a stopped cluster restarts its zones as they were (same files, ports and data: a whole
restart), and its supervisor takes the markets through the reopening plan.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyexchange import config as config_module
from pyexchange.accounts import DEMO_CREDENTIALS_FILE, write_json_atomically

CLUSTER_FILE = "cluster.json"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
STATUS_TIMEOUT_S = 2.0
# Ports of a zone that has an address of its own (a network namespace).
RAFT_PORT = 7100
GATEWAY_PORT = 8100


@dataclass(frozen=True)
class ZoneProcess:
    zone: int
    config: Path
    gateway: str
    raft_addr: str
    pid: int | None
    prefix: tuple[str, ...] = ()  # what the zone's command runs under (a network namespace)


@dataclass(frozen=True)
class Member:
    zone: int
    raft_addr: str
    gateway: str


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def prepare_shared(shared: Path, config_path: str | None) -> list[dict[str, Any]]:
    """Accounts and API keys every zone shares; the demo credentials (written once)."""
    from pyexchange.serve import create_demo_credentials

    config = config_module.load(config_path)
    shared.mkdir(parents=True, exist_ok=True)
    credentials_file = shared / DEMO_CREDENTIALS_FILE
    if credentials_file.exists():
        demo: list[dict[str, Any]] = json.loads(credentials_file.read_text())
        return demo
    return [credentials.as_json() for credentials in create_demo_credentials(shared, config)]


def plan_members(zones: int, host: str = "127.0.0.1", hosts: dict[int, str] | None = None) -> list[Member]:
    """Zones 1..`zones`: on free ports of `host`, or each on its own address (`hosts[zone]`,
    a network namespace) with the same ports."""
    if hosts is not None:
        return [Member(z, f"{hosts[z]}:{RAFT_PORT}", f"http://{hosts[z]}:{GATEWAY_PORT}") for z in range(1, zones + 1)]
    ports = free_ports(2 * zones, host)
    return [Member(z, f"{host}:{ports[2 * z - 2]}", f"http://{host}:{ports[2 * z - 1]}") for z in range(1, zones + 1)]


def write_zone_files(
    root: Path,
    members: list[Member],
    config_path: str | None = None,
    raft: dict[str, int] | None = None,
    dial: dict[int, dict[int, str]] | None = None,
) -> list[ZoneProcess]:
    """`zone-N/zone.toml` for every member; `raft` overrides Raft settings; `dial[zone][peer]`
    is the address `zone` dials for `peer` (a fault-injecting proxy)."""
    written = []
    for me in members:
        directory = root / f"zone-{me.zone}"
        directory.mkdir(parents=True, exist_ok=True)
        host, port = me.gateway.removeprefix("http://").rsplit(":", 1)
        lines = [] if config_path is None else [f"exchange_config = {json.dumps(str(Path(config_path).resolve()))}"]
        lines += ["[zone]", f"id = {me.zone}", 'data_dir = "data"', 'shared_dir = "../shared"', "bootstrap = true",
                  f'raft_addr = "{me.raft_addr}"', f'host = "{host}"', f"port = {port}"]  # fmt: skip
        if raft:
            lines += ["[raft]", *(f"{key} = {value}" for key, value in raft.items())]
        for peer in members:
            lines += [
                "[[members]]",
                f"id = {peer.zone}",
                f'raft_addr = "{peer.raft_addr}"',
                f'gateway = "{peer.gateway}"',
            ]
            if dial and peer.zone in dial.get(me.zone, {}):
                lines.append(f'dial = "{dial[me.zone][peer.zone]}"')
        path = directory / "zone.toml"
        path.write_text("\n".join(lines) + "\n")
        written.append(ZoneProcess(me.zone, path, me.gateway, me.raft_addr, None))
    return written


def start_zone(zone: ZoneProcess, prefix: tuple[str, ...] | None = None) -> ZoneProcess:
    """Starts a zone process in its own session, under `prefix` (default: the zone's own, e.g.
    `ip netns exec NS`); its output goes to `zone.log` beside its file."""
    prefix = zone.prefix if prefix is None else prefix
    log = (zone.config.parent / "zone.log").open("ab")
    command = [*prefix, sys.executable, "-m", "pyexchange", "zone", "--config", str(zone.config)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return ZoneProcess(zone.zone, zone.config, zone.gateway, zone.raft_addr, process.pid, prefix)


def kill_zone(zone: ZoneProcess, sig: int = signal.SIGKILL) -> None:
    """Signals every process of the zone's session at once."""
    if zone.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(zone.pid, sig)


def record(root: Path, zones: list[ZoneProcess], supervisor_pid: int | None = None) -> None:
    """Writes `cluster.json`: the zones' processes, and the supervisor's (kept if not given)."""
    rows = [{"zone": z.zone, "config": str(z.config), "gateway": z.gateway, "raft_addr": z.raft_addr, "pid": z.pid,
             "prefix": list(z.prefix)} for z in zones]  # fmt: skip
    path = root / CLUSTER_FILE
    if supervisor_pid is None and path.exists():
        supervisor_pid = json.loads(path.read_text()).get("supervisor_pid")
    write_json_atomically(path, {"zones": rows, "supervisor_pid": supervisor_pid})


def supervisor_pid(root: Path) -> int | None:
    pid: int | None = json.loads((root / CLUSTER_FILE).read_text()).get("supervisor_pid")
    return pid


def recorded(root: Path) -> list[ZoneProcess]:
    path = root / CLUSTER_FILE
    if not path.exists():
        raise ValueError(f"no cluster in {root} (start one with `pyexchange cluster up --dir {root}`)")
    rows = json.loads(path.read_text())["zones"]
    return [ZoneProcess(r["zone"], Path(r["config"]), r["gateway"], r["raft_addr"], r["pid"], tuple(r["prefix"]))
            for r in rows]  # fmt: skip


def get_json(url: str, timeout_s: float = STATUS_TIMEOUT_S, token: str | None = None) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as answer:
        return json.loads(answer.read())


def zone_status(zone: ZoneProcess) -> dict[str, Any] | None:
    """A zone's `/cluster/v1/status`, or None if it does not answer."""
    try:
        status: dict[str, Any] = get_json(f"{zone.gateway}/cluster/v1/status")
        return status
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_ready(zones: list[ZoneProcess], timeout_s: float = READY_TIMEOUT_S) -> int:
    """Waits until every zone's gateway answers and they agree on one leader; returns it."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = [zone_status(z) for z in zones]
        leaders = {s["raft"]["leader"] for s in statuses if s is not None}
        if all(s is not None for s in statuses) and len(leaders) == 1 and None not in leaders:
            return int(leaders.pop())
        if time.monotonic() >= deadline:
            silent = "".join(silent_zone_report(z) for z, s in zip(zones, statuses, strict=True) if s is None)
            raise RuntimeError(f"the cluster was not ready within {timeout_s:.0f} s: {statuses}{silent}")
        time.sleep(0.1)


def silent_zone_report(zone: ZoneProcess, lines: int = 20) -> str:
    """For a zone whose gateway does not answer: whether its process lives, and its log's end."""
    alive = False
    if zone.pid is not None:  # a zombie (exited, not yet reaped by its parent) is not running
        with contextlib.suppress(OSError):
            alive = Path(f"/proc/{zone.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    log = zone.config.parent / "zone.log"
    tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no zone.log)"]
    state = "running" if alive else "not running"
    return f"\nzone {zone.zone} (pid {zone.pid}, {state}), the end of {log}:\n" + "\n".join(tail)


def up(root: Path, zones: int, host: str, config_path: str | None) -> int:
    if (root / CLUSTER_FILE).exists():
        raise ValueError(f"{root} holds a cluster already (`pyexchange cluster down --dir {root}` first)")
    stopped = stopped_zones(root)
    if not stopped:
        prepare_shared(root / "shared", config_path)
    laid_out = stopped or write_zone_files(root, plan_members(zones, host), config_path)
    started = [start_zone(z) for z in laid_out]
    record(root, started)
    log = (root / "supervisor.log").open("ab")
    command = [sys.executable, "-m", "pyexchange", "cluster", "supervise", "--dir", str(root)]
    supervisor = subprocess.Popen(command + (["--reopen"] if stopped else []), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
    log.close()
    record(root, started, supervisor.pid)
    leader = wait_ready(started)
    restarted = " (restarted: reopening through the plan)" if stopped else ""
    print(f"pyexchange cluster: {len(started)} zones in {root.resolve()}, zone {leader} leads{restarted}")
    for z in started:
        print(
            f"  zone {z.zone}: gateway {z.gateway}  raft {z.raft_addr}  pid {z.pid}  log {z.config.parent / 'zone.log'}"
        )
    print(f"  demo credentials in {root / 'shared' / DEMO_CREDENTIALS_FILE}; any zone's gateway takes orders")
    print(f"  a supervisor restarts dead zones and records incidents in {root / 'incidents.jsonl'}")
    return 0


def stopped_zones(root: Path) -> list[ZoneProcess]:
    """The zones of a stopped cluster in `root` (its zone files), none for a new directory."""
    from pyexchange.cluster.zone import load_zone

    zones = []
    for path in sorted(root.glob("zone-*/zone.toml")):
        zone = load_zone(path)
        me = next(m for m in zone.members if m.zone == zone.zone)
        zones.append(ZoneProcess(zone.zone, path, me.gateway, zone.raft_addr, None))
    return zones


def status(root: Path, as_json: bool) -> int:
    """Each zone's health, role, term, leader, commit and applied index, and its lag (entries
    behind the leader's log, as the leader sees it)."""
    rows = []
    for z in recorded(root):
        answer = zone_status(z)
        raft = answer["raft"] if answer else {}
        rows.append({"zone": z.zone, "gateway": z.gateway, "healthy": answer is not None, **raft,
                     "views_index": answer["views_index"] if answer else None})  # fmt: skip
    leader = next((row for row in rows if row.get("role") == "leader"), None)
    last = (leader or {}).get("last_log_index") or 0
    matched = {int(zone): index for zone, index in ((leader or {}).get("matched") or {}).items()}
    for row in rows:
        index = matched.get(row["zone"], -1)
        row["lag"] = None if leader is None else last - (index if index is not None else -1)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("zone", "health", "role", "term", "leader", "commit", "applied", "lag")
    print("{:>4} {:<8} {:<10} {:>5} {:>6} {:>8} {:>8} {:>6}  gateway".format(*header))
    for row in rows:
        health = "DIVERGED" if row.get("diverged") else "ok" if row["healthy"] and not row.get("stopped") else "DOWN"
        print(f"{row['zone']:>4} {health:<8} {row.get('role', '-'):<10} {row.get('term', '-')!s:>5} "
              f"{row.get('leader', '-')!s:>6} {row.get('committed_index', '-')!s:>8} "
              f"{row.get('applied_index', '-')!s:>8} {row.get('lag', '-')!s:>6}  {row['gateway']}")  # fmt: skip
    return 0


def post_json(url: str, body: dict[str, Any], token: str, timeout_s: float = STATUS_TIMEOUT_S) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        return json.loads(answer.read())


def leader_of(zones: list[ZoneProcess]) -> ZoneProcess:
    for z in zones:
        answer = zone_status(z)
        if answer is not None and answer["raft"]["role"] == "leader":
            return z
    raise ValueError("no zone leads right now")


def transfer(root: Path, to: int, timeout_s: float = 10.0) -> int:
    """Asks the leader to hand leadership to zone `to` and waits until it has."""
    from pyexchange.gateway.operator import operator_token

    zones = recorded(root)
    if to not in {z.zone for z in zones}:
        raise ValueError(f"there is no zone {to} in {root}")
    started = time.monotonic()
    leader = leader_of(zones)
    if leader.zone != to:
        post_json(f"{leader.gateway}/cluster/v1/transfer", {"to": to}, operator_token(root / "shared"))
    target = next(z for z in zones if z.zone == to)
    while True:
        answer = zone_status(target)
        if answer is not None and answer["raft"]["role"] == "leader":
            print(f"zone {to} leads (term {answer['raft']['term']}) after {(time.monotonic() - started) * 1000:.0f} ms")
            return 0
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"zone {to} did not take the lead within {timeout_s:.0f} s")
        time.sleep(0.005)


def down(root: Path) -> int:
    """Stops the supervisor (so it restarts nothing), then every zone: SIGTERM, then SIGKILL."""
    watcher = supervisor_pid(root)
    if watcher is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(watcher, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(watcher) and time.monotonic() < deadline:
            time.sleep(0.05)
    zones = recorded(root)
    for z in zones:
        kill_zone(z, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for z in zones:
        while z.pid is not None and alive(z.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if z.pid is not None and alive(z.pid):
            kill_zone(z, signal.SIGKILL)
    (root / CLUSTER_FILE).unlink()
    print(f"pyexchange cluster in {root}: {len(zones)} zones stopped (their data stays in {root})")
    return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (our child, not yet reaped) counts as stopped.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
