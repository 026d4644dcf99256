"""`pyexchange serve`: one zone — the durable engine, the gateway (REST and WebSocket) — on
one machine, from a data directory. Also the operator commands that manage accounts and
API keys in a data directory.

On first start with an empty data directory the configured assets and instruments become
the engine's first commands, demo accounts are created and funded, and their credentials
are written to `<data-dir>/demo-credentials.json`. A restart recovers the engine from its
journal and snapshots, rebuilds the order and trade history from the journal, and checks
that the configuration still describes the instruments the journal holds.
"""

from __future__ import annotations

import gc
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pyexchange import config as config_module
from pyexchange.accounts import DEMO_CREDENTIALS_FILE, Accounts, Credentials, KeyStore, write_json_atomically
from pyexchange.config import Config
from pyexchange.engine import Engine

DEFAULT_DATA_DIR = "./data"


@dataclass
class Zone:
    config: Config
    data_dir: Path
    engine: Engine
    demo: list[Credentials]


def open_engine(data_dir: Path, config: Config) -> Engine:
    """The durable engine of `data_dir`, with every configured asset and instrument in it."""
    engine = Engine(data_dir, snapshot_every_commands=config.snapshot_every_commands,
                    group_commit_window_us=config.group_commit_window_us, retain_journal=True)  # fmt: skip
    try:
        configure(engine, config)
    except Exception:
        engine.close()
        raise
    return engine


def configure(engine: Engine, config: Config) -> None:
    """Adds the configured assets and instruments the engine lacks; refuses a changed one."""
    known_assets = {a.name: a for a in engine.assets()}
    for asset in config.assets:
        held = known_assets.get(asset.name)
        if held is None:
            engine.add_asset(asset.name, asset.decimals)
        elif held.decimals != asset.decimals:
            raise ValueError(f"asset {asset.name} has {held.decimals} decimals in the journal, the config says "
                             f"{asset.decimals}: an existing asset cannot change")  # fmt: skip
    known = {i.symbol: i for i in engine.instruments()}
    for spec in config.instruments:
        held_inst = known.get(spec.symbol)
        if held_inst is None:
            engine.add_instrument(spec.symbol, tick_size=spec.tick_size, lot_size=spec.lot_size,
                                  min_size=spec.min_size, maker_fee_bps=spec.maker_fee_bps,
                                  taker_fee_bps=spec.taker_fee_bps)  # fmt: skip
        elif (held_inst.tick_size, held_inst.lot_size, held_inst.min_size) != (
            spec.tick_size,
            spec.lot_size,
            spec.min_size,
        ):
            raise ValueError(f"instrument {spec.symbol} in the journal has tick {held_inst.tick_size}, lot "
                             f"{held_inst.lot_size}, minimum {held_inst.min_size}; the config differs: an existing "
                             "instrument cannot change")  # fmt: skip


def open_zone(data_dir: Path, config: Config) -> Zone:
    first_start = not data_dir.exists() or not any(data_dir.iterdir())
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(data_dir, config)
    demo = create_demo_accounts(data_dir, engine, config) if first_start else []
    return Zone(config, data_dir, engine, demo)


def create_demo_credentials(data_dir: Path, config: Config) -> list[Credentials]:
    """The demo accounts and an API key each, written to `<data_dir>/demo-credentials.json`."""
    accounts, keys = Accounts(data_dir), KeyStore(data_dir)
    created = [keys.create(accounts.create(f"demo-{n}"), label="demo") for n in range(1, config.demo_accounts + 1)]
    write_json_atomically(data_dir / DEMO_CREDENTIALS_FILE, [c.as_json() for c in created], mode=0o600)
    return created


def create_demo_accounts(data_dir: Path, engine: Engine, config: Config) -> list[Credentials]:
    """The demo accounts with their keys, funded."""
    created = create_demo_credentials(data_dir, config)
    for credentials in created:
        for asset, amount in config.demo_funds.items():
            engine.deposit(credentials.account, asset, amount)
    return created


def serve(data_dir: str, config_path: str | None, host: str | None, port: int | None) -> int:
    from pyexchange.gateway.app import create_app, run
    from pyexchange.gateway.auth import Authenticator
    from pyexchange.gateway.exchange import Exchange

    config = config_module.load(config_path)
    host, port = host or config.host, port if port is not None else config.port
    zone = open_zone(Path(data_dir), config)
    exchange = Exchange(config, zone.data_dir, zone.engine)
    replayed = exchange.rebuild()
    gc.collect()
    gc.freeze()  # the rebuilt history is old: out of the collector's way (see `keep_gc_pauses_short`)
    auth = Authenticator(KeyStore(zone.data_dir), config.timestamp_window_s)
    app = create_app(exchange, auth)
    _announce(zone, host, port, replayed)
    try:
        run(app, host, port)
    finally:
        zone.engine.close()
    return 0


def _announce(zone: Zone, host: str, port: int, replayed: int) -> None:
    recovery = zone.engine.recovery()
    base = f"http://{host}:{port}"
    print(f"pyexchange: one zone, data in {zone.data_dir.resolve()} (seq {zone.engine.seq}, "
          f"{recovery['replayed']} journal records recovered, history rebuilt from {replayed})")  # fmt: skip
    print(f"  REST       {base}/api/v5/...   (OKX v5 dialect; API docs at {base}/docs)")
    print(f"  WebSocket  ws://{host}:{port}/ws/v5/public   ws://{host}:{port}/ws/v5/private")
    print(f"  markets    {', '.join(i.symbol for i in zone.engine.instruments())}")
    credentials = zone.data_dir / DEMO_CREDENTIALS_FILE
    if zone.demo:
        print(f"  demo accounts {', '.join(str(c.account) for c in zone.demo)} created and funded; their API keys "
              f"are in {credentials}")  # fmt: skip
    if credentials.exists():
        print("  use them with ccxt:  ex = ccxt.okx({'apiKey': ..., 'secret': <secretKey>, 'password': <passphrase>})")
        print(f"                      ex.urls['api'] = {{'rest': '{base}', 'ws': 'ws://{host}:{port}/ws/v5'}}")
    sys.stdout.flush()


def create_account(data_dir: str, config_path: str | None, name: str, deposits: list[str]) -> int:
    """`pyexchange accounts create`: a new account, funded by deposits (`ASSET=AMOUNT`)."""
    config = config_module.load(config_path)
    funds = [_deposit(d) for d in deposits]
    path = Path(data_dir)
    with open_engine(path, config) as engine:
        for asset, _amount in funds:
            engine.asset(asset)  # an unknown asset fails before the account exists
        account = Accounts(path).create(name)
        for asset, amount in funds:
            engine.deposit(account, asset, amount)
    print(json.dumps({"account": account, "name": name, "deposits": dict(funds)}))
    return 0


def _deposit(text: str) -> tuple[str, str]:
    asset, sep, amount = text.partition("=")
    if not sep or not asset or not amount:
        raise ValueError(f"a deposit is ASSET=AMOUNT, not {text!r}")
    return asset, amount


def kill_switch(data_dir: str, url: str, account: int, *, unblock: bool) -> int:
    """`pyexchange kill-switch`: asks the running server's operator API."""
    return _operator_call(data_dir, url, "/operator/v1/kill-switch",
                          {"account": account, "action": "unblock" if unblock else "block"})  # fmt: skip


def market(data_dir: str, url: str, action: str, instrument: str | None, seed: int | None) -> int:
    """`pyexchange market halt|reopen|status`: asks the running server's operator API
    (`instrument` None: every instrument)."""
    if action == "status":
        return _operator_call(data_dir, url, "/operator/v1/market", None)
    body: dict[str, object] = {"action": action, **({"all": True} if instrument is None else {"instId": instrument})}
    if seed is not None:
        body["seed"] = seed
    return _operator_call(data_dir, url, "/operator/v1/market", body)


def _operator_call(data_dir: str, url: str, path: str, body: dict[str, object] | None) -> int:
    """GETs `path` (no body) or POSTs `body` with the data dir's operator token; prints the answer."""
    import urllib.error
    import urllib.request

    from pyexchange.gateway.operator import operator_token

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method="GET" if body is None else "POST", headers={
        "Authorization": f"Bearer {operator_token(Path(data_dir))}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            print(answer.read().decode())
    except urllib.error.HTTPError as error:
        raise ValueError(f"the server refused: {error.read().decode()}") from None
    except urllib.error.URLError as error:
        raise ValueError(f"no server at {url}: {error.reason}") from None
    return 0


def create_key(data_dir: str, account: int, passphrase: str | None, label: str) -> int:
    """`pyexchange keys create`: an API key for an existing account; the secret is shown once."""
    path = Path(data_dir)
    if not Accounts(path).exists(account):
        raise ValueError(f"there is no account {account} in {path} (create it with `pyexchange accounts create`)")
    print(json.dumps(KeyStore(path).create(account, passphrase=passphrase, label=label).as_json()))
    return 0
