"""A fault-injecting TCP proxy between two zones, and a mesh of them for a whole cluster.

Owns: one listening socket per link, the connections accepted on it and their upstream
connections to the target, and the fault state of the link. Needs no privileges, so it is the
way to cut the network wherever `netns.NetworkLab` cannot run.

Rules:
- A link runs in its own thread with its own event loop; the fault controls are synchronous
  and return once the fault is in effect on every existing connection and on new ones.
- Bytes keep their order in each direction, whatever the delay and however it changes.
- A blackholed link is a partition, not a crash: connections stay open and nothing crosses in
  either direction (not even a close), so peers see timeouts, never resets. Healing closes the
  connections that lived through the blackhole, so both sides reconnect to a clean stream
  instead of resuming one with a hole in it.
- A reset link closes every connection with an RST and answers new ones the same way.
- Limits: connections per link, chunk size, chunks queued per direction, delay, zones per mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

Address = tuple[str, int]

CONNECTIONS_MAX = 256  # per link; a Raft peer holds a handful, more means a reconnect leak
CHUNK_BYTES_MAX = 64 * 1024
CHUNKS_QUEUED_MAX = 64  # per direction; a full queue stops reading, so backpressure reaches the sender
DELAY_MS_MAX = 60_000
CONNECT_TIMEOUT_MS = 5_000
CONTROL_TIMEOUT_MS = 10_000  # a control call waits this long for the link's loop to answer
MESH_ZONES_MAX = 16

_T = TypeVar("_T")


class _Mode(enum.Enum):
    FORWARD = "forward"
    BLACKHOLE = "blackhole"
    RESET = "reset"


@dataclass(frozen=True)
class LinkStats:
    """Counters of one link since it started."""

    bytes_to_target: int
    bytes_to_client: int
    connections_total: int
    connections_open: int


class _Connection:
    """One accepted client and its upstream connection; `lost` once it lived through a blackhole."""

    __slots__ = ("client", "lost", "task", "upstream")

    def __init__(self, client: asyncio.StreamWriter, lost: bool) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.lost = lost
        self.task = asyncio.current_task()

    def abort(self, rst: bool) -> None:
        """Closes both sides at once; with `rst` the peers get a reset instead of an end of stream."""
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            if rst:
                _set_linger_zero(writer)
            writer.transport.abort()


class _ClientGone(Exception):
    """The client closed a lost connection: nothing is left to keep open for it."""


def _set_linger_zero(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class LinkProxy:
    """Forwards TCP from `listen` to `target`, with faults switched on and off from any thread."""

    def __init__(self, listen: Address = ("127.0.0.1", 0), *, target: Address) -> None:
        self._listen = listen
        self._target = target
        self._mode = _Mode.FORWARD
        self._delay_s = 0.0
        self._connections: set[_Connection] = set()
        self._bytes_to_target = 0
        self._bytes_to_client = 0
        self._connections_total = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    # --- lifecycle (any thread but the link's own) ---

    def start(self) -> None:
        assert self._loop is None, "the link is running already"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"link-proxy->{self._target[1]}", daemon=True
        )
        self._thread.start()
        try:
            self._server = self._call(self._open())
        except BaseException:
            self.stop()
            raise
        self._port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Closes the listener and every connection; a second call does nothing."""
        if self._loop is None or self._thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CONTROL_TIMEOUT_MS / 1000)
            if not self._thread.is_alive():
                self._loop.close()
            self._loop = None
            self._thread = None
            self._server = None

    def __enter__(self) -> LinkProxy:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._port is not None, "the port is known once the link has started"
        return self._port

    @property
    def address(self) -> Address:
        """Where to dial instead of the target."""
        return (self._listen[0], self.port)

    @property
    def target(self) -> Address:
        return self._target

    def stats(self) -> LinkStats:
        return LinkStats(
            bytes_to_target=self._bytes_to_target,
            bytes_to_client=self._bytes_to_client,
            connections_total=self._connections_total,
            connections_open=len(self._connections),
        )

    # --- faults ---

    def blackhole(self) -> None:
        """Keeps every connection open and forwards nothing, as a partition does."""
        self._call(self._set_blackhole())

    def reset(self) -> None:
        """Resets every connection and every new one."""
        self._call(self._set_reset())

    def delay(self, delay_ms: int) -> None:
        """Holds each chunk `delay_ms` before passing it on, in both directions; 0 removes the delay."""
        assert 0 <= delay_ms <= DELAY_MS_MAX, delay_ms
        self._call(self._set_delay(delay_ms / 1000))

    def heal(self) -> None:
        """Forwards again without delay; connections that lived through a blackhole are closed."""
        self._call(self._set_heal())

    def _call(self, work: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None, "the link is not running"
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=CONTROL_TIMEOUT_MS / 1000)

    # --- on the link's loop ---

    async def _open(self) -> asyncio.Server:
        host, port = self._listen
        return await asyncio.start_server(self._on_client, host, port, limit=CHUNK_BYTES_MAX)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        self._close_where(lambda _: True, rst=False)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _set_blackhole(self) -> None:
        self._mode = _Mode.BLACKHOLE
        for connection in self._connections:
            connection.lost = True

    async def _set_reset(self) -> None:
        self._mode = _Mode.RESET
        self._close_where(lambda _: True, rst=True)
        # The transports close their sockets on the next turn of the loop; after it, the
        # peers have their resets and the caller can rely on that.
        await asyncio.sleep(0)

    async def _set_delay(self, delay_s: float) -> None:
        self._delay_s = delay_s

    async def _set_heal(self) -> None:
        self._mode = _Mode.FORWARD
        self._delay_s = 0.0
        self._close_where(lambda c: c.lost, rst=False)
        await asyncio.sleep(0)  # as in `_set_reset`: the sockets are closed when heal returns

    def _close_where(self, chosen: Callable[[_Connection], bool], rst: bool) -> None:
        for connection in [c for c in self._connections if chosen(c)]:
            connection.abort(rst)
            if connection.task is not None:
                connection.task.cancel()
            self._connections.discard(connection)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections_total += 1
        if self._mode is _Mode.RESET or len(self._connections) >= CONNECTIONS_MAX:
            _set_linger_zero(writer)
            writer.transport.abort()
            return
        connection = _Connection(writer, lost=self._mode is _Mode.BLACKHOLE)
        self._connections.add(connection)
        try:
            await self._serve(connection, reader)
        except* (OSError, _ClientGone):
            pass  # the connection is over; closing it below is all there is to do
        except* asyncio.CancelledError:
            # Cancelled by a fault or by stop: the connection is over too. Ending normally, as
            # asyncio's streams (3.11) log an error for a client task that ends cancelled.
            pass
        finally:
            connection.abort(rst=False)
            self._connections.discard(connection)

    async def _serve(self, connection: _Connection, client_reader: asyncio.StreamReader) -> None:
        if connection.lost:
            # Accepted during a blackhole: no upstream to dial, as no packet would reach it; the
            # client's bytes are lost until it gives up (or the link heals and closes it).
            while await client_reader.read(CHUNK_BYTES_MAX):
                pass
            return
        host, port = self._target
        upstream_reader, upstream = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=CHUNK_BYTES_MAX), CONNECT_TIMEOUT_MS / 1000
        )
        connection.upstream = upstream
        to_target: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(CHUNKS_QUEUED_MAX)
        to_client: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(CHUNKS_QUEUED_MAX)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._pump_in(connection, client_reader, to_target, from_client=True))
            group.create_task(self._pump_out(connection, to_target, upstream, to_target_side=True))
            group.create_task(self._pump_in(connection, upstream_reader, to_client, from_client=False))
            group.create_task(self._pump_out(connection, to_client, connection.client, to_target_side=False))

    async def _pump_in(
        self,
        connection: _Connection,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        from_client: bool,
    ) -> None:
        """Reads chunks and stamps each with when it may leave; an empty chunk is the end of stream."""
        loop = asyncio.get_running_loop()
        while True:
            chunk = await reader.read(CHUNK_BYTES_MAX)
            if connection.lost:
                if chunk:
                    continue  # lost, as a packet in a partition is
                if from_client:
                    raise _ClientGone
                return  # the target's close cannot cross the partition either
            await queue.put((loop.time() + self._delay_s, chunk))
            if not chunk:
                return

    async def _pump_out(
        self,
        connection: _Connection,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        to_target_side: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due_s, chunk = await queue.get()
            # A loop: the event loop may wake a timer up to its clock resolution early, and a
            # delay is a lower bound that tests rely on.
            while (wait_s := due_s - loop.time()) > 0:
                await asyncio.sleep(wait_s)
            if connection.lost:
                continue
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            # Counted before the write: a peer that has the bytes finds them in the counters.
            if to_target_side:
                self._bytes_to_target += len(chunk)
            else:
                self._bytes_to_client += len(chunk)
            writer.write(chunk)
            await writer.drain()


class ProxyMesh:
    """One `LinkProxy` per ordered pair of zones: zone a dials b through the link (a, b)."""

    def __init__(self, raft_addresses: Mapping[str, Address], listen_host: str = "127.0.0.1") -> None:
        assert 2 <= len(raft_addresses) <= MESH_ZONES_MAX, len(raft_addresses)
        self._links: dict[tuple[str, str], LinkProxy] = {
            (source, target): LinkProxy((listen_host, 0), target=address)
            for source in raft_addresses
            for target, address in raft_addresses.items()
            if source != target
        }
        self._zone_ids = list(raft_addresses)

    def start(self) -> dict[str, dict[str, Address]]:
        """Starts every link; returns the addresses each zone dials: zone -> peer -> proxy address."""
        try:
            for link in self._links.values():
                link.start()
        except BaseException:
            self.stop()
            raise
        return self.dial_addresses()

    def stop(self) -> None:
        for link in self._links.values():
            link.stop()

    def __enter__(self) -> ProxyMesh:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def dial_addresses(self) -> dict[str, dict[str, Address]]:
        return {
            source: {target: link.address for (s, target), link in self._links.items() if s == source}
            for source in self._zone_ids
        }

    def link(self, source: str, target: str) -> LinkProxy:
        """The link `source` dials `target` through, for finer faults (one direction, delay)."""
        return self._links[(source, target)]

    def partition(self, zone_id: str) -> None:
        """Blackholes every link to and from `zone_id`; the other zones still reach each other."""
        assert zone_id in self._zone_ids, zone_id
        for (source, target), link in self._links.items():
            if zone_id in (source, target):
                link.blackhole()

    def isolate_pair(self, a: str, b: str) -> None:
        """Blackholes the links between `a` and `b` only."""
        self._links[(a, b)].blackhole()
        self._links[(b, a)].blackhole()

    def heal_all(self) -> None:
        for link in self._links.values():
            link.heal()
