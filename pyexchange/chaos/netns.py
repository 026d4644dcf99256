"""Real network namespaces for the zone drills: one namespace per zone, all on one Linux bridge.

Owns: a lab slot (a /24 and the names that go with it), the bridge, the namespaces, the veth
pairs and the tc state on them, and removing all of it.

Rules:
- Needs root, iproute2 and a kernel with network namespaces and cls_bpf;
  `NetworkLab.available()` says whether this machine qualifies and, if not, why (the caller
  then cuts the network with `proxy.ProxyMesh` instead).
- Every name starts with `pxc` and the lab's two-digit slot; slot k owns 10.77.k.0/24, zone i
  (in the order given) is 10.77.k.(i+1) and the host, on the bridge, is 10.77.k.254.
- A slot is held by an exclusive flock on its lock file. The kernel drops the lock when the
  process dies, so names of a slot whose lock is free are leftovers of a crashed run: they
  are removed before a lab is built. Parallel runs hold different slots.
- Nothing outlives the lab: `close()` runs on an error while building, on leaving the `with`
  block and at interpreter exit. It kills what still runs inside the namespaces, since a
  process there would keep its namespace alive, and checks that no name of the slot remains.
- Limits: slots, zones per lab, time per iproute2 command, delay.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

NAME_PREFIX = "pxc"
SUBNET_PREFIX = "10.77"
SLOTS_MAX = 64
ZONES_MAX = 32
HOST_OCTET = 254
COMMAND_TIMEOUT_MS = 10_000
DELAY_MS_MAX = 10_000
LOCK_DIR = Path(tempfile.gettempdir()) / "pyexchange-chaos-netns"
ZONE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
ZONE_DEVICE = "eth0"  # the zone's end of its veth pair, inside its namespace

assert SLOTS_MAX <= 100, "slots are two digits in every name"
assert SLOTS_MAX <= 256, "a slot is the third octet of the lab's /24"
assert ZONES_MAX < HOST_OCTET, "zone addresses stay below the host's"

# A partition drops IPv4 on the zone's bridge port, both ways, with a one-instruction classic
# BPF program in direct-action mode: `return 2` (TC_ACT_SHOT) for every packet. Why this:
# - Packets vanish, nothing answers: SYNs and segments are lost and peers time out, as across a
#   real partition between zones. An `unreachable` route or a reject would fail fast instead,
#   a failure mode that a partition does not have.
# - ARP still passes. In a real partition the zone's router keeps answering ARP; with ARP cut,
#   the kernel turns the failed neighbour lookup into EHOSTUNREACH after about 3 s, a fast
#   failure again. Setting the veth down has that flaw too, and shows NO-CARRIER inside.
# - `netem loss 100%` would drop as well, but netem is an optional module that minimal kernels
#   (Firecracker guests such as the one this was written on) leave out, while clsact and
#   cls_bpf are built in nearly everywhere; direct-action needs no action module (gact) either.
# - Only on the bridge side: the zone's own stack sees its packets leave, as it would.
# netem is still what `delay` uses; there is no other way to hold packets in tc.
_DROP_ALL_BPF = "1,6 0 0 2,"


class NetworkLabError(RuntimeError):
    """An iproute2 command failed, or the lab cannot run or clean up here."""


class _Support(NamedTuple):
    lab: tuple[bool, str]
    delay: tuple[bool, str]


class NetworkLab:
    """A bridge on the host and one namespace per zone; faults are tc state on the zone's port."""

    def __init__(self, zone_ids: Sequence[str]) -> None:
        assert 1 <= len(zone_ids) <= ZONES_MAX, len(zone_ids)
        assert len(set(zone_ids)) == len(zone_ids), zone_ids
        assert all(ZONE_ID_PATTERN.fullmatch(zone_id) for zone_id in zone_ids), zone_ids
        usable, reason = NetworkLab.available()
        if not usable:
            raise NetworkLabError(reason)
        self._zone_ids = list(zone_ids)
        self._slot, self._lock_fd = _claim_slot()
        self._closed = False
        self._partitioned: set[str] = set()
        self._delayed: set[str] = set()
        _open_labs.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") if a lab can run here, else (False, why not)."""
        return _probe().lab

    @staticmethod
    def delay_available() -> tuple[bool, str]:
        """(True, "") if `delay` can run here (it needs netem), else (False, why not)."""
        return _probe().delay

    # --- names and addresses ---

    @property
    def prefix(self) -> str:
        """The start of every namespace and link name of this lab."""
        return _slot_prefix(self._slot)

    @property
    def host_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self._slot}.{HOST_OCTET}"

    def address(self, zone_id: str) -> str:
        return f"{SUBNET_PREFIX}.{self._slot}.{self._zone_ids.index(zone_id) + 1}"

    def namespace(self, zone_id: str) -> str:
        assert zone_id in self._zone_ids, zone_id
        return f"{self.prefix}-{zone_id}"

    def command(self, zone_id: str, argv: Sequence[str]) -> list[str]:
        """`argv` made to run inside the zone's namespace."""
        return ["ip", "netns", "exec", self.namespace(zone_id), *argv]

    def _bridge(self) -> str:
        return f"{self.prefix}br"

    def _port(self, zone_id: str) -> str:
        """The bridge side of the zone's veth pair, where its faults live."""
        return f"{self.prefix}v{self._zone_ids.index(zone_id)}"

    # --- faults ---

    def partition(self, zone_id: str) -> None:
        """Cuts the zone off from the other zones and the host; packets are dropped silently."""
        assert not self._closed
        if zone_id in self._partitioned:
            return
        port = self._port(zone_id)
        _run(["tc", "qdisc", "add", "dev", port, "clsact"])
        for hook in ("ingress", "egress"):
            _run(["tc", *_drop_filter(port, hook)])
        self._partitioned.add(zone_id)

    def heal(self, zone_id: str) -> None:
        """Removes the zone's partition and delay."""
        assert not self._closed
        if zone_id in self._partitioned:
            _run(["tc", "qdisc", "del", "dev", self._port(zone_id), "clsact"])
            self._partitioned.discard(zone_id)
        self.delay(zone_id, 0)

    def delay(self, zone_id: str, delay_ms: int) -> None:
        """Holds every packet to and from the zone `delay_ms` (each way); 0 removes the delay."""
        assert not self._closed
        assert 0 <= delay_ms <= DELAY_MS_MAX, delay_ms
        ends = (["tc", "qdisc"], ["tc", "-n", self.namespace(zone_id), "qdisc"])
        devices = (self._port(zone_id), ZONE_DEVICE)
        if delay_ms == 0:
            if zone_id in self._delayed:
                for tc, device in zip(ends, devices, strict=True):
                    _run([*tc, "del", "dev", device, "root"])
                self._delayed.discard(zone_id)
            return
        usable, reason = NetworkLab.delay_available()
        if not usable:
            raise NetworkLabError(reason)
        for tc, device in zip(ends, devices, strict=True):
            _run([*tc, "replace", "dev", device, "root", "netem", "delay", f"{delay_ms}ms"])
        self._delayed.add(zone_id)

    # --- lifecycle ---

    def _build(self) -> None:
        bridge = self._bridge()
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.host_address}/24", "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        for zone_id in self._zone_ids:
            namespace, port = self.namespace(zone_id), self._port(zone_id)
            _run(["ip", "netns", "add", namespace])
            _run(["ip", "link", "add", port, "type", "veth", "peer", "name", ZONE_DEVICE, "netns", namespace])
            _run(["ip", "link", "set", port, "master", bridge, "up"])
            _run(["ip", "-n", namespace, "addr", "add", f"{self.address(zone_id)}/24", "dev", ZONE_DEVICE])
            _run(["ip", "-n", namespace, "link", "set", ZONE_DEVICE, "up"])
            _run(["ip", "-n", namespace, "link", "set", "lo", "up"])

    def close(self) -> None:
        """Kills what runs inside, removes every namespace and link of the lab; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            _remove_slot(self._slot)
        finally:
            # Released only now: another run could take the slot while names of ours remained.
            os.close(self._lock_fd)
            _open_labs.discard(self)

    def __enter__(self) -> NetworkLab:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


_open_labs: set[NetworkLab] = set()


@atexit.register
def _close_open_labs() -> None:
    for lab in list(_open_labs):
        with contextlib.suppress(NetworkLabError):
            lab.close()


def _run(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_MS / 1000, check=False)
    except subprocess.TimeoutExpired as error:
        raise NetworkLabError(f"{' '.join(argv)}: no answer in {COMMAND_TIMEOUT_MS} ms") from error
    if done.returncode != 0:
        raise NetworkLabError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _drop_filter(device: str, hook: str) -> list[str]:
    """The tc arguments that drop every IPv4 packet through `hook` of `device` (see _DROP_ALL_BPF)."""
    return ["filter", "add", "dev", device, hook, "protocol", "ip", "bpf", "da", "bytecode", _DROP_ALL_BPF]


def _slot_prefix(slot: int) -> str:
    return f"{NAME_PREFIX}{slot:02d}"


@functools.cache
def _probe() -> _Support:
    """Tries, in a throwaway namespace, what a lab does: namespace, veth, clsact + BPF drop, netem."""
    if os.geteuid() != 0:
        return _Support((False, "network namespaces need root"), (False, "needs root"))
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        reason = f"iproute2 missing: {', '.join(missing)} not on PATH"
        return _Support((False, reason), (False, reason))
    namespace = f"{NAME_PREFIX}-probe-{os.getpid()}"
    try:
        _run(["ip", "netns", "add", namespace])
    except NetworkLabError as error:
        return _Support((False, str(error)), (False, str(error)))
    try:
        return _probe_in(namespace)
    finally:
        with contextlib.suppress(NetworkLabError):
            _run(["ip", "netns", "del", namespace])


def _probe_in(namespace: str) -> _Support:
    try:
        _run(["ip", "-n", namespace, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"])
        _run(["tc", "-n", namespace, "qdisc", "add", "dev", "probe0", "clsact"])
        _run(["tc", "-n", namespace, *_drop_filter("probe0", "egress")])
    except NetworkLabError as error:
        return _Support((False, str(error)), (False, "the lab itself cannot run"))
    try:
        _run(["tc", "-n", namespace, "qdisc", "add", "dev", "probe0", "root", "netem", "delay", "1ms"])
    except NetworkLabError as error:
        return _Support((True, ""), (False, f"no netem in this kernel: {error}"))
    return _Support((True, ""), (True, ""))


def _names() -> tuple[list[str], list[str]]:
    """The namespaces and links whose names start with NAME_PREFIX."""
    namespaces = [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()]
    # `ip -o link` lines read "7: pxc00v0@if2: <BROADCAST,...": the name is before the '@'.
    links = [line.split(": ")[1].split("@")[0] for line in _run(["ip", "-o", "link", "show"]).splitlines()]
    return (
        [name for name in namespaces if name.startswith(NAME_PREFIX)],
        [name for name in links if name.startswith(NAME_PREFIX)],
    )


def _claim_slot() -> tuple[int, int]:
    """Locks the first free slot and sweeps every free slot's leftovers; returns (slot, lock fd)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    _remove_dead_probes()
    namespaces, links = _names()
    claimed: tuple[int, int] | None = None
    for slot in range(SLOTS_MAX):
        prefix = _slot_prefix(slot)
        has_leftovers = any(name.startswith(prefix) for name in namespaces + links)
        if claimed is not None and not has_leftovers:
            continue
        lock_fd = _try_lock(slot)
        if lock_fd is None:
            continue  # a live run holds it
        if has_leftovers:
            _remove_slot(slot)
        if claimed is None:
            claimed = (slot, lock_fd)
        else:
            os.close(lock_fd)
    if claimed is None:
        raise NetworkLabError(f"all {SLOTS_MAX} lab slots are held by live runs")
    return claimed


def _try_lock(slot: int) -> int | None:
    lock_fd = os.open(LOCK_DIR / f"slot-{slot:02d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        return None
    return lock_fd


def _remove_slot(slot: int) -> None:
    """Removes every namespace and link of a slot whose lock we hold, then checks none is left."""
    prefix = _slot_prefix(slot)
    all_namespaces, all_links = _names()
    namespaces = [name for name in all_namespaces if name.startswith(prefix)]
    for namespace in namespaces:
        _kill_inside(namespace)
    # Links first: a namespace whose processes are still dying lives on unnamed, and the veth
    # end inside it with it; deleting the host end removes both ends at once.
    for link in [name for name in all_links if name.startswith(prefix)]:
        with contextlib.suppress(NetworkLabError):
            _run(["ip", "link", "del", link])
    for namespace in namespaces:
        with contextlib.suppress(NetworkLabError):
            _run(["ip", "netns", "del", namespace])
    all_namespaces, all_links = _names()
    remaining = [name for name in all_namespaces + all_links if name.startswith(prefix)]
    if remaining:
        raise NetworkLabError(f"could not remove {', '.join(remaining)}")


def _kill_inside(namespace: str) -> None:
    with contextlib.suppress(NetworkLabError):
        for pid in _run(["ip", "netns", "pids", namespace]).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _remove_dead_probes() -> None:
    """Removes probe namespaces of processes that died inside `_probe`."""
    namespaces, _ = _names()
    for namespace in namespaces:
        pid = namespace.removeprefix(f"{NAME_PREFIX}-probe-")
        if pid == namespace or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(NetworkLabError):
            _run(["ip", "netns", "del", namespace])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
