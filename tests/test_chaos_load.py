"""The chaos load generator and its checker against a real single-zone server: a steady seeded load
must be acknowledged whole and found so, a SIGKILL and restart of the zone under load must lose and
duplicate nothing, and doctored reports and states must make the checker fail."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyexchange.chaos.checker import check_orders, judge_records
from pyexchange.chaos.load import (
    ACKED,
    CANCEL,
    PLACE,
    REJECTED,
    UNKNOWN,
    LoadReport,
    OrderLoad,
    OrderRecord,
    judge,
    percentile,
)
from tests.gateway_server import Server, free_port, running_server

STEADY_SEED = 11
CRASH_SEED = 23


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, OrderLoad, LoadReport]]:
    with running_server(tmp_path_factory.mktemp("chaos")) as server:
        load = OrderLoad([server.base_url], server.credentials, rate_per_s=40, duration_s=2.5, seed=STEADY_SEED)
        report = asyncio.run(load.run())
        print(f"\nsteady: {_figures(report)}")
        yield server, load, report


def _figures(report: LoadReport) -> str:
    return (f"sent {report.sent}, acked {report.acked}, rejected {report.rejected}, unknown {report.unknown}, "
            f"retries {report.retries}, {report.offered_rate_per_s:.1f}/s offered, "
            f"{report.achieved_rate_per_s:.1f}/s acked, latency ms p50 {report.latency_ms_p50:.1f} "
            f"p99 {report.latency_ms_p99:.1f} max {report.latency_ms_max:.1f}")  # fmt: skip


def test_plan_is_a_function_of_the_seed(steady: tuple[Server, OrderLoad, LoadReport]) -> None:
    server, load, report = steady
    again = OrderLoad(["http://unused"], server.credentials, rate_per_s=40, duration_s=2.5, seed=STEADY_SEED)
    other = OrderLoad(["http://unused"], server.credentials, rate_per_s=40, duration_s=2.5, seed=STEADY_SEED + 1)
    assert again.plan() == load.plan() != other.plan()
    plan = load.plan()
    assert [(r.op, r.kind, r.client_order_id) for r in report.records] == [(p.op, p.kind, p.client_order_id)
                                                                            for p in plan]  # fmt: skip
    assert all(r.params == p.params for r, p in zip(report.records, plan, strict=True) if r.kind == PLACE)
    places = [p for p in plan if p.kind == PLACE]
    assert len({p.client_order_id for p in places}) == len(places)
    assert {p.params["side"] for p in places} == {"buy", "sell"} and any(p.kind == CANCEL for p in plan)
    assert max(float(p.params["px"]) for p in places if p.params["side"] == "buy") < min(
        float(p.params["px"]) for p in places if p.params["side"] == "sell"
    )  # never crossing


def test_steady_load_is_acknowledged_and_found_whole(steady: tuple[Server, OrderLoad, LoadReport]) -> None:
    server, load, report = steady
    records = report.records
    assert len(records) == len(load.plan()) == report.sent == report.acked
    assert report.rejected == report.unknown == report.skipped == 0
    assert report.retries == sum(r.attempts - 1 for r in records)
    for r in records:
        assert r.outcome == ACKED and r.ord_id and r.ord_ids_seen == [r.ord_id]
        assert 0 < r.intended_ns <= r.send_ns <= r.answered_send_ns < r.ack_ns
    _assert_figures_match_records(report)
    result = check_orders(report, server.base_url, server.credentials, page_limit=7)  # several pages
    assert result.findings == [] and result.orders_listed == result.places_checked
    assert result.acked_lost == result.duplicate_executions == result.state_mismatches == 0
    assert result.ok and result.cancels_ok and result.rejected_but_present == 0
    assert result.places_checked == sum(r.kind == PLACE for r in records)
    assert result.cancels_checked == sum(r.kind == CANCEL for r in records) > 0


def _assert_figures_match_records(report: LoadReport) -> None:
    """The timeline, the percentiles and the rates are computed from the records, nothing else."""
    acked = [r for r in report.records if r.outcome == ACKED]
    latencies = report.latencies_ms()
    assert len(latencies) == len(acked) == report.acked == sum(report.timeline_acks)
    assert latencies == sorted((r.ack_ns - r.send_ns) / 1e6 for r in acked)
    assert report.latency_ms_p50 == percentile(latencies, 50) <= report.latency_ms_p99 <= report.latency_ms_max
    assert report.latency_ms_max == latencies[-1] and report.latency_ms_p99 == percentile(latencies, 99)
    step_ns = report.timeline_step_ms * 1_000_000
    bins = [0] * len(report.timeline_acks)
    for r in acked:
        bins[(r.ack_ns - report.start_ns) // step_ns] += 1
    assert bins == report.timeline_acks
    assert report.offered_rate_per_s == report.sent / report.duration_s
    last_ack_s = (max(r.ack_ns for r in acked) - report.start_ns) / 1e9
    assert report.achieved_rate_per_s == pytest.approx(report.acked / last_ack_s)


def test_answers_that_are_no_answer_are_retried() -> None:
    placed = b'{"code":"0","msg":"","data":[{"ordId":"7","clOrdId":"a","sCode":"0","sMsg":""}]}'
    assert judge(200, placed).verdict == ACKED and judge(200, placed).ord_id == "7"
    refused = b'{"code":"1","msg":"","data":[{"ordId":"","sCode":"51008","sMsg":"insufficient balance"}]}'
    assert judge(200, refused) == judge(200, refused) and judge(200, refused).verdict == REJECTED
    for status, body in ((429, b'{"code":"50011","msg":"Rate limit reached","data":[]}'),
                         (503, b'{"code":"50001","msg":"Service temporarily unavailable","data":[]}'),
                         (200, b'{"code":"1","msg":"","data":[{"sCode":"50013","sMsg":"System busy"}]}'),
                         (503, b'{"code":"50001","msg":"This zone is not the leader","data":[]}'),
                         (400, b'{"code":"51000","msg":"not leader: ask zone b","data":[]}'),
                         (503, b"<html>proxy</html>")):  # fmt: skip
        assert judge(status, body).verdict == "refused", body
    for status, body in ((504, b'{"code":"50004","msg":"No answer in time","data":[]}'),
                         (200, b'{"code":"1","msg":"","data":[{"sCode":"50004","sMsg":"unknown"}]}'),
                         (502, b"Bad Gateway"), (200, b"truncated {")):  # fmt: skip
        assert judge(status, body).verdict == UNKNOWN, body


def test_a_client_moves_on_from_a_dead_gateway(steady: tuple[Server, OrderLoad, LoadReport]) -> None:
    server, _, _ = steady
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    load = OrderLoad([dead, server.base_url], server.credentials, rate_per_s=20, duration_s=1, seed=5)
    report = asyncio.run(load.run())
    assert report.acked == len(report.records) and report.unknown == report.rejected == 0
    assert {r.gateway for r in report.records} == {server.base_url}
    assert report.retries > 0 and all(r.attempts <= 2 for r in report.records)
    assert all(r.attempts == 1 for r in report.records[len(report.records) // 2 :])  # it moved on for good
    assert check_orders(report, server.base_url, server.credentials).findings == []


def test_sigkill_and_restart_under_load_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    # A group-commit window of 200 ms keeps every order in flight up to that long, so the kill
    # lands on requests the server has received and not answered.
    config = (Path(__file__).parents[1] / "pyexchange" / "default_config.toml").read_text()
    config = config.replace("group_commit_window_us = 0 ", "group_commit_window_us = 200_000 ")
    assert "200_000" in config
    (tmp_path / "config.toml").write_text(config)
    data_dir, port = tmp_path / "zone", free_port()
    box: dict[str, LoadReport] = {}
    with running_server(data_dir, tmp_path / "config.toml", port=port) as first:
        credentials = first.credentials
        load = OrderLoad([first.base_url], credentials, rate_per_s=40, duration_s=6, seed=CRASH_SEED, drain_s=60)
        thread = threading.Thread(target=lambda: box.setdefault("report", asyncio.run(load.run())))
        thread.start()
        time.sleep(1.5)  # acknowledged orders before the kill
        # Requests at the server: their ops were sent 5 ms ago (on a busy machine, an op just
        # started may not have written its request yet, and dies unsent).
        while load.in_flight(sent_ms_ago_min=5) < 2:
            time.sleep(0.001)
        first.process.kill()
        first.process.wait()
        kill_ns = time.monotonic_ns()
    with running_server(data_dir, tmp_path / "config.toml", port=port) as second:
        thread.join(timeout=180)
        assert not thread.is_alive()
        report = box["report"]
        result = check_orders(report, second.base_url, credentials, page_limit=25)
    rto_ms = report.first_ack_after(kill_ns)
    rto_ms_strict = report.first_ack_after(kill_ns, attempt_sent_after=True)
    records = report.records
    interrupted = [r for r in records if r.unknown_attempts > 0]
    print(f"\ncrash: {_figures(report)}; {len(interrupted)} interrupted in flight; rto_ms {rto_ms}, "
          f"strict {rto_ms_strict}; {result}")  # fmt: skip
    for r in interrupted:
        print(f"  op {r.op} {r.kind}: {r.attempts} attempts, answered {r.s_code} {r.s_msg!r}")
    assert interrupted and all(r.outcome == ACKED for r in interrupted)  # the retries resolved them
    assert report.unknown == report.rejected == report.skipped == 0 and report.acked == len(records)
    assert report.retries > 0
    assert any(r.ack_ns < kill_ns for r in records) and any(r.ack_ns > kill_ns for r in records)
    assert rto_ms is not None and rto_ms > 0
    assert rto_ms_strict is not None and rto_ms_strict >= rto_ms
    _assert_figures_match_records(report)
    assert result.findings == []
    assert result.acked_lost == result.duplicate_executions == result.state_mismatches == 0
    assert result.ok and result.cancels_ok and result.unknown_absent == 0
    assert result.places_checked == result.orders_listed == sum(r.kind == PLACE for r in records)


def _live_places(report: LoadReport) -> list[OrderRecord]:
    canceled = {r.target_op for r in report.records if r.kind == CANCEL}
    return [copy.deepcopy(r) for r in report.records if r.kind == PLACE and r.op not in canceled]


def test_checker_fails_on_a_doctored_report(steady: tuple[Server, OrderLoad, LoadReport]) -> None:
    server, _, report = steady
    never_seen, moved, twice, phantom, uncanceled = _live_places(report)[:5]
    never_seen.client_order_id = "neverSeenByTheExchange1"
    moved.params = {**moved.params, "px": str(float(moved.params["px"]) - 1)}
    twice.ord_ids_seen = [twice.ord_id, "99999999"]
    phantom.outcome, phantom.s_code = "rejected", "51008"
    body = {"instId": "BTC-USDT", "ordId": uncanceled.ord_id}
    cancel = OrderRecord(len(report.records), CANCEL, uncanceled.account, uncanceled.client_order_id, body, 1,
                         uncanceled.op, outcome=ACKED)  # fmt: skip
    changed = {never_seen.op: never_seen, moved.op: moved, twice.op: twice, phantom.op: phantom}
    doctored = [changed.get(r.op, r) for r in report.records] + [cancel]
    result = check_orders(dataclasses.replace(report, records=doctored), server.base_url, server.credentials)
    assert not result.ok
    assert result.acked_lost == 2 and result.duplicate_executions == 1 and result.rejected_but_present == 1
    assert not result.cancels_ok and result.state_mismatches == 0
    assert sorted((f.kind, f.client_order_id) for f in result.findings) == sorted([
        ("acked_lost", never_seen.client_order_id), ("acked_lost", moved.client_order_id),
        ("duplicate_execution", twice.client_order_id), ("rejected_but_present", phantom.client_order_id),
        ("cancel_not_applied", uncanceled.client_order_id),
    ])  # fmt: skip
    assert "px sent" in next(f.detail for f in result.findings if f.client_order_id == moved.client_order_id)


def test_checker_fails_on_a_doctored_state(steady: tuple[Server, OrderLoad, LoadReport]) -> None:
    """Exchange states no working exchange gives (judged without a server): one clOrdId, two
    orders; an order filled beyond its size; an order filled although it cannot cross; an order
    missing from the final state."""
    _, _, report = steady
    two, overfilled, filled, gone = _live_places(report)[:4]
    by_cid: dict[str, dict[str, dict[str, str]]] = {}
    for r in (two, overfilled, filled):
        by_cid[r.client_order_id] = {r.ord_id: {**r.params, "ordId": r.ord_id, "state": "live", "accFillSz": "0"}}
    by_cid[two.client_order_id]["424242"] = {**two.params, "ordId": "424242", "state": "live", "accFillSz": "0"}
    by_cid[overfilled.client_order_id][overfilled.ord_id].update(
        state="filled", accFillSz=str(2 * float(overfilled.params["sz"])))  # fmt: skip
    by_cid[filled.client_order_id][filled.ord_id].update(state="filled", accFillSz=filled.params["sz"])
    result = judge_records([two, overfilled, filled, gone], by_cid)
    assert result.duplicate_executions == 2 and result.acked_lost == 1 and result.state_mismatches == 2
    kinds = sorted((f.kind, f.client_order_id) for f in result.findings)
    assert kinds == sorted([("duplicate_execution", two.client_order_id),
                            ("duplicate_execution", overfilled.client_order_id),
                            ("state_mismatch", overfilled.client_order_id), ("state_mismatch", filled.client_order_id),
                            ("acked_lost", gone.client_order_id)])  # fmt: skip
