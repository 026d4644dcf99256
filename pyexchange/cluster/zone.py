"""`pyexchange zone --config FILE`: one zone of a cluster — its engine replica, its Raft member
and its gateway — in one process.

The zone file (TOML, written by `pyexchange cluster up`, or by hand):

    exchange_config = "exchange.toml"   # optional; the built-in default otherwise
    [zone]
    id = 1
    data_dir = "zone-1"                 # this zone's Raft log, snapshots and replica
    shared_dir = "shared"               # accounts, API keys, operator token: the same for all zones
    raft_addr = "127.0.0.1:7101"        # where the other zones reach this one
    host = "127.0.0.1"
    port = 8101
    bootstrap = true                    # an empty zone may initialize a new group
    leader_wait_ms = 2000               # how long order entry waits through an election
    [raft]                              # optional; region-tuned defaults
    heartbeat_ms = 30
    election_timeout_min_ms = 150
    election_timeout_max_ms = 300
    [[members]]                         # every zone, this one included
    id = 1
    raft_addr = "127.0.0.1:7101"
    gateway = "http://127.0.0.1:8101"
    dial = "127.0.0.1:9101"             # optional: the address this zone dials instead (a proxy)

Relative paths are relative to the zone file. The market (assets, instruments) and the demo
accounts' funds are proposed once, by whichever zone leads first, when it has applied every
committed entry (so it sees what an earlier leader already did); the other zones wait until
their replica holds it, then serve.
"""

from __future__ import annotations

import gc
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyexchange import NotLeader, OutcomeUnknown, ReplicaStopped, wire
from pyexchange import config as config_module
from pyexchange.accounts import Accounts, KeyStore
from pyexchange.config import Config
from pyexchange.engine import Engine

MARKET_POLL_S = 0.05
WAITING_REPORT_EVERY_S = 5.0  # how often a zone waiting for its market says what it waits on
ELECTION_TIMEOUT_MAX_MS_DEFAULT = 300  # `_core.ZoneEngine`'s
RAFT_KEYS = ("heartbeat_ms", "election_timeout_min_ms", "election_timeout_max_ms", "snapshot_every_entries",
             "entries_kept_after_snapshot", "checkpoint_interval_ms", "propose_timeout_ms")  # fmt: skip


@dataclass(frozen=True)
class Member:
    zone: int
    raft_addr: str
    gateway: str
    dial: str | None = None


@dataclass(frozen=True)
class ZoneConfig:
    zone: int
    data_dir: Path
    shared_dir: Path
    raft_addr: str
    host: str
    port: int
    bootstrap: bool
    leader_wait_ms: int
    members: tuple[Member, ...]
    raft: dict[str, int] = field(default_factory=dict)
    exchange_config: Path | None = None

    def engine_settings(self) -> dict[str, Any]:
        """The keyword arguments of `_core.ZoneEngine` (through `Engine(zone=...)`)."""
        return {
            "zone": self.zone, "listen_addr": self.raft_addr, "bootstrap": self.bootstrap, "follow": True,
            "members": {m.zone: m.raft_addr for m in self.members},
            "dial": {m.zone: m.dial for m in self.members if m.dial}, **self.raft,
        }  # fmt: skip


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise ValueError(f"{where}{key} is missing")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}{key} must be {kind.__name__}, not {value!r}")
    return value


def load_zone(path: str | Path) -> ZoneConfig:
    """Reads a zone file; ValueError naming the key for anything wrong."""
    path = Path(path)
    with path.open("rb") as f:
        doc = tomllib.load(f)
    base = path.parent
    zone = doc.get("zone")
    if not isinstance(zone, dict):
        raise ValueError("[zone] is missing")
    raft = doc.get("raft", {})
    unknown = set(raft) - set(RAFT_KEYS)
    if unknown:
        raise ValueError(f"raft.{sorted(unknown)[0]} is not a setting (known: {', '.join(RAFT_KEYS)})")
    members = []
    for n, member in enumerate(doc.get("members", [])):
        where = f"members[{n}]."
        dial = member.get("dial")
        members.append(Member(_get(member, "id", int, where), _get(member, "raft_addr", str, where),
                              _get(member, "gateway", str, where).rstrip("/"), dial))  # fmt: skip
    zone_id = _get(zone, "id", int, "zone.")
    if zone_id not in {m.zone for m in members}:
        raise ValueError(f"zone.id {zone_id} is not among the [[members]]")
    exchange_config = doc.get("exchange_config")
    return ZoneConfig(
        zone=zone_id, data_dir=base / _get(zone, "data_dir", str, "zone."),
        shared_dir=base / _get(zone, "shared_dir", str, "zone."), raft_addr=_get(zone, "raft_addr", str, "zone."),
        host=_get(zone, "host", str, "zone."), port=_get(zone, "port", int, "zone."),
        bootstrap=bool(zone.get("bootstrap", False)), leader_wait_ms=int(zone.get("leader_wait_ms", 2000)),
        members=tuple(members), raft={key: _get(raft, key, int, "raft.") for key in raft},
        exchange_config=None if exchange_config is None else base / str(exchange_config),
    )  # fmt: skip


def demo_accounts(shared_dir: Path) -> list[int]:
    return sorted(account for account, name in Accounts(shared_dir).names().items() if name.startswith("demo-"))


def _funded(engine: Engine, config: Config, demo: list[int]) -> bool:
    """Whether the demo accounts hold their funds (deposited in one batch: all or none)."""
    asset = next(iter(config.demo_funds), None)
    return not demo or asset is None or sum(engine.balance(demo[0], asset)) > 0


def _market_ready(engine: Engine, config: Config, demo: list[int]) -> bool:
    engine.refresh_configuration()
    symbols = {i.symbol for i in engine.instruments()}
    return all(spec.symbol in symbols for spec in config.instruments) and _funded(engine, config, demo)


def _fund(engine: Engine, config: Config, demo: list[int]) -> None:
    """Every demo account's funds, in one batch: all of it is applied, or none."""
    from pyexchange.gateway.sequencer import Command, records_of

    funds = [(engine.asset(asset), amount) for asset, amount in config.demo_funds.items()]
    deposits = [Command(wire.DEPOSIT, account, asset.asset_id, size_lots=asset.units(amount))
                for account in demo for asset, amount in funds]  # fmt: skip
    if deposits:
        engine.propose(records_of(deposits, 0))


def ensure_market(engine: Engine, config: Config, shared_dir: Path) -> None:
    """Waits until the replica holds the configured market and funded demo accounts; proposes
    them when this zone leads and has applied its whole log (see the module doc)."""
    from pyexchange.serve import configure

    demo = demo_accounts(shared_dir)
    next_report = time.monotonic() + WAITING_REPORT_EVERY_S
    while not _market_ready(engine, config, demo):
        status = engine.zone_status()
        if status["stopped"] is not None:
            raise RuntimeError(f"zone {status['zone']}: the replica stopped before it held the market: "
                               f"{status['stopped']}")  # fmt: skip
        if time.monotonic() >= next_report:
            next_report += WAITING_REPORT_EVERY_S
            print(f"zone {status['zone']}: waiting for the market: {status['role']} in term {status['term']}, "
                  f"leader {status['leader']}, log {status['last_log_index']}, committed {status['committed_index']}, "
                  f"applied {status['applied_index']}", flush=True)  # fmt: skip
        # A new leader learns the commit index only once an entry of its term commits: until it
        # applied its whole log (that entry included), the market may be in the part not applied.
        applied = status["applied_index"]
        caught_up = applied is not None and applied >= (status["last_log_index"] or 0)
        if status["role"] == "leader" and caught_up:
            try:
                configure(engine, config)
                if not _funded(engine, config, demo):
                    _fund(engine, config, demo)
            except (NotLeader, OutcomeUnknown, ReplicaStopped) as error:
                print(f"zone {status['zone']}: setting up the market was interrupted ({error}); trying again")
        time.sleep(MARKET_POLL_S)


def run_zone(config_path: str) -> int:
    from pyexchange.gateway.app import create_app, run
    from pyexchange.gateway.auth import Authenticator
    from pyexchange.gateway.exchange import Exchange
    from pyexchange.gateway.operator import operator_token
    from pyexchange.gateway.replication import LeaderLink

    zone = load_zone(config_path)
    config = config_module.load(zone.exchange_config)
    zone.data_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(zone.data_dir, zone=zone.engine_settings())
    try:
        ensure_market(engine, config, zone.shared_dir)
        gateways = {m.zone: m.gateway for m in zone.members}
        lease_ms = zone.raft.get("election_timeout_max_ms", ELECTION_TIMEOUT_MAX_MS_DEFAULT)
        link = LeaderLink(engine, zone.zone, gateways, operator_token(zone.shared_dir),
                          leader_wait_ms=zone.leader_wait_ms, lease_ms=lease_ms)  # fmt: skip
        exchange = Exchange(config, zone.shared_dir, engine, link)
        gc.collect()
        gc.freeze()
        auth = Authenticator(KeyStore(zone.shared_dir), config.timestamp_window_s)
        app = create_app(exchange, auth)
        status = engine.zone_status()
        print(f"pyexchange zone {zone.zone}: raft {zone.raft_addr} ({status['role']}, term {status['term']}), "
              f"gateway http://{zone.host}:{zone.port} (REST /api/v5, WebSocket /ws/v5, cluster /cluster/v1), "
              f"data in {zone.data_dir}")  # fmt: skip
        sys.stdout.flush()
        run(app, zone.host, zone.port)
    finally:
        engine.close()
    return 0
