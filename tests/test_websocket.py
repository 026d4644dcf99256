"""The gateway's WebSocket protocol (`pyexchange.gateway.websocket`): its frame reader in Rust
against the `websockets` library's parser, its flow control, and a real server's answers to
the handshakes, frames and closes RFC 6455 describes."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import websockets
from gateway_server import Server, running_server
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Frame
from websockets.streams import StreamReader

from pyexchange._core import websocket_frames
from pyexchange.gateway import websocket
from pyexchange.gateway.websocket import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT

Parsed = tuple[list[tuple[int, bool, bytes]], int, int | None]
EXAMPLES_MAX = 20_000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1_000


def reference_frames(buffer: bytes, payload_bytes_max: int) -> Parsed:
    """The `websockets` library's reading of `buffer` as frames a client sent: the frames, the
    bytes they took, and the close code of the frame it refused (None if it waits for more)."""
    reader = StreamReader()
    reader.feed_data(buffer)
    frames: list[tuple[int, bool, bytes]] = []
    while True:
        before = len(buffer) - len(reader.buffer)
        parser = Frame.parse(reader.read_exact, mask=True, max_size=payload_bytes_max)
        try:
            next(parser)  # it asks for more than there is: an incomplete frame
        except StopIteration as done:
            frames.append((done.value.opcode.value, done.value.fin, bytes(done.value.data)))
            continue
        except PayloadTooBig:
            return frames, before, 1009
        except ProtocolError:
            return frames, before, 1002
        return frames, before, None


@st.composite
def client_frames(draw: st.DrawFn) -> bytes:
    """A frame as a client might send it, mostly valid: any opcode, FIN, reserved bits, mask or
    payload, a length in the shortest encoding or a longer one."""
    payload = draw(st.binary(max_size=300))
    first = (draw(st.booleans()) << 7) | (draw(st.sampled_from([0, 0, 0, 1, 4, 7])) << 4)
    first |= draw(st.one_of(st.sampled_from([OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG]),
                            st.integers(0, 15)))  # fmt: skip
    masked = draw(st.sampled_from([True, True, True, False]))
    length = len(payload)
    encoding = draw(st.sampled_from(["short", "16", "64"] if length < 126 else ["16", "64"]))
    if encoding == "short":
        head = bytes((first, masked << 7 | length))
    elif encoding == "16":
        head = struct.pack("!BBH", first, masked << 7 | 126, length)
    else:
        head = struct.pack("!BBQ", first, masked << 7 | 127, draw(st.sampled_from([length, length, 1 << 63])))
    if not masked:
        return head + payload
    mask = draw(st.binary(min_size=4, max_size=4))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(st.lists(client_frames(), max_size=6), st.integers(0, 400), st.data())
def test_frames_read_in_rust_are_the_websockets_librarys(frames: list[bytes], payload_bytes_max: int,
                                                         data: st.DataObject) -> None:  # fmt: skip
    """`_core.websocket_frames` agrees with `websockets`' parser on whole frames and on any cut
    of them: the same frames, unmasked; the same bytes taken; the same close code. Cut inside a
    frame, both wait for the rest, except that the reader here may refuse a frame whose header
    is all there and already breaks a rule the reference checks once the frame is whole."""
    whole = b"".join(frames)
    buffer = whole[: data.draw(st.integers(0, len(whole)), label="cut")]
    ours_frames, ours_taken, ours_refusal = websocket_frames(buffer, payload_bytes_max)
    ours = (ours_frames, ours_taken, ours_refusal[0] if ours_refusal else None)
    reference = reference_frames(buffer, payload_bytes_max)
    assert ours == reference


def test_a_frame_in_pieces_is_read_once_whole() -> None:
    text = b'{"op":"subscribe"}'
    frame = bytes((0x81, 0x80 | len(text))) + b"\x00\x00\x00\x00" + text
    for cut in range(len(frame)):
        assert websocket_frames(frame[:cut], 1 << 20) == ([], 0, None)
    assert websocket_frames(frame + frame[:3], 1 << 20) == ([(OP_TEXT, True, text)], len(frame), None)


class _Transport:
    """A transport whose buffer is full whenever the test says so."""

    def __init__(self, protocol: websocket.WebSocketProtocol) -> None:
        self.protocol, self.written, self.closed, self.aborted = protocol, [], False, False
        self.full = False

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if self.full:
            self.protocol.pause_writing()

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def _opened() -> tuple[websocket.WebSocketProtocol, _Transport]:
    """A protocol past its handshake on `/ws/v5/public`, on a fake transport."""
    state = {"exchange": None, "hub": SimpleNamespace(drop=lambda conn: None), "auth": None}
    protocol = websocket.WebSocketProtocol(None, SimpleNamespace(connections=set()), state)
    transport = _Transport(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    key = base64.b64encode(os.urandom(16))
    protocol.data_received(b"GET /ws/v5/public HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                           b"sec-websocket-key: " + key + b"\r\nsec-websocket-version: 13\r\n\r\n")  # fmt: skip
    assert transport.written.pop(0).startswith(b"HTTP/1.1 101 ")
    return protocol, transport


def test_a_client_that_reads_too_slowly_is_closed_with_4030_after_what_was_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the transport's buffer is full, messages queue; the message that finds the queue
    full is dropped and so is every later one, the oldest queued gives way to the close (4030),
    and the ones before it still go out in order once the client reads; the client's close then
    ends the connection. A client that reads nothing more is dropped `CLOSE_TIMEOUT_S` later."""
    monkeypatch.setattr(websocket, "SEND_QUEUE_MESSAGES_MAX", 3)

    async def scenario() -> None:
        protocol, transport = _opened()
        transport.full = True
        protocol.send_text(b"m0")  # written; the buffer is now full
        for n in range(1, 6):
            protocol.send_text(f"m{n}".encode())
        assert protocol.overflowed
        transport.full = False
        protocol.resume_writing()
        assert transport.written == [websocket.frame(OP_TEXT, m) for m in (b"m0", b"m2", b"m3")] + [
            websocket.close_frame(4030, "send queue full: the client reads too slowly")
        ]
        protocol.send_text(b"late")  # after the close: nothing more goes out
        assert len(transport.written) == 4 and not transport.closed
        protocol.data_received(b"\x81\x80\x00\x00\x00\x00")  # a message after the close: ignored
        assert not transport.closed
        protocol.data_received(bytes((0x88, 0x82)) + b"\x00\x00\x00\x00" + (4030).to_bytes(2, "big"))
        assert transport.closed and not transport.aborted  # the client's answer ends the connection

    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT_S", 0.05)

    async def never_reads() -> None:
        protocol, transport = _opened()
        transport.full = True
        for n in range(5):
            protocol.send_text(f"m{n}".encode())
        await asyncio.sleep(0.2)
        assert transport.aborted

    asyncio.run(scenario())
    asyncio.run(never_reads())


def test_shutdown_drops_a_client_that_does_not_read_its_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn waits at shutdown until every connection ended: one whose buffer never drains is
    dropped `CLOSE_TIMEOUT_S` after its 1012."""
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT_S", 0.05)

    async def scenario() -> None:
        protocol, transport = _opened()
        protocol.shutdown()
        assert transport.written == [websocket.close_frame(1012, "the server is restarting")]
        assert transport.closed and not transport.aborted  # closed once the buffer drains, which it never does
        await asyncio.sleep(0.2)
        assert transport.aborted

    asyncio.run(scenario())


# ---- a real server ----


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("websocket") / "data") as server:
        yield server


class _RawClient:
    """A client that writes frames byte for byte and reads the server's frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> None:
        first = fin << 7 | opcode
        mask = os.urandom(4) if masked else b""
        head = bytes((first, masked << 7 | len(payload))) if len(payload) < 126 else \
            struct.pack("!BBQ", first, masked << 7 | 127, len(payload))  # fmt: skip
        self.writer.write(head + mask + (bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload))

    async def frame(self) -> tuple[int, bytes]:
        """The server's next frame (opcode, payload); (-1, b"") once the server closed TCP."""
        try:
            first, second = await asyncio.wait_for(self.reader.readexactly(2), 10)
        except asyncio.IncompleteReadError:
            return -1, b""
        assert first & 0x80 and not second & 0x80, "a whole, unmasked server frame"
        length = second & 0x7F
        if length >= 126:
            length = int.from_bytes(await self.reader.readexactly(2 if length == 126 else 8), "big")
        return first & 0x0F, await self.reader.readexactly(length)

    async def closed_with(self) -> int:
        """The code of the server's close frame. The client then closes its side of TCP, as
        clients do, and the server must close its own."""
        opcode, payload = await self.frame()
        while opcode == OP_PING:
            opcode, payload = await self.frame()
        assert opcode == OP_CLOSE
        self.writer.write_eof()
        assert await self.frame() == (-1, b"")
        return int.from_bytes(payload[:2], "big")


async def _handshake(server: Server, path: str, headers: dict[str, str]) -> tuple[bytes, _RawClient]:
    port = int(server.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", f"host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    writer.write("\r\n".join(lines).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return head, _RawClient(reader, writer)


def _upgrade(key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> dict[str, str]:
    return {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-key": key, "sec-websocket-version": "13"}


async def _opened_raw(server: Server, path: str = "/ws/v5/public") -> _RawClient:
    head, client = await _handshake(server, path, _upgrade())
    assert head.startswith(b"HTTP/1.1 101 ")
    return client


def test_the_handshake_accepts_the_endpoints_and_answers_everything_else(server: Server) -> None:
    """RFC 6455's own example key gets its example accept value; an unknown path is 404, a
    missing version 426 (naming 13), a key that is not 16 bytes in base64 400. An offer of
    `permessage-deflate` is declined by leaving it out of the answer."""

    async def scenario() -> None:
        head, _ = await _handshake(server, "/ws/v5/private?x=1", _upgrade() | {
            "sec-websocket-extensions": "permessage-deflate; client_max_window_bits"})  # fmt: skip
        assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
        assert b"extensions" not in head.lower()
        head, _ = await _handshake(server, "/ws/v5/elsewhere", _upgrade())
        assert head.startswith(b"HTTP/1.1 404 ")
        head, _ = await _handshake(server, "/ws/v5/public", {k: v for k, v in _upgrade().items()
                                                              if k != "sec-websocket-version"})  # fmt: skip
        assert head.startswith(b"HTTP/1.1 426 ") and b"sec-websocket-version: 13" in head
        head, _ = await _handshake(server, "/ws/v5/public", _upgrade(key="c2hvcnQ="))
        assert head.startswith(b"HTTP/1.1 400 ")

    asyncio.run(scenario())


def test_messages_in_fragments_pings_and_the_clients_close(server: Server) -> None:
    """A text message in three fragments with a ping between them is one message (`ping` →
    `pong`); the ping frame gets a pong with its payload; binary is read as text; a client's
    close is echoed with its code and TCP is closed."""

    async def scenario() -> None:
        client = await _opened_raw(server)
        client.send(OP_TEXT, b"p", fin=False)
        client.send(OP_CONTINUATION, b"i", fin=False)
        client.send(OP_PING, b"are you there")
        client.send(OP_CONTINUATION, b"ng")
        assert await client.frame() == (OP_PONG, b"are you there")
        assert await client.frame() == (OP_TEXT, b"pong")
        client.send(OP_BINARY, b"ping")
        assert await client.frame() == (OP_TEXT, b"pong")
        client.send(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
        assert await client.closed_with() == 1000

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(OP_TEXT, b"ping", True, False)], 1002),  # unmasked
        ([(OP_TEXT, b"\xff\xfe", True, True)], 1007),  # not UTF-8
        ([(OP_TEXT, b"pi\xc3", False, True), (OP_CONTINUATION, b"ng", True, True)], 1007),  # cut inside a character
        ([(OP_CONTINUATION, b"ng", True, True)], 1002),  # nothing to continue
        ([(OP_TEXT, b"pi", False, True), (OP_TEXT, b"ng", True, True)], 1002),  # a new message too early
        ([(OP_BINARY, b"x" * (websocket.MESSAGE_BYTES_MAX + 1), True, True)], 1009),
        (
            [
                (OP_TEXT, b"x" * (websocket.MESSAGE_BYTES_MAX // 2 + 1), False, True),
                (OP_CONTINUATION, b"x" * (websocket.MESSAGE_BYTES_MAX // 2 + 1), True, True),
            ],
            1009,
        ),  # in fragments
        ([(OP_CLOSE, b"\x03", True, True)], 1002),  # a close code must be two bytes
        ([(OP_CLOSE, (1005).to_bytes(2, "big"), True, True)], 1002),  # never sent in a frame
    ],
)
def test_each_breach_of_the_protocol_is_closed_with_its_code(server: Server, frames: list[Any], code: int) -> None:
    async def scenario() -> None:
        client = await _opened_raw(server)
        for opcode, payload, fin, masked in frames:
            client.send(opcode, payload, fin=fin, masked=masked)
        assert await client.closed_with() == code

    asyncio.run(scenario())


def test_a_websockets_client_talks_to_it(server: Server) -> None:
    """The `websockets` library's client (which offers `permessage-deflate`): a subscription
    acknowledged, a ping answered, a clean close."""

    async def scenario() -> None:
        async with websockets.connect(server.ws_url + "/public") as client:
            await client.send('{"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]}')
            assert '"event":"subscribe"' in await asyncio.wait_for(client.recv(), 10)
            await asyncio.wait_for(await client.ping(b"x"), 10)
        assert client.close_code == 1000

    asyncio.run(scenario())


def test_shutdown_closes_every_connection_with_1012(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_server(tmp_path / "data") as server:
            client = await _opened_raw(server)
            server.process.terminate()
            assert await client.closed_with() == 1012

    asyncio.run(scenario())
