"""WebSocket endpoints in OKX's v5 dialect: `/ws/v5/public`, `/ws/v5/private` (and
`/ws/v5/business`, where OKX clients look for some channels).

- `subscribe`/`unsubscribe` with acks; text `ping` → `pong`.
- Public channels: `books` (a snapshot, then incremental updates chained by
  `seqId`/`prevSeqId`, each with the CRC32 checksum of the top 25 levels), `books5`,
  `bbo-tbt`, `trades`, `tickers`.
- Private: `login`, then channels `orders` and `account`, and order entry (`order`,
  `batch-orders`, `cancel-order`, `batch-cancel-orders`, `amend-order`).

The protocol itself (frames, flow control, the slow reader's close) is `websocket.py`'s.
Pushes happen on the event loop right after a batch is durable.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Coroutine
from typing import Any, Protocol

import orjson

from pyexchange.accounts import ApiKey
from pyexchange.gateway import okx
from pyexchange.gateway.exchange import Answer, Exchange, Pending, start_op
from pyexchange.gateway.sequencer import Overloaded

MESSAGE_BYTES_MAX = 64 * 1024
OPS_BATCH_MAX = 20
OPS_IN_FLIGHT_MAX = 256
PUBLIC_CHANNELS = ("books", "books5", "bbo-tbt", "trades", "tickers", "call-auction-details")
PRIVATE_CHANNELS = ("orders", "account")


class Socket(Protocol):
    """Where a connection's messages go (`websocket.WebSocketProtocol`)."""

    def send_text(self, payload: bytes) -> None: ...


class Connection:
    """One client's connection as its session and the hub see it: who it is, what it is
    subscribed to, and `send`, which serializes a message for the socket to write (or queue
    while the client reads too slowly)."""

    def __init__(self, socket: Socket, private: bool) -> None:
        self._socket, self.private = socket, private
        self.conn_id = uuid.uuid4().hex[:8]
        self.key: ApiKey | None = None
        self.args: dict[tuple[str, str], dict[str, Any]] = {}

    def send(self, message: dict[str, Any] | bytes) -> None:
        self._socket.send_text(message if isinstance(message, bytes) else orjson.dumps(message))


class Hub:
    """Who is subscribed to what; pushes a channel's data to its subscribers."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], dict[Connection, None]] = {}
        self._keys: dict[str, int] = {}  # channel -> its keys in `_subs`

    def add(self, conn: Connection, channel: str, key: str, arg: dict[str, Any]) -> None:
        if (channel, key) not in self._subs:
            self._subs[(channel, key)] = {}
            self._keys[channel] = self._keys.get(channel, 0) + 1
        self._subs[(channel, key)][conn] = None
        conn.args[(channel, key)] = arg

    def remove(self, conn: Connection, channel: str, key: str) -> bool:
        conn.args.pop((channel, key), None)
        subs = self._subs.get((channel, key))
        if subs is None or conn not in subs:
            return False
        del subs[conn]
        if not subs:
            del self._subs[(channel, key)]
            self._keys[channel] -= 1
        return True

    def drop(self, conn: Connection) -> None:
        for channel, key in list(conn.args):
            self.remove(conn, channel, key)

    def has(self, channel: str, key: str) -> bool:
        return (channel, key) in self._subs

    def follows(self, channel: str) -> bool:
        """Whether anyone follows `channel`, under any key."""
        return self._keys.get(channel, 0) > 0

    def publish(self, channel: str, key: str, data: list[dict[str, Any]], action: str | None = None) -> None:
        """Sends `data` to every subscriber; a message is serialized once per distinct `arg`
        (public subscribers of a channel usually share one)."""
        texts: dict[bytes, bytes] = {}
        for conn in list(self._subs.get((channel, key), ())):
            arg = conn.args[(channel, key)]
            rows = data
            inst_id = arg.get("instId") if channel in PRIVATE_CHANNELS else None
            if inst_id:
                rows = [row for row in data if row.get("instId") == inst_id]
                if not rows:
                    continue
            arg_key = orjson.dumps(arg, option=orjson.OPT_SORT_KEYS)
            text = texts.get(arg_key)
            if text is None:
                message: dict[str, Any] = {"arg": arg, "data": rows}
                if action is not None:
                    message["action"] = action
                text = texts[arg_key] = orjson.dumps(message)
            conn.send(text)


def _error(conn: Connection, code: str, msg: str, op_id: str | None = None) -> dict[str, Any]:
    answer = {"event": "error", "code": code, "msg": msg, "connId": conn.conn_id}
    if op_id is not None:
        answer["id"] = op_id
    return answer


class Session:
    """One WebSocket connection's conversation."""

    def __init__(self, exchange: Exchange, hub: Hub, auth: Any, conn: Connection) -> None:
        self.exchange, self.hub, self.auth, self.conn = exchange, hub, auth, conn
        self.ops_in_flight = 0

    def handle(self, text: str) -> Coroutine[Any, Any, None] | None:
        """Handles one message; what is still to be awaited before the next (a login), if any."""
        if text == "ping":
            self.conn.send(b"pong")
            return None
        if len(text) > MESSAGE_BYTES_MAX:
            self.conn.send(_error(self.conn, "60012", f"Illegal request: longer than {MESSAGE_BYTES_MAX} bytes"))
            return None
        if (order := self.exchange.read_place.read_order_op(text)) is not None:  # the usual order op
            op_id, intent = order
            self._order_op("order", [intent], op_id)
            return None
        try:
            message = orjson.loads(text)
        except (orjson.JSONDecodeError, RecursionError):
            self.conn.send(_error(self.conn, "60012", f"Illegal request: {text[:200]}"))
            return None
        if not isinstance(message, dict):
            self.conn.send(_error(self.conn, "60012", f"Illegal request: {text[:200]}"))
            return None
        op, args, op_id = message.get("op"), message.get("args"), message.get("id")
        if op_id is not None and (not isinstance(op_id, str) or len(op_id) > 32):
            self.conn.send(_error(self.conn, "60012", "Illegal request: id must be a string of up to 32 characters"))
            return None
        if not isinstance(args, list) or not args or not all(map(isinstance, args, itertools.repeat(dict))):
            self.conn.send(_error(self.conn, "60013", "Invalid args: a non-empty list of objects", op_id))
            return None
        return self._dispatch(str(op), args, op_id)

    def _dispatch(self, op: str, args: list[dict[str, Any]], op_id: str | None) -> Coroutine[Any, Any, None] | None:
        if op == "login":
            return self._login(args[0])
        if op in ("subscribe", "unsubscribe"):
            for arg in args:
                self._subscribe(arg, subscribe=op == "subscribe")
        elif op in ORDER_OPS:
            self._order_op(op, args, op_id)
        else:
            self.conn.send(_error(self.conn, "60012", f"Illegal request: unknown op {op[:40]!r}", op_id))
        return None

    async def _login(self, arg: dict[str, Any]) -> None:
        if not self.conn.private:
            self.conn.send(_error(self.conn, "60012", "Illegal request: log in on /ws/v5/private"))
            return
        try:
            self.conn.key = await self.auth.ws_login(arg)
        except okx.OkxError as error:
            self.conn.send({"event": "error", "code": error.code, "msg": error.msg, "connId": self.conn.conn_id})
            return
        self.conn.send({"event": "login", "code": "0", "msg": "", "connId": self.conn.conn_id})

    def _subscribe(self, arg: dict[str, Any], *, subscribe: bool) -> None:
        channel = arg.get("channel")
        event = "subscribe" if subscribe else "unsubscribe"
        if channel in PRIVATE_CHANNELS and self.conn.private:
            if self.conn.key is None:
                self.conn.send(_error(self.conn, "60011", "Please log in"))
                return
            key = str(self.conn.key.account)
            arg = {**arg, "uid": key}
        elif channel in PUBLIC_CHANNELS and not self.conn.private:
            inst_id = arg.get("instId")
            if not isinstance(inst_id, str) or inst_id not in self.exchange.instruments:
                self.conn.send(
                    _error(self.conn, "60018", f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist")
                )
                return
            key = inst_id
        else:
            where = "private" if self.conn.private else "public"
            self.conn.send(
                _error(self.conn, "60018", f"Wrong URL or channel:{str(channel)[:40]} doesn't exist on {where}")
            )
            return
        public_arg = {k: v for k, v in arg.items() if k != "uid"}
        if subscribe:
            self.hub.add(self.conn, channel, key, arg)
            self.conn.send({"event": event, "arg": public_arg, "connId": self.conn.conn_id})
            self._initial(channel, key)
        else:
            self.hub.remove(self.conn, channel, key)
            self.conn.send({"event": event, "arg": public_arg, "connId": self.conn.conn_id})

    def _initial(self, channel: str, key: str) -> None:
        """What a new subscriber gets at once: the book snapshot, the ticker, the call-auction
        details, the balances."""
        arg = self.conn.args[(channel, key)]
        now_ms = time.time_ns() // 1_000_000
        if channel == "books":
            snapshot = self.exchange.book_feed(key).snapshot(now_ms)
            self.conn.send({"arg": arg, "action": "snapshot", "data": [snapshot]})
        elif channel in ("books5", "bbo-tbt"):
            self.conn.send({"arg": arg, "data": [self.exchange.top_json(key, channel, now_ms)]})
        elif channel == "tickers":
            self.conn.send({"arg": arg, "data": [self.exchange.ticker_json(key)]})
        elif channel == "call-auction-details":
            self.conn.send({"arg": arg, "data": [self.exchange.auction_json(key)]})
        elif channel == "account":
            account = int(key)
            self.conn.send(
                {"arg": arg, "data": [self.exchange.balance_json(account, self.exchange.balances(account), now_ms)]}
            )

    def _order_op(self, op: str, args: list[Any], op_id: str | None) -> None:
        """Starts an order-entry op (`args`: its objects, or the intent the fast path read); it is
        answered when its last step is (a done callback, not a task: a client may have many ops
        in flight, answered as their batches are durable)."""
        in_us = time.time_ns() // 1000
        if not self.conn.private or self.conn.key is None:
            self.conn.send(_error(self.conn, "60011", "Please log in", op_id))
            return
        if len(args) > (OPS_BATCH_MAX if op.startswith("batch") else 1):
            self.conn.send(_error(self.conn, "60013", f"Invalid args: too many for {op}", op_id))
            return
        if self.ops_in_flight >= OPS_IN_FLIGHT_MAX:
            self.conn.send(_error(self.conn, okx.RATE_LIMITED, f"Rate limit reached: {OPS_IN_FLIGHT_MAX} "
                                  "operations of this connection are in flight", op_id))  # fmt: skip
            return
        exchange, account, step_kind = self.exchange, self.conn.key.account, ORDER_OPS[op]
        if step_kind != "cancel" and len(args) > 1:
            try:  # a batch at once, before any of its orders is read or checked
                exchange.admit_new_orders()
            except Overloaded as refused:
                self.conn.send(_error(self.conn, okx.RATE_LIMITED, f"Rate limit reached: {refused}", op_id))
                return
        steps: list[Answer | Pending] = []
        in_flight = None
        for arg in args:  # every step started before any is answered (a done future's callback runs later)
            step = start_op(exchange, account, step_kind, arg)
            steps.append(step)
            if isinstance(step, Pending):
                if in_flight is None:
                    in_flight = _OpInFlight(self, op, op_id, steps, in_us)
                in_flight.waiting += 1
                step.future.add_done_callback(in_flight)
        if in_flight is None:
            self.answer_op(op, op_id, steps, in_us)
        else:
            self.ops_in_flight += 1

    def answer_op(self, op: str, op_id: str | None, steps: list[Answer | Pending], in_us: int) -> None:
        data = []
        for step in steps:  # (a loop, not a comprehension: most ops have one step)
            data.append(step.answer() if isinstance(step, Pending) else step)
        code, msg = okx.batch_code(data, single=not op.startswith("batch"))
        self.conn.send({"id": op_id or "", "op": op, "data": data, "code": code, "msg": msg, "inTime": str(in_us),
                        "outTime": str(time.time_ns() // 1000)})  # fmt: skip


class _OpInFlight:
    """An order-entry op waiting for its steps' batches, answered when the last is done: the
    callback of each step's future. One object, not a closure, whose function, cells and their
    tuple are eight objects per op for the garbage collector to walk while the op waits."""

    __slots__ = ("in_us", "op", "op_id", "session", "steps", "waiting")

    def __init__(self, session: Session, op: str, op_id: str | None, steps: list[Answer | Pending],
                 in_us: int) -> None:  # fmt: skip
        self.session, self.op, self.op_id, self.steps, self.in_us = session, op, op_id, steps, in_us
        self.waiting = 0  # steps not done yet

    def __call__(self, _step_done: asyncio.Future[Any]) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.session.ops_in_flight -= 1
            self.session.answer_op(self.op, self.op_id, self.steps, self.in_us)


ORDER_OPS = {
    "order": "place", "batch-orders": "place", "cancel-order": "cancel", "batch-cancel-orders": "cancel",
    "amend-order": "amend", "batch-amend-orders": "amend",
}  # fmt: skip


# The endpoints, which `websocket.WebSocketProtocol` serves once uvicorn hands them over
# (`/ws/v5/business` is where OKX clients look for some channels).
ENDPOINT_PATHS = frozenset({"/ws/v5/public", "/ws/v5/business", "/ws/v5/private"})
