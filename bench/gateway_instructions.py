"""Instructions per order of the gateway's WebSocket order path, counted by callgrind: a steady
figure for comparing two versions of the gateway's Python. Wall-clock runs of the same path on
this shared 2-core VM move by 10% and more within minutes; this count repeats within 0.3%.

    python -m bench.gateway_instructions               # the count (needs valgrind, about 1 min)
    python -m bench.gateway_instructions --wall 20     # µs per order over 20 rounds, no valgrind

The path is `bench/test_gateway_path.py`'s (logged-in sessions handle `op: order` messages:
JSON, checks, risk, the sequencer's batch on the in-memory engine, the views, the answers),
made deterministic: the sequencer's thread is not started, and its step runs on the event
loop's thread after every `BATCH_MESSAGES` messages; the garbage collector runs as in the
server (`keep_gc_pauses_short`: gen2 frozen after every round); admission delays are off
(valgrind runs the path 50 times slower). The count is the difference between a run of
`ROUNDS_LONG` and one of `ROUNDS_SHORT` rounds of 1,000 orders, divided by the orders between
them, so that start-up and warm-up cancel out. The client's JSON encoding of the orders is in
the count (the same for both versions).
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
from pyexchange.gateway.ws import Hub, Session
from pyexchange.serve import configure

BATCH_MESSAGES = 100
WARMUP_ROUNDS = 3
ROUNDS_SHORT, ROUNDS_LONG = 2, 6
NO_ADMISSION_DELAYS = {"queue_delay_ms_max = 250": "queue_delay_ms_max = 10_000_000",
                       "reply_timeout_ms = 5000": "reply_timeout_ms = 20_000_000"}  # fmt: skip


async def run_rounds(rounds: int) -> float:
    """Runs the warm-up and `rounds` measured rounds; µs per order of the measured ones."""
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
        sequencer = exchange.sequencer
        answers = path.Answers()
        sessions = [Session(exchange, Hub(), None, answers) for _ in range(path.SESSIONS)]  # type: ignore[arg-type]
        orders = path._orders()

        async def one_round() -> None:
            messages = list(itertools.islice(orders, path.ORDERS_PER_ROUND))
            for start in range(0, len(messages), BATCH_MESSAGES):
                for text, session in zip(messages[start : start + BATCH_MESSAGES], itertools.cycle(sessions)):
                    await session.handle(text)
                sequencer.step()
                for _ in range(2):  # the futures' callbacks, then the answers they send
                    await asyncio.sleep(0)
            gc.freeze()

        for _ in range(WARMUP_ROUNDS):
            await one_round()
        gen0, gen1, _gen2 = gc.get_threshold()
        gc.set_threshold(gen0, gen1, GC_GEN2_AFTER_GEN1_COLLECTIONS)
        start_ns = time.perf_counter_ns()
        for _ in range(rounds):
            await one_round()
        us_per_order = (time.perf_counter_ns() - start_ns) / 1000 / (rounds * path.ORDERS_PER_ROUND)
        expected = (WARMUP_ROUNDS + rounds) * path.ORDERS_PER_ROUND
        if answers.failed or answers.count != expected:
            raise RuntimeError(f"{answers.count} answers of {expected}, {answers.failed} not a success")
        return us_per_order
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def instructions(rounds: int) -> int:
    """The instructions callgrind counts in a run of this module with `rounds` rounds."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
         "bench.gateway_instructions", "--wall", str(rounds)],
        cwd=path.ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wall", type=int, metavar="ROUNDS", help="time ROUNDS rounds instead (no valgrind)")
    args = parser.parse_args()
    if args.wall is not None:
        print(f"{uvloop.run(run_rounds(args.wall)):.2f} µs per order (wall clock, {args.wall} rounds)")
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with ThreadPoolExecutor(2) as pool:  # one valgrind on each core
        short, long = pool.map(instructions, (ROUNDS_SHORT, ROUNDS_LONG))
    orders = (ROUNDS_LONG - ROUNDS_SHORT) * path.ORDERS_PER_ROUND
    print(f"{(long - short) / orders:,.0f} instructions per order (callgrind; runs of {ROUNDS_LONG} and "
          f"{ROUNDS_SHORT} rounds of {path.ORDERS_PER_ROUND:,} orders)")  # fmt: skip


if __name__ == "__main__":
    main()
