"""The `pyexchange` command line."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Mapping

from pyexchange import demo, journal, serve
from pyexchange.cluster import FAULTS

DEFAULT_CLUSTER_DIR = "./cluster"
MAX_LOCAL_ZONES = 9
# The servers: they hold millions of orders in Python's and the engines' heaps (see `huge_page_env`).
HUGE_PAGE_COMMANDS = frozenset({"serve", "zone"})
HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb"


def huge_page_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to start a server again in so that glibc's malloc asks for transparent
    huge pages (`glibc.malloc.hugetlb=1`: `madvise(MADV_HUGEPAGE)` on the memory it maps), or
    None to run as it is: not glibc on Linux, or the tunable set already (by us, or by an
    operator; `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` turns this off).

    Why: the gateway's views and the engine's maps grow with every resting order, and with 4 KB
    pages a lookup in a heap of gigabytes misses the TLB, a page walk that a VM's nested paging
    makes dearer still. As one server's book grew to about a million orders, the event loop's
    cost of a WebSocket order rose from 19 to 26 µs; with huge pages it stayed at 18-23 µs
    (bench/README.md). glibc reads its tunables only as a process starts, hence the second start."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if any(item.partition("=")[0] == HUGE_PAGE_TUNABLE for item in tunables.split(":")):
        return None
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGE_TUNABLE}=1" if tunables else f"{HUGE_PAGE_TUNABLE}=1"}


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
    _add_cluster_commands(commands)
    args = parser.parse_args(argv)
    if argv is None and args.command in HUGE_PAGE_COMMANDS and (env := huge_page_env(os.environ)) is not None:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # the same process, started again
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
    market = commands.add_parser("market", help="halt instruments, reopen them through the plan, or show them")
    market.add_argument("action", choices=("halt", "reopen", "status"))
    market.add_argument("instrument", nargs="?", help="an instrument id, e.g. BTC-USDT (or --all)")
    market.add_argument("--all", action="store_true", help="every instrument")
    market.add_argument("--seed", type=int, help="draws the call auction's end (default: the engine's seq)")
    market.add_argument("--data-dir", default=serve.DEFAULT_DATA_DIR, help="where the operator token is")
    market.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (default %(default)s)")
    keys = commands.add_parser("keys", help="manage API keys (works while the server runs)")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create_key = key_actions.add_parser("create", help="create an API key; its secret is printed once")
    create_key.add_argument("--data-dir", default=serve.DEFAULT_DATA_DIR)
    create_key.add_argument("--account", type=int, required=True)
    create_key.add_argument("--passphrase", help="default: a random one, printed")
    create_key.add_argument("--label", default="")


def _add_cluster_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_zone = commands.add_parser("zone", help="run one zone of a cluster: replica, Raft member and gateway")
    run_zone.add_argument("--config", required=True, help="the zone's TOML file (see pyexchange.cluster.zone)")
    cluster = commands.add_parser("cluster", help="a cluster of zones on this machine (loopback)")
    cluster_actions = cluster.add_subparsers(dest="action", required=True)
    cluster_up = cluster_actions.add_parser(
        "up", help="lay out and start a cluster of zones, or restart a stopped one (then reopen through the plan)"
    )
    cluster_up.add_argument("--zones", type=int, default=3, help="number of zones (default 3)")
    cluster_up.add_argument("--config", help="the exchange's TOML config (default: the built-in one)")
    cluster_up.add_argument("--host", default="127.0.0.1", help="address of every zone (default %(default)s)")
    for name, helptext in (("status", "leader, term, commit index, lag and health per zone"),
                           ("transfer", "move leadership to a zone (planned maintenance)"),
                           ("down", "stop every zone (the data stays)"),
                           ("supervise", "watch the zones: restarts, failovers, halts (`up` starts it)")):  # fmt: skip
        action = cluster_actions.add_parser(name, help=helptext)
        action.add_argument("--dir", default=DEFAULT_CLUSTER_DIR, help="the cluster directory (default %(default)s)")
        if name == "status":
            action.add_argument("--json", action="store_true", help="one JSON array, a row per zone")
        if name == "transfer":
            action.add_argument("--to", type=int, required=True, metavar="ZONE", help="the zone to lead")
        if name == "supervise":
            action.add_argument("--reopen", action="store_true", help="the cluster restarted: reopen through the plan")
    cluster_up.add_argument("--dir", default=DEFAULT_CLUSTER_DIR, help="the cluster directory (default %(default)s)")
    drill = commands.add_parser("drill", help="fault drills on a fresh local cluster (see pyexchange.cluster.drill)")
    drill_kinds = drill.add_subparsers(dest="kind", required=True)
    zone_loss = drill_kinds.add_parser("zone-loss", help="kill the leader's zone under load, restart it, check")
    fault = drill_kinds.add_parser("fault", help="any fault of the suite, one or more seeded rounds")
    fault.add_argument("fault", choices=FAULTS)
    fault.add_argument("--rounds", type=int, default=1, help="rounds on one cluster, seeds SEED, SEED+1, ...")
    for parser in (zone_loss, fault):
        parser.add_argument("--json", action="store_true", help="print JSON (an object per round)")
        parser.add_argument("--seed", type=int, default=1, help="replays a run (default 1)")
        parser.add_argument("--rate", type=float, default=100.0, help="orders per second offered (default 100)")
        parser.add_argument("--down-s", type=float, default=3.0, help="how long the fault lasts (default 3)")
        parser.add_argument("--wipe-disk", action="store_true", help="restart the zone with an empty data dir")
        parser.add_argument("--network", choices=("auto", "netns", "proxy"), default="auto",
                            help="how zones are connected (default: namespaces when root, else proxies)")  # fmt: skip
        parser.add_argument("--dir", help="keep the cluster's files here (default: a temporary directory)")
    reopen = drill_kinds.add_parser("reopen", help="halt, reopen through a short plan, then a reconnect storm; check")
    reopen.add_argument("--json", action="store_true", help="print one JSON object")
    reopen.add_argument("--seed", type=int, default=1, help="replays a run (default 1)")
    reopen.add_argument("--rate", type=float, default=10.0, help="the normal rate, orders per second (default 10)")
    reopen.add_argument("--storm-multiplier", type=int, default=10, help="storm rate / normal rate (default 10)")
    reopen.add_argument("--storm-clients", type=int, default=50, help="clients of the storm (default 50)")
    reopen.add_argument("--network", choices=("auto", "netns", "proxy"), default="auto",
                        help="how zones are connected (default: namespaces when root, else proxies)")  # fmt: skip
    reopen.add_argument("--dir", help="keep the cluster's files here (default: a temporary directory)")


def _run_cluster(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from pathlib import Path

    from pyexchange.cluster import local

    root = Path(args.dir)
    if args.action == "up":
        if not 1 <= args.zones <= MAX_LOCAL_ZONES:
            parser.error(f"--zones must be between 1 and {MAX_LOCAL_ZONES}")
        return local.up(root, args.zones, args.host, args.config)
    if args.action == "status":
        return local.status(root, args.json)
    if args.action == "transfer":
        return local.transfer(root, args.to)
    if args.action == "supervise":
        from pyexchange.cluster.supervisor import SupervisorPolicy, supervise

        return supervise(root, SupervisorPolicy(reopen_on_start=args.reopen))
    return local.down(root)


def _run_drill(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pyexchange.cluster import drill

    if args.kind == "reopen":
        return _run_reopen_drill(parser, args)
    if args.rate <= 0 or args.down_s < 0:
        parser.error("--rate must be positive and --down-s not negative")
    fault = "kill-leader" if args.kind == "zone-loss" else args.fault
    if args.wipe_disk and fault != "kill-leader":
        parser.error("--wipe-disk goes with a zone loss")
    if args.wipe_disk:
        fault = "wipe-leader"
    rounds = 1 if args.kind == "zone-loss" else args.rounds
    plan = drill.DrillPlan(fault=fault, seed=args.seed, rate_per_s=args.rate, down_s=args.down_s)
    results = drill.run(plan, None if args.dir is None else Path(args.dir), rounds=rounds, network=args.network)
    for result in results:
        if args.json:
            print(json.dumps(result))
        else:
            print("\n".join(f"{key:>24}  {value}" for key, value in result.items()), end="\n\n")
    return 0 if all(result["ok"] for result in results) else 1


def _run_reopen_drill(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pyexchange.cluster import reopen_drill

    if args.rate <= 0 or args.storm_multiplier < 1 or args.storm_clients < 1:
        parser.error("--rate must be positive, --storm-multiplier and --storm-clients at least 1")
    plan = reopen_drill.ReopenPlan(seed=args.seed, rate_per_s=args.rate, storm_multiplier=args.storm_multiplier,
                                   storm_clients=args.storm_clients)  # fmt: skip
    result = reopen_drill.run(plan, None if args.dir is None else Path(args.dir), network=args.network)
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(f"{key:>24}  {value}" for key, value in result.items()))
    return 0 if result["ok"] else 1


def _run_zone(_parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from pyexchange.cluster.zone import run_zone

    return run_zone(args.config)


def _run_market(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.action != "status" and (args.instrument is None) == (not args.all):
        parser.error("give an INSTRUMENT or --all")
    return serve.market(args.data_dir, args.url, args.action, args.instrument, args.seed)


RUNNERS = {"zone": _run_zone, "cluster": _run_cluster, "drill": _run_drill, "market": _run_market}


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command in RUNNERS:
        return RUNNERS[args.command](parser, args)
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
