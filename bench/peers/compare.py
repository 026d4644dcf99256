"""Runs the peers on one workload, each in its own process, and checks them.

Method: the workload is generated once and saved; each peer runs in a child process with a
time limit, so a peer that hangs is stopped and reported as hanging, and one that crashes
the interpreter (a C++ abort, a segfault) is reported with its signal, without taking the
comparison down. Each peer's fills are compared, element by element, with the reference
(`plain_ladder`); a peer that only keeps a book (nautilus) is checked on its final book.

    python -m bench.peers.compare --workload exchange_core --commands 100000
    python -m bench.peers.compare --workload exchange_core --commands 1000000 --no-check
"""

import argparse
import importlib
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import workloads
from bench.peers import PEER_MODULES, PeerResult, sequential_order_ids

REFERENCE = "plain_ladder"
TIMEOUT_S_DEFAULT = 900


def make_workload(name: str, n_commands: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(commands, order ids per row)."""
    if name == "exchange_core":
        commands = workloads.exchange_core_mix(n_commands, seed)
        return commands, sequential_order_ids(commands)
    if name == "venue":
        return workloads.venue_mix_with_ids(n_commands, seed)
    raise ValueError(f"unknown workload {name}")


def run_child(module: str, path_in: Path, path_out: Path) -> None:
    data = np.load(path_in)
    peer = importlib.import_module(f"bench.peers.{module}")
    result = peer.run(data["commands"], data["order_ids"])
    path_out.write_bytes(pickle.dumps(result))


def run_peer(module: str, path_in: Path, timeout_s: float) -> tuple[str, PeerResult | None, str]:
    """(status, result, detail); status is ok, hangs, crashed or errs."""
    path_out = path_in.with_suffix(f".{module}.pkl")
    cmd = [sys.executable, "-m", "bench.peers.compare", "--child", module, str(path_in), str(path_out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "hangs", None, f"no result after {timeout_s:.0f} s"
    if proc.returncode < 0:
        return "crashed", None, f"signal {-proc.returncode}: {proc.stderr.strip()[-500:]}"
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return "errs", None, lines[-1] if lines else f"exit status {proc.returncode}"
    result = pickle.loads(path_out.read_bytes())
    return ("errs" if result.error else "ok"), result, result.error or ""


def run_isolated(
    module: str, commands: np.ndarray, order_ids: np.ndarray, timeout_s: float = TIMEOUT_S_DEFAULT
) -> tuple[str, PeerResult | None, str]:
    """`run_peer` for a harness holding the arrays: (status, result or None, detail)."""
    with tempfile.TemporaryDirectory() as tmp:
        path_in = Path(tmp) / "workload.npz"
        np.savez(path_in, commands=commands, order_ids=order_ids)
        return run_peer(module, path_in, timeout_s)


def first_difference(fills: list, reference: list) -> str:
    for i, (got, want) in enumerate(zip(fills, reference, strict=False)):
        if got != want:
            return f"fill {i}: got {got}, reference {want}"
    if len(fills) != len(reference):
        return f"{len(fills)} fills, reference {len(reference)}"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="exchange_core", choices=("exchange_core", "venue"))
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peers", default=",".join(PEER_MODULES))
    parser.add_argument("--timeout-s", type=float, default=TIMEOUT_S_DEFAULT)
    parser.add_argument("--no-check", action="store_true", help="skip comparing fills")
    parser.add_argument("--child", nargs=3, metavar=("MODULE", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0

    started = time.perf_counter()
    commands, order_ids = make_workload(args.workload, args.commands, args.seed)
    print(
        f"workload {args.workload}: {len(commands):,} commands, seed {args.seed}, "
        f"generated in {time.perf_counter() - started:.1f} s"
    )
    modules = args.peers.split(",")
    if not args.no_check and REFERENCE not in modules:
        modules.insert(0, REFERENCE)
    with tempfile.TemporaryDirectory() as tmp:
        path_in = Path(tmp) / "workload.npz"
        np.savez(path_in, commands=commands, order_ids=order_ids)
        results = {m: run_peer(m, path_in, args.timeout_s) for m in modules}
    reference = results.get(REFERENCE, (None, None, ""))[1]
    print(f"{'peer':<16} {'status':<8} {'commands':>10} {'seconds':>8} {'commands/s':>11} {'fills':>8}  check")
    for module, (status, result, detail) in results.items():
        if result is None:
            name = getattr(importlib.import_module(f"bench.peers.{module}"), "NAME", module)
            print(f"{name:<16} {status:<8} {'':>10} {'':>8} {'':>11} {'':>8}  {detail}")
            continue
        check = "-"
        if not args.no_check and reference is not None and module != REFERENCE:
            peer = importlib.import_module(f"bench.peers.{module}")
            if getattr(peer, "PRODUCES_FILLS", True):
                diff = first_difference(result.fills, reference.fills)
                check = f"fills DIFFER: {diff}" if diff else "fills equal"
            else:
                check = result.error or "final book equal"
        elif detail:
            check = detail
        print(
            f"{result.name:<16} {status:<8} {result.n_commands_done:>10,} {result.seconds:>8.2f} "
            f"{result.commands_per_second:>11,.0f} {len(result.fills):>8,}  {check}"
        )
        if result.notes:
            print(f"{'':<16} note: {result.notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
