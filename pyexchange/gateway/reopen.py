"""The phased reopening: halted instruments back to continuous trading through the plan of
`[reopen]` (`config.ReopenConfig`), one sequenced market-state command per instrument and
phase, so every zone and every API sees the same states.

A `Reopening` runs as a task of the gateway that was asked (`POST /operator/v1/market`,
`pyexchange market reopen`, or the cluster's orchestrator): each phase in order for its
length, the call auction ending at a moment drawn from `random.Random(seed)` in its last
`auction_random_end_s` (so a run is replayable from its seed), then continuous trading. An
instrument whose uncross lies outside the band stays in its auction for
`auction_extension_s` more and tries again; the others open (and the zone that sequences
orders restarts its admission ramp: `Exchange._market_changed`). A step the exchange cannot
take now (no leader during an election, a full queue) is retried every `STEP_RETRY_S`. A
halt, or another reopening, cancels a running one: the last operator command wins.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyexchange.config import ReopenConfig
from pyexchange.engine import Event
from pyexchange.gateway import okx
from pyexchange.gateway.sequencer import Overloaded

if TYPE_CHECKING:
    from pyexchange.gateway.exchange import Exchange

log = logging.getLogger("pyexchange.reopen")
STEP_RETRY_S = 1.0


@dataclass(slots=True)
class Phase:
    """One phase as it ran: planned and actual length; for the auction, what it uncrossed."""

    state: str
    planned_s: float
    begin_ms: int
    end_ms: int = 0
    uncrosses: dict[str, dict[str, str]] = field(default_factory=dict)  # symbol -> price and size
    extensions: int = 0  # times the auction went on because an uncross was outside the band

    def json(self) -> dict[str, Any]:
        return {"state": self.state, "plannedS": round(self.planned_s, 3), "beginMs": self.begin_ms,
                "endMs": self.end_ms, "uncross": self.uncrosses, "extensions": self.extensions}  # fmt: skip


class Reopening:
    """One run of the reopening plan over some instruments (see the module doc)."""

    def __init__(self, exchange: Exchange, symbols: list[str], plan: ReopenConfig, seed: int) -> None:
        self.exchange, self.symbols, self.plan, self.seed = exchange, symbols, plan, seed
        self.phases: list[Phase] = []
        self.done = False

    def json(self) -> dict[str, Any]:
        return {"instIds": self.symbols, "seed": self.seed, "done": self.done,
                "phases": [p.json() for p in self.phases]}  # fmt: skip

    async def run(self) -> None:
        rng = random.Random(self.seed)
        for state, length_s in self.plan.phases:
            if state == "call_auction":
                length_s -= rng.uniform(0, self.plan.auction_random_end_s)
            phase = self._begin(state, length_s)
            await self._enter(self.symbols, state)
            await asyncio.sleep(length_s)
            phase.end_ms = _now_ms()
        auction = self.phases[-1] if self.phases and self.phases[-1].state == "call_auction" else None
        opening = self._begin("continuous", 0)
        waiting = list(self.symbols)
        while True:
            events = await self._enter(waiting, "continuous")
            for symbol, symbol_events in events.items():
                for event in symbol_events:
                    if event.kind == "uncross":
                        assert event.price is not None and event.size is not None
                        (auction or opening).uncrosses[symbol] = {"px": okx.dec(event.price), "sz": okx.dec(event.size)}
            waiting = [s for s, e in events.items() if e[-1].reason == "auction_price_outside_band"]
            if not waiting:
                break
            (auction or opening).extensions += 1
            log.warning("reopening: the uncross of %s is outside the band; the auction goes on %.1f s",
                        ", ".join(waiting), self.plan.auction_extension_s)  # fmt: skip
            await asyncio.sleep(self.plan.auction_extension_s)
        if auction is not None:
            auction.end_ms = _now_ms()
        opening.end_ms = _now_ms()
        self.done = True
        log.info("reopening of %s done: %s", ", ".join(self.symbols), self.json())

    def _begin(self, state: str, planned_s: float) -> Phase:
        phase = Phase(state, planned_s, _now_ms())
        self.phases.append(phase)
        log.info("reopening %s: %s for %.1f s", ", ".join(self.symbols), state, planned_s)
        return phase

    async def _enter(self, symbols: list[str], state: str) -> dict[str, list[Event]]:
        """Moves each instrument to `state`; each one's events. A step that cannot be taken now
        is tried again until it is."""
        events: dict[str, list[Event]] = {}
        for symbol in symbols:
            while True:
                try:
                    events[symbol] = await self.exchange.set_market_state(symbol, state, self.plan.auction_band_bps)
                    break
                except (okx.OkxError, Overloaded) as error:
                    log.warning("reopening: %s to %s not done yet (%s); retrying", symbol, state, error)
                    await asyncio.sleep(STEP_RETRY_S)
        return events


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
