"""The admission ramp: after a restart or a failover, new orders are let in at a rate that rises
along a configured curve, so the burst of clients reconnecting at once cannot cascade.

The curve (`admission.ramp_orders_per_s`) is piecewise linear: points (seconds since the
start, orders per second), the first at 0 s, times increasing, rates positive; between two
points the rate is interpolated, and from the last point on there is no ramp limit. No points:
no ramp. The gateway restarts the ramp when it starts (after recovery) and when its zone is
first seen leading a new Raft term (a failover or a transfer).

Admission is a token bucket of `admission.ramp_burst_orders` orders (full at the start) that
refills at the curve's rate. It is `risk.buckets.TokenBuckets` (one bucket) run on the curve's
own clock instead of the wall clock: the clock reads the orders the curve has allowed since
the start, the integral of the rate, and a bucket of one order per second on that clock is a
bucket of r(t) orders per second on the wall clock. The integral of a linear piece is exact
integer arithmetic (integer rates, monotonic ns), so every decision is exact and the clock
never goes back.

Only new orders take a token — a place, an amend, each order of a batch; cancels never do, so
they are always admitted first. A refusal is `Overloaded`, answered like every admission
refusal: 429 / 50011 with Retry-After over REST, 50011 on WebSocket order entry.

Time is the gateway's monotonic clock, passed in by the caller (the engine never reads one).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

from pyexchange.risk.buckets import NS_PER_S, TokenBuckets

RAMP_POINTS_MAX: Final = 64
RAMP_SECONDS_MAX: Final = 3600
RAMP_ORDERS_PER_S_MAX: Final = 10_000_000
BUCKET: Final = 0  # the one bucket's key in `TokenBuckets`


def check_points(points: Any, where: str) -> tuple[tuple[int, int], ...]:
    """The curve's points as (seconds, orders per second); a `ValueError` naming `where` (the
    config key) if they are not a valid curve. An empty list is valid: no ramp."""
    if not isinstance(points, list | tuple):
        raise ValueError(f"{where} must be a list of [seconds, orders per second] points, not {points!r}")
    if len(points) == 1 or len(points) > RAMP_POINTS_MAX:
        raise ValueError(f"{where} must have no points (no ramp) or 2 to {RAMP_POINTS_MAX} (the last ends the ramp), "
                         f"not {len(points)}")  # fmt: skip
    checked: list[tuple[int, int]] = []
    for i, point in enumerate(points):
        if not (isinstance(point, list | tuple) and len(point) == 2 and all(_is_int(v) for v in point)):
            raise ValueError(f"{where}[{i}] must be [seconds, orders per second] (two integers), not {point!r}")
        seconds, rate = int(point[0]), int(point[1])
        if not 0 <= seconds <= RAMP_SECONDS_MAX:
            raise ValueError(f"{where}[{i}]: seconds must be from 0 to {RAMP_SECONDS_MAX}, not {seconds}")
        if not 1 <= rate <= RAMP_ORDERS_PER_S_MAX:
            raise ValueError(f"{where}[{i}]: orders per second must be from 1 to {RAMP_ORDERS_PER_S_MAX}, not {rate}")
        if i == 0 and seconds != 0:
            raise ValueError(f"{where}[0]: the curve starts at 0 seconds, not {seconds}")
        if checked and seconds <= checked[-1][0]:
            raise ValueError(f"{where}[{i}]: seconds must increase, {seconds} follows {checked[-1][0]}")
        checked.append((seconds, rate))
    return tuple(checked)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class AdmissionRamp:
    """The ramp of new orders after a start or a failover (see the module doc)."""

    __slots__ = ("_allowed_units", "_bucket", "_burst_orders", "_end_ns", "_points_ns", "_start_ns", "admitted",
                 "refused", "restarts")  # fmt: skip

    def __init__(self, points: Sequence[tuple[int, int]], burst_orders: int, start_ns: int) -> None:
        """`points` as `check_points` returns them; `start_ns` (monotonic) starts the first ramp."""
        assert len(points) != 1, "a curve has no points or at least two"
        assert burst_orders >= 1, burst_orders
        self._points_ns: Final = tuple((s * NS_PER_S, rate) for s, rate in points)
        self._burst_orders: Final = burst_orders
        # the curve's clock at each point: orders allowed from the start to it, in bucket units
        # (one order is NS_PER_S units: the unit is an order-per-second times a nanosecond)
        allowed = [0]
        for (t0, r0), (t1, r1) in itertools.pairwise(self._points_ns):
            allowed.append(allowed[-1] + _piece_units(t0, r0, t1, r1, t1))
        self._allowed_units: Final = tuple(allowed)
        self._set_start(start_ns)
        self._bucket = TokenBuckets(Decimal(1), burst_orders)
        self.admitted = self.refused = self.restarts = 0

    def restart(self, now_ns: int) -> None:
        """Starts the curve again from 0 s with a full bucket (a start, a failover)."""
        self._set_start(now_ns)
        self._bucket = TokenBuckets(Decimal(1), self._burst_orders)
        self.restarts += 1

    def admit(self, now_ns: int) -> bool:
        """Takes a token for one new order if the ramp has one; True past the ramp's end."""
        if now_ns >= self._end_ns:  # what every order asks once the ramp is over
            return True
        clock = self._curve_clock(now_ns)
        if clock is None:
            return True
        taken = self._bucket.take(BUCKET, clock)
        if taken:
            self.admitted += 1
        else:
            self.refused += 1
        return taken

    def rate_per_s(self, now_ns: int) -> int | None:
        """The curve's rate now (orders per second, rounded down); None once the ramp is over."""
        elapsed_ns = now_ns - self._start_ns
        i = self._piece(elapsed_ns)
        if i is None:
            return None
        (t0, r0), (t1, r1) = self._points_ns[i], self._points_ns[i + 1]
        return r0 + (r1 - r0) * (max(0, elapsed_ns) - t0) // (t1 - t0)

    def state(self, now_ns: int) -> dict[str, Any]:
        """For the operator: where the ramp is, and the orders it admitted and refused while on
        (since the gateway started, over every restart of the ramp)."""
        ends_s = self._points_ns[-1][0] // NS_PER_S if self._points_ns else 0
        since_start_s = round((now_ns - self._start_ns) / NS_PER_S, 3)
        return {"on": bool(self._points_ns), "since_start_s": since_start_s, "ends_s": ends_s,
                "rate_orders_per_s": self.rate_per_s(now_ns), "burst_orders": self._burst_orders,
                "admitted": self.admitted, "refused": self.refused, "restarts": self.restarts}  # fmt: skip

    def check_invariants(self) -> None:
        self._bucket.check_invariants()
        assert all(a < b for a, b in itertools.pairwise(self._allowed_units)), "the curve's clock must increase"

    def _set_start(self, start_ns: int) -> None:
        self._start_ns = start_ns
        self._end_ns = start_ns + (self._points_ns[-1][0] if self._points_ns else 0)

    def _piece(self, elapsed_ns: int) -> int | None:
        """The index of the point that starts the piece of the curve at `elapsed_ns`; None past the end."""
        if not self._points_ns or elapsed_ns >= self._points_ns[-1][0]:
            return None
        i = 0
        while self._points_ns[i + 1][0] <= elapsed_ns:
            i += 1
        return i

    def _curve_clock(self, now_ns: int) -> int | None:
        """Orders the curve has allowed since the start, in bucket units; None past the end."""
        elapsed_ns = max(0, now_ns - self._start_ns)  # a caller's older time counts as the start
        i = self._piece(elapsed_ns)
        if i is None:
            return None
        (t0, r0), (t1, r1) = self._points_ns[i], self._points_ns[i + 1]
        return self._allowed_units[i] + _piece_units(t0, r0, t1, r1, elapsed_ns)


def _piece_units(t0_ns: int, r0: int, t1_ns: int, r1: int, t_ns: int) -> int:
    """The integral of the rate over [t0, t] on the piece from (t0, r0) to (t1, r1), in orders
    per second times ns, rounded down: r0 * d + (r1 - r0) * d^2 / (2 * span)."""
    span_ns, d_ns = t1_ns - t0_ns, t_ns - t0_ns
    assert span_ns > 0 and 0 <= d_ns <= span_ns, (span_ns, d_ns)
    return (2 * r0 * d_ns * span_ns + (r1 - r0) * d_ns * d_ns) // (2 * span_ns)
