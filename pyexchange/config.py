"""The configuration of a zone: server, engine, admission, risk, assets, instruments, demo.

It is one TOML file (`pyexchange serve --config FILE`); without one, the built-in
`default_config.toml` holds a few USDT spot pairs. Every limit the gateway keeps is declared
here, once, and checked when the file is read: a missing or bad value is a `ValueError` that
names the key, before anything starts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from pyexchange.gateway.ramp import check_points
from pyexchange.risk import RiskConfig

DEFAULT_CONFIG = "default_config.toml"


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """How much the gateway lets wait before it refuses new orders fast (429 / 50011), and how
    fast it lets them in after a restart or a failover (`gateway.ramp`)."""

    orders_queued_max: int
    cancels_queued_max: int
    queue_delay_ms_max: int
    requests_in_flight_max: int
    reply_timeout_ms: int
    retry_after_s: int
    ramp_orders_per_s: tuple[tuple[int, int], ...] = ()  # (seconds since the start, orders/s); () is no ramp
    ramp_burst_orders: int = 1


REOPEN_STATES = ("cancel_only", "pre_open", "call_auction")


@dataclass(frozen=True, slots=True)
class ReopenConfig:
    """How `pyexchange market reopen` brings instruments back to continuous trading: the
    phases in order, each a market state and how long it lasts; the call auction ends at a
    seeded random moment in its last `auction_random_end_s`, and uncrosses within
    `auction_band_bps` of the reference price or goes on for `auction_extension_s` more."""

    phases: tuple[tuple[str, float], ...]
    auction_random_end_s: float
    auction_band_bps: int
    auction_extension_s: float


@dataclass(frozen=True, slots=True)
class AssetConfig:
    name: str
    decimals: int


@dataclass(frozen=True, slots=True)
class InstrumentConfig:
    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal
    maker_fee_bps: int
    taker_fee_bps: int

    @property
    def base(self) -> str:
        return self.symbol.split("-")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("-")[1]


@dataclass(frozen=True, slots=True)
class Config:
    host: str
    port: int
    snapshot_every_commands: int
    group_commit_window_us: int
    admission: AdmissionConfig
    reopen: ReopenConfig
    risk: RiskConfig
    timestamp_window_s: int
    demo_accounts: int
    demo_funds: Mapping[str, Decimal]
    assets: tuple[AssetConfig, ...]
    instruments: tuple[InstrumentConfig, ...]


def load(path: str | Path | None = None) -> Config:
    """The configuration in `path`, or the built-in one."""
    if path is None:
        text = resources.files("pyexchange").joinpath(DEFAULT_CONFIG).read_text()
        where = f"the built-in {DEFAULT_CONFIG}"
    else:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ValueError(f"cannot read the config {path}: {error.strerror}") from None
        where = str(path)
    try:
        return parse(tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{where} is not valid TOML: {error}") from None
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def parse(doc: Mapping[str, Any]) -> Config:
    server, engine = _table(doc, "server"), _table(doc, "engine")
    admission, demo = _table(doc, "admission"), _table(doc, "demo")
    assets = tuple(_asset(a, f"assets[{i}]") for i, a in enumerate(_tables(doc, "assets")))
    instruments = tuple(_instrument(t, f"instruments[{i}]") for i, t in enumerate(_tables(doc, "instruments")))
    _check_names(assets, instruments)
    funds = _table(demo, "funds", "demo.")
    config = Config(
        host=_str(server, "host", "server."),
        port=_int(server, "port", "server.", low=0, high=65535),
        snapshot_every_commands=_int(engine, "snapshot_every_commands", "engine.", low=0),
        group_commit_window_us=_int(engine, "group_commit_window_us", "engine.", low=0, high=1_000_000),
        admission=AdmissionConfig(
            orders_queued_max=_int(admission, "orders_queued_max", "admission.", low=1),
            cancels_queued_max=_int(admission, "cancels_queued_max", "admission.", low=1),
            queue_delay_ms_max=_int(admission, "queue_delay_ms_max", "admission.", low=1),
            requests_in_flight_max=_int(admission, "requests_in_flight_max", "admission.", low=1),
            reply_timeout_ms=_int(admission, "reply_timeout_ms", "admission.", low=1),
            retry_after_s=_int(admission, "retry_after_s", "admission.", low=1),
            ramp_orders_per_s=check_points(admission.get("ramp_orders_per_s"), "admission.ramp_orders_per_s"),
            ramp_burst_orders=_int(admission, "ramp_burst_orders", "admission.", low=1, high=1_000_000),
        ),
        reopen=_reopen(_table(doc, "reopen")),
        risk=RiskConfig.from_dict(_table(doc, "risk"), {t["symbol"]: t for t in _tables(doc, "instruments")}),
        timestamp_window_s=_int(_table(doc, "auth"), "timestamp_window_s", "auth.", low=1, high=3600),
        demo_accounts=_int(demo, "accounts", "demo.", low=0, high=1000),
        demo_funds={name: _decimal(funds, name, "demo.funds.") for name in funds},
        assets=assets,
        instruments=instruments,
    )
    unknown = set(config.demo_funds) - {a.name for a in assets}
    if unknown:
        raise ValueError(f"demo.funds names assets that are not configured: {', '.join(sorted(unknown))}")
    if config.admission.reply_timeout_ms <= config.admission.queue_delay_ms_max:
        raise ValueError("admission.reply_timeout_ms must be longer than admission.queue_delay_ms_max")
    return config


def _check_names(assets: tuple[AssetConfig, ...], instruments: tuple[InstrumentConfig, ...]) -> None:
    names = [a.name for a in assets]
    if len(set(names)) != len(names):
        raise ValueError("assets: a name appears twice")
    symbols = [i.symbol for i in instruments]
    if len(set(symbols)) != len(symbols):
        raise ValueError("instruments: a symbol appears twice")
    for inst in instruments:
        for name in (inst.base, inst.quote):
            if name not in names:
                raise ValueError(f"instrument {inst.symbol} needs the asset {name}, which [[assets]] does not list")


def _reopen(table: Mapping[str, Any]) -> ReopenConfig:
    phases = table.get("phases")
    shape = "a list of [state, seconds] in the order cancel_only, pre_open, call_auction (each at most once)"
    if not isinstance(phases, list) or not all(isinstance(p, list) and len(p) == 2 for p in phases):
        raise ValueError(f"reopen.phases must be {shape}, not {phases!r}")
    order = [REOPEN_STATES.index(p[0]) if p[0] in REOPEN_STATES else -1 for p in phases]
    if -1 in order or order != sorted(set(order)):
        raise ValueError(f"reopen.phases must be {shape}, not {phases!r}")
    durations = [_seconds(p[1], f"reopen.phases[{i}] seconds") for i, p in enumerate(phases)]
    random_end_s = _seconds(table.get("auction_random_end_s"), "reopen.auction_random_end_s", zero_ok=True)
    auction_s = dict(zip((p[0] for p in phases), durations, strict=True)).get("call_auction")
    if auction_s is not None and random_end_s > auction_s:
        raise ValueError(f"reopen.auction_random_end_s ({random_end_s}) must not pass the call auction's {auction_s} s")
    return ReopenConfig(
        phases=tuple((p[0], d) for p, d in zip(phases, durations, strict=True)),
        auction_random_end_s=random_end_s,
        auction_band_bps=_int(table, "auction_band_bps", "reopen.", low=1, high=10_000),
        auction_extension_s=_seconds(table.get("auction_extension_s"), "reopen.auction_extension_s"),
    )


def _seconds(value: Any, where: str, *, zero_ok: bool = False) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not (value >= 0 if zero_ok else value > 0):
        low = "0 or more" if zero_ok else "more than 0"
        raise ValueError(f"{where} must be a number of seconds, {low}, not {value!r}")
    return float(value)


def _asset(table: Mapping[str, Any], where: str) -> AssetConfig:
    return AssetConfig(
        name=_str(table, "name", f"{where}."), decimals=_int(table, "decimals", f"{where}.", low=0, high=18)
    )


def _instrument(table: Mapping[str, Any], where: str) -> InstrumentConfig:
    p = f"{where}."
    symbol = _str(table, "symbol", p)
    base, sep, quote = symbol.partition("-")
    if not sep or not base or not quote or "-" in quote:
        raise ValueError(f"{p}symbol {symbol!r} must look like BASE-QUOTE")
    return InstrumentConfig(
        symbol=symbol,
        tick_size=_decimal(table, "tick_size", p),
        lot_size=_decimal(table, "lot_size", p),
        min_size=_decimal(table, "min_size", p),
        maker_fee_bps=_int(table, "maker_fee_bps", p, low=0, high=1000),
        taker_fee_bps=_int(table, "taker_fee_bps", p, low=0, high=1000),
    )


def _table(doc: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"[{prefix}{key}] is missing or not a table")
    return value


def _tables(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = doc.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(t, dict) for t in value):
        raise ValueError(f"[[{key}]] is missing or empty")
    return value


def _str(table: Mapping[str, Any], key: str, prefix: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{prefix}{key} must be a non-empty string, not {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, prefix: str, *, low: int, high: int = 1 << 62) -> int:
    value = table.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{prefix}{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def _decimal(table: Mapping[str, Any], key: str, prefix: str) -> Decimal:
    value = table.get(key)
    try:
        number = Decimal(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number <= 0:
        raise ValueError(f'{prefix}{key} must be a positive decimal (a string such as "0.01"), not {value!r}')
    return number
