"""Per-account token buckets: exact integer arithmetic, memory bounded by recent activity.

Arithmetic. The rate r = p/q tokens per second is read exactly from its decimal text. One token
is q * 1e9 units and a bucket refills p units per nanosecond, so levels and times are integers and
every decision is exact: no float, no rounding.

Time. `now_ns` comes from the caller (monotonic nanoseconds). The buckets keep the largest time
seen (`_clock_ns`) and use it whenever a caller's time is older, so a late caller can never make a
bucket refill backwards or go below zero.

Invariants (`check_invariants`):
- a tracked bucket is never full: 0 <= level_units < capacity_units. A full bucket and no bucket
  are the same thing, so an account without a bucket has a full one.
- tracked buckets are ordered by the time they were last touched, oldest first, and none was
  touched more than `fill_ns` ago (the time an empty bucket takes to fill): such a bucket is full
  and is forgotten, from the oldest end, by the next `take`. So the number tracked is at most the
  number of accounts that asked for a token within the last `fill_ns` (burst / rate seconds).
- a bucket never holds debt: an attempt without a whole token takes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Final

NS_PER_S: Final = 1_000_000_000


class TokenBuckets:
    """One token bucket per account, all with the same rate and capacity."""

    __slots__ = ("_buckets", "_capacity_units", "_clock_ns", "_fill_ns", "_forget_from_ns", "_refill_units_per_ns",
                 "_token_units")  # fmt: skip

    def __init__(self, rate_per_s: Decimal, capacity_tokens: int) -> None:
        rate = Fraction(rate_per_s)
        if rate <= 0 or capacity_tokens < 1:
            raise ValueError(f"token buckets need a positive rate and capacity, not {rate_per_s}, {capacity_tokens}")
        self._token_units: Final = rate.denominator * NS_PER_S
        self._refill_units_per_ns: Final = rate.numerator
        self._capacity_units: Final = capacity_tokens * self._token_units
        self._fill_ns: Final = -(-self._capacity_units // self._refill_units_per_ns)
        self._clock_ns: int | None = None
        # account -> (level_units, touched_ns), oldest touch first (insertion order: `take` re-inserts)
        self._buckets: dict[int, tuple[int, int]] = {}
        # No tracked bucket is full before then: the oldest touch plus `fill_ns`, or earlier (the
        # oldest may have been touched again since), so the walk in `_forget_full` runs only then.
        self._forget_from_ns = 0

    def take(self, account: int, now_ns: int) -> bool:
        """Takes one token from the account's bucket if it holds a whole one; says whether it did."""
        if self._clock_ns is None or now_ns > self._clock_ns:
            self._clock_ns = now_ns
        else:
            now_ns = self._clock_ns
        if now_ns >= self._forget_from_ns:
            self._forget_full(now_ns)
        bucket = self._buckets.pop(account, None)
        if bucket is None:
            level_units = self._capacity_units
        else:
            level_units = bucket[0] + (now_ns - bucket[1]) * self._refill_units_per_ns
            if level_units > self._capacity_units:  # (not `min`: a builtin call costs more)
                level_units = self._capacity_units
        taken = level_units >= self._token_units
        if taken:
            level_units -= self._token_units
        self._buckets[account] = (level_units, now_ns)  # the newest touch: last
        return taken

    def tracked(self) -> int:
        """How many buckets are held in memory (the others are full)."""
        return len(self._buckets)

    def fill_ns(self) -> int:
        """How long an empty bucket takes to fill; a bucket untouched this long is forgotten."""
        return self._fill_ns

    def check_invariants(self) -> None:
        touched_prev_ns: int | None = None
        for account, (level_units, touched_ns) in self._buckets.items():
            _require(0 <= level_units < self._capacity_units, f"bucket of account {account} is full or negative")
            _require(touched_prev_ns is None or touched_prev_ns <= touched_ns, "buckets are out of touch order")
            _require(self._clock_ns is not None and touched_ns <= self._clock_ns, "a bucket was touched in the future")
            if self._clock_ns is not None:
                _require(touched_ns + self._fill_ns > self._clock_ns, f"bucket of account {account} should be gone")
            forgotten_ns = touched_ns + self._fill_ns
            _require(self._forget_from_ns <= forgotten_ns, f"bucket of account {account} would stay when full")
            touched_prev_ns = touched_ns

    def _forget_full(self, now_ns: int) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets))
            touched_ns = self._buckets[oldest][1]
            if touched_ns + self._fill_ns > now_ns:
                self._forget_from_ns = touched_ns + self._fill_ns
                return
            del self._buckets[oldest]
        self._forget_from_ns = now_ns + self._fill_ns  # no bucket: the next is touched now or later


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(f"risk buckets: {what}")
