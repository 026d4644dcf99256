"""The engine benchmark: one run, every path and every peer, on the same seeded workloads.

For each workload (exchange-core's mix; a venue-like mix over several instruments with the
ledger in play) it measures, in one run on this machine:
  (a) the pure Rust engine (`cargo bench --bench engine`, records applied in chunks),
  (b) the Python batch path (`Engine.submit` on numpy arrays),
  (c) the lean per-order Python call (`Engine.place_ticks` / `cancel_ticks` / `amend_ticks`),
  (d) the peers in `bench/peers/` on the part of the workload each supports,
and reports throughput and ratios. Latency percentiles come from HdrHistograms, measured
open-loop against each command's planned send time at fixed offered rates, so a stall counts
against every command queued behind it (no coordinated omission). Every peer's fills are
compared with our engine's fills; our engine's fills are compared with the slow reference
engine (`tests/reference.py`) on a prefix of the workload.

    python -m bench.run [--commands 1000000] [--seed 1] [--skip-peers] [--out bench/results]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench import workloads
from bench.peers import PEER_MODULES, sequential_order_ids
from bench.peers.compare import run_isolated
from pyexchange import Engine, wire

ROOT = pathlib.Path(__file__).resolve().parent.parent
LATENCY_NS_MAX = 60_000_000_000
REFERENCE_PREFIX_COMMANDS = 20_000
BATCH_RECORDS_MAX = 4_096
BATCH_CHUNK_RECORDS = 65_536
PEER_TIMEOUT_S = 600
WARMUP_DIVISOR = 10
REFERENCE_PEER = "plain_ladder"
PREALLOCATED_LIVE_ORDERS = 1 << 16
LEAN_DRAIN_CALLS = 1 << 16


@dataclass
class Workload:
    name: str
    setup: dict[str, Any]  # {"assets": [(name, decimals)], "instruments": [decimal specs]}
    prefix: np.ndarray  # setup records (deposits), applied before timing
    commands: np.ndarray  # the timed records
    order_ids: np.ndarray  # per row, the id our engine gives that place (0 elsewhere)


def engine_for(workload: Workload) -> Engine:
    """A fresh engine with the workload's setup applied and its memory preallocated."""
    eng = Engine(clock=lambda: 0)
    for name, decimals in workload.setup["assets"]:
        eng.add_asset(name, decimals)
    for inst in workload.setup["instruments"]:
        eng.add_instrument(**inst)
    eng.submit(workload.prefix)
    eng.preallocate(PREALLOCATED_LIVE_ORDERS)
    return eng


def rust_setup(workload: Workload, eng: Engine) -> dict[str, Any]:
    """The integer setup the Rust bench binary reads (`core_rs/benches/engine.rs`)."""
    instruments = []
    for inst in workload.setup["instruments"]:
        spec = eng.instrument(inst["symbol"])
        instruments.append(
            {
                "symbol": spec.symbol,
                "base_asset": spec.base.asset_id,
                "quote_asset": spec.quote.asset_id,
                "lot_units": int(spec.lot_size.scaleb(spec.base.decimals)),
                "quote_units_per_tick_lot": int((spec.tick_size * spec.lot_size).scaleb(spec.quote.decimals)),
                "min_size_lots": int(spec.min_size / spec.lot_size),
                "maker_fee_bps": inst.get("maker_fee_bps", 0),
                "taker_fee_bps": inst.get("taker_fee_bps", 0),
                "market_protection_bps": inst.get("market_protection_bps", 500),
            }
        )
    assets = [{"name": name, "decimals": decimals} for name, decimals in workload.setup["assets"]]
    return {"prefix_records": len(workload.prefix), "assets": assets, "instruments": instruments}


def build_workloads(n_commands: int, seed: int) -> list[Workload]:
    core = workloads.exchange_core_mix(n_commands, seed)
    setup = workloads.EXCHANGE_CORE_SETUP
    assets = {name: i for i, (name, _) in enumerate(setup["assets"])}
    inst = dict(setup["instrument"])
    for key in ("base", "quote"):
        inst.pop(key)
    exchange_core = Workload(
        "exchange-core mix",
        {"assets": list(setup["assets"]), "instruments": [inst]},
        workloads.deposit_commands(workloads.funding(core), assets),
        core,
        sequential_order_ids(core),
    )
    venue = workloads.venue_workload(n_commands, seed)
    return [exchange_core, Workload("venue mix", venue.setup, venue.prefix, venue.commands, venue.order_ids)]


# ---- latency ------------------------------------------------------------------------------


def percentiles(latencies_ns: np.ndarray) -> dict[str, int]:
    histogram = HdrHistogram(1, LATENCY_NS_MAX, 3)
    values, counts = np.unique(np.clip(latencies_ns, 1, LATENCY_NS_MAX), return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, count)
    return {
        "p50_ns": histogram.get_value_at_percentile(50),
        "p99_ns": histogram.get_value_at_percentile(99),
        "p999_ns": histogram.get_value_at_percentile(99.9),
        "p9999_ns": histogram.get_value_at_percentile(99.99),
        "max_ns": histogram.get_max_value(),
    }


def _split_warmup(commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first tenth is applied unmeasured: the book fills and caches warm, as in a running
    exchange (the Rust latency runs do the same)."""
    split = len(commands) // WARMUP_DIVISOR
    return commands[:split], commands[split:]


def batch_latency(workload: Workload, rate_per_s: float) -> dict[str, Any]:
    """Open loop: commands arrive at `rate_per_s`; each submit takes what has arrived (up to
    `BATCH_RECORDS_MAX`); a command's latency runs from its planned arrival to its batch's end."""
    eng = engine_for(workload)
    warmup, commands = _split_warmup(workload.commands)
    eng.submit(warmup)
    planned = (np.arange(len(commands)) * (1e9 / rate_per_s)).astype(np.int64)
    latencies = np.empty(len(commands), dtype=np.int64)
    sent = 0
    start = time.perf_counter_ns()
    while sent < len(commands):
        now = time.perf_counter_ns() - start
        arrived = int(np.searchsorted(planned, now, side="right"))
        if arrived <= sent:
            continue
        end = min(arrived, sent + BATCH_RECORDS_MAX)
        eng.submit(commands[sent:end])
        latencies[sent:end] = time.perf_counter_ns() - start - planned[sent:end]
        sent = end
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    return {"offered_per_s": rate_per_s, "achieved_per_s": len(commands) / elapsed_s, **percentiles(latencies)}


def lean_calls(eng: Engine, commands: np.ndarray) -> list[tuple[Any, tuple[int, ...]]]:
    """Each record as (bound lean call, its integer arguments): the per-order hot loop."""
    place, cancel, amend, deposit = eng.place_ticks, eng.cancel_ticks, eng.amend_ticks, eng.deposit_units
    calls: list[tuple[Any, tuple[int, ...]]] = []
    columns = zip(
        *(commands[c].tolist() for c in ("kind", "account", "instrument", "side", "order_type", "stp")),
        *(commands[c].tolist() for c in ("price_ticks", "size_lots", "order_id")),
        strict=True,
    )
    for kind, account, instrument, side, order_type, stp, price, size, order_id in columns:
        if kind == wire.PLACE:
            calls.append((place, (account, instrument, side, order_type, price, size, stp)))
        elif kind == wire.DEPOSIT:
            calls.append((deposit, (account, instrument, size)))
        elif kind == wire.CANCEL:
            calls.append((cancel, (account, instrument, order_id)))
        elif kind == wire.AMEND:
            calls.append((amend, (account, instrument, order_id, price, size)))
        else:
            raise ValueError(f"no lean call for command kind {kind}")
    return calls


def lean_throughput(workload: Workload) -> float:
    """Commands/s of the lean calls from a Python loop, draining the events every
    `LEAN_DRAIN_CALLS` calls. The drain is an outer loop, not a counter tested on every call:
    `enumerate` and the test cost about 550 instructions a call, nearly a third of the whole."""
    eng = engine_for(workload)
    calls = lean_calls(eng, workload.commands)
    take_events = eng._core.take_events
    start = time.perf_counter()
    for first in range(0, len(calls), LEAN_DRAIN_CALLS):
        for call, args in calls[first : first + LEAN_DRAIN_CALLS]:
            call(*args)
        take_events()
    seconds = time.perf_counter() - start
    eng.check_invariants()
    return len(calls) / seconds


def lean_latency(workload: Workload, rate_per_s: float) -> dict[str, Any]:
    eng = engine_for(workload)
    warmup, commands = _split_warmup(workload.commands)
    eng.submit(warmup)
    calls = lean_calls(eng, commands)
    interval_ns = 1e9 / rate_per_s
    latencies = np.empty(len(calls), dtype=np.int64)
    clock = time.perf_counter_ns
    start = clock()
    for i, (call, args) in enumerate(calls):
        planned = int(i * interval_ns)
        while clock() - start < planned:
            pass
        call(*args)
        latencies[i] = clock() - start - planned
        if i & 0xFFFF == 0xFFFF:
            eng.take_events()
    elapsed_s = (clock() - start) / 1e9
    return {"offered_per_s": rate_per_s, "achieved_per_s": len(calls) / elapsed_s, **percentiles(latencies)}


# ---- the paths ------------------------------------------------------------------------------


def write_rust_workload(workload: Workload, workdir: pathlib.Path) -> pathlib.Path:
    """Writes the records and setup the Rust bench binaries read; returns the records' path."""
    eng = engine_for(workload)
    path = workdir / (workload.name.replace(" ", "-") + ".rec")
    np.concatenate([workload.prefix, workload.commands]).tofile(path)
    path.with_name(path.name + ".json").write_text(json.dumps(rust_setup(workload, eng)))
    return path


def rust_engine(workload: Workload, workdir: pathlib.Path, rates: list[float]) -> dict[str, Any]:
    path = write_rust_workload(workload, workdir)
    rates_arg = ",".join(str(int(r)) for r in rates)
    # Cargo runs a bench from its package's folder: the workload path must be absolute.
    workload_path = str(path.resolve())
    command = ["cargo", "bench", "-q", "--bench", "engine", "--", "--workload", workload_path, "--rates", rates_arg]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def batch_throughput(workload: Workload, chunk_records: int, runs: int = 3) -> tuple[float, np.ndarray]:
    """Best commands/s of `submit` over the workload in chunks (the whole array if the chunk
    is as large), and the events of the last run. Each run's event buffers are dropped once
    copied out, as a consumer drops what it has handled, so later runs write into buffers
    the binding pooled instead of faulting in fresh memory (the first run does)."""
    best = 0.0
    events = np.zeros(0, dtype=wire.EVENT_DTYPE)
    commands = workload.commands
    for _ in range(runs):
        eng = engine_for(workload)
        start = time.perf_counter()
        parts = [eng.submit(commands[i : i + chunk_records]) for i in range(0, len(commands), chunk_records)]
        best = max(best, len(commands) / (time.perf_counter() - start))
        eng.check_invariants()
        events = np.concatenate(parts)
        del parts
    return best, events


def engine_fills(events: np.ndarray) -> list[tuple[int, int, int, int]]:
    fills = events[events["kind"] == wire.FILL]
    return list(
        zip(
            fills["order_id"].tolist(),
            fills["maker_order_id"].tolist(),
            fills["price_ticks"].tolist(),
            fills["size_lots"].tolist(),
            strict=True,
        )
    )


def reference_agrees(workload: Workload) -> tuple[bool, int]:
    """Whether our engine's fills on the first commands equal the slow reference engine's,
    and how many fills were compared."""
    sys.path.insert(0, str(ROOT / "tests"))
    ref = importlib.import_module("reference").ReferenceEngine()
    eng = engine_for(workload)
    for name, decimals in workload.setup["assets"]:
        ref.add_asset(name, decimals)
    for inst in workload.setup["instruments"]:
        ref.add_instrument(**inst)
    asset_names = [name for name, _ in workload.setup["assets"]]
    for record in workload.prefix:
        asset = eng.asset(asset_names[int(record["instrument"])])
        ref.deposit(int(record["account"]), asset.name, asset.amount(int(record["size_lots"])))
    prefix = workload.commands[:REFERENCE_PREFIX_COMMANDS]
    ours = [_fill_key(e) for e in eng.decode_events(eng.submit(prefix)) if e.kind == "fill"]
    symbols = [inst["symbol"] for inst in workload.setup["instruments"]]
    theirs = [_fill_key(e) for r in prefix for e in _reference_apply(ref, eng, symbols, r) if e.kind == "fill"]
    return ours == theirs, len(ours)


def _fill_key(event: Any) -> tuple[Any, ...]:
    return (event.taker_order_id, event.maker_order_id, event.instrument, event.price, event.size)


def _reference_apply(ref: Any, eng: Engine, symbols: list[str], record: np.void) -> list[Any]:
    account, kind = int(record["account"]), int(record["kind"])
    if kind == wire.DEPOSIT:
        asset = eng._asset_by_id[int(record["instrument"])]
        return list(ref.deposit(account, asset.name, asset.amount(int(record["size_lots"]))))
    inst = eng.instrument(symbols[int(record["instrument"])])
    if kind == wire.PLACE:
        order_type = wire.ORDER_TYPES[int(record["order_type"])]
        price = None if order_type == "market" else inst.price(int(record["price_ticks"]))
        return list(
            ref.place(
                account, inst.symbol, wire.SIDES[int(record["side"])], order_type,
                size=inst.size(int(record["size_lots"])), price=price, stp=wire.STP_MODES[int(record["stp"])],
            )
        )  # fmt: skip
    if kind == wire.CANCEL:
        return list(ref.cancel(account, inst.symbol, int(record["order_id"])))
    new_price = int(record["price_ticks"])
    new_size = int(record["size_lots"])
    return list(
        ref.amend(
            account, inst.symbol, int(record["order_id"]),
            new_size=inst.size(new_size) if new_size else None, new_price=inst.price(new_price) if new_price else None,
        )
    )  # fmt: skip


def run_peers(workload: Workload, engine_fill_list: list[tuple[int, int, int, int]]) -> Iterator[dict[str, Any]]:
    """Each peer in its own process with a time limit. Fills are checked against the plain
    ladder's (the reference for the part of the workload the peers run: limit, IOC, cancel,
    move); the plain ladder's against our engine's where the semantics coincide (no ledger
    rejections, no self-trade prevention: the exchange-core mix)."""
    reference_fills: list[tuple[int, int, int, int]] | None = None
    for module_name in PEER_MODULES:
        status, result, detail = run_isolated(module_name, workload.commands, workload.order_ids, PEER_TIMEOUT_S)
        module = importlib.import_module(f"bench.peers.{module_name}")
        row: dict[str, Any] = {"peer": getattr(module, "NAME", module_name), "status": status, "detail": detail}
        if result is not None:
            row |= {
                "supports": list(module.SUPPORTS),
                "commands_done": result.n_commands_done,
                "per_s": result.commands_per_second,
                "fills": len(result.fills),
                "notes": result.notes,
            }
            if module_name == REFERENCE_PEER:
                reference_fills = result.fills
                row["fills_equal_engine"] = result.fills == engine_fill_list
            elif getattr(module, "PRODUCES_FILLS", True):
                row["fills_equal_reference"] = reference_fills is not None and result.fills == reference_fills
            else:
                row["final_book_equal_reference"] = result.error is None
        yield row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": platform.platform(), "commands": args.commands, "seed": args.seed}
    for workload in build_workloads(args.commands, args.seed):
        print(f"== {workload.name}: {len(workload.commands):,} commands", flush=True)
        rust = rust_engine(workload, args.out, rates=[1_000_000, 5_000_000])
        print(f"(a) rust: {rust['best_per_s']:,.0f}/s", flush=True)
        for row in rust["latency"]:
            empty = row["empty_service"]
            print(
                f"(a) at {row['offered_per_s']:,.0f}/s offered: p99.99 {row['p9999_ns'] / 1e3:,.1f} µs,"
                f" max {row['max_ns'] / 1e3:,.1f} µs (an empty loop on this machine:"
                f" {empty['p9999_ns'] / 1e3:,.1f} and {empty['max_ns'] / 1e3:,.1f} µs)",
                flush=True,
            )
        batch_per_s, events = batch_throughput(workload, chunk_records=len(workload.commands))
        chunked_per_s, chunked_events = batch_throughput(workload, chunk_records=BATCH_CHUNK_RECORDS)
        assert np.array_equal(events, chunked_events), "chunked and whole batches must agree"
        print(f"(b) batch: {batch_per_s:,.0f}/s whole, {chunked_per_s:,.0f}/s in chunks", flush=True)
        lean_per_s = lean_throughput(workload)
        print(f"(c) lean: {lean_per_s:,.0f}/s", flush=True)
        fills = engine_fills(events)
        entry: dict[str, Any] = {
            "commands": len(workload.commands),
            "fills": len(fills),
            "reference_agrees_on_prefix": reference_agrees(workload),
            "rust": rust,
            "batch": {
                "per_s": batch_per_s,
                "chunked_per_s": chunked_per_s,
                "latency": [batch_latency(workload, r) for r in (1e6, 5e6)],
            },
            "lean": {"per_s": lean_per_s, "latency": [lean_latency(workload, r) for r in (2.5e5, 1e6)]},
        }
        if not args.skip_peers:
            entry["peers"] = []
            for row in run_peers(workload, fills):
                print(f"(d) {row['peer']}: {row['status']} {row.get('per_s', 0):,.0f}/s {row['detail']}", flush=True)
                entry["peers"].append(row)
        report[workload.name] = entry
        print(json.dumps(entry, indent=1, default=str), flush=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
