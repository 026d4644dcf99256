"""The durable engine through its Python face: restart equals replay, retries are idempotent
across restarts, snapshots are used and fallen back from, a torn tail is cut and reported,
damage before the tail stops recovery loudly, a full disk stops acknowledgements without
losing any, and the operator commands read the journal."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pyexchange import Engine, JournalUnavailable, OutcomeUnknown, _core, cli, wire

BTC = "BTC-USDT"


class Clock:
    """A deterministic clock, so two engines fed the same calls get the same timestamps."""

    def __init__(self) -> None:
        self.now_ns = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        self.now_ns += 1_000
        return self.now_ns


def setup_market(eng: Engine) -> None:
    eng.add_instrument(BTC, tick_size="0.1", lot_size="0.001", min_size="0.001", maker_fee_bps=2, taker_fee_bps=5)
    for account in (1, 2, 3):
        eng.deposit(account=account, asset="USDT", amount="100000")
        eng.deposit(account=account, asset="BTC", amount="10")


def random_session(eng: Engine, seed: int, commands: int) -> None:
    """Places (some with client order ids), cancels and amends that trade with each other."""
    rng = random.Random(seed)
    for i in range(commands):
        account, roll = rng.randint(1, 3), rng.random()
        if roll < 0.6:
            eng.place(
                account=account, instrument=BTC, side=rng.choice(["buy", "sell"]),
                order_type=rng.choice(["limit", "limit", "ioc", "post_only"]),
                price=f"{rng.randint(29_990, 30_010) / 10:.1f}", size=f"{rng.randint(1, 20) / 1000:.3f}",
                client_order_id=f"s{seed}-{i}" if rng.random() < 0.5 else None,
            )  # fmt: skip
        elif roll < 0.8:
            eng.cancel(account=account, instrument=BTC, order_id=rng.randint(1, i + 1))
        else:
            eng.amend(account=account, instrument=BTC, order_id=rng.randint(1, i + 1), new_size="0.004")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pyexchange-durable-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "journal").glob("*.seg"))


def test_restart_recovers_the_state_of_an_in_memory_engine_fed_the_same_commands(data_dir: Path) -> None:
    memory = Engine(clock=Clock())
    setup_market(memory)
    random_session(memory, seed=1, commands=300)
    with Engine(data_dir, clock=Clock()) as durable:
        setup_market(durable)
        random_session(durable, seed=1, commands=300)
        assert durable.state_hash() == memory.state_hash()
    reopened = Engine(data_dir)
    assert reopened.recovery()["replayed"] == reopened.seq == memory.seq
    assert reopened.state_hash() == memory.state_hash()
    assert reopened.book(BTC, depth=50) == memory.book(BTC, depth=50)
    assert reopened.instrument(BTC) == memory.instrument(BTC)
    reopened.check_invariants()
    # The journal alone, replayed into a fresh in-memory core, gives the same state.
    replica = _core.Engine()
    for _seq, _file, _offset, _ts, _what, payload in _core.journal_records(os.fspath(data_dir), 1, 10**9):
        replica.apply_journal_payload(payload)
    assert replica.state_hash() == memory.state_hash()
    reopened.close()


def test_snapshots_of_a_growing_book_restore_the_same_state(data_dir: Path) -> None:
    """Snapshots of a book of 200,000 resting orders, taken by the shadow engine behind order
    entry: a restart from the newest restores the state."""
    memory = Engine(clock=Clock())
    with Engine(data_dir, clock=Clock(), snapshot_every_commands=50_000) as durable:
        for eng in (memory, durable):
            setup_market(eng)
            for account in (1, 2, 3):
                eng.deposit(account=account, asset="USDT", amount="100000000")
                eng.deposit(account=account, asset="BTC", amount="1000")
        inst = durable.instrument(BTC).instrument_id
        for first in range(0, 200_000, 10_000):
            places = np.zeros(10_000, dtype=wire.COMMAND_DTYPE)
            i = np.arange(first, first + 10_000)
            places["kind"], places["account"], places["instrument"] = wire.PLACE, 1 + i % 3, inst
            places["side"], places["order_type"], places["size_lots"] = i % 2, wire.ORDER_TYPES.index("limit"), 1
            places["price_ticks"] = np.where(i % 2 == 0, 200_000 + i % 50_000, 400_000 + i % 50_000)
            places["client_order_id"] = [f"g{k}".encode() for k in i]
            places["ts_ns"] = 1_800_000_000_000_000_000 + first
            starts_a_snapshot = durable.snapshot_due_within(len(places))
            np.testing.assert_array_equal(durable.submit(places), memory.submit(places))
            if starts_a_snapshot:  # one due while another is written waits for a later batch
                written = data_dir / "snapshots" / f"{durable.seq:020}.snap"
                deadline = time.monotonic() + 30
                while not written.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
        assert durable._core.live_orders() == 200_000
        assert durable.state_hash() == memory.state_hash()
        durable.check_invariants()
    assert len(list((data_dir / "snapshots").glob("*.snap"))) == 3  # the newest three of four
    with Engine(data_dir) as reopened:
        assert reopened.recovery()["snapshot_seq"] is not None
        assert reopened.state_hash() == memory.state_hash()


def test_the_journal_sums_up_its_recent_group_commits(data_dir: Path) -> None:
    with Engine(data_dir, snapshot_every_commands=0) as eng:
        setup_market(eng)
        random_session(eng, seed=3, commands=50)
        window = eng.sync_window(3600)
        status, last = eng.journal_status(), eng.seq
        time.sleep(1.05)
        quiet = eng.sync_window(1)
    assert window["seconds"] == 3600 and window["syncs"] == status["syncs"] >= 50  # one command a call: a round each
    assert window["records"] == status["records_durable"] == last
    assert 1 <= window["sync_us_p50"] <= window["sync_us_p99"] <= window["sync_us_max"]
    by_s = window["sync_us_max_by_s"]
    assert len(by_s) == 3600 and max(by_s) == window["sync_us_max"] and by_s[:3590] == [0] * 3590
    assert quiet == {"seconds": 1, "syncs": 0, "records": 0, "sync_us_p50": None, "sync_us_p99": None,
                     "sync_us_max": None, "sync_us_max_by_s": [0]}  # fmt: skip


def test_snapshot_due_within_says_which_batch_will_start_the_next_snapshot(data_dir: Path) -> None:
    """`snapshot_due_within(n)`: whether `submit_unsynced` of n commands now would snapshot (the
    event loop hands such a batch to a worker thread): true exactly when the batch reaches
    `snapshot_every_commands` since the last snapshot."""
    with Engine(data_dir, snapshot_every_commands=10) as eng:
        eng.add_asset("USDT")
        deposits = np.zeros(8 - eng.seq, dtype=wire.COMMAND_DTYPE)
        deposits["kind"], deposits["account"], deposits["size_lots"] = wire.DEPOSIT, 1, 5
        deposits["ts_ns"] = time.time_ns()
        eng.submit_unsynced(deposits)
        assert eng.seq == 8
        assert not eng.snapshot_due_within(1) and eng.snapshot_due_within(2)
        _events, last_seq = eng.submit_unsynced(deposits[:2])
        assert last_seq == 10
        deadline = time.monotonic() + 5
        while not list((data_dir / "snapshots").glob("*.snap")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [p.name for p in (data_dir / "snapshots").glob("*.snap")] == [f"{10:020}.snap"]
        assert not eng.snapshot_due_within(9) and eng.snapshot_due_within(10)


def test_a_retry_after_a_restart_returns_the_original_acceptance(data_dir: Path) -> None:
    with Engine(data_dir) as eng:
        setup_market(eng)
        first = eng.place(account=1, instrument=BTC, side="buy", order_type="limit", price="29000.0", size="0.5",
                          client_order_id="cl-1")  # fmt: skip
    with Engine(data_dir) as eng:
        seq = eng.seq
        again = eng.place(account=1, instrument=BTC, side="buy", order_type="limit", price="29000.0", size="0.5",
                          client_order_id="cl-1")  # fmt: skip
        assert [(e.kind, e.seq, e.order_id) for e in again] == [(e.kind, e.seq, e.order_id) for e in first]
        assert eng.seq == seq, "a retry is not a new command"
        changed = eng.place(account=1, instrument=BTC, side="buy", order_type="limit", price="29000.0", size="0.6",
                            client_order_id="cl-1")  # fmt: skip
        assert [(e.kind, e.reason) for e in changed] == [("rejected", "order_client_order_id_in_use")]


def test_recovery_starts_from_the_newest_valid_snapshot_and_falls_back_past_a_corrupt_one(data_dir: Path) -> None:
    with Engine(data_dir, clock=Clock(), snapshot_every_commands=0) as eng:
        setup_market(eng)
        random_session(eng, seed=2, commands=100)
        older_seq, _ = eng.snapshot()
        random_session(eng, seed=3, commands=100)
        newest_seq, newest = eng.snapshot()
        random_session(eng, seed=4, commands=50)
        expected = eng.state_hash()
    with Engine(data_dir) as eng:
        found = eng.recovery()
        assert (found["snapshot_seq"], found["replayed"]) == (newest_seq, eng.seq - newest_seq)
        assert eng.state_hash() == expected
    with open(newest, "r+b") as file:  # a bit flipped in the body
        file.seek(200)
        byte = file.read(1)
        file.seek(200)
        file.write(bytes([byte[0] ^ 0x10]))
    with Engine(data_dir) as eng:
        found = eng.recovery()
        assert found["snapshot_seq"] == older_seq
        assert [os.fspath(path) for path, _reason in found["snapshots_skipped"]] == [newest]
        assert eng.state_hash() == expected
        eng.check_invariants()


def test_a_torn_tail_is_cut_and_reported_and_the_rest_recovers(data_dir: Path) -> None:
    with Engine(data_dir, clock=Clock()) as eng:
        setup_market(eng)
        random_session(eng, seed=5, commands=60)
        before_last = eng.seq - 1
    last_segment = segments(data_dir)[-1]
    size = last_segment.stat().st_size
    expected = Engine(clock=Clock())
    setup_market(expected)
    random_session(expected, seed=5, commands=60)
    for cut in (1, 7, 40):  # inside the last record's frame
        damaged = Path(tempfile.mkdtemp(prefix="pyexchange-torn-"))
        try:
            shutil.copytree(data_dir, damaged, dirs_exist_ok=True)
            os.truncate(segments(damaged)[-1], size - cut)
            assert cli.main(["journal", "verify", os.fspath(damaged)]) == 0
            with Engine(damaged) as eng:
                found = eng.recovery()
                assert found["tail_repaired"] is not None and eng.seq == before_last
                eng.check_invariants()
                # The survivor continues with the next sequence number.
                eng.deposit(account=1, asset="USDT", amount="1")
                assert eng.seq == before_last + 1
        finally:
            shutil.rmtree(damaged, ignore_errors=True)


def test_damage_before_the_tail_stops_recovery_naming_file_offset_and_seq(data_dir: Path) -> None:
    with Engine(data_dir, clock=Clock()) as eng:
        setup_market(eng)
        random_session(eng, seed=6, commands=40)
    segment = segments(data_dir)[0]
    middle_record = _core.journal_records(os.fspath(data_dir), 20, 1)[0]
    offset = middle_record[2]
    with open(segment, "r+b") as file:
        file.seek(offset + 30)  # inside the payload of record 20
        byte = file.read(1)
        file.seek(offset + 30)
        file.write(bytes([byte[0] ^ 0x01]))
    unchanged = segment.read_bytes()
    with pytest.raises(RuntimeError) as stopped:
        Engine(data_dir)
    message = str(stopped.value)
    assert segment.name in message and str(offset) in message and "20" in message, message
    assert segment.read_bytes() == unchanged, "recovery must not modify a damaged journal"
    assert cli.main(["journal", "verify", os.fspath(data_dir)]) == 1


def test_journal_inspect_prints_records_from_a_seq(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Engine(data_dir) as eng:
        setup_market(eng)
        eng.place(account=2, instrument=BTC, side="sell", order_type="limit", price="31000.0", size="0.002",
                  client_order_id="look-at-me")  # fmt: skip
        seq = eng.seq
    assert cli.main(["journal", "inspect", os.fspath(data_dir), "--from", str(seq), "--limit", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{seq}\t") and '"look-at-me"' in lines[0], lines


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 2 MiB tmpfs (mounting needs root; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = Path(tempfile.mkdtemp(prefix="pyexchange-small-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", os.fspath(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", os.fspath(mount_point)], check=False)
        mount_point.rmdir()


def test_a_full_disk_stops_acknowledgements_loses_nothing_and_recovers(small_disk: Path) -> None:
    data_dir = small_disk / "data"
    eng = Engine(data_dir, snapshot_every_commands=0)
    setup_market(eng)
    acked: list[tuple[int, int]] = []  # (seq, order id) of acknowledged places
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last page
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    refused: Exception | None = None
    for i in range(5_000):
        try:
            events = eng.place(account=1, instrument=BTC, side="buy", order_type="limit", price="20000.0",
                               size="0.001", client_order_id=f"full-{i}")  # fmt: skip
        except (JournalUnavailable, OutcomeUnknown) as error:
            refused = error
            break
        acked.append((events[0].seq, events[0].order_id))
    assert refused is not None, "the disk never filled"
    assert "No space left on device" in str(refused) or "os error 28" in str(refused), refused
    assert eng.journal_status()["failing"] is not None
    with pytest.raises(JournalUnavailable):
        eng.deposit(account=1, asset="USDT", amount="1")
    filler.unlink()  # room again: the writer's next attempt writes the held commands
    deadline = time.monotonic() + 10
    while eng.journal_status()["failing"] is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    # The place whose outcome was unknown, retried: its original acceptance (or, had it not
    # been applied, one execution).
    retried = eng.place(account=1, instrument=BTC, side="buy", order_type="limit", price="20000.0",
                        size="0.001", client_order_id=f"full-{len(acked)}")  # fmt: skip
    assert retried[0].kind == "accepted"
    if isinstance(refused, OutcomeUnknown):  # it was applied and held: the retry is no new command
        assert (retried[0].seq, eng.seq) == (acked[-1][0] + 1, acked[-1][0] + 1)
    assert eng.journal_status()["failing"] is None
    expected = eng.state_hash()
    eng.close()
    with Engine(data_dir) as reopened:
        assert reopened.state_hash() == expected
        for seq, order_id in acked:
            assert reopened.order(account=1, order_id=order_id) is not None, (seq, order_id)
        reopened.check_invariants()


def test_a_journal_cut_below_the_newest_snapshot_stops_recovery(data_dir: Path) -> None:
    with Engine(data_dir, snapshot_every_commands=0) as eng:
        setup_market(eng)
        position = eng.durable_position()
        eng.deposit(account=1, asset="USDT", amount="1")
        snapshot_seq, _ = eng.snapshot()
    os.truncate(*position)  # the journal loses the last command, which the snapshot holds
    with pytest.raises(RuntimeError, match=f"journal ends at seq {snapshot_seq - 1} but the newest snapshot is at"):
        Engine(data_dir)


def test_one_engine_per_data_directory(data_dir: Path) -> None:
    with Engine(data_dir), pytest.raises(RuntimeError, match="locked"):
        Engine(data_dir)
    with Engine(data_dir) as again:  # closed: the lock is released
        assert again.seq == 0


@pytest.mark.parametrize("retain_journal", [False, True])
def test_snapshots_remove_old_segments_unless_the_journal_is_retained(data_dir: Path, retain_journal: bool) -> None:
    with Engine(data_dir, clock=Clock(), snapshot_every_commands=0, segment_bytes=4096,
                retain_journal=retain_journal) as eng:  # fmt: skip
        setup_market(eng)
        for round_ in range(4):  # more than the three snapshots kept
            random_session(eng, seed=10 + round_, commands=100)
            eng.snapshot()
        last_seq = eng.seq
    first_seq = _core.journal_records(data_dir, 1, 1)[0][0]
    assert (first_seq == 1) if retain_journal else (first_seq > 1)
    if retain_journal:
        assert [r[0] for r in _core.journal_records(data_dir, 1, last_seq)] == list(range(1, last_seq + 1))
    with Engine(data_dir) as eng:
        assert eng.seq == last_seq


def test_journal_replay_hands_over_every_record_once_in_chunks_and_stops_on_an_exception(data_dir: Path) -> None:
    with Engine(data_dir, clock=Clock()) as eng:
        setup_market(eng)
        random_session(eng, seed=20, commands=300)
        last_seq = eng.seq
    chunks: list[list[tuple[int, bytes]]] = []
    assert _core.journal_replay(data_dir, 5, 64, chunks.append) == last_seq - 4
    assert [len(c) for c in chunks[:-1]] == [64] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 64
    replayed = [record for chunk in chunks for record in chunk]
    expected = [
        (seq, payload) for seq, _file, _offset, _ts, _command, payload in _core.journal_records(data_dir, 5, last_seq)
    ]
    assert replayed == expected

    def refuse(_records: list[tuple[int, bytes]]) -> None:
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        _core.journal_replay(data_dir, 1, 64, refuse)
