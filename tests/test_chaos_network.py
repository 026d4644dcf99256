"""Each network fault is checked with real sockets (echo servers behind a LinkProxy or a
ProxyMesh, and inside real namespaces where NetworkLab can run), waiting generously for service
and briefly only to show its absence."""

from __future__ import annotations

import os
import select
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from pyexchange.chaos.netns import NetworkLab
from pyexchange.chaos.proxy import LinkProxy, ProxyMesh

Address = tuple[str, int]

SERVICE_TIMEOUT_S = 15.0  # how long service may take to answer (a slow, loaded machine)
SILENCE_S = 0.5  # how long nothing may arrive for a link to count as cut


@contextmanager
def echo_server(tag: bytes = b"") -> Iterator[Address]:
    """A threaded TCP server on loopback that answers every chunk with `tag` + the chunk."""

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                while chunk := self.request.recv(65536):
                    self.request.sendall(tag + chunk)
            except OSError:
                pass  # the proxy closed or reset the connection: that is what the tests do

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server(("127.0.0.1", 0), Echo) as server:
        # A short poll interval: shutdown waits for the next poll.
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield ("127.0.0.1", server.server_address[1])
        finally:
            server.shutdown()
            thread.join()


def connect(address: Address) -> socket.socket:
    return socket.create_connection(address, timeout=SERVICE_TIMEOUT_S)


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def round_trip(address: Address, payload: bytes, tag: bytes = b"") -> bytes:
    with connect(address) as conn:
        conn.sendall(payload)
        return recv_exactly(conn, len(tag) + len(payload))


def assert_silent(conns: list[socket.socket]) -> None:
    """Nothing arrives on any of `conns` for SILENCE_S: no data, no close, no reset (those would be readable)."""
    readable, _, _ = select.select(conns, [], [], SILENCE_S)
    assert readable == [], "a cut link answered"


def assert_closed(conn: socket.socket) -> None:
    conn.settimeout(SERVICE_TIMEOUT_S)
    with suppress(ConnectionResetError):
        assert conn.recv(1) == b""


def open_and_send(address: Address) -> socket.socket:
    conn = connect(address)
    conn.sendall(b"anyone there?")
    return conn


# --- LinkProxy ---


def test_proxy_forwards_bytes_both_ways_in_order_and_counts_them() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: many chunks, so order is tested too
    with echo_server() as target, LinkProxy(target=target) as proxy:
        assert round_trip(proxy.address, b"hello") == b"hello"
        with connect(proxy.address) as conn:
            sender = threading.Thread(target=conn.sendall, args=(payload,))
            sender.start()
            assert recv_exactly(conn, len(payload)) == payload
            sender.join()
        stats = proxy.stats()
    assert stats.bytes_to_target == stats.bytes_to_client == len(payload) + 5
    assert stats.connections_total == 2


def test_proxy_blackhole_times_out_without_reset_and_heal_restores() -> None:
    with echo_server() as target, LinkProxy(target=target) as proxy:
        before = connect(proxy.address)
        before.sendall(b"ping")
        assert recv_exactly(before, 4) == b"ping"

        proxy.blackhole()
        before.sendall(b"ping")
        during = open_and_send(proxy.address)  # accepted, as a partition cannot refuse either
        assert_silent([before, during])

        proxy.heal()
        assert_closed(before)  # closed, so that both ends reconnect to a clean stream
        assert_closed(during)
        assert round_trip(proxy.address, b"back") == b"back"
        before.close()
        during.close()


def test_proxy_reset_closes_every_connection_and_new_ones() -> None:
    with echo_server() as target, LinkProxy(target=target) as proxy:
        before = connect(proxy.address)
        proxy.reset()
        assert_closed(before)
        try:
            after = open_and_send(proxy.address)
            assert_closed(after)
            after.close()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the reset came before the send: also an immediate close
        proxy.heal()
        assert round_trip(proxy.address, b"back") == b"back"
        before.close()


def test_proxy_delay_adds_latency_each_way_and_keeps_order() -> None:
    delay_ms = 150
    messages = [f"message {i};".encode() for i in range(20)]
    with echo_server() as target, LinkProxy(target=target) as proxy:
        proxy.delay(delay_ms)
        with connect(proxy.address) as conn:
            started_s = time.monotonic()
            for message in messages:
                conn.sendall(message)
            answer = recv_exactly(conn, sum(len(m) for m in messages))
            round_trip_s = time.monotonic() - started_s
    assert answer == b"".join(messages)
    assert round_trip_s >= 2 * delay_ms / 1000  # a lower bound only: a slow machine adds more


def test_mesh_partition_cuts_exactly_one_zones_links() -> None:
    zone_ids = ["a", "b", "c"]
    with (
        echo_server(b"a:") as a,
        echo_server(b"b:") as b,
        echo_server(b"c:") as c,
        ProxyMesh({"a": a, "b": b, "c": c}) as mesh,
    ):
        dial = mesh.dial_addresses()
        pairs = [(s, t) for s in zone_ids for t in zone_ids if s != t]
        for source, target in pairs:  # each link reaches the zone it is named for
            assert round_trip(dial[source][target], b"hi", target.encode() + b":") == target.encode() + b":hi"

        mesh.partition("a")
        cut = [open_and_send(dial[s][t]) for s, t in pairs if "a" in (s, t)]
        assert_silent(cut)
        assert round_trip(dial["b"]["c"], b"hi", b"c:") == b"c:hi"
        assert round_trip(dial["c"]["b"], b"hi", b"b:") == b"b:hi"

        mesh.heal_all()
        for source, target in pairs:
            assert round_trip(dial[source][target], b"hi", target.encode() + b":") == target.encode() + b":hi"

        mesh.isolate_pair("b", "c")
        cut += [open_and_send(dial["b"]["c"]), open_and_send(dial["c"]["b"])]
        assert_silent(cut[-2:])
        assert round_trip(dial["a"]["b"], b"hi", b"b:") == b"b:hi"
        for conn in cut:
            conn.close()


# --- NetworkLab ---

LAB_USABLE, LAB_REASON = NetworkLab.available()
DELAY_USABLE, DELAY_REASON = NetworkLab.delay_available()
needs_lab = pytest.mark.skipif(not LAB_USABLE, reason=f"NetworkLab cannot run here: {LAB_REASON}")
ECHO_PORT = 7000  # inside a zone's own namespace, so no other process can hold it

NS_ECHO = """
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    conn.settimeout(5)
    try:
        conn.sendall(conn.recv(64))
    except OSError:
        pass
    conn.close()
"""

# Prints "ok" or the name of the error, so a test can tell a timeout from a refusal.
NS_PING = """
import socket, sys
try:
    conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    conn.sendall(b"ping")
    print("ok" if conn.recv(4) == b"ping" else "wrong answer")
except OSError as error:
    print(type(error).__name__)
"""


def ping_from_host(address: str, timeout_s: float) -> str:
    try:
        with socket.create_connection((address, ECHO_PORT), timeout=timeout_s) as conn:
            conn.sendall(b"ping")
            return "ok" if recv_exactly(conn, 4) == b"ping" else "wrong answer"
    except OSError as error:
        return type(error).__name__


def ping_from_zone(lab: NetworkLab, zone_id: str, address: str, timeout_s: float) -> str:
    argv = lab.command(zone_id, [sys.executable, "-c", NS_PING, address, str(ECHO_PORT), str(timeout_s)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SERVICE_TIMEOUT_S + timeout_s, check=True)
    return done.stdout.strip()


def wait_for(answer: Callable[[], str]) -> None:
    deadline_s = time.monotonic() + SERVICE_TIMEOUT_S
    while (last := answer()) != "ok":
        assert time.monotonic() < deadline_s, f"no service after {SERVICE_TIMEOUT_S} s: {last}"
        time.sleep(0.1)


@contextmanager
def echo_in(lab: NetworkLab, zone_id: str) -> Iterator[None]:
    server = subprocess.Popen(lab.command(zone_id, [sys.executable, "-c", NS_ECHO, str(ECHO_PORT)]))
    try:
        wait_for(lambda: ping_from_host(lab.address(zone_id), timeout_s=1.0))
        yield
    finally:
        server.kill()
        server.wait(timeout=SERVICE_TIMEOUT_S)


def lab_names(prefix: str) -> set[str]:
    """The namespaces and host links whose names start with `prefix`; a link as "ifindex:name".

    Namespaces are told apart by zone ids unique to this test run and links by their ifindex
    (never reused soon), so a parallel run that takes the slot next does not confuse a test.
    """
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in namespaces.splitlines()}
    names |= {":".join(line.split(": ")[:2]).split("@")[0] for line in links.splitlines()}
    return {name for name in names if name.split(":")[-1].startswith(prefix)}


@needs_lab
def test_netns_partition_is_silent_for_zones_and_host_and_heal_restores() -> None:
    with NetworkLab(["a", "b", "c"]) as lab, echo_in(lab, "a"), echo_in(lab, "c"):
        a, c = lab.address("a"), lab.address("c")
        assert ping_from_zone(lab, "b", a, SERVICE_TIMEOUT_S) == "ok"

        lab.partition("a")
        assert ping_from_host(a, timeout_s=SILENCE_S) == "TimeoutError"  # dropped, not refused
        assert ping_from_zone(lab, "b", a, SILENCE_S) == "TimeoutError"
        assert ping_from_zone(lab, "b", c, SERVICE_TIMEOUT_S) == "ok"
        assert ping_from_host(c, timeout_s=SERVICE_TIMEOUT_S) == "ok"

        lab.heal("a")
        wait_for(lambda: ping_from_host(a, timeout_s=1.0))
        assert ping_from_zone(lab, "b", a, SERVICE_TIMEOUT_S) == "ok"


@needs_lab
@pytest.mark.skipif(not DELAY_USABLE, reason=f"NetworkLab.delay cannot run here: {DELAY_REASON}")
def test_netns_delay_adds_latency_each_way() -> None:
    delay_ms = 100
    with NetworkLab(["a"]) as lab, echo_in(lab, "a"):
        lab.delay("a", delay_ms)
        with socket.create_connection((lab.address("a"), ECHO_PORT), timeout=SERVICE_TIMEOUT_S) as conn:
            started_s = time.monotonic()
            conn.sendall(b"ping")
            assert recv_exactly(conn, 4) == b"ping"
            assert time.monotonic() - started_s >= 2 * delay_ms / 1000  # a lower bound only


@needs_lab
def test_netns_close_leaves_no_namespace_link_or_process() -> None:
    lab = NetworkLab([f"a{os.getpid()}", f"b{os.getpid()}"])
    sleeper = subprocess.Popen(lab.command(f"a{os.getpid()}", [sys.executable, "-c", "import time; time.sleep(60)"]))
    try:
        lab.partition(f"b{os.getpid()}")
        before = lab_names(lab.prefix)
        assert len(before) == 5  # bridge, two ports, two namespaces
        lab.close()
        lab.close()
        assert before.isdisjoint(lab_names(lab.prefix))
        assert sleeper.wait(timeout=SERVICE_TIMEOUT_S) != 0  # killed with its namespace
    finally:
        lab.close()
        sleeper.kill()
        sleeper.wait()


CRASHING_RUN = """
import sys, time
from pyexchange.chaos.netns import NetworkLab
lab = NetworkLab([sys.argv[1]])
print(lab.prefix, flush=True)
time.sleep(60)
"""


@needs_lab
def test_netns_sweeps_what_a_crashed_run_left() -> None:
    crashing = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, f"crashed{os.getpid()}"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert crashing.stdout is not None
        prefix = crashing.stdout.readline().strip()
        assert prefix, "the crashing run did not build its lab"
    finally:
        crashing.kill()  # SIGKILL: no close, no atexit; the kernel releases the slot's lock
        crashing.wait()
    leftovers = lab_names(prefix)
    assert len(leftovers) == 3  # bridge, port, namespace
    with NetworkLab(["a"]):
        # Swept by this lab, or by a parallel run that holds the slot's lock right now.
        wait_for(lambda: "ok" if leftovers.isdisjoint(lab_names(prefix)) else f"left: {leftovers}")
