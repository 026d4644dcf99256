"""The WebSocket protocol (RFC 6455) of the gateway's endpoints (`ws.ENDPOINT_PATHS`), as
uvicorn's upgrade target (`uvicorn.run(..., ws=WebSocketProtocol)`): uvicorn reads the HTTP
request and hands the connection over at the upgrade. Frames are read and unmasked in Rust
(`_core.websocket_frames`); each message goes from `data_received` straight to its
`ws.Session`, and each answer straight to the transport. uvicorn's own implementations put
the `websockets` library's Python parser, the ASGI messages, a queue and a task per
connection between the socket and the session: about a fifth of the event loop's time for a
WebSocket order.

- The handshake: `GET` with `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a
  `Sec-WebSocket-Key`, to one of the endpoints (else 404; a bad handshake 400 or 426). No
  subprotocol and no extension: a client's `permessage-deflate` offer is declined.
- Messages of up to `MESSAGE_BYTES_MAX` bytes, whole or in fragments (else closed with
  1009). Text must be UTF-8 (else 1007); binary is read as UTF-8 with replacement, as OKX's
  JSON is. A breach of the protocol (an unmasked frame, a reserved bit) is 1002. These fail the
  connection: the close frame, then nothing more is read until the client closes TCP.
- Messages are handled in order: while one waits (a login's signature check), later ones
  queue, and reading pauses once `INBOX_MESSAGES_MAX` of them wait.
- Ping frames are answered with pongs. The server pings every `PING_INTERVAL_S`; a client
  that has not answered a ping by the next one fails (1011).
- What is sent waits, while the transport's buffer is full, in a queue of at most
  `SEND_QUEUE_MESSAGES_MAX` messages. A client that does not read fast enough is closed with
  4030 (after what was queued; the oldest gives way to the close) rather than allowed to grow
  the server's memory or to miss a book update silently.
- Closing: a client's close is echoed and the connection closed. After a close the server
  sends, it waits up to `CLOSE_TIMEOUT_S` for the client's, then drops the connection (as it
  does a slow reader that still reads nothing that long after its queue overflowed). At
  shutdown uvicorn has each connection closed with 1012.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import struct
from collections import deque
from typing import Any, cast

from pyexchange._core import websocket_frames
from pyexchange.gateway.ws import ENDPOINT_PATHS, Connection, Session

MESSAGE_BYTES_MAX = 1 << 20
SEND_QUEUE_MESSAGES_MAX = 4096
INBOX_MESSAGES_MAX = 256
PING_INTERVAL_S = 20.0
CLOSE_TIMEOUT_S = 10.0
SLOW_READER_CLOSE_CODE = 4030
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# What a client's close may carry: the codes IANA registered for the protocol (1004-1006 are
# never sent), and those of libraries and applications.
CLOSE_CODES_RECEIVABLE = frozenset(range(1000, 1015)) - {1004, 1005, 1006} | frozenset(range(3000, 5000))
log = logging.getLogger("pyexchange.ws")


def frame(opcode: int, payload: bytes) -> bytes:
    """A whole, unmasked frame, as a server sends it."""
    length = len(payload)
    if length < 126:
        return _SHORT_HEADS[opcode][length] + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


# The two bytes that start a whole frame of each opcode and of each length under 126.
_SHORT_HEADS = {opcode: [bytes((0x80 | opcode, length)) for length in range(126)]
                for opcode in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)}  # fmt: skip


def close_frame(code: int, reason: str) -> bytes:
    return frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


def accept_key(key: bytes) -> bytes:
    """`Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())  # the hash RFC 6455 names, not a secret


def _http_response(status: str, headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, "content-length: 0", "connection: close", "", ""]
    return "\r\n".join(lines).encode()


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection, from the upgrade request uvicorn hands over to its close. The
    session finds the exchange in the app's lifespan state (`app_state`)."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any]) -> None:
        self.connections: set[Any] = server_state.connections  # uvicorn closes them at shutdown
        self.app_state = app_state
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None  # from the handshake on
        self._buffer = b""  # the start of a frame still arriving
        self._fragments: list[bytes] = []  # of a message still arriving
        self._fragments_opcode = OP_TEXT
        self._fragments_bytes = 0
        self._inbox: deque[str] = deque()  # messages waiting for the one being handled
        self._waiting: asyncio.Task[None] | None = None  # the handling of a message that waits
        self._reading_paused = False
        self._queued: deque[bytes | None] = deque()  # frames waiting for the transport; None: close
        self._writing_paused = False
        self.overflowed = False
        self._close_sent = False
        self._unreadable = False  # failed: nothing more is read
        self._lost = False
        self._pong_due = False
        self._timer: asyncio.TimerHandle | None = None  # the next ping, or the deadline to end by

    # ---- the transport's callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._waiting is not None:
            self._waiting.cancel()
        self._inbox.clear()
        self._queued.clear()
        if self.session is not None:
            self.session.hub.drop(self.session.conn)

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            self._handshake(data)
            return
        if self._unreadable:
            return
        buffer = self._buffer + data if self._buffer else data
        frames, taken, refusal = websocket_frames(buffer, MESSAGE_BYTES_MAX)
        self._buffer = buffer[taken:] if refusal is None else b""
        for opcode, fin, payload in frames:
            if not self._close_sent:
                self._frame(opcode, fin, payload)
            elif opcode == OP_CLOSE:  # the client's answer to ours
                self._end()
                return
        if refusal is not None:
            self._fail(*refusal)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        assert self.transport is not None
        while self._queued and not self._writing_paused:
            queued = self._queued.popleft()
            if queued is None:
                self.close(SLOW_READER_CLOSE_CODE, "send queue full: the client reads too slowly")
                return
            self.transport.write(queued)

    def shutdown(self) -> None:
        """uvicorn's call at shutdown: close (1012) without waiting for the client's close, and
        drop a client that does not even read it (uvicorn waits for every connection to end)."""
        if self.session is not None and not self._close_sent:
            self._send_close(1012, "the server is restarting")
        self._end()
        self._abort_after(CLOSE_TIMEOUT_S)

    # ---- what the session calls ----

    def send_text(self, payload: bytes) -> None:
        """Sends a text message now, or queues it while the client's reading lags."""
        if self._close_sent or self._lost or self.overflowed:
            return
        text = frame(OP_TEXT, payload)
        if not self._writing_paused:
            assert self.transport is not None
            self.transport.write(text)
        elif len(self._queued) < SEND_QUEUE_MESSAGES_MAX:
            self._queued.append(text)
        else:
            assert self.session is not None
            log.warning("connection %s reads too slowly: disconnecting it", self.session.conn.conn_id)
            self.overflowed = True
            self._queued.popleft()  # the oldest queued gives way to the close
            self._queued.append(None)
            self._abort_after(CLOSE_TIMEOUT_S)

    def close(self, code: int, reason: str) -> None:
        """Sends a close frame and waits for the client's (at most `CLOSE_TIMEOUT_S`)."""
        if self._close_sent or self._lost:
            return
        self._send_close(code, reason)
        self._abort_after(CLOSE_TIMEOUT_S)

    # ---- inside ----

    def _handshake(self, request: bytes) -> None:
        assert self.transport is not None
        head, _, _ = request.partition(b"\r\n\r\n")
        request_line, *header_lines = head.split(b"\r\n")
        method, _, target = request_line.partition(b" ")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        path = target.partition(b" ")[0].partition(b"?")[0].decode("latin-1")
        key = headers.get(b"sec-websocket-key", b"")
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except binascii.Error:
            key_ok = False
        if path not in ENDPOINT_PATHS:
            response = _http_response("404 Not Found")
        elif headers.get(b"sec-websocket-version") != b"13":
            response = _http_response("426 Upgrade Required", ("sec-websocket-version: 13",))
        elif method != b"GET" or b"websocket" not in headers.get(b"upgrade", b"").lower() or not key_ok:
            response = _http_response("400 Bad Request")
        else:
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                                 b"sec-websocket-accept: " + accept_key(key) + b"\r\n\r\n")  # fmt: skip
            state = self.app_state
            conn = Connection(self, private=path == "/ws/v5/private")
            self.session = Session(state["exchange"], state["hub"], state["auth"], conn)
            self._timer = self.loop.call_later(PING_INTERVAL_S, self._keepalive)
            return
        self.transport.write(response)
        self._end()

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == OP_PING:
            assert self.transport is not None
            self.transport.write(frame(OP_PONG, payload))
        elif opcode == OP_PONG:
            self._pong_due = False
        elif opcode == OP_CLOSE:
            self._closed_by_client(payload)
        elif opcode == OP_CONTINUATION and not self._fragments:
            self._fail(1002, "a continuation frame with no message to continue")
        elif opcode != OP_CONTINUATION and self._fragments:
            self._fail(1002, "a new message before the last one's final frame")
        elif fin and opcode != OP_CONTINUATION:
            self._message(opcode, payload)
        else:
            if opcode != OP_CONTINUATION:
                self._fragments_opcode = opcode
            self._fragments.append(payload)
            self._fragments_bytes += len(payload)
            if self._fragments_bytes > MESSAGE_BYTES_MAX:
                self._fail(1009, f"a message over {MESSAGE_BYTES_MAX} bytes")
            elif fin:
                whole, self._fragments, self._fragments_bytes = b"".join(self._fragments), [], 0
                self._message(self._fragments_opcode, whole)

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                self._fail(1007, "a text message that is not UTF-8")
                return
        else:
            text = payload.decode(errors="replace")
        if self._waiting is None:
            self._handle(text)
            return
        self._inbox.append(text)
        if len(self._inbox) >= INBOX_MESSAGES_MAX and not self._reading_paused:
            assert self.transport is not None
            self._reading_paused = True
            self.transport.pause_reading()

    def _handle(self, text: str) -> None:
        assert self.session is not None
        try:
            waiting = self.session.handle(text)
        except Exception:
            log.exception("unexpected error on connection %s", self.session.conn.conn_id)
            self.close(1011, "internal error")
            return
        if waiting is not None:
            self._waiting = self.loop.create_task(waiting)
            self._waiting.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._waiting = None
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            assert self.session is not None
            log.error("unexpected error on connection %s", self.session.conn.conn_id, exc_info=error)
            self.close(1011, "internal error")
            return
        while self._inbox and self._waiting is None and not self._close_sent:
            self._handle(self._inbox.popleft())
        if self._reading_paused and len(self._inbox) < INBOX_MESSAGES_MAX:
            assert self.transport is not None
            self._reading_paused = False
            self.transport.resume_reading()

    def _closed_by_client(self, payload: bytes) -> None:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        if len(payload) == 1 or (code is not None and code not in CLOSE_CODES_RECEIVABLE):
            self._send_close(1002, "a close frame with an invalid status code")
        else:
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                self._send_close(1007, "a close reason that is not UTF-8")
            else:
                assert self.transport is not None
                self._close_sent = True
                self.transport.write(frame(OP_CLOSE, payload[:2]))  # the client's code echoed
        self._end()

    def _fail(self, code: int, reason: str) -> None:
        """Fails the connection (RFC 6455, section 7.1.7): a close frame, after which what the
        client sends is not read (past a broken frame it could not be) until it closes TCP, or
        at most `CLOSE_TIMEOUT_S`. (Closing TCP at once could reset the connection under data
        still arriving, and the client would lose the close frame.)"""
        if self._close_sent or self._lost:
            return
        self._send_close(code, reason)
        self._unreadable = True
        self._abort_after(CLOSE_TIMEOUT_S)

    def _send_close(self, code: int, reason: str) -> None:
        assert self.transport is not None
        self._close_sent = True
        self._inbox.clear()
        self._queued.clear()
        self.transport.write(close_frame(code, reason))

    def _keepalive(self) -> None:
        if self._pong_due:
            self._fail(1011, "keepalive ping timeout")
            return
        assert self.transport is not None
        self._pong_due = True
        self.transport.write(frame(OP_PING, b""))
        self._timer = self.loop.call_later(PING_INTERVAL_S, self._keepalive)

    def _abort_after(self, seconds: float) -> None:
        """The connection's end if it has not ended within `seconds` (a client that neither reads
        nor answers the close)."""
        if self._timer is not None:
            self._timer.cancel()
        assert self.transport is not None
        self._timer = self.loop.call_later(seconds, self.transport.abort)

    def _end(self) -> None:
        """Closes the TCP connection once what was written is sent."""
        if self.transport is not None and not self._lost:
            self.transport.close()
