"""The process that `test_crash.py` kills: a durable engine serving JSON lines on loopback.

    python tests/crash_child.py DATA_DIR [--snapshot-every N]

Opens (recovers) `Engine(data_dir=DATA_DIR)`, adds BTC-USDT if the journal does not hold it
yet, listens on 127.0.0.1 (a free port) and prints one line to stdout once it is ready:
{"port", "recovery", "durable"}. Each connection is served by its own thread, one request
line answered by one reply line, so several clients share the journal's fsyncs.

Requests: {"op": "place"|"cancel"|"amend"|"deposit", ...the Engine method's arguments}, answered
with {"events": [...], "durable": [file, offset]} where `durable` is the engine's
`durable_position()` read after the command returned; {"op": "order", "account", "order_id"};
{"op": "state"} (seq, state hash, invariants checked); {"op": "batch", "requests": [...]}
(answers in order). A request the engine refuses with an exception is answered {"error": ...}.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
from typing import Any

from pyexchange import Engine

INSTRUMENT = "BTC-USDT"
COMMANDS = ("place", "cancel", "amend", "deposit")


def event_json(event: Any) -> list[Any]:
    """The fields `test_crash.py` compares with a replay of the journal."""
    return [event.seq, event.ts_ns, event.kind, event.reason, event.order_id, event.account, event.maker_order_id]


def order_json(engine: Engine, account: int, order_id: int) -> dict[str, Any] | None:
    order = engine.order(account, order_id)
    if order is None:
        return None
    return {"order_id": order.order_id, "account": order.account, "client_order_id": order.client_order_id}


def answer(engine: Engine, request: dict[str, Any]) -> dict[str, Any]:
    args = {k: v for k, v in request.items() if k != "op"}
    op = request["op"]
    try:
        if op in COMMANDS:
            events = getattr(engine, op)(**args)
            return {"events": [event_json(e) for e in events], "durable": list(engine.durable_position())}
        if op == "order":
            return {"order": order_json(engine, args["account"], args["order_id"])}
        if op == "state":
            engine.check_invariants()
            return {"seq": engine.seq, "state_hash": engine.state_hash()}
        if op == "batch":
            return {"replies": [answer(engine, r) for r in args["requests"]]}
    except Exception as error:  # the test decides whether an error was expected
        return {"error": f"{type(error).__name__}: {error}"}
    return {"error": f"unknown op {op!r}"}


def serve(engine: Engine, connection: socket.socket) -> None:
    with connection, connection.makefile("rwb") as stream:
        for line in stream:
            stream.write(json.dumps(answer(engine, json.loads(line))).encode() + b"\n")
            stream.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--snapshot-every", type=int, default=0)
    parser.add_argument("--segment-bytes", type=int, default=64 << 20)
    options = parser.parse_args()
    engine = Engine(
        data_dir=options.data_dir, snapshot_every_commands=options.snapshot_every, segment_bytes=options.segment_bytes
    )
    recovery = engine.recovery()
    try:
        engine.instrument(INSTRUMENT)
    except ValueError:
        engine.add_instrument(INSTRUMENT, tick_size="0.01", lot_size="0.001", min_size="0.001", taker_fee_bps=5)
    listener = socket.create_server(("127.0.0.1", 0))
    ready = {"port": listener.getsockname()[1], "recovery": recovery, "durable": list(engine.durable_position())}
    sys.stdout.write(json.dumps(ready, default=str) + "\n")
    sys.stdout.flush()
    while True:  # until SIGKILL: a crash, not a shutdown, is what the test is about
        connection, _ = listener.accept()
        threading.Thread(target=serve, args=(engine, connection), daemon=True).start()


if __name__ == "__main__":
    main()
