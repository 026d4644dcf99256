"""Instructions per request of the gateway's order paths, counted by callgrind: a steady figure
for comparing two versions of the gateway's Python. Wall-clock runs of the same paths on this
shared 2-core VM move by 10% and more within minutes; this count repeats within 0.3%.

    python -m bench.gateway_instructions [--path ws]      # the count (needs valgrind, about 1.5 min)
    python -m bench.gateway_instructions --wall 20         # µs per request over 20 rounds, no valgrind
    python -m bench.gateway_instructions --longest-batches 1500000   # the slowest batches as the views grow

The paths are `bench/test_gateway_path.py`'s: `ws`, logged-in connections take `op: order`
frames (the frame, JSON, checks, risk, the sequencer's batch on the in-memory engine, the
views, the answers' frames); `rest`, the whole application handles signed `POST /api/v5/trade/order` requests
(a task each, as uvicorn runs them: admission, order entry, the signature, then as `ws`);
`trivial`, the same application answers `GET /api/v5/public/time` (FastAPI's middleware and
routing: the ceiling that REST order entry is measured against). They are made
deterministic: the sequencer's thread is not started, and its step runs on the event loop's
thread after every `BATCH_MESSAGES` requests; the garbage collector runs as in the server
(`keep_gc_pauses_short`: gen2 frozen after every round); admission delays are off (valgrind
runs the path 50 times slower). The count is the difference between a run of `ROUNDS_LONG`
and one of `ROUNDS_SHORT` rounds of 1,000 requests, divided by the requests between them, so
that start-up and warm-up cancel out. The client's side (JSON encoding, for REST the
signature) is in the count (the same for both versions); uvicorn's HTTP parsing is not.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import uvloop

from bench import test_gateway_path as path
from pyexchange import Engine
from pyexchange.config import load
from pyexchange.gateway.app import GC_GEN2_AFTER_GEN1_COLLECTIONS
from pyexchange.gateway.exchange import Exchange
from pyexchange.gateway.sequencer import Sequencer
from pyexchange.gateway.ws import Hub
from pyexchange.serve import configure

BATCH_MESSAGES = 100
LONGEST_BATCHES_SHOWN = 12
PATHS = {"ws": "WebSocket `op: order` messages", "rest": "REST `POST /api/v5/trade/order`",
         "trivial": "REST `GET /api/v5/public/time`, the ceiling of the HTTP stack"}  # fmt: skip
WARMUP_ROUNDS = 3
ROUNDS_SHORT, ROUNDS_LONG = 2, 6
NO_ADMISSION_DELAYS = {"queue_delay_ms_max = 250": "queue_delay_ms_max = 10_000_000",
                       "reply_timeout_ms = 5000": "reply_timeout_ms = 20_000_000"}  # fmt: skip


def _freeze(_round: int) -> None:
    gc.freeze()


async def run_rounds(rounds: int, kind: str = "ws", after_round: Callable[[int], None] = _freeze,
                     batch_ns: list[int] | None = None) -> float:  # fmt: skip
    """Runs the warm-up and `rounds` measured rounds of `kind` (`PATHS`), calling `after_round`
    with each round's number (from 1, warm-up included; by default it freezes the heap, as the
    server does every second); µs per request of the measured ones. `batch_ns` (`ws` only) gets
    how long each batch took, from its frames in to its answers out, warm-up included."""
    workdir = Path(tempfile.mkdtemp(prefix="gateway-instructions-"))
    try:
        config_path = path._bench_config(workdir)
        text = config_path.read_text()
        for old, new in NO_ADMISSION_DELAYS.items():
            assert old in text, f"the bench config has no {old!r}"
            text = text.replace(old, new)
        config_path.write_text(text)
        config = load(config_path)
        engine = Engine()
        configure(engine, config)
        path._fund(engine)
        exchange = Exchange(config, workdir, engine)
        with mock.patch.object(Sequencer, "start"):  # its steps run here, in order
            exchange.start(asyncio.get_running_loop(), Hub())
        one_round, answered = _ws_round(exchange, batch_ns) if kind == "ws" else _rest_round(exchange, workdir, kind)
        done = itertools.count(1)
        for _ in range(WARMUP_ROUNDS):
            await one_round()
            after_round(next(done))
        gen0, gen1, _gen2 = gc.get_threshold()
        gc.set_threshold(gen0, gen1, GC_GEN2_AFTER_GEN1_COLLECTIONS)
        start_ns = time.perf_counter_ns()
        for _ in range(rounds):
            await one_round()
            after_round(next(done))
        us_per_request = (time.perf_counter_ns() - start_ns) / 1000 / (rounds * path.ORDERS_PER_ROUND)
        expected = (WARMUP_ROUNDS + rounds) * path.ORDERS_PER_ROUND
        count, failed = answered()
        if failed or count != expected:
            raise RuntimeError(f"{count} answers of {expected}, {failed} not a success")
        return us_per_request
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


Round = tuple[Callable[[], Awaitable[None]], Callable[[], tuple[int, int]]]


def _ws_round(exchange: Exchange, batch_ns: list[int] | None) -> Round:
    """Logged-in connections take `op: order` frames, a batch every `BATCH_MESSAGES`."""
    sockets = path.Sockets(exchange, path.SESSIONS)
    orders = path._orders()

    async def one_round() -> None:
        messages = list(itertools.islice(orders, path.ORDERS_PER_ROUND))
        for start in range(0, len(messages), BATCH_MESSAGES):
            started_ns = time.perf_counter_ns()
            sockets.send(messages[start : start + BATCH_MESSAGES])
            exchange.sequencer.step()
            for _ in range(2):  # the futures' callbacks, then the answers they send
                await asyncio.sleep(0)
            if batch_ns is not None:
                batch_ns.append(time.perf_counter_ns() - started_ns)

    return one_round, lambda: (sockets.count, sockets.failed)


def _rest_round(exchange: Exchange, workdir: Path, kind: str) -> Round:
    """The whole app (`create_app`) called as uvicorn calls it, a task a request, with signed
    `POST /api/v5/trade/order`s (`rest`: a batch every `BATCH_MESSAGES`) or `GET
    /api/v5/public/time` (`trivial`)."""
    app, credentials = path.signed_app(exchange, workdir)
    rest = path.RestApp(None, app, credentials)  # type: ignore[arg-type]  # the round runs on this loop
    orders = path._signed_orders(credentials)
    trivial = (path._scope("GET", "/api/v5/public/time", []), b"")

    async def one_round() -> None:
        for _ in range(0, path.ORDERS_PER_ROUND, BATCH_MESSAGES):
            requests = list(itertools.islice(orders, BATCH_MESSAGES)) if kind == "rest" else [trivial] * BATCH_MESSAGES
            tasks = [asyncio.ensure_future(rest.one(scope, body)) for scope, body in requests]
            for _ in range(3):  # each request reads its body, then is queued
                await asyncio.sleep(0)
            exchange.sequencer.step()
            await asyncio.gather(*tasks)

    def answered() -> tuple[int, int]:
        return len(rest.answers), len(path.failures(rest.answers))

    return one_round, answered


def instructions(rounds: int, kind: str) -> int:
    """The instructions callgrind counts in a run of this module with `rounds` rounds."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
         "bench.gateway_instructions", "--path", kind, "--wall", str(rounds)],
        cwd=path.ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wall", type=int, metavar="ROUNDS", help="time ROUNDS rounds instead (no valgrind)")
    parser.add_argument("--longest-batches", type=int, metavar="ORDERS", help=(
        f"time each batch of {BATCH_MESSAGES} WebSocket orders as the views grow to ORDERS orders (run it as the "
        "server runs, with GLIBC_TUNABLES=glibc.malloc.hugetlb=1) and print the longest"))  # fmt: skip
    parser.add_argument("--path", choices=PATHS, default="ws", help="which path: " + "; ".join(
        f"{name}: {what}" for name, what in PATHS.items()))  # fmt: skip
    args = parser.parse_args()
    if args.longest_batches is not None:
        batch_ns: list[int] = []
        uvloop.run(run_rounds(args.longest_batches // path.ORDERS_PER_ROUND, "ws", batch_ns=batch_ns))
        longest = sorted(range(len(batch_ns)), key=batch_ns.__getitem__)[-LONGEST_BATCHES_SHOWN:]
        print(f"the {LONGEST_BATCHES_SHOWN} longest of {len(batch_ns):,} batches (orders before it: ms): " + ", ".join(
            f"{i * BATCH_MESSAGES:,}: {batch_ns[i] / 1e6:.1f}" for i in sorted(longest)))  # fmt: skip
        return
    if args.wall is not None:
        print(f"{uvloop.run(run_rounds(args.wall, args.path)):.2f} µs per request (wall clock, {args.wall} rounds)")
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with ThreadPoolExecutor(2) as pool:  # one valgrind on each core
        short, long = pool.map(instructions, (ROUNDS_SHORT, ROUNDS_LONG), (args.path,) * 2)
    requests = (ROUNDS_LONG - ROUNDS_SHORT) * path.ORDERS_PER_ROUND
    print(f"{args.path}: {(long - short) / requests:,.0f} instructions per request (callgrind; runs of "
          f"{ROUNDS_LONG} and {ROUNDS_SHORT} rounds of {path.ORDERS_PER_ROUND:,} requests)")  # fmt: skip


if __name__ == "__main__":
    main()
