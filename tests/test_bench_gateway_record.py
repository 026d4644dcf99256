"""The gateway benchmark's accounting of a step (`bench.gateway.StepRecord`, `summarize`): its
throughput is what the server put out within the measured window, and its latencies are those
of the requests planned in the window, from their planned times."""

from __future__ import annotations

from typing import Any

import pytest

from bench import gateway
from bench.gateway import StepRecord, summarize

S_NS = 1_000_000_000
WARMUP_S, MEASURE_S = 1, 8


def open_loop_step(offered_per_s: int, capacity_per_s: int) -> dict[str, Any]:
    """An open-loop step against a server that answers one request at a time, first come first
    served, in 1/`capacity_per_s` s each; as the load process does, the requests that have not
    left the client's queue when the window ends are dropped (`unsent`)."""
    t0_ns = 5 * S_NS  # perf_counter's origin is arbitrary
    n_warm, n_total = WARMUP_S * offered_per_s, (WARMUP_S + MEASURE_S) * offered_per_s
    record = StepRecord(t0_ns, S_NS / offered_per_s, n_warm, t0_ns + WARMUP_S * S_NS, MEASURE_S)
    service_ns, free_ns = S_NS // capacity_per_s, 0
    for i in range(n_total):
        planned_ns = record.planned_ns(i)
        start_ns = max(planned_ns, free_ns)
        if start_ns >= record.measure_end_ns:
            record.lost(i, "unsent")
            continue
        free_ns = start_ns + service_ns
        record.answer(i, ["0"], planned_ns, free_ns)
    cpu = {"window_s": MEASURE_S, "server_loop_cpu_s": 1.0, "server_other_threads_cpu_s": 0.0}
    spec = {"kind": "order", "mode": "open", "rate": offered_per_s, "measure_s": MEASURE_S}
    return summarize(spec, [record.result(cpu_s=0.0)], cpu)


def test_an_overloaded_step_achieves_what_the_server_puts_out() -> None:
    step = open_loop_step(offered_per_s=2_000, capacity_per_s=1_000)
    assert step["achieved_per_s"] == pytest.approx(1_000, abs=1 / MEASURE_S)
    # The measured requests' answers are fewer: the window's first second goes to the warm-up's
    # backlog of 1,000 requests (the figure this step reported before).
    assert step["ok"] == (MEASURE_S - 1) * 1_000
    assert step["ok_with_warmup"] == (WARMUP_S + MEASURE_S) * 1_000
    assert step["overloaded"]
    assert step["errors"] == {"unsent": MEASURE_S * 2_000 - step["ok"]}
    assert step["server_loop_cpu_us_per_ok"] == pytest.approx(1e6 / (MEASURE_S * 1_000), rel=1e-3)


def test_a_step_the_server_keeps_up_with_achieves_the_offered_rate() -> None:
    step = open_loop_step(offered_per_s=800, capacity_per_s=1_000)
    assert step["achieved_per_s"] == pytest.approx(800, abs=1 / MEASURE_S)
    assert step["ok"] == MEASURE_S * 800
    assert not step["overloaded"]
    assert step["errors"] == {}
    assert step["p99_ms"] == pytest.approx(1.0, rel=1e-2), "each request waits only its own service"


def test_an_answer_in_the_window_to_a_warmup_request_counts_as_output_not_as_latency() -> None:
    t0_ns = 0
    record = StepRecord(t0_ns, S_NS / 10, 10, S_NS, MEASURE_S)
    record.answer(9, ["0"], record.planned_ns(9), 2 * S_NS)  # planned in the warm-up, answered in the window
    record.answer(10, ["0", "51008"], record.planned_ns(10), record.measure_end_ns)  # answered just after it
    record.answer(11, ["0"], record.planned_ns(11), record.planned_ns(11) + 1_000_000)
    result = record.result(cpu_s=0.0)
    assert result["ok_answered_in_window"] == 2
    assert result["ok"] == 2
    assert result["ok_all"] == 3
    assert result["outcomes"] == {"0": 2, "51008": 1}
    assert sorted(result["latencies_us"].tolist()) == [1_000, 8_000_000]


class ModelLoad:
    """Steps against a server of `capacity_per_s` whose refusals cost it work: past capacity it
    puts out less the more it is offered (as WebSocket ops refused at a connection's limit do)."""

    def __init__(self, capacity_per_s: int) -> None:
        self.capacity_per_s = capacity_per_s
        self.offered: list[int] = []

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        rate = spec["rate"] if spec["mode"] == "open" else self.capacity_per_s * 4 // 5
        self.offered.append(rate)
        overloaded = spec["mode"] == "open" and rate > self.capacity_per_s
        return {"offered_per_s": rate, "achieved_per_s": self.achieved_per_s(rate), "overloaded": overloaded}

    def achieved_per_s(self, offered_per_s: int) -> int:
        return min(offered_per_s, self.capacity_per_s) - max(0, offered_per_s - self.capacity_per_s) // 2


@pytest.mark.parametrize("capacity_per_s", [49_500, 51_000, 53_000, 55_500])
def test_the_maximum_is_searched_for_between_the_ladder_steps_around_capacity(
    capacity_per_s: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway, "print_step", lambda _step: None)
    load = ModelLoad(capacity_per_s)
    found = gateway.find_max(load, "ws_order", gateway.FULL, connections=16)  # type: ignore[arg-type]
    ladder, refining = load.offered[1 : -gateway.REFINE_STEPS], load.offered[-gateway.REFINE_STEPS :]
    assert all(rate > capacity_per_s for rate in ladder[-gateway.OVERLOADED_STEPS_TO_STOP :]), (
        "the ladder ran to overload"
    )
    held, over = max(r for r in ladder if r <= capacity_per_s), min(r for r in ladder if r > capacity_per_s)
    assert all(held < rate < over for rate in refining)
    assert capacity_per_s - (over - held) / 2**gateway.REFINE_STEPS <= found["max_per_s"] <= capacity_per_s
    assert found["max_per_s"] > max(map(load.achieved_per_s, ladder)), "the ladder alone stops short"
    assert found["max_sustained_offered_per_s"] == max(r for r in load.offered[1:] if r <= capacity_per_s)


def test_no_step_is_added_when_nothing_held_or_nothing_was_overloaded() -> None:
    assert gateway.refining_rate([{"offered_per_s": 10_000, "overloaded": True}]) is None
    assert gateway.refining_rate([{"offered_per_s": 10_000, "overloaded": False}]) is None
    held_above = [{"offered_per_s": 9_000, "overloaded": True}, {"offered_per_s": 10_000, "overloaded": False}]
    assert gateway.refining_rate(held_above) is None, "an overloaded step below the highest that held is noise"
    adjacent = [{"offered_per_s": 10_000, "overloaded": False}, {"offered_per_s": 10_010, "overloaded": True}]
    assert gateway.refining_rate(adjacent) is None
    assert gateway.refining_rate([*held_above, {"offered_per_s": 12_000, "overloaded": True}]) == 11_000
