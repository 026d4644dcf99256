"""The three-zone cluster's benchmark (issue #5), in one run:

- `core_rs/benches/replication.rs`: committed throughput and commit latency of the three-zone
  group against the single-zone durable engine at the same offered loads (the ratio), the
  unplanned failover time over `--kills` leader stops and the planned transfer time, every
  member in one process;
- the same failovers as an operator would see them, through the product: `--rounds` rounds of
  the zone-loss drill (SIGKILL of the leader zone's process under a seeded order load through
  every zone's gateway) and of planned transfers, on one local cluster each; the recovery time
  of each round is from the fault to the first acknowledgement of an order sent after it.

Written to `bench/results/failover.json`.

    python -m bench.failover [--rates 50000,100000,200000,400000] [--kills 20] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from typing import Any

from bench.run import ROOT
from pyexchange.cluster import drill

RESULTS = ROOT / "bench" / "results"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    at = lambda q: ordered[round((len(ordered) - 1) * q)]  # noqa: E731
    return {"n": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": ordered[-1]}


def replication_bench(*args: str) -> dict[str, Any]:
    command = ["cargo", "bench", "-q", "--bench", "replication", "--", *args]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    report: dict[str, Any] = json.loads(out[out.index("{") :])
    return report


def drills(fault: str, rounds: int) -> dict[str, Any]:
    plan = drill.DrillPlan(fault=fault, seed=1000, rate_per_s=50.0, before_fault_s=1.0, down_s=1.5,
                           after_repair_s=1.0)  # fmt: skip
    results = drill.run(plan, rounds=rounds)
    figures: dict[str, Any] = {"rounds": len(results), "all_ok": all(r["ok"] for r in results),
                               "network": results[0]["network"],
                               "rto_ms": percentiles([r["rto_ms"] for r in results])}  # fmt: skip
    if fault == "transfer":
        figures["transfer_ms"] = percentiles([r["transfer_ms"] for r in results])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50000,100000,200000,400000")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    report = {
        "in_process": replication_bench("--rates", args.rates, "--seconds", str(args.seconds),
                                        "--kills", str(args.kills), "--transfers", str(args.kills)),
        "zone_loss_drill": drills("kill-leader", args.rounds),
        "transfer_drill": drills("transfer", args.rounds),
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "failover.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
