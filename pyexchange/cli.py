"""The `pyexchange` command line."""

from __future__ import annotations

import argparse
import sys

from pyexchange import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyexchange", description="An exchange trading core.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run a seeded market through the engine")
    run_demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    run_demo.add_argument("--rounds", type=int, default=10, help="rounds of 20,000 commands (default 10)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        demo.main(seed=args.seed, rounds=args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
