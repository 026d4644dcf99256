"""One zone's trading service behind the gateway: the durable engine, the sequencer, the
derived views, market data feeds, risk checks and the pushes to WebSocket subscribers.

Everything here except a cluster zone's sequencer thread runs on the event loop, so the views
need no locks: a batch's results are applied to the views, then pushed, then the waiting
requests are answered, in that order, so that a client that hears "placed" can query its order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pyexchange import _core, wire
from pyexchange.config import Config
from pyexchange.engine import Asset, Engine, Event
from pyexchange.gateway import okx, requests
from pyexchange.gateway.market_data import BookFeed, Trade
from pyexchange.gateway.ramp import AdmissionRamp
from pyexchange.gateway.reopen import Reopening
from pyexchange.gateway.replication import Follower, LeaderLink
from pyexchange.gateway.requests import AmendIntent, OrderRef, PlaceIntent
from pyexchange.gateway.sequencer import (
    BOOK_DEPTH_TRACKED,
    PRIORITY_KINDS,
    Batch,
    Command,
    LoopSequencer,
    Overloaded,
    Sequencer,
    collect,
)
from pyexchange.gateway.views import OrderView, Views, order_json, trade_json
from pyexchange.risk import RiskChecks

log = logging.getLogger("pyexchange.exchange")
REPLAY_CHUNK_RECORDS = 4096
DEAD_MAN_TICK_S = 0.5
LOOP_LAG_TICK_S = 0.02
LOOP_LAG_WINDOW_TICKS = 5
LOOP_LAG_TICKS_KEPT = 16_384  # 5.5 minutes of ticks, for the operator (`GET /operator/v1/loop`)
REPLY_SWEEP_S = 0.1
KIND_OFFSET = wire.COMMAND_DTYPE.fields["kind"][1]  # type: ignore[index]
TRADING_KINDS = (wire.PLACE, wire.CANCEL, wire.AMEND, wire.CANCEL_ALL, wire.DEPOSIT, wire.SET_MARKET_STATE)
# Our market states as OKX's instrument `state`: trading, not trading, or opening.
OKX_INSTRUMENT_STATE = {"continuous": "live", "halted": "suspend", "cancel_only": "suspend", "pre_open": "preopen",
                        "call_auction": "preopen"}  # fmt: skip
# ... and as the `state` of OKX's call-auction details (ours where OKX has no name: halted).
OKX_AUCTION_STATE = {"continuous": "normal", "halted": "halted", "cancel_only": "cancelOrder",
                     "pre_open": "prepareStart", "call_auction": "callAuction"}  # fmt: skip
RAMPED_KINDS = (wire.PLACE, wire.AMEND)  # new orders: the admission ramp's (cancels never are)


class LoopLag:
    """How far behind the event loop is: the median lateness of its last few timer ticks.

    An overloaded loop runs every tick late; one stall (the machine descheduled the process,
    a page fault storm) makes one tick late and is not overload, so it must not refuse orders.
    """

    def __init__(self, window_ticks: int = LOOP_LAG_WINDOW_TICKS) -> None:
        self._late_ms: deque[float] = deque([0.0] * window_ticks, maxlen=window_ticks)
        self.behind_ms = 0.0
        self._kept: deque[tuple[int, float]] = deque(maxlen=LOOP_LAG_TICKS_KEPT)  # (tick's ns, late ms)

    def record(self, late_ms: float, now_ns: int) -> None:
        self._late_ms.append(late_ms)
        self.behind_ms = statistics.median(self._late_ms)
        self._kept.append((now_ns, late_ms))

    def ticks_since(self, since_ns: int) -> list[tuple[int, float]]:
        """When each tick ran (ns) and how late (ms), from `since_ns` on (of the `LOOP_LAG_TICKS_KEPT` newest)."""
        return [(at_ns, late_ms) for at_ns, late_ms in self._kept if at_ns >= since_ns]


class Subscribers(Protocol):
    """Where pushes go (the WebSocket hub)."""

    def has(self, channel: str, key: str) -> bool: ...
    def follows(self, channel: str) -> bool: ...
    def publish(self, channel: str, key: str, data: list[dict[str, Any]], action: str | None = None) -> None: ...


class _Nobody:
    def has(self, channel: str, key: str) -> bool:
        return False

    def follows(self, channel: str) -> bool:
        return False

    def publish(self, channel: str, key: str, data: list[dict[str, Any]], action: str | None = None) -> None:
        return None


Answer = dict[str, str]  # OKX's per-order fields of an order-entry step


def answer(s_code: str, s_msg: str, order_id: str = "", client_order_id: str = "", tag: str = "",
           ts_ms: int | None = None) -> Answer:  # fmt: skip
    """One order-entry step's answer (`ts_ms`: now if not given). A dict straight away, not an
    object turned into one: one per order."""
    return {"ordId": order_id, "clOrdId": client_order_id, "tag": tag, "ts": str(_now_ms() if ts_ms is None else ts_ms),
            "sCode": s_code, "sMsg": s_msg}  # fmt: skip


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Pending:
    """An order-entry step whose command is on its way: the future of its events, and how the
    step's answer (OKX's per-order fields) is made of them. Callers wait with `answered`, or
    add a done callback to `future` and call `answer` (no task for each step)."""

    future: asyncio.Future[list[Event]]
    answer_of: Callable[[list[Event]], Answer]

    def answer(self) -> Answer:
        """The answer, once `future` is done."""
        try:
            return self.answer_of(self.future.result())
        except (okx.OkxError, Overloaded) as error:  # no answer in time, the batch failed, the leader refused
            return refusal_json(error)

    async def answered(self) -> Answer:
        # Not `contextlib.suppress`: two more objects for the collector to walk while the step waits.
        try:  # noqa: SIM105
            await self.future
        except (okx.OkxError, Overloaded):
            pass  # `answer` makes it the step's sCode
        return self.answer()


def _behind(lag_ms: float) -> Overloaded:
    return Overloaded(f"the gateway is {lag_ms:.0f} ms behind (admission.queue_delay_ms_max)")


def refusal_json(error: okx.OkxError | Overloaded) -> Answer:
    """A refused order-entry step as its per-order answer."""
    if isinstance(error, Overloaded):
        return answer(okx.RATE_LIMITED, f"Rate limit reached: {error}")
    return answer(error.code, error.msg)


class ReplyDeadlines:
    """Fails with 50004 each queued command's future not answered within the reply timeout.
    Deadlines come in the order commands are queued (one timeout for all), so one timer sweeps
    them from the front every `REPLY_SWEEP_S` while any is waiting, rather than a timer for
    each command (which costs a request a few µs to arm and cancel); a timeout fires up to
    `REPLY_SWEEP_S` late."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._waiting: deque[tuple[float, asyncio.Future[list[Event]]]] = deque()
        self._sweep: asyncio.TimerHandle | None = None

    def add(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[list[Event]]) -> None:
        self._waiting.append((loop.time() + self.timeout_s, future))
        if self._sweep is None:
            self._sweep = loop.call_later(REPLY_SWEEP_S, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now, waiting = loop.time(), self._waiting
        while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
            future = waiting.popleft()[1]
            if not future.done():
                future.set_exception(okx.OkxError(okx.REQUEST_TIMEOUT, "No answer in time; the outcome is unknown: "
                                                  "query the order or retry with the same clOrdId"))  # fmt: skip
        self._sweep = loop.call_later(REPLY_SWEEP_S, self._expire, loop) if waiting else None


class Exchange:
    def __init__(self, config: Config, data_dir: Path, engine: Engine, link: LeaderLink | None = None) -> None:
        """`link`: this exchange is one zone of a cluster (`engine` is its replica)."""
        self.config, self.data_dir, self.engine, self.link = config, data_dir, engine, link
        self._follower: Follower | None = None
        self.views = Views(engine.instruments())
        self.books = {inst.symbol: BookFeed(BOOK_DEPTH_TRACKED) for inst in engine.instruments()}
        self.risk = RiskChecks(config.risk)
        self.instruments = {inst.symbol: inst for inst in engine.instruments()}
        self.read_place = requests.PlaceReader(self.instruments)
        self._subscribers: Subscribers = _Nobody()
        self._sequencer: Sequencer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop it serves on, once started
        self._pending_places: dict[int, int] = {}
        self._reply_deadlines = ReplyDeadlines(config.admission.reply_timeout_ms / 1000)
        self._dead_man: dict[int, int] = {}  # account -> when cancel-all-after fires (ms)
        self._books_stale: set[str] = set()  # feeds not kept up to date: nobody followed them
        self.loop_lag = LoopLag()
        self._views_seq = 0  # the last command the views have applied
        self._seq_waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (seq, n, woken when applied)
        self.halted: str | None = None  # why the cluster's orchestrator halted trading, if it did
        self.reopening: Reopening | None = None  # the last reopening started here
        self._reopening_task: asyncio.Task[None] | None = None
        self.halted_ms = 0
        self.started_ms = _now_ms()
        admission = config.admission
        self.ramp = AdmissionRamp(admission.ramp_orders_per_s, admission.ramp_burst_orders, time.monotonic_ns())
        self._seed_markets()
        if link is not None:
            link.on_lead = self.restart_ramp

    # ---- life cycle ----

    def rebuild(self) -> int:
        """Rebuilds the views from the whole journal (read once, replayed in memory, a chunk of
        trading commands at a time through the batch path); the records replayed."""
        replica = Engine()
        pending: list[bytes] = []
        next_seq = 1  # the seq of pending[0]

        def visit(records: list[tuple[int, bytes]]) -> None:
            nonlocal next_seq
            for seq, payload in records:
                if seq > self.engine.seq:
                    break
                if seq != next_seq + len(pending):
                    raise RuntimeError(
                        f"the journal in {self.data_dir} has no record {next_seq + len(pending)} (the next is {seq}): "
                        "older segments were removed after a snapshot, and the gateway rebuilds its history from "
                        "the whole journal (`pyexchange serve` keeps it whole)"
                    )
                if payload[KIND_OFFSET] in TRADING_KINDS:
                    pending.append(payload)
                    continue
                self._replay(replica, pending, next_seq)
                pending.clear()
                replica._core.apply_journal_payload(payload)  # type: ignore[union-attr]
                replica.refresh_configuration()
                next_seq = seq + 1
            self._replay(replica, pending, next_seq)
            next_seq += len(pending)
            pending.clear()

        replayed = _core.journal_replay(self.data_dir, 1, REPLAY_CHUNK_RECORDS, visit)
        if replica.state_hash() != self.engine.state_hash():
            raise RuntimeError("the journal replayed in memory does not give the engine's state hash")
        self._books_stale.update(self.books)
        return replayed

    def _replay(self, replica: Engine, payloads: list[bytes], first_seq: int) -> None:
        if not payloads:
            return
        records = b"".join(payloads)
        assert replica.seq + 1 == first_seq, (replica.seq, first_seq)
        events = replica.submit(records)
        self.views.apply(collect(replica, records, first_seq, events))

    def start(self, loop: asyncio.AbstractEventLoop, subscribers: Subscribers) -> None:
        self._loop, self._subscribers = loop, subscribers
        caught_up = None
        if self.link is not None:
            self._follower = Follower(self.engine, loop, self._deliver, self, self._reset_views)
            self._follower.start()
            caught_up = self._follower.caught_up
        if self.link is None:  # a single zone: sequenced on the event loop itself
            self._sequencer = LoopSequencer(self.engine, self.config.admission, loop, self._deliver, self)
        else:  # a zone's replica: a batch waits for Raft, on the sequencer's thread
            self._sequencer = Sequencer(self.engine, self.config.admission, loop, self._deliver, self, caught_up)
        self._sequencer.start()
        self.restart_ramp()  # recovered and about to serve: the burst after a restart starts now

    def restart_ramp(self) -> None:
        """New orders ramp up again from now (a start, or this zone leads a new term)."""
        self.ramp.restart(time.monotonic_ns())
        log.info("admission ramp restarted: %s", self.ramp.state(time.monotonic_ns()))

    def stop(self) -> None:
        if self._sequencer is not None:
            self._sequencer.stop()
            self._sequencer = None
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def _reset_views(self) -> None:
        """The replica was replaced by a snapshot: views start again from nothing."""
        self.views = Views(self.engine.instruments())
        self._books_stale.update(self.books)
        self._seed_markets()

    def _seed_markets(self) -> None:
        """Views and risk checks start from the engine's market states (a replica restored from a
        snapshot has no events for them)."""
        for symbol, market in self.views.markets.items():
            market.state = self.engine.market_state(symbol)
            market.auction = self.engine.auction(symbol) if market.state == "call_auction" else None
        self._market_changed(list(self.views.markets))

    @property
    def follower(self) -> Follower | None:
        return self._follower

    @property
    def sequencer(self) -> Sequencer:
        assert self._sequencer is not None, "the exchange is not started"
        return self._sequencer

    # ---- the results of a batch ----

    def _deliver(self, batch: Batch) -> None:
        if batch.error is None and not batch.answers_only:
            changed, trades, markets = self.views.apply(batch)
            self._push(batch, changed, trades)
            self._market_changed(markets)
            self._views_seq = max(self._views_seq, batch.last_seq)
            while self._seq_waiters and self._seq_waiters[0][0] <= self._views_seq:
                woken = heapq.heappop(self._seq_waiters)[2]
                if not woken.done():
                    woken.set_result(None)
        if not batch.commands:
            return  # a follower's batch: views only
        for command, events in zip(batch.commands, batch.events, strict=True):
            if command.kind == wire.PLACE:
                self._pending_places[command.account] -= 1
            future = command.future
            if future is None or future.done():
                continue
            if batch.error is not None:
                future.set_exception(batch.error)
            else:
                future.set_result(events)

    def _push(self, batch: Batch, changed: dict[int, int], trades: list[tuple[str, Trade]]) -> None:
        ts_ms = wire.COMMAND_STRUCT.unpack_from(batch.records)[0] // 1_000_000
        subs = self._subscribers
        self._books_stale.update(batch.instruments - batch.books.keys())
        for symbol, book in batch.books.items():
            self._books_stale.discard(symbol)
            update = self.books[symbol].update(book["bids"], book["asks"], ts_ms)
            if update is None:
                continue
            subs.publish("books", symbol, [update], "update")
            for channel in ("books5", "bbo-tbt"):
                if subs.has(channel, symbol):
                    subs.publish(channel, symbol, [self.top_json(symbol, channel, ts_ms)])
        if subs.follows("orders"):  # (checked once: a batch changes an order for each it places)
            self._push_orders(changed)
        for account, balances in batch.balances.items():
            subs.publish("account", str(account), [self.balance_json(account, balances, ts_ms)])
        by_symbol: dict[str, list[dict[str, str]]] = {}
        for symbol, trade in trades:
            by_symbol.setdefault(symbol, []).append(trade_json(symbol, trade))
        for symbol, rows in by_symbol.items():
            subs.publish("trades", symbol, rows)
        for symbol in batch.instruments:
            if subs.has("tickers", symbol):
                subs.publish("tickers", symbol, [self.ticker_json(symbol)])

    def _push_orders(self, changed: dict[int, int]) -> None:
        subs = self._subscribers
        for order_id, account in changed.items():
            key = str(account)
            if subs.has("orders", key) and (view := self.views.view(order_id)) is not None:
                subs.publish("orders", key, [order_json(view)])

    def _market_changed(self, symbols: list[str]) -> None:
        """The risk checks' market-state gate follows the sequenced states; subscribers of the
        call-auction details get the new state and indicative uncross. An instrument back in
        continuous trading restarts the admission ramp where orders are sequenced (a single
        zone, or the leader's), whoever asked for the reopening: the orders held back come now."""
        reopened = False
        for symbol in symbols:
            state = self.views.markets[symbol].state
            reopened |= state == "continuous" and self.risk.market_state(symbol) != "continuous"
            self.risk.set_market_state(symbol, state)
            if self._subscribers.has("call-auction-details", symbol):
                self._subscribers.publish("call-auction-details", symbol, [self.auction_json(symbol)])
        if reopened and (self.link is None or self.link.leading()):
            self.restart_ramp()

    def book_followed(self, symbol: str) -> bool:
        """Whether someone follows the book of `symbol` (the sequencer asks)."""
        subs = self._subscribers
        return subs.has("books", symbol) or subs.has("books5", symbol) or subs.has("bbo-tbt", symbol)

    def balances_followed(self, account: int) -> bool:
        return self._subscribers.has("account", str(account))

    def book_feed(self, symbol: str) -> BookFeed:
        """The books feed of `symbol`, brought up to date first if nobody followed it."""
        feed = self.books[symbol]
        if symbol in self._books_stale:
            self._books_stale.discard(symbol)
            book = self.engine.book(symbol, BOOK_DEPTH_TRACKED)
            feed.update(book["bids"], book["asks"], _now_ms())
        return feed

    async def watch_loop_lag(self) -> None:
        """Measures how late the event loop runs a timer: when it is late, the gateway itself
        is the bottleneck, and new orders are refused (admission) rather than queued."""
        while True:
            started_ns = time.monotonic_ns()
            await asyncio.sleep(LOOP_LAG_TICK_S)
            now_ns = time.monotonic_ns()
            self.loop_lag.record((now_ns - started_ns) / 1e6 - LOOP_LAG_TICK_S * 1000, now_ns)

    # ---- order entry ----

    def _submit(self, command: Command) -> asyncio.Future[list[Event]]:
        """Sends `command` on its way (queued here, or to the leader's zone); the future of its
        events. Refusals are raised at once."""
        if self.halted is not None and command.kind not in PRIORITY_KINDS:
            raise okx.OkxError(okx.SERVICE_UNAVAILABLE, f"Trading is halted: {self.halted}; cancels are taken",
                               http_status=503, retry_after_s=1)  # fmt: skip
        if self.link is None:
            return self.submit_here(command)
        return asyncio.ensure_future(self._submit_in_cluster(command))

    async def _submit_in_cluster(self, command: Command) -> list[Event]:
        assert self.link is not None
        gateway = await self.link.leader_gateway()
        if gateway is not None:
            return await self._forward(gateway, command)
        return await self.submit_here(command)

    async def _forward(self, gateway: str, command: Command) -> list[Event]:
        """Has the leader's zone sequence `command`; answers once this zone's views have it."""
        assert self.link is not None
        timeout_s = self.config.admission.reply_timeout_ms / 1000
        events = np.frombuffer(await self.link.forward(gateway, command, timeout_s), dtype=wire.EVENT_DTYPE)
        if len(events) and (seq := int(events["seq"][-1])) > self._views_seq:
            applied = asyncio.get_running_loop().create_future()
            heapq.heappush(self._seq_waiters, (seq, id(applied), applied))
            with contextlib.suppress(TimeoutError):  # answered anyway: the order is sequenced
                await asyncio.wait_for(applied, timeout_s)
        return self.engine.decode_events(events)

    def submit_here(self, command: Command) -> asyncio.Future[list[Event]]:
        """Queues `command` for this zone's sequencer (a single zone, or the leader's); the future
        of its events, failed with 50004 if no answer comes within `admission.reply_timeout_ms`.
        Refusals (`Overloaded`) are raised at once."""
        lag_ms = self.loop_lag.behind_ms
        if lag_ms > self.config.admission.queue_delay_ms_max and command.kind not in PRIORITY_KINDS:  # (cancels: never)
            raise _behind(lag_ms)
        if command.kind in RAMPED_KINDS and not self.ramp.admit(now_ns := time.monotonic_ns()):
            raise Overloaded(f"new orders ramp up after a restart or failover: {self.ramp.rate_per_s(now_ns)} "
                             "orders/s now (admission.ramp_orders_per_s)")  # fmt: skip
        loop = self._loop  # not `asyncio.get_running_loop()`: on CPython 3.11 each call is a getpid system call
        assert loop is not None, "submitted before start"
        command.future = future = loop.create_future()
        self.sequencer.enqueue(command)  # Overloaded propagates: the caller answers 429
        if command.kind == wire.PLACE:
            self._pending_places[command.account] = self._pending_places.get(command.account, 0) + 1
        self._reply_deadlines.add(loop, future)
        return future

    def admit_new_orders(self) -> None:
        """`Overloaded` if a new order (a place or an amend) would be refused now: the gateway is
        behind, or this zone's sequencer would refuse it. Checked once for a whole batch request
        before any of its orders is read, so that refusing a batch under a burst costs the loop
        next to nothing and takes nothing from the account's order rate. (Not for each order:
        `submit_here` refuses it as it queues it, and a check before would cost every order.)"""
        if (lag_ms := self.loop_lag.behind_ms) > self.config.admission.queue_delay_ms_max:
            raise _behind(lag_ms)
        if self.link is None:  # (in a cluster the leader's zone admits what is forwarded to it)
            self.sequencer.admit_order()

    def place(self, account: int, intent: PlaceIntent) -> Answer | Pending:
        """Places an order: its outcome at once (a retry, a risk rejection), or on its way."""
        cid = intent.client_order_id
        if cid and (known := self.views.order_of(account, None, cid)) is not None:
            return self._retry_outcome(known, intent)
        open_orders = self.views.open_count(account) + self._pending_places.get(account, 0)
        rejection = self.risk.check_place(
            account=account, instrument=intent.instrument.symbol, side=intent.side, order_type=intent.order_type,
            price=intent.price, size=intent.size, reference_price=self.views.last_price.get(intent.instrument.symbol),
            open_orders=open_orders, now_ns=time.monotonic_ns(),
        )  # fmt: skip
        if rejection is not None:
            return answer(rejection.code, rejection.msg, "", cid, intent.tag)
        side, order_type = wire.SIDE_CODES[intent.side], wire.ORDER_TYPE_CODES[intent.order_type]
        stp = wire.STP_CODES[intent.stp]
        # Positional, in `Command`'s field order: keywords cost a dataclass's __init__ 0.6 µs an order.
        command = Command(wire.PLACE, account, intent.instrument.instrument_id, side, order_type, stp,
                          intent.price_ticks, intent.size_lots, 0, cid.encode())  # fmt: skip
        return Pending(self._submit(command), functools.partial(self._placed, account, intent))

    def _placed(self, account: int, intent: PlaceIntent, events: list[Event]) -> Answer:
        cid, first = intent.client_order_id, events[0]
        if first.kind == "rejected":
            assert first.reason is not None
            if first.reason == "order_client_order_id_in_use":
                known = self.views.order_of(account, None, cid)
                if known is not None:
                    return self._retry_outcome(known, intent)
            code, msg = okx.reason_error(first.reason)
            return answer(code, msg, "", cid, intent.tag, first.ts_ns // 1_000_000)
        return answer("0", "Order placed", str(first.order_id), cid, intent.tag, first.ts_ns // 1_000_000)

    @staticmethod
    def _retry_outcome(known: OrderView, intent: PlaceIntent) -> Answer:
        if not intent.same_order(known.order):
            code, msg = okx.reason_error("order_client_order_id_in_use")
            return answer(code, msg, "", intent.client_order_id, intent.tag)
        return answer("0", "Order placed (a retry: the original order)", str(known.order.order_id),
                       intent.client_order_id, intent.tag, known.c_time_ms)  # fmt: skip

    def _resolve(self, account: int, ref: OrderRef) -> OrderView | None:
        view = self.views.order_of(account, ref.order_id, ref.client_order_id)
        if view is not None and view.order.instrument != ref.instrument.symbol:
            return None
        return view

    def cancel(self, account: int, ref: OrderRef) -> Answer | Pending:
        rejection = self.risk.check_cancel(account=account, instrument=ref.instrument.symbol)
        if rejection is not None:
            return answer(rejection.code, rejection.msg, str(ref.order_id or ""), ref.client_order_id or "")
        return self._on_order(account, ref, wire.CANCEL)

    def amend(self, account: int, intent: AmendIntent) -> Answer | Pending:
        ref = intent.ref
        known = self._resolve(account, ref)
        rejection = self.risk.check_amend(
            account=account, instrument=ref.instrument.symbol, new_price=intent.new_price, new_size=intent.new_size,
            reference_price=self.views.last_price.get(ref.instrument.symbol), now_ns=time.monotonic_ns(),
            order_price=known.order.price if known else None, order_size=known.order.size if known else None,
            side=known.order.side if known else None,
        )  # fmt: skip
        if rejection is not None:
            return answer(rejection.code, rejection.msg, str(ref.order_id or ""), ref.client_order_id or "")
        return self._on_order(account, ref, wire.AMEND, intent.new_price_ticks, intent.new_size_lots)

    def _on_order(
        self, account: int, ref: OrderRef, kind: int, price_ticks: int = 0, size_lots: int = 0
    ) -> Answer | Pending:
        """A cancel or an amend of the order `ref` names (by id or client order id)."""
        view = self._resolve(account, ref)
        order_id = view.order.order_id if view is not None else ref.order_id
        cid = view.client_order_id if view is not None else ref.client_order_id or ""
        if order_id is None:
            code, msg = okx.reason_error("matching_unknown_order")
            return answer(code, msg, "", cid)
        command = Command(kind, account, ref.instrument.instrument_id, order_id=order_id, price_ticks=price_ticks,
                          size_lots=size_lots)  # fmt: skip
        return Pending(self._submit(command), functools.partial(_order_changed, order_id, cid))

    async def cancel_all(self, account: int, symbol: str | None = None) -> list[Event]:
        """The kill switch for one account (all instruments, or one)."""
        instrument_id = wire.ALL_INSTRUMENTS if symbol is None else self.instruments[symbol].instrument_id
        return await self._submit(Command(wire.CANCEL_ALL, account, instrument_id))

    async def set_market_state(self, symbol: str, state: str, auction_band_bps: int) -> list[Event]:
        """Moves an instrument to a market state (a sequenced command); its events."""
        command = Command(wire.SET_MARKET_STATE, 0, self.instruments[symbol].instrument_id,
                          order_type=wire.MARKET_STATES.index(state), size_lots=auction_band_bps)  # fmt: skip
        return await self._submit(command)

    async def halt_markets(self, symbols: list[str]) -> None:
        """Halts these instruments (queries only), stopping a reopening under way first."""
        self._stop_reopening()
        for symbol in symbols:
            await self.set_market_state(symbol, "halted", self.config.reopen.auction_band_bps)

    def reopen_markets(self, symbols: list[str], seed: int) -> Reopening:
        """Starts the reopening plan for these instruments (replacing one under way)."""
        self._stop_reopening()
        self.reopening = Reopening(self, symbols, self.config.reopen, seed)
        self._reopening_task = asyncio.get_running_loop().create_task(self.reopening.run())
        return self.reopening

    def _stop_reopening(self) -> None:
        if self._reopening_task is not None and not self._reopening_task.done():
            self._reopening_task.cancel()
            log.warning("the reopening of %s was stopped by a new operator command",
                        ", ".join(self.reopening.symbols if self.reopening else []))  # fmt: skip

    def trading_suspended(self) -> bool:
        """Whether the exchange itself stopped trading: the orchestrator's halt, or every
        instrument halted. Cancel-on-disconnect countdowns do not run meanwhile."""
        return self.halted is not None or all(m.state == "halted" for m in self.views.markets.values())

    def cancel_all_after(self, account: int, seconds: int) -> int:
        """The cancel-on-disconnect countdown: unless called again within `seconds`, every
        live order of the account is canceled. 0 turns it off. Returns the trigger time (ms)."""
        if seconds == 0:
            self._dead_man.pop(account, None)
            return 0
        trigger_ms = _now_ms() + seconds * 1000
        self._dead_man[account] = trigger_ms
        return trigger_ms

    async def run_dead_man_switches(self) -> None:
        """Fires the cancel-all-after countdowns that ran out (a task for the server's life).
        While trading is suspended by the exchange itself the countdowns stand still: users
        whose connections our outage cut do not lose their orders to it."""
        suspended_since = None
        while True:
            await asyncio.sleep(DEAD_MAN_TICK_S)
            now = _now_ms()
            if self.trading_suspended():
                suspended_since = suspended_since or now
                continue
            if suspended_since is not None:
                self._dead_man = {account: t + now - suspended_since for account, t in self._dead_man.items()}
                log.info("trading resumed after %d ms: cancel-all-after countdowns resume", now - suspended_since)
                suspended_since = None
            for account in [a for a, t in self._dead_man.items() if t <= now]:
                del self._dead_man[account]
                log.info("cancel-all-after ran out for account %d: canceling its orders", account)
                try:
                    await self.cancel_all(account)
                except (okx.OkxError, Overloaded):
                    self._dead_man[account] = now  # try again at the next tick
                    log.warning("cancel-all-after for account %d could not run yet; retrying", account)

    # ---- queries ----

    def halt(self, reason: str | None) -> None:
        """Halts trading (new orders and amends refused, cancels taken), or reopens it (None)."""
        self.halted, self.halted_ms = reason, _now_ms()

    def status_events(self, state: str | None) -> list[dict[str, str]]:
        """OKX system/status: planned or ongoing maintenance. Ongoing: a halt of the whole
        exchange (the orchestrator's), and every instrument not in continuous trading."""
        if state not in (None, "ongoing"):
            return []
        ongoing = [] if self.halted is None else [(f"Trading halted: {self.halted}", self.halted_ms)]
        for symbol, market in self.views.markets.items():
            if market.state != "continuous":
                ongoing.append((f"{symbol}: {market.state.replace('_', ' ')}", market.since_ms))
        return [{"title": title, "state": "ongoing", "begin": str(begin_ms), "end": "", "href": "",
                 "serviceType": "5", "system": "unified", "scheDesc": "", "maintType": "1", "env": "1"}
                for title, begin_ms in ongoing]  # fmt: skip

    def auction_json(self, symbol: str) -> dict[str, str]:
        """OKX's call-auction details: the market state, and during the call the indicative
        uncross (equilibrium price, matched size, the imbalance as unmatched size)."""
        market = self.views.markets[symbol]
        at = market.auction
        return {
            "instId": symbol, "eqPx": okx.dec(at.price) if at else "", "matchedSz": okx.dec(at.volume) if at else "",
            "unmatchedSz": okx.dec(at.imbalance) if at else "", "auctionEndTime": "",
            "state": OKX_AUCTION_STATE[market.state], "marketState": market.state, "ts": str(_now_ms()),
        }  # fmt: skip

    def instrument_json(self, symbol: str) -> dict[str, Any]:
        inst = self.instruments[symbol]
        limits = self.config.risk.instruments.get(symbol)
        max_size = okx.dec(limits.max_order_size) if limits and limits.max_order_size else ""
        max_notional = okx.dec(limits.max_order_notional) if limits and limits.max_order_notional else ""
        return {
            "instType": "SPOT", "instId": symbol, "instIdCode": requests.inst_id_code(inst), "uly": "",
            "instFamily": "", "baseCcy": inst.base.name,
            "quoteCcy": inst.quote.name, "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "",
            "stk": "", "listTime": str(self.started_ms), "expTime": "", "lever": "", "tickSz": okx.dec(inst.tick_size),
            "lotSz": okx.dec(inst.lot_size), "minSz": okx.dec(inst.min_size), "ctType": "", "alias": "",
            "state": OKX_INSTRUMENT_STATE[self.views.markets[symbol].state],
            "marketState": self.views.markets[symbol].state,
            "maxLmtSz": max_size, "maxMktSz": max_size, "maxLmtAmt": max_notional, "maxMktAmt": max_notional,
            "maxTwapSz": "", "maxIcebergSz": "", "maxTriggerSz": "", "maxStopSz": "", "ruleType": "normal",
            "category": "1",
        }  # fmt: skip

    @staticmethod
    def currency_json(asset: Asset) -> dict[str, Any]:
        step = okx.dec(Decimal(1).scaleb(-asset.decimals))
        return {
            "ccy": asset.name, "name": asset.name, "chain": f"{asset.name}-{asset.name}", "logoLink": "",
            "canDep": False, "canWd": False, "canInternal": False, "minDep": "", "minWd": "", "maxWd": "",
            "wdTickSz": str(asset.decimals), "wdQuota": "0", "usedWdQuota": "0", "minFee": "0", "maxFee": "0",
            "mainNet": True, "needTag": False, "minDepArrivalConfirm": "0", "minWdUnlockConfirm": "0",
            "depQuotaFixed": "", "usedDepQuotaFixed": "", "depQuoteDailyLayer2": "", "depEstOpenTime": "",
            "wdEstOpenTime": "", "ctAddr": "", "burningFeeRate": "", "stepSize": step,
        }  # fmt: skip

    def balance_json(self, account: int, balances: dict[str, tuple[Decimal, Decimal]], ts_ms: int) -> dict[str, Any]:
        details = []
        for asset, (available, frozen) in balances.items():
            if available == 0 and frozen == 0:
                continue
            total = okx.dec(available + frozen)
            details.append({"ccy": asset, "eq": total, "cashBal": total, "availBal": okx.dec(available),
                            "availEq": okx.dec(available), "frozenBal": okx.dec(frozen),
                            "ordFrozen": okx.dec(frozen),
                            "disEq": total, "eqUsd": "", "uTime": str(ts_ms), "upl": "0", "isoEq": "0",
                            "liab": "0", "crossLiab": "0", "interest": "0", "stgyEq": "0",
                            "spotBal": total})  # fmt: skip
        return {"uTime": str(ts_ms), "totalEq": "", "adjEq": "", "isoEq": "0", "ordFroz": "", "imr": "", "mmr": "",
                "mgnRatio": "", "notionalUsd": "", "upl": "", "details": details}  # fmt: skip

    def balances(self, account: int, assets: list[str] | None = None) -> dict[str, tuple[Decimal, Decimal]]:
        names = self.engine.asset_names() if assets is None else assets
        return {name: self.engine.balance(account, name) for name in names}

    def top_json(self, symbol: str, channel: str, ts_ms: int) -> dict[str, Any]:
        """A `books5` (5 levels) or `bbo-tbt` (1 level) push."""
        feed = self.book_feed(symbol)
        asks, bids = feed.top(5 if channel == "books5" else 1)
        return {"asks": asks, "bids": bids, "instId": symbol, "ts": str(ts_ms), "seqId": feed.seq_id}

    def ticker_json(self, symbol: str) -> dict[str, str]:
        best = self.engine.book(symbol, 1)
        asks = [(okx.dec(p), okx.dec(s)) for p, s in best["asks"]]
        bids = [(okx.dec(p), okx.dec(s)) for p, s in best["bids"]]
        now = _now_ms()
        open24, high24, low24, vol24, vol_ccy24 = self.views.candles[symbol].stats_24h(now)
        last = self.views.last_price.get(symbol)
        open24, high24, low24 = (last if v is None else v for v in (open24, high24, low24))
        return {
            "instType": "SPOT", "instId": symbol, "last": okx.dec(last),
            "lastSz": okx.dec(self.views.last_size.get(symbol)),
            "askPx": asks[0][0] if asks else "", "askSz": asks[0][1] if asks else "",
            "bidPx": bids[0][0] if bids else "", "bidSz": bids[0][1] if bids else "",
            "open24h": okx.dec(open24), "high24h": okx.dec(high24), "low24h": okx.dec(low24),
            "volCcy24h": okx.dec(vol_ccy24), "vol24h": okx.dec(vol24),
            "sodUtc0": "", "sodUtc8": "", "ts": str(now),
        }  # fmt: skip


def start_op(exchange: Exchange, account: int, op: str, item: Any) -> Answer | Pending:
    """Starts one order-entry step (`place`, `cancel`, `amend`): OKX's per-order answer at once,
    or the step on its way. A bad item or a refusal is its own `sCode`, not an exception. (A
    `place` item may be its intent already, read by the fast path from the request's JSON.)"""
    try:
        if op == "place":
            placing = item if isinstance(item, requests.PlaceIntent) else exchange.read_place(item)
            return exchange.place(account, placing)
        if op == "cancel":
            return exchange.cancel(account, requests.order_ref(item, exchange.instruments))
        intent = requests.amend(item, exchange.instruments)
        step = exchange.amend(account, intent)
    except (okx.OkxError, Overloaded) as error:
        return refusal_json(error)
    if isinstance(step, Pending):
        step.answer_of = functools.partial(_amended, intent.request_id, step.answer_of)
        return step
    return _amend_json(intent.request_id, step)


def _amended(request_id: str, answer_of: Callable[[list[Event]], Answer], events: list[Event]) -> Answer:
    return _amend_json(request_id, answer_of(events))


def _amend_json(request_id: str, step_answer: Answer) -> Answer:
    """An amend's answer: OKX's amend fields (no tag; the request id)."""
    del step_answer["tag"]
    step_answer["reqId"] = request_id
    return step_answer


def _order_changed(order_id: int, cid: str, events: list[Event]) -> Answer:
    first = events[0]
    code, msg = okx.reason_error(first.reason or "") if first.kind == "rejected" else ("0", "")
    return answer(code, msg, str(order_id), cid, "", first.ts_ns // 1_000_000)


async def run_ops(exchange: Exchange, account: int, op: str, items: list[Any]) -> list[dict[str, str]]:
    """Runs a request's order-entry steps; all are started (queued, in order) before any is
    awaited, so that a batch shares one journal sync."""
    steps = [start_op(exchange, account, op, item) for item in items]
    return [await step.answered() if isinstance(step, Pending) else step for step in steps]
