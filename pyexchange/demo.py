"""`pyexchange demo`: a seeded market run through the engine's batch path.

Funds a few hundred accounts, then feeds rounds of random limit, IOC and market orders
around a drifting mid price, with cancels of orders that rest, and prints the book, the last
trades and the throughput. The same seed gives the same trades and the same state hash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pyexchange import wire
from pyexchange.engine import Engine, Event

SYMBOL = "BTC-USDT"
ACCOUNTS = 200
ROUND_COMMANDS = 20_000


@dataclass(frozen=True)
class DemoResult:
    commands: int
    fills: int
    seconds: float
    state_hash: str


def _setup(eng: Engine) -> None:
    eng.add_instrument(SYMBOL, tick_size="0.1", lot_size="0.001", min_size="0.001", maker_fee_bps=2, taker_fee_bps=5)
    for account in range(1, ACCOUNTS + 1):
        eng.deposit(account, "USDT", "10000000", ts_ns=0)
        eng.deposit(account, "BTC", "300", ts_ns=0)


def _round(rng: np.random.Generator, mid_ticks: int, resting: np.ndarray, ts_ns: int) -> np.ndarray:
    """One round: places (limit 85%, ioc 10%, market 5%) and, once orders rest, 25% cancels."""
    batch = np.zeros(ROUND_COMMANDS, dtype=wire.COMMAND_DTYPE)
    batch["ts_ns"] = ts_ns + np.arange(ROUND_COMMANDS)
    batch["account"] = rng.integers(1, ACCOUNTS + 1, ROUND_COMMANDS)
    side = rng.integers(0, 2, ROUND_COMMANDS)
    offset = rng.geometric(0.05, ROUND_COMMANDS)  # ticks from mid; a few cross it
    batch["side"] = side
    batch["price_ticks"] = np.where(side == wire.BUY, mid_ticks - offset + 3, mid_ticks + offset - 3)
    batch["size_lots"] = rng.integers(1, 500, ROUND_COMMANDS)
    batch["order_type"] = rng.choice([wire.LIMIT, wire.IOC, wire.MARKET], ROUND_COMMANDS, p=[0.85, 0.10, 0.05])
    batch["kind"] = wire.PLACE
    if len(resting):
        is_cancel = rng.random(ROUND_COMMANDS) < 0.25
        batch["kind"][is_cancel] = wire.CANCEL
        batch["order_id"][is_cancel] = rng.choice(resting, int(is_cancel.sum()))
    return batch


def run(seed: int = 7, rounds: int = 10) -> tuple[Engine, DemoResult, list[Event]]:
    """The engine after the run, its figures, and the last five trades."""
    rng = np.random.default_rng(seed)
    eng = Engine(clock=lambda: 0)
    _setup(eng)
    mid_ticks = 300_000  # 30,000.0 USDT
    owner: dict[int, int] = {}
    resting = np.zeros(0, dtype=np.uint64)
    commands = fills = 0
    seconds = 0.0
    last_trades = np.zeros(0, dtype=wire.EVENT_DTYPE)
    for r in range(rounds):
        batch = _round(rng, mid_ticks, resting, ts_ns=r * ROUND_COMMANDS)
        cancels = batch["kind"] == wire.CANCEL
        # A cancel names its owner, as a client that placed the order would.
        batch["account"][cancels] = [owner[i] for i in batch["order_id"][cancels].tolist()]
        start = time.perf_counter()
        events = eng.submit(batch)
        seconds += time.perf_counter() - start
        commands += len(batch)
        accepted = events[events["kind"] == wire.ACCEPTED]
        owner.update(zip(accepted["order_id"].tolist(), accepted["account"].tolist(), strict=True))
        resting = accepted["order_id"].copy()
        trades = events[events["kind"] == wire.FILL]
        fills += len(trades)
        if len(trades):
            last_trades = trades[-5:]
            mid_ticks = int(trades["price_ticks"][-1]) + int(rng.integers(-20, 21))
    eng.check_invariants()
    return eng, DemoResult(commands, fills, seconds, eng.state_hash()), eng.decode_events(last_trades)


def main(seed: int = 7, rounds: int = 10) -> None:
    eng, result, trades = run(seed, rounds)
    book = eng.book(SYMBOL, depth=5)
    print(f"pyexchange demo: seed {seed}, {result.commands:,} commands, {result.fills:,} fills")
    print(f"\n{SYMBOL} book, top 5 levels")
    print(f"{'bid size':>12} {'bid':>10} | {'ask':<10} {'ask size':<12}")
    for level in range(5):
        bid = book["bids"][level] if level < len(book["bids"]) else ("", "")
        ask = book["asks"][level] if level < len(book["asks"]) else ("", "")
        print(f"{bid[1]!s:>12} {bid[0]!s:>10} | {ask[0]!s:<10} {ask[1]!s:<12}")
    print("\nlast trades (taker side, size @ price)")
    for trade in trades:
        print(
            f"  {trade.side:>4} {trade.size} @ {trade.price}"
            f"  taker #{trade.taker_order_id} maker #{trade.maker_order_id}"
        )
    rate = result.commands / result.seconds if result.seconds else float("inf")
    print(f"\nthroughput: {rate:,.0f} commands/s through Engine.submit (batch path, this machine)")
    print(f"state hash: {result.state_hash}")
