"""The durable engine's benchmark (issue #3): the disk's fdatasync latency, durable throughput
and acknowledgement latency at offered loads, and recovery speed — one run of
`core_rs/benches/durable.rs` on the exchange-core mix, written to `bench/results/durable.json`.

    python -m bench.durable [--commands 10000000] [--rates 100000,500000,1000000,2000000]
                            [--dir PATH]   # the disk to measure (default: bench/results)

The workload has `--commands` commands: the offered loads cycle through it and the recovery
replays all of it (10 million by default, as the issue asks; building it takes minutes).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess

from bench.run import ROOT, build_workloads, write_rust_workload

RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rates", default="10000,100000,500000,1000000,2000000")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--dir", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    exchange_core = build_workloads(args.commands, args.seed)[0]
    path = write_rust_workload(exchange_core, RESULTS)
    command = [
        "cargo", "bench", "-q", "--bench", "durable", "--", "--workload", str(path.resolve()),
        "--dir", str(args.dir.resolve()), "--rates", args.rates, "--seconds", str(args.seconds),
        "--recovery-commands", str(len(exchange_core.commands)),
    ]  # fmt: skip
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    report = json.loads(out[out.index("{") :])
    (RESULTS / "durable.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
