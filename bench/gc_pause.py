"""How long the server's full garbage collection holds the event loop with many orders in the
gateway's views: `app.keep_gc_pauses_short` freezes the heap every second and, every 10 minutes,
unfreezes it and collects it all, walking every object the collector tracks.

    python -m bench.gc_pause [--orders 1000000] [--times 3]

In process, on `bench.gateway_instructions`' WebSocket path (logged-in connections take `op:
order` frames; the sequencer's batches on the in-memory engine; the views; the answers; every
order rests), with the heap frozen every `FREEZE_EVERY_ROUNDS` rounds of 1,000 orders (about a
second of the path's load). The last `--times` full collections run `APART_ROUNDS` rounds apart,
the load going on in between, the last one at `--orders` orders.
"""

from __future__ import annotations

import argparse
import gc
import time

import uvloop

from bench import gateway_instructions
from bench.test_gateway_path import ORDERS_PER_ROUND

FREEZE_EVERY_ROUNDS = 30
APART_ROUNDS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders in the views at the last collection")
    parser.add_argument("--times", type=int, default=3, help="full collections timed")
    args = parser.parse_args()
    rounds = args.orders // ORDERS_PER_ROUND
    rounds_measured = rounds - gateway_instructions.WARMUP_ROUNDS
    at = {rounds - k * APART_ROUNDS for k in range(args.times)}
    if min(at) < 1 or rounds_measured < 1:
        parser.error(f"--orders {args.orders:,} is too few for {args.times} collections {APART_ROUNDS} rounds apart")

    def after_round(done: int) -> None:
        if done in at:
            start_ns = time.perf_counter_ns()
            gc.unfreeze()
            gc.collect()
            pause_ms = (time.perf_counter_ns() - start_ns) / 1e6
            print(f"{done * ORDERS_PER_ROUND:>11,} orders in the views: full collection {pause_ms:6.0f} ms", flush=True)
        if done in at or done % FREEZE_EVERY_ROUNDS == 0:
            gc.freeze()

    uvloop.run(gateway_instructions.run_rounds(rounds_measured, "ws", after_round))


if __name__ == "__main__":
    main()
