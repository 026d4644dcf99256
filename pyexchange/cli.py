"""The `pyexchange` command line."""

from __future__ import annotations

import argparse
import sys

from pyexchange import demo, journal, serve


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
    _add_zone_commands(commands)
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except (ValueError, RuntimeError) as error:  # bad input, or a data directory in use or damaged
        print(f"pyexchange: {error}", file=sys.stderr)
        return 2


def _add_zone_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_serve = commands.add_parser("serve", help="run one zone: durable engine and OKX-dialect gateway")
    run_serve.add_argument(
        "--data-dir", default=serve.DEFAULT_DATA_DIR, help="journal, snapshots, keys (default ./data)"
    )
    run_serve.add_argument("--config", help="TOML config (default: the built-in one)")
    run_serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run_serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    accounts = commands.add_parser("accounts", help="manage the accounts of a data directory (server stopped)")
    account_actions = accounts.add_subparsers(dest="action", required=True)
    create = account_actions.add_parser("create", help="create an account, optionally funded")
    create.add_argument("--data-dir", default=serve.DEFAULT_DATA_DIR)
    create.add_argument("--config", help="TOML config (default: the built-in one)")
    create.add_argument("--name", required=True, help="a unique name")
    create.add_argument("--deposit", action="append", default=[], metavar="ASSET=AMOUNT", help="repeatable")
    kill = commands.add_parser("kill-switch", help="block an account (cancel all its orders) or unblock it")
    kill.add_argument("--data-dir", default=serve.DEFAULT_DATA_DIR, help="where the operator token is")
    kill.add_argument("--account", type=int, required=True)
    kill.add_argument("--unblock", action="store_true", help="let the account trade again")
    kill.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (default %(default)s)")
    keys = commands.add_parser("keys", help="manage API keys (works while the server runs)")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create_key = key_actions.add_parser("create", help="create an API key; its secret is printed once")
    create_key.add_argument("--data-dir", default=serve.DEFAULT_DATA_DIR)
    create_key.add_argument("--account", type=int, required=True)
    create_key.add_argument("--passphrase", help="default: a random one, printed")
    create_key.add_argument("--label", default="")


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
    elif args.command == "serve":
        return serve.serve(args.data_dir, args.config, args.host, args.port)
    elif args.command == "accounts":
        return serve.create_account(args.data_dir, args.config, args.name, args.deposit)
    elif args.command == "kill-switch":
        return serve.kill_switch(args.data_dir, args.url, args.account, unblock=args.unblock)
    elif args.command == "keys":
        return serve.create_key(args.data_dir, args.account, args.passphrase, args.label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
