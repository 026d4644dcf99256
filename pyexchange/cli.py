"""The `pyexchange` command line."""

from __future__ import annotations

import argparse
import sys

from pyexchange import demo, journal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyexchange", description="An exchange trading core.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run a seeded market through the engine")
    run_demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    run_demo.add_argument("--rounds", type=int, default=10, help="rounds of 20,000 commands (default 10)")
    journal_commands = commands.add_parser("journal", help="check or read a data directory's journal")
    journal_actions = journal_commands.add_subparsers(dest="action", required=True)
    verify = journal_actions.add_parser("verify", help="check every record; report a torn tail (changes nothing)")
    verify.add_argument("data_dir", metavar="DIR")
    inspect = journal_actions.add_parser("inspect", help="print records from a sequence number")
    inspect.add_argument("data_dir", metavar="DIR")
    inspect.add_argument("--from", dest="from_seq", type=int, default=1, help="first seq (default 1)")
    inspect.add_argument("--limit", type=int, default=100, help="records to print (default 100)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        demo.main(seed=args.seed, rounds=args.rounds)
    elif args.command == "journal" and args.action == "verify":
        return journal.verify(args.data_dir)
    elif args.command == "journal":
        if args.from_seq < 0 or args.limit < 0:
            parser.error("--from and --limit must be >= 0")
        return journal.inspect(args.data_dir, args.from_seq, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
