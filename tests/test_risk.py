"""Each risk check is driven to its edge, where it must pass, and one step past it, where it must refuse;
the token bucket is compared decision for decision with a slow Fraction model that never forgets an
account, with hypothesis (derandomized) choosing rates, bursts and timings."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexchange.risk import OKX_CODES, REASONS, InstrumentLimits, RiskChecks, RiskConfig, RiskRejection
from pyexchange.risk.buckets import NS_PER_S, TokenBuckets

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
BTC, ETH = "BTC-USDT", "ETH-USDT"
STEP = Decimal("0.00000001")  # one step finer than any limit or price used below
TOML = """
[risk]
price_band_pct = "10"
open_orders_per_account_max = 5
orders_per_second_per_account = "2"
orders_burst_per_account = 4

[[instruments]]
symbol = "BTC-USDT"
tick_size = "0.1"
max_order_size = "100"
max_order_notional = "1000000"

[[instruments]]
symbol = "ETH-USDT"
tick_size = "0.01"
"""


def config(**risk: Any) -> RiskConfig:
    doc = tomllib.loads(TOML)
    return RiskConfig.from_dict({**doc["risk"], **risk}, {t["symbol"]: t for t in doc["instruments"]})


def place(checks: RiskChecks, *, invariants: bool = True, **kwargs: Any) -> RiskRejection | None:
    args: dict[str, Any] = dict(
        account=1,
        instrument=BTC,
        side="buy",
        order_type="limit",
        price=Decimal(30000),
        size=Decimal(1),
        reference_price=Decimal(30000),
        open_orders=0,
        now_ns=0,
    )
    args.update(kwargs)
    result = checks.check_place(**args)
    if invariants:  # O(accounts tracked): the many-account tests check them at their milestones instead
        checks.check_invariants()
    return result


def amend(checks: RiskChecks, **kwargs: Any) -> RiskRejection | None:
    args: dict[str, Any] = dict(
        account=1, instrument=BTC, new_price=None, new_size=None, reference_price=Decimal(30000), now_ns=0
    )
    args.update(kwargs)
    result = checks.check_amend(**args)
    checks.check_invariants()
    return result


def reason(result: RiskRejection | None) -> str | None:
    return None if result is None else result.reason


def fresh(**risk: Any) -> RiskChecks:
    """Checks with a bucket big enough that the rate limit never interferes."""
    return RiskChecks(config(**{"orders_burst_per_account": 1_000_000, **risk}))


# --- configuration -------------------------------------------------------------------------------


def test_from_dict_reads_the_toml_tables() -> None:
    c = config()
    assert c.price_band_pct == Decimal(10)
    assert c.open_orders_per_account_max == 5
    assert c.orders_per_second_per_account == Decimal(2)
    assert c.orders_burst_per_account == 4
    assert c.instruments[BTC] == InstrumentLimits(Decimal(100), Decimal(1000000))
    assert c.instruments[ETH] == InstrumentLimits(None, None)


def test_from_dict_reads_numbers_and_toml_floats_exactly() -> None:
    c = config(price_band_pct=2.5, orders_per_second_per_account="0.1")
    assert c.price_band_pct == Decimal("2.5")
    assert c.orders_per_second_per_account == Decimal("0.1")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("price_band_pct", None),
        ("price_band_pct", "-1"),
        ("price_band_pct", "0"),
        ("price_band_pct", "100"),
        ("price_band_pct", "ten"),
        ("price_band_pct", "NaN"),
        ("price_band_pct", True),
        ("open_orders_per_account_max", None),
        ("open_orders_per_account_max", 0),
        ("open_orders_per_account_max", -3),
        ("open_orders_per_account_max", "5"),
        ("open_orders_per_account_max", 2.0),
        ("orders_per_second_per_account", "0"),
        ("orders_per_second_per_account", "-2"),
        ("orders_per_second_per_account", "Infinity"),
        ("orders_per_second_per_account", "1000000001"),
        ("orders_per_second_per_account", []),
        ("orders_burst_per_account", 0),
        ("orders_burst_per_account", False),
        ("orders_burst_per_account", 1 << 31),
    ],
)
def test_from_dict_refuses_a_bad_risk_value_naming_its_key(key: str, value: Any) -> None:
    doc = tomllib.loads(TOML)
    risk = {**doc["risk"], key: value}
    if value is None:
        del risk[key]
    with pytest.raises(ValueError, match=f"risk.{key}"):
        RiskConfig.from_dict(risk, {})


def test_from_dict_refuses_an_unknown_risk_key() -> None:
    with pytest.raises(ValueError, match="price_band_percent"):
        config(price_band_percent="10")


@pytest.mark.parametrize("value", ["0", "-1", "abc", True, 0])
@pytest.mark.parametrize("key", ["max_order_size", "max_order_notional"])
def test_from_dict_refuses_a_bad_instrument_limit_naming_it(key: str, value: Any) -> None:
    doc = tomllib.loads(TOML)
    with pytest.raises(ValueError, match=f"instrument SOL-USDT: {key}"):
        RiskConfig.from_dict(doc["risk"], {"SOL-USDT": {key: value}})


def test_the_config_checks_its_limits_when_built_directly() -> None:
    good = config()
    with pytest.raises(ValueError, match="orders_burst_per_account"):
        RiskConfig(good.price_band_pct, 5, Decimal(1), 0, {})
    with pytest.raises(ValueError, match="max_order_size"):
        InstrumentLimits(Decimal(0), None)
    assert RiskConfig(good.price_band_pct, 1, Decimal(1), 1, {}).orders_burst_per_account == 1


# --- size, notional, band, open orders: pass at the edge, refuse one step past it -------------------


def test_size_passes_at_its_max_and_is_refused_one_step_above() -> None:
    checks = fresh()
    assert place(checks, size=Decimal(100), price=Decimal(1), reference_price=None) is None
    refused = place(checks, size=Decimal(100) + STEP, price=Decimal(1), reference_price=None)
    assert refused is not None and refused.reason == "risk_order_size_above_max" and refused.code == "51203"
    assert "100.00000001" in refused.msg and "maximum order size 100" in refused.msg
    market = place(checks, order_type="market", price=None, size=Decimal(100) + STEP)
    assert market is not None and market.code == "51202"
    assert place(checks, instrument=ETH, size=Decimal(10**9), price=Decimal(1), reference_price=None) is None


def test_notional_passes_at_its_max_and_is_refused_one_step_above() -> None:
    checks = fresh(price_band_pct="99")
    assert place(checks, price=Decimal(10000), size=Decimal(100)) is None  # exactly 1,000,000
    refused = place(checks, price=Decimal(10000) + STEP, size=Decimal(100))
    assert refused is not None and refused.reason == "risk_order_notional_above_max" and refused.code == "51185"
    assert "maximum order notional 1000000" in refused.msg


def test_market_notional_uses_the_reference_price_and_is_skipped_without_one() -> None:
    checks = fresh()
    market: dict[str, Any] = dict(order_type="market", price=None, size=Decimal(50))
    assert place(checks, **market, reference_price=Decimal(20000)) is None  # exactly 1,000,000
    refused = place(checks, **market, reference_price=Decimal(20000) + STEP)
    assert refused is not None and refused.code == "51201" and "reference price" in refused.msg
    assert place(checks, **market, reference_price=None) is None


@SETTINGS
@given(
    reference=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**7), places=3),
    pct=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2),
)
def test_band_edges_pass_and_one_step_outside_is_refused(reference: Decimal, pct: Decimal) -> None:
    checks = RiskChecks(config(price_band_pct=str(pct), orders_burst_per_account=100))
    low, high = reference * (100 - pct) / 100, reference * (100 + pct) / 100  # exact: few digits
    cases = [("buy", high, True), ("buy", high + STEP, False), ("buy", low - STEP, True),
             ("sell", low, True), ("sell", low - STEP, False), ("sell", high + STEP, True)]  # fmt: skip
    for side, price, passes in cases:
        result = place(checks, instrument=ETH, side=side, price=price, reference_price=reference)
        assert reason(result) == (None if passes else "risk_price_outside_band"), (side, price, low, high)
        assert result is None or result.code == "51006"


@SETTINGS
@given(
    orders=st.lists(
        st.tuples(
            st.sampled_from(["buy", "sell"]),
            st.decimals(min_value=Decimal(80), max_value=Decimal(120), places=1),  # price
            st.sampled_from([Decimal(100), Decimal("100.0"), Decimal("104.5"), Decimal(95), None]),  # reference
        ),
        max_size=30,
    )
)
def test_band_decisions_do_not_depend_on_the_orders_before(orders: list[tuple[str, Decimal, Decimal | None]]) -> None:
    """The band's edges are kept between orders of the same reference price; each decision is
    still the one a fresh `RiskChecks` makes."""
    checks = RiskChecks(config(price_band_pct="5", orders_burst_per_account=1000))
    for side, price, reference in orders:
        fresh_checks = RiskChecks(config(price_band_pct="5", orders_burst_per_account=1000))
        args = dict(instrument=ETH, side=side, price=price, reference_price=reference)
        assert reason(place(checks, **args)) == reason(place(fresh_checks, **args)), (side, price, reference)


def test_band_message_names_the_band_and_the_reference() -> None:
    refused = place(fresh(), price=Decimal(41000))
    assert refused is not None
    assert refused.msg == (
        "Order price 41000 is not within the price limit (max buy price: 33000, min sell price: 27000; "
        "±10% of the reference price 30000) [risk_price_outside_band]"
    )


def test_band_is_skipped_without_a_reference_or_a_price() -> None:
    checks = fresh()
    assert place(checks, price=Decimal(1), reference_price=None) is None
    assert place(checks, order_type="market", price=None, size=Decimal(1), reference_price=Decimal(1)) is None
    assert reason(place(checks, side="sell", price=Decimal(1), reference_price=Decimal(2))) == "risk_price_outside_band"


def test_open_orders_pass_one_below_the_max_and_are_refused_at_it() -> None:
    checks = fresh()
    assert place(checks, open_orders=4) is None
    refused = place(checks, open_orders=5)
    assert refused is not None and refused.reason == "risk_open_orders_above_max" and refused.code == "51174"
    assert "maximum is 5" in refused.msg


def test_checks_run_in_the_documented_order() -> None:
    checks = RiskChecks(config(orders_burst_per_account=1))
    bad: dict[str, Any] = dict(price=Decimal(50000), size=Decimal(101), open_orders=99)
    checks.block_account(1)
    checks.set_market_state(BTC, "halted")
    assert reason(place(checks, **bad)) == "risk_account_blocked"
    checks.unblock_account(1)
    assert reason(place(checks, **bad)) == "risk_market_state_forbids"
    checks.set_market_state(BTC, "continuous")
    assert reason(place(checks, **bad)) == "risk_order_size_above_max"  # takes the only token
    assert reason(place(checks, **bad)) == "risk_rate_limited"
    later = {**bad, "now_ns": 10 * NS_PER_S}
    assert reason(place(checks, **{**later, "size": Decimal(100)})) == "risk_order_notional_above_max"
    assert reason(place(checks, **{**later, "now_ns": 20 * NS_PER_S, "size": Decimal(1)})) == "risk_price_outside_band"
    assert reason(place(checks, **{**later, "now_ns": 30 * NS_PER_S, "size": Decimal(1), "price": Decimal(30000)})) == (
        "risk_open_orders_above_max"
    )


# --- amends ----------------------------------------------------------------------------------------


def test_amend_checks_size_notional_and_band_at_their_edges() -> None:
    checks = fresh(price_band_pct="99")
    assert amend(checks, new_size=Decimal(100)) is None
    assert reason(amend(checks, new_size=Decimal(100) + STEP)) == "risk_order_size_above_max"
    assert amend(checks, new_price=Decimal(10000), order_size=Decimal(100)) is None
    assert reason(amend(checks, new_price=Decimal(10000) + STEP, order_size=Decimal(100))) == (
        "risk_order_notional_above_max"
    )
    assert amend(checks, new_size=Decimal(100), order_price=Decimal(10000)) is None
    assert reason(amend(checks, new_size=Decimal(100), order_price=Decimal(10000) + STEP)) == (
        "risk_order_notional_above_max"
    )
    assert amend(checks, new_price=Decimal(10000) + STEP) is None  # size unknown: notional skipped
    assert amend(checks, new_price=Decimal(300), reference_price=Decimal(30000)) is None  # 1%, the edge
    assert reason(amend(checks, new_price=Decimal(300) - STEP)) == "risk_price_outside_band"


def test_amends_cost_tokens_like_orders() -> None:
    checks = RiskChecks(config())
    assert [reason(amend(checks, new_size=Decimal(1))) for _ in range(5)] == [None] * 4 + ["risk_rate_limited"]
    assert reason(place(checks)) == "risk_rate_limited"


# --- rate limit -----------------------------------------------------------------------------------


@SETTINGS
@given(
    rate=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=2),
    burst=st.integers(min_value=1, max_value=30),
    wait_ns=st.integers(min_value=0, max_value=5 * NS_PER_S),
)
def test_bucket_admits_the_burst_at_once_then_rate_times_t(rate: Decimal, burst: int, wait_ns: int) -> None:
    checks = RiskChecks(config(orders_per_second_per_account=str(rate), orders_burst_per_account=burst))
    at_once = [place(checks, now_ns=0) for _ in range(burst + 1)]
    assert at_once[:burst] == [None] * burst
    refused = at_once[burst]
    assert refused is not None and refused.reason == "risk_rate_limited" and refused.code == "50011"
    refilled = min(burst, int(Fraction(rate) * wait_ns / NS_PER_S))  # floor: whole tokens only
    later = [place(checks, now_ns=wait_ns) for _ in range(refilled + 1)]
    assert later[:refilled] == [None] * refilled
    assert reason(later[refilled]) == "risk_rate_limited"


class BucketModel:
    """The obvious bucket: a Fraction of tokens per account, refilled by rate * elapsed, never forgotten."""

    def __init__(self, rate: Decimal, burst: int) -> None:
        self.rate, self.burst = Fraction(rate), burst
        self.tokens: dict[int, tuple[Fraction, int]] = {}

    def take(self, account: int, now_ns: int) -> bool:
        tokens, then_ns = self.tokens.get(account, (Fraction(self.burst), now_ns))
        tokens = min(Fraction(self.burst), tokens + self.rate * Fraction(now_ns - then_ns, NS_PER_S))
        taken = tokens >= 1
        self.tokens[account] = (tokens - 1 if taken else tokens, now_ns)
        return taken


@SETTINGS
@given(
    rate=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(500), places=3),
    burst=st.integers(min_value=1, max_value=10),
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),  # account
            st.one_of(st.integers(0, 1000), st.integers(0, 3 * NS_PER_S)),  # wait before, ns
            st.integers(min_value=1, max_value=4),  # attempts at that instant
        ),
        max_size=60,
    ),
)
def test_buckets_decide_like_the_obvious_model(rate: Decimal, burst: int, steps: list[tuple[int, int, int]]) -> None:
    buckets, model = TokenBuckets(rate, burst), BucketModel(rate, burst)
    now_ns = 7
    for account, wait_ns, attempts in steps:
        now_ns += wait_ns
        for _ in range(attempts):
            assert buckets.take(account, now_ns) == model.take(account, now_ns)
        buckets.check_invariants()


def test_a_clock_going_backwards_is_read_as_the_latest_time() -> None:
    buckets = TokenBuckets(Decimal(1), 1)
    assert buckets.take(1, 10 * NS_PER_S)
    assert not buckets.take(1, 0)  # earlier than seen: no refill, no crash, no debt
    assert buckets.take(1, 11 * NS_PER_S)
    buckets.check_invariants()


def test_refused_orders_keep_their_token_and_gates_before_the_bucket_take_none() -> None:
    checks = RiskChecks(config())  # burst 4
    assert [reason(place(checks, size=Decimal(101))) for _ in range(4)] == ["risk_order_size_above_max"] * 4
    assert reason(place(checks)) == "risk_rate_limited"
    checks = RiskChecks(config())
    checks.set_market_state(BTC, "halted")
    checks.block_account(2)
    for _ in range(10):
        assert reason(place(checks)) == "risk_market_state_forbids"
        assert reason(place(checks, account=2, instrument=ETH)) == "risk_account_blocked"
    checks.set_market_state(BTC, "continuous")
    checks.unblock_account(2)
    assert [place(checks), place(checks, account=2, instrument=ETH)] == [None, None]
    assert checks.rate_buckets_tracked() == 2


def test_bucket_memory_is_bounded_by_accounts_active_within_the_fill_time() -> None:
    checks = RiskChecks(config())  # 4 orders, 2 per second: a bucket fills in 2 s
    step_ns = NS_PER_S // 1000
    for account in range(10_000):  # one order each, 1 ms apart, 10 s in all
        assert place(checks, account=account, now_ns=account * step_ns, invariants=False) is None
        assert checks.rate_buckets_tracked() <= 2 * NS_PER_S // step_ns
    checks.check_invariants()
    assert checks.rate_buckets_tracked() == 2 * NS_PER_S // step_ns
    assert place(checks, account=0, now_ns=100 * NS_PER_S) is None
    assert checks.rate_buckets_tracked() == 1


def test_buckets_of_accounts_all_active_at_once_are_kept_then_dropped_when_full() -> None:
    checks = RiskChecks(config())
    for account in range(5_000):
        assert place(checks, account=account, now_ns=0, invariants=False) is None
    checks.check_invariants()
    assert checks.rate_buckets_tracked() == 5_000  # none is full: forgetting one would refill it early
    assert place(checks, account=1, now_ns=NS_PER_S) is None
    assert checks.rate_buckets_tracked() == 5_000
    assert place(checks, account=1, now_ns=2 * NS_PER_S) is None
    assert checks.rate_buckets_tracked() == 1


# --- kill switch ----------------------------------------------------------------------------------


def test_kill_switch_blocks_places_and_amends_but_not_cancels() -> None:
    checks = fresh()
    checks.block_account(7)
    assert checks.blocked_accounts() == frozenset({7})
    refused = place(checks, account=7)
    assert refused is not None and refused.reason == "risk_account_blocked" and refused.code == "51009"
    assert reason(amend(checks, account=7, new_size=Decimal(1))) == "risk_account_blocked"
    assert checks.check_cancel(account=7, instrument=BTC) is None
    assert place(checks, account=8) is None  # only account 7
    checks.unblock_account(7)
    assert checks.blocked_accounts() == frozenset()
    assert place(checks, account=7) is None
    assert amend(checks, account=7, new_size=Decimal(1)) is None


# --- market state ---------------------------------------------------------------------------------

# Written out here, not read from the module, so a change to the module's table must change this too.
GATE = {
    #               limit  market post_only ioc    fok    amend  cancel
    "halted": (False, False, False, False, False, False, False),
    "cancel_only": (False, False, False, False, False, False, True),
    "pre_open": (False, False, True, False, False, True, True),
    "call_auction": (True, False, True, False, False, False, True),
    "continuous": (True, True, True, True, True, True, True),
}
ACTIONS = ("limit", "market", "post_only", "ioc", "fok", "amend", "cancel")


def act(checks: RiskChecks, action: str) -> RiskRejection | None:
    if action == "cancel":
        return checks.check_cancel(account=1, instrument=BTC)
    if action == "amend":
        return amend(checks, new_price=Decimal(30000))
    return place(checks, order_type=action, price=None if action == "market" else Decimal(30000))


@pytest.mark.parametrize("state", list(GATE))
def test_market_state_gate_matrix(state: str) -> None:
    checks = fresh()
    checks.set_market_state(BTC, state)
    assert checks.market_state(BTC) == state
    assert checks.market_state(ETH) == "continuous"  # states are per instrument
    for action, allowed in zip(ACTIONS, GATE[state], strict=True):
        result = act(checks, action)
        assert reason(result) == (None if allowed else "risk_market_state_forbids"), (state, action)
        assert place(checks, instrument=ETH, order_type="ioc") is None


@pytest.mark.parametrize(
    ("state", "action", "code"),
    [
        ("halted", "cancel", "51022"),
        ("halted", "limit", "51022"),
        ("cancel_only", "amend", "51022"),
        ("pre_open", "limit", "51110"),
        ("call_auction", "market", "51124"),
        ("call_auction", "amend", "51508"),
    ],
)
def test_market_state_codes(state: str, action: str, code: str) -> None:
    checks = fresh()
    checks.set_market_state(BTC, state)
    result = act(checks, action)
    assert result is not None and result.code == code and state in result.msg


def test_market_state_defaults_to_continuous_and_refuses_unknown_states_and_instruments() -> None:
    checks = fresh()
    assert checks.market_state(BTC) == "continuous"
    with pytest.raises(ValueError, match="closed"):
        checks.set_market_state(BTC, "closed")
    with pytest.raises(ValueError, match="DOGE-USDT"):
        checks.set_market_state("DOGE-USDT", "halted")
    with pytest.raises(ValueError, match="DOGE-USDT"):
        place(checks, instrument="DOGE-USDT")
    checks.set_market_state(BTC, "halted")
    checks.set_market_state(BTC, "continuous")
    assert checks.market_state(BTC) == "continuous" and place(checks) is None


# --- the caller's bugs and the code table -----------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"side": "long"},
        {"order_type": "stop"},
        {"order_type": "market"},  # with a price
        {"price": None},  # a limit order without one
        {"size": Decimal(0)},
        {"price": Decimal(-1)},
    ],
)
def test_malformed_places_are_the_callers_bug(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        place(fresh(), **bad)


def test_every_reason_has_an_okx_code_and_every_code_a_reason() -> None:
    assert {case.partition(".")[0] for case in OKX_CODES} == set(REASONS)
    assert all(code.isdigit() and len(code) == 5 for code in OKX_CODES.values())
