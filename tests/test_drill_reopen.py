"""`pyexchange drill reopen` once, on a fresh three-zone cluster with a plan of a few seconds: the
verdict's shape and every one of its checks; and the command line's refusals of bad figures."""

from __future__ import annotations

import json

import pytest

from pyexchange import cli
from pyexchange.cluster import reopen_drill

# Short, for the CI budget; phases long enough that a probe sent when a phase is seen lands in it.
SHORT = reopen_drill.ReopenPlan(
    seed=11, accounts=3, rate_per_s=10.0, resting_orders=10, before_halt_s=0.5, halted_s=0.5,
    phases=(("cancel_only", 1.0), ("pre_open", 1.0), ("call_auction", 1.5)), auction_random_end_s=0.5,
    auction_extension_s=0.5, storm_s=1.0, after_storm_s=0.3,
)  # fmt: skip


def test_the_reopening_drill_passes_every_check() -> None:
    result = reopen_drill.run(SHORT)
    print(json.dumps(result))
    assert [p["state"] for p in result["phases"]] == list(reopen_drill.PHASE_STATES), result["phases"]
    assert result["states_seen"] == list(reopen_drill.PHASE_STATES)
    planned = dict(SHORT.phases)
    for phase in result["phases"][1:-1]:  # the measured length is the planned one, give or take a step
        assert phase["planned_ms"] <= phase["duration_ms"] < phase["planned_ms"] + 500, phase
        assert phase["planned_ms"] <= planned[phase["state"]] * 1000
    call = result["phases"][3]["planned_ms"]
    assert 1000 <= call <= 1500, "the auction ends at a seeded moment of its last 0.5 s"
    assert result["auction"]["uncrossed"] == {"BTC-USDT": {"px": "30000", "sz": "0.01"}}
    assert result["auction"]["extensions"] == 0 and result["auction"]["seed"] == SHORT.seed
    assert {state: p["got"] for state, p in result["probes"].items()} == {
        state: code for state, (_, code) in reopen_drill.PROBES.items()
    }
    storm = result["storm"]
    assert storm["places"] == storm["accepted"] == SHORT.storm_rate_per_s * SHORT.storm_s
    assert storm["refused"] > 0 and storm["refusals_429_50011_retry_after"], "the storm meets the ramp, refused well"
    assert storm["cancels_ok"] == SHORT.resting_orders and storm["cancels_failed"] == 0
    assert storm["accepted_ms_p99"] > 0 and storm["rss_mib_peak"] > 0 and storm["zones_alive"]
    assert result["load"]["acked"] > 0 and result["load"]["rejected_by_code"].get("51022", 0) > 0, "halted: refused"
    assert result["orders_checked"] > storm["places"] + SHORT.resting_orders, "the load's places are checked too"
    assert result["acked_lost"] == result["duplicate_executions"] == result["state_mismatches"] == 0
    assert result["replicas_agree"] and result["invariants_ok"]
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert failed == [] and result["ok"], failed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate must be positive"),
        (["--storm-multiplier", "0"], "--storm-multiplier and --storm-clients at least 1"),
        (["--storm-clients", "0"], "--storm-multiplier and --storm-clients at least 1"),
    ],
)
def test_the_command_line_refuses_bad_figures(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["drill", "reopen", "--json", *args])
    assert refused.value.code == 2 and message in capsys.readouterr().err
