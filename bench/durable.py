"""The durable engine's benchmark (issue #3), in one run of `core_rs/benches/durable.rs`:
the disk's fdatasync latency, durable throughput and acknowledgement latency at offered
loads, the pause a snapshot costs, and recovery speed; written to `bench/results/durable.json`.

    python -m bench.durable [--commands 3000000] [--rates 10000,100000,500000,1000000,2000000]
                            [--recovery-commands 10000000] [--dir PATH]

Two workloads: the exchange-core mix of `--commands` commands (the offered loads cycle
through it; recovery replays all of it; 3 million fits the conservative funding of the mix within
u64, 5 million does not), and a synthetic stream of places and cancels over 1,000 accounts for the
time to recover `--recovery-commands` commands. `--dir` is the disk to measure (default:
bench/results, on the repository's disk).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
from typing import Any

from bench.run import ROOT, build_workloads, write_rust_workload

RESULTS = ROOT / "bench" / "results"


def durable_bench(*args: str) -> dict[str, Any]:
    command = ["cargo", "bench", "-q", "--bench", "durable", "--", *args]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    report: dict[str, Any] = json.loads(out[out.index("{") :])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rates", default="10000,100000,500000,1000000,2000000")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--recovery-commands", type=int, default=10_000_000)
    parser.add_argument("--dir", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    disk = str(args.dir.resolve())
    exchange_core = build_workloads(args.commands, args.seed)[0]
    path = write_rust_workload(exchange_core, RESULTS)
    # The workload file's dirty pages would otherwise be written back while fsyncs are timed.
    os.sync()
    report = durable_bench(
        "--workload", str(path.resolve()), "--dir", disk, "--rates", args.rates, "--seconds", str(args.seconds),
        "--recovery-commands", str(len(exchange_core.commands)),
    )  # fmt: skip
    report["recovery_long"] = durable_bench(
        "--dir", disk, "--recovery-only", "--recovery-commands", str(args.recovery_commands)
    )["recovery"]
    (RESULTS / "durable.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
