"""The Python face of the Rust engine: decimals, names and defaults in, events out.

`Engine()` is in memory; `Engine(data_dir=PATH)` is durable (journal, snapshots, recovery:
see `Engine`).

`Engine` holds one `_core.Engine` handle and no trading state of its own; it keeps only the
static configuration it needs to convert decimals (tick and lot sizes, asset decimals).
Input that cannot become a command (a price off the tick, a size off the lot or below the
minimum, an unknown name) raises `ValueError` and consumes no sequence number; everything
else is a command whose outcome — accepted or rejected with a reason — comes back as events.

Three ways in, from convenient to fast:
- `place`/`cancel`/`amend`/`cancel_all`/`deposit`: decimals and names, a list of `Event`.
- `place_ticks`/`cancel_ticks`/`amend_ticks`/`deposit_units`: integers, one integer back; events queue until
  `take_events()` (for hot loops: no Python frame, no objects per order).
- `submit(commands)`: a numpy array of `wire.COMMAND_DTYPE` in, an array of
  `wire.EVENT_DTYPE` out, one boundary crossing per batch with the GIL released.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from pyexchange import _core, wire

DEFAULT_ASSET_DECIMALS = 8
DEFAULT_MARKET_PROTECTION_BPS = 500
DEFAULT_STP = "cancel_maker"
DEFAULT_AUCTION_BAND_BPS = 1000
_U64_LIMIT = 1 << 64
_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

Number = str | int | Decimal


def _decimal(value: Number | float, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{what} must be a decimal string or number, not {value!r}")
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    return number


def _steps(value: Number, step: Decimal, what: str, *, zero_ok: bool = False) -> int:
    """`value / step` as an integer; a value off the step, negative or (unless `zero_ok`)
    zero is an error."""
    number = _decimal(value, what)
    if number < 0 or (number == 0 and not zero_ok):
        raise ValueError(f"{what} {value} must be positive")
    if number / step >= _U64_LIMIT:
        raise ValueError(f"{what} {value} is too large")
    steps, rest = divmod(number, step)
    if rest != 0:
        raise ValueError(f"{what} {value} is not a multiple of {step}")
    return int(steps)


def _id(value: int, what: str) -> int:
    """An account or order id: an integer in 0..2**64."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64_LIMIT:
        raise ValueError(f"{what} must be an integer from 0 to 2**64 - 1, not {value!r}")
    return value


def _plain(value: Decimal) -> Decimal:
    """`value` without trailing zeros, never in exponent form (0.00100000 → 0.001, 10 → 10)."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal  # type: ignore[operator]


def _whole(value: Decimal, what: str) -> int:
    if value != value.to_integral_value() or value < 1:
        raise ValueError(f"{what} must be a whole number of minor units, got {value}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    asset_id: int
    decimals: int

    def amount(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.decimals)

    def units(self, amount: Number) -> int:
        """`amount` in minor units; ValueError for more decimals than the asset has."""
        return _steps(amount, Decimal(1).scaleb(-self.decimals), f"{self.name} amount", zero_ok=True)


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    instrument_id: int
    base: Asset
    quote: Asset
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal

    def price(self, ticks: int) -> Decimal:
        return ticks * self.tick_size

    def size(self, lots: int) -> Decimal:
        return lots * self.lot_size


_SIDES, _ORDER_TYPES, _STP_MODES, _ORDER_STATES = wire.SIDES, wire.ORDER_TYPES, wire.STP_MODES, _core.ORDER_STATES


# One event of a command; fields that do not apply to its kind are None (`Event.FIELDS`). Made
# in Rust from the records, its fields turned into names and decimals when read.
Event = _core.Event


@dataclass(frozen=True, slots=True)
class AuctionFigures:
    """The uncross a call auction's book would have now: its price (None when nothing would
    execute), the volume that would trade there, and the imbalance left over on
    `imbalance_side` (None when even)."""

    price: Decimal | None
    volume: Decimal
    imbalance: Decimal
    imbalance_side: str | None


class Order(NamedTuple):
    """An order as the engine has it. A named tuple rather than a frozen dataclass: as immutable, and
    built in a third of the time (the gateway reads one for every order it places)."""

    order_id: int
    account: int
    instrument: str
    side: str
    order_type: str
    stp: str
    state: str
    price: Decimal
    size: Decimal
    filled_size: Decimal
    average_price: Decimal | None
    client_order_id: str | None


# An order as `_core` gives it: (id, account, instrument id, side, order type, stp and state codes,
# price ticks, size lots, filled lots, filled price-lots, client order id).
OrderFields = tuple[int, int, int, int, int, int, int, int, int, int, int, bytes]
# An `Order` made from its fields' tuple: its class's own `__new__` is a Python function.
_new_order = tuple.__new__


def order_of_fields(inst: Instrument, found: OrderFields) -> Order:
    """An order of `inst` from its fields as `_core` gives them."""
    (oid, acct, _instrument_id, side, order_type, stp, state, price_ticks, size_lots,
     filled_lots, filled_price_lots, cl_id) = found  # fmt: skip
    lot = inst.lot_size
    return _new_order(Order, (
        oid, acct, inst.symbol, _SIDES[side], _ORDER_TYPES[order_type], _STP_MODES[stp], _ORDER_STATES[state],
        price_ticks * inst.tick_size, size_lots * lot, filled_lots * lot,
        _average_price(inst, filled_price_lots, filled_lots) if filled_lots else None, cl_id.decode() or None,
    ))  # fmt: skip


def _average_price(inst: Instrument, filled_price_lots: int, filled_lots: int) -> Decimal:
    """The average price of `filled_lots` (not 0) filled for `filled_price_lots` tick-lots."""
    if filled_price_lots % filled_lots == 0:  # one price, or prices averaging to a tick: no fraction
        return _plain(filled_price_lots // filled_lots * inst.tick_size)
    exact = Fraction(filled_price_lots, filled_lots) * Fraction(inst.tick_size)
    if (exact.denominator & (exact.denominator - 1)) == 0 or 10**30 % exact.denominator == 0:
        return Decimal(exact.numerator) / Decimal(exact.denominator)
    return (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(inst.tick_size.scaleb(-8))


def _in_memory_only(name: str) -> Callable[..., Any]:
    def refuse(*_args: object, **_kwargs: object) -> Any:
        raise ValueError(
            f"{name} is for the in-memory engine; a durable engine answers each command once it is "
            "fsync'd, so hot loops use submit() with a batch instead"
        )

    return refuse


class Engine:
    """A trading engine: instruments, order books, matching and account ledger.

    `Engine()` lives in memory. `Engine(data_dir=PATH)` is durable: it opens or recovers the
    data directory (newest valid snapshot plus the journal after it), and each command returns
    only once it is journaled and fsync'd, so an answer is never lost by a crash. If the
    journal cannot write (disk full, I/O error) a command raises `JournalUnavailable` (nothing
    applied) or, if it was already applied, `OutcomeUnknown` (held, written when the disk has
    room; a place retried with the same `client_order_id` returns its original outcome).
    """

    __slots__ = (
        "_asset_by_id", "_assets", "_clock", "_core", "_decoder", "_instrument_by_id", "_instruments",
        "amend_ticks", "cancel_ticks", "deposit_units", "place_ticks",
    )  # fmt: skip

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        no_fsync_unsafe_benchmark_only: bool = False,
        snapshot_every_commands: int = 1_000_000,
        group_commit_window_us: int = 0,
        segment_bytes: int = 64 << 20,
        retain_journal: bool = False,
        zone: Mapping[str, Any] | None = None,
    ) -> None:
        """`clock` stamps commands (nanoseconds); the engine itself never reads a clock.

        For a durable engine: `no_fsync_unsafe_benchmark_only=True` skips every fsync, so a
        crash loses acknowledged commands (the journal warns on stderr when it opens); a snapshot is taken every
        `snapshot_every_commands` commands (0: only by `snapshot()`); the journal's flusher may
        wait `group_commit_window_us` to gather more commands into one fsync; a journal segment
        file is closed and a new one started past `segment_bytes`; segments older than the oldest
        snapshot kept are removed unless `retain_journal` (the whole history stays readable).

        `zone` makes it one zone's replica of a Raft group (`_core.ZoneEngine`'s keyword
        arguments: zone, listen_addr, members, dial, bootstrap, timings, follow): commands are
        proposed on the leader and answered once a majority of zones has them fsync'd and this
        replica applied them (`NotLeader` elsewhere); queries read this zone's replica.
        """
        self._clock = clock
        self._assets: dict[str, Asset] = {}
        self._asset_by_id: dict[int, Asset] = {}
        self._instruments: dict[str, Instrument] = {}
        self._instrument_by_id: dict[int, Instrument] = {}
        self._decoder = _core.EventDecoder(Decimal, wire.EVENT_KINDS, wire.REASONS, wire.SIDES, wire.MARKET_STATES)
        self._core: _core.Engine | _core.DurableEngine | _core.ZoneEngine
        if zone is not None:
            if data_dir is None:
                raise ValueError("a zone's engine needs a data_dir")
            fsync_off = no_fsync_unsafe_benchmark_only
            self._core = _core.ZoneEngine(
                data_dir=os.fspath(data_dir), no_fsync_unsafe_benchmark_only=fsync_off, **zone
            )
            self.place_ticks = _in_memory_only("place_ticks")
            self.cancel_ticks = _in_memory_only("cancel_ticks")
            self.amend_ticks = _in_memory_only("amend_ticks")
            self.deposit_units = _in_memory_only("deposit_units")
            self.refresh_configuration()
            return
        if data_dir is None:
            self._core = core = _core.Engine()
            # The lean calls are the compiled methods themselves: no Python frame per order.
            self.place_ticks = core.place_ticks
            self.cancel_ticks = core.cancel_ticks
            self.amend_ticks = core.amend_ticks
            self.deposit_units = core.deposit_units
            return
        self._core = _core.DurableEngine(
            os.fspath(data_dir), no_fsync_unsafe_benchmark_only=no_fsync_unsafe_benchmark_only,
            snapshot_every_commands=snapshot_every_commands,
            group_commit_window_us=group_commit_window_us, segment_bytes=segment_bytes,
            retain_journal=retain_journal,
        )  # fmt: skip
        self.place_ticks = _in_memory_only("place_ticks")
        self.cancel_ticks = _in_memory_only("cancel_ticks")
        self.amend_ticks = _in_memory_only("amend_ticks")
        self.deposit_units = _in_memory_only("deposit_units")
        self.refresh_configuration()

    def refresh_configuration(self) -> None:
        """Learns the assets and instruments the engine holds that this face does not know yet:
        those a recovered engine holds, or a zone's replica received from the leader."""
        core = self._core
        for asset_id, (name, decimals) in enumerate(core.assets()):
            if asset_id in self._asset_by_id:
                continue
            self._learn_asset(Asset(name, asset_id, decimals))
        for instrument_id, spec in enumerate(core.instruments()):
            if instrument_id in self._instrument_by_id:
                continue
            symbol, base_id, quote_id, lot_units, tick_lot_units, min_lots = spec[:6]
            base, quote = self._asset_by_id[base_id], self._asset_by_id[quote_id]
            lot = _plain(Decimal(lot_units).scaleb(-base.decimals))
            tick = _plain(Decimal(tick_lot_units).scaleb(-quote.decimals) / lot)
            self._learn_instrument(Instrument(symbol, instrument_id, base, quote, tick, lot, min_lots * lot))

    def _learn_asset(self, asset: Asset) -> None:
        self._assets[asset.name] = self._asset_by_id[asset.asset_id] = asset
        self._decoder.add_asset(asset.asset_id, asset.name, asset.decimals)

    def _learn_instrument(self, inst: Instrument) -> None:
        self._instruments[inst.symbol] = self._instrument_by_id[inst.instrument_id] = inst
        decoder = self._decoder
        decoder.add_instrument(inst.instrument_id, inst.symbol, inst.tick_size, inst.lot_size, inst.quote.decimals)

    def _durable(self) -> _core.DurableEngine:
        if not isinstance(self._core, _core.DurableEngine):
            raise ValueError("this engine is in memory; durable operations need Engine(data_dir=...)")
        return self._core

    def _ts_ns(self, ts_ns: int | None) -> int:
        return max(self._clock() if ts_ns is None else ts_ns, self._core.ts_ns)

    def _events(self, records: bytes) -> list[Event]:
        return self._decoder.decode(records)

    # ---- configuration ----

    def add_asset(self, asset: str, decimals: int = DEFAULT_ASSET_DECIMALS, *, ts_ns: int | None = None) -> Asset:
        if asset in self._assets:
            raise ValueError(f"asset {asset} exists")
        asset_id = self._core.add_asset(self._ts_ns(ts_ns), asset, decimals)
        spec = Asset(asset, asset_id, decimals)
        self._learn_asset(spec)
        return spec

    def add_instrument(
        self,
        symbol: str,
        *,
        tick_size: Number,
        lot_size: Number,
        min_size: Number,
        maker_fee_bps: int = 0,
        taker_fee_bps: int = 0,
        market_protection_bps: int = DEFAULT_MARKET_PROTECTION_BPS,
        ts_ns: int | None = None,
    ) -> Instrument:
        """Adds a spot instrument `BASE-QUOTE`; unknown assets get 8 decimals."""
        base_name, sep, quote_name = symbol.partition("-")
        if not sep or not base_name or not quote_name or "-" in quote_name:
            raise ValueError(f"instrument symbol {symbol!r} must look like BASE-QUOTE")
        if symbol in self._instruments:
            raise ValueError(f"instrument {symbol} exists")
        tick, lot = _decimal(tick_size, "tick_size"), _decimal(lot_size, "lot_size")
        if tick <= 0 or lot <= 0:
            raise ValueError("tick_size and lot_size must be positive")
        min_lots = _steps(min_size, lot, "min_size")
        for name in (base_name, quote_name):
            if name not in self._assets:
                self.add_asset(name, ts_ns=ts_ns)
        base, quote = self._assets[base_name], self._assets[quote_name]
        lot_units = _whole(lot.scaleb(base.decimals), f"lot_size in {base.name} units")
        tick_lot_units = _whole((tick * lot).scaleb(quote.decimals), f"tick_size * lot_size in {quote.name} units")
        instrument_id = self._core.add_instrument(
            self._ts_ns(ts_ns), symbol, base.asset_id, quote.asset_id, lot_units, tick_lot_units,
            min_lots, maker_fee_bps, taker_fee_bps, market_protection_bps,
        )  # fmt: skip
        inst = Instrument(symbol, instrument_id, base, quote, tick, lot, min_lots * lot)
        self._learn_instrument(inst)
        return inst

    def instrument(self, symbol: str) -> Instrument:
        try:
            return self._instruments[symbol]
        except KeyError:
            raise ValueError(f"unknown instrument {symbol!r}") from None

    def asset(self, name: str) -> Asset:
        try:
            return self._assets[name]
        except KeyError:
            raise ValueError(f"unknown asset {name!r}") from None

    def instrument_id(self, symbol: str) -> int:
        return self.instrument(symbol).instrument_id

    def instruments(self) -> list[Instrument]:
        """Every instrument, in the order they were added."""
        return list(self._instruments.values())

    def assets(self) -> list[Asset]:
        """Every asset, in the order they were added."""
        return list(self._assets.values())

    def asset_names(self) -> list[str]:
        return list(self._assets)

    # ---- commands ----

    def deposit(self, account: int, asset: str, amount: Number, *, ts_ns: int | None = None) -> list[Event]:
        account = _id(account, "account")
        spec = self.asset(asset)
        # A zero amount reaches the engine, which rejects it (`ledger_amount_invalid`).
        return self._events(self._core.deposit(self._ts_ns(ts_ns), account, spec.asset_id, spec.units(amount)))

    def place(
        self,
        account: int,
        instrument: str,
        side: str,
        order_type: str,
        size: Number,
        price: Number | None = None,
        client_order_id: str | None = None,
        stp: str = DEFAULT_STP,
        *,
        ts_ns: int | None = None,
    ) -> list[Event]:
        account = _id(account, "account")
        inst = self.instrument(instrument)
        side_code = _code(wire.SIDES, side, "side")
        type_code = _code(wire.ORDER_TYPES, order_type, "order_type")
        stp_code = _code(wire.STP_MODES, stp, "stp")
        size_lots = _steps(size, inst.lot_size, "size")
        if size_lots * inst.lot_size < inst.min_size:
            raise ValueError(f"size {size} is below the minimum {inst.min_size} of {instrument}")
        if order_type == "market":
            price_ticks = 0
        elif price is None:
            raise ValueError(f"a {order_type} order needs a price")
        else:
            price_ticks = _steps(price, inst.tick_size, "price")
        cl_id = _client_order_id(client_order_id)
        records = self._core.place(
            self._ts_ns(ts_ns), account, inst.instrument_id, side_code, type_code, stp_code,
            price_ticks, size_lots, cl_id,
        )  # fmt: skip
        return self._events(records)

    def cancel(self, account: int, instrument: str, order_id: int, *, ts_ns: int | None = None) -> list[Event]:
        account, order_id = _id(account, "account"), _id(order_id, "order_id")
        inst = self.instrument(instrument)
        return self._events(self._core.cancel(self._ts_ns(ts_ns), account, inst.instrument_id, order_id))

    def amend(
        self,
        account: int,
        instrument: str,
        order_id: int,
        new_size: Number | None = None,
        new_price: Number | None = None,
        *,
        ts_ns: int | None = None,
    ) -> list[Event]:
        """Changes a resting order; `new_size` is the new total size, the filled part included."""
        account, order_id = _id(account, "account"), _id(order_id, "order_id")
        inst = self.instrument(instrument)
        size_lots = 0 if new_size is None else _steps(new_size, inst.lot_size, "new_size")
        if new_size is not None and size_lots * inst.lot_size < inst.min_size:
            raise ValueError(f"new_size {new_size} is below the minimum {inst.min_size} of {instrument}")
        price_ticks = 0 if new_price is None else _steps(new_price, inst.tick_size, "new_price")
        records = self._core.amend(self._ts_ns(ts_ns), account, inst.instrument_id, order_id, price_ticks, size_lots)
        return self._events(records)

    def cancel_all(self, account: int, instrument: str | None = None, *, ts_ns: int | None = None) -> list[Event]:
        """The kill switch: cancels every live order of the account (in one instrument or all)."""
        account = _id(account, "account")
        instrument_id = None if instrument is None else self.instrument(instrument).instrument_id
        return self._events(self._core.cancel_all(self._ts_ns(ts_ns), account, instrument_id))

    def set_market_state(
        self,
        instrument: str,
        state: str,
        *,
        auction_band_bps: int = DEFAULT_AUCTION_BAND_BPS,
        ts_ns: int | None = None,
    ) -> list[Event]:
        """Moves an instrument to a market state (`wire.MARKET_STATES`). Entering
        `continuous` from a call auction's crossed book uncrosses it at one price, if that
        price lies within `auction_band_bps` of the reference price (the last trade);
        otherwise the auction goes on (a `market_state` event with reason
        `auction_price_outside_band`)."""
        inst = self.instrument(instrument)
        if state not in wire.MARKET_STATES:
            raise ValueError(f"market state {state!r} is not one of {', '.join(wire.MARKET_STATES)}")
        if isinstance(auction_band_bps, bool) or not isinstance(auction_band_bps, int):
            raise ValueError(f"auction_band_bps must be an integer, not {auction_band_bps!r}")
        if not 0 < auction_band_bps <= 10_000:
            raise ValueError(f"auction_band_bps {auction_band_bps} must be from 1 to 10000")
        code = wire.MARKET_STATES.index(state)
        return self._events(self._core.set_market_state(self._ts_ns(ts_ns), inst.instrument_id, code, auction_band_bps))

    def submit(self, commands: np.ndarray[Any, Any] | bytes) -> np.ndarray[Any, Any]:
        """Applies a batch of `wire.COMMAND_DTYPE` records (or their bytes, `wire.COMMAND_STRUCT`
        packed); returns `wire.EVENT_DTYPE` records.

        The whole batch is checked before any of it is applied: a bad record raises
        `ValueError` and applies nothing.
        """
        events = self._core.submit(_command_buffer(commands))
        return np.frombuffer(memoryview(events), dtype=wire.EVENT_DTYPE)  # a view, no copy

    def submit_unsynced(self, commands: np.ndarray[Any, Any] | bytes) -> tuple[np.ndarray[Any, Any], int]:
        """`submit` without waiting for the journal's sync, for a caller that must not block (an
        event loop): (events, the batch's last seq). Until `durable_seq` reaches that seq, none
        of the events may reach anyone (`wake_when_durable`). In memory a batch is final at once."""
        if not isinstance(self._core, _core.DurableEngine):
            return self.submit(commands), self.seq
        events, last_seq = self._core.submit_unsynced(_command_buffer(commands))
        return np.frombuffer(memoryview(events), dtype=wire.EVENT_DTYPE), last_seq

    def snapshot_due_within(self, commands: int) -> bool:
        """Whether `submit_unsynced` of that many commands now would start a snapshot, which
        copies the engine before it returns if the shadow engine is out of step (durable
        engines; in memory, never)."""
        if not isinstance(self._core, _core.DurableEngine):
            return False
        return self._core.snapshot_due_within(commands)

    @property
    def is_durable(self) -> bool:
        """Whether commands go through a journal here (`Engine(data_dir=...)`, not a zone's replica)."""
        return isinstance(self._core, _core.DurableEngine)

    @property
    def durable_seq(self) -> int:
        """The last seq that may be published: synced by the journal (in memory: the last applied)."""
        if not isinstance(self._core, _core.DurableEngine):
            return self.seq
        return self._core.durable_seq

    def durable_wake_fd(self) -> int:
        """A non-blocking eventfd, readable once `durable_seq` has reached a seq given to
        `wake_when_durable` (or the journal stopped short of it). Durable engines only."""
        return self._durable().durable_wake_fd()

    def wake_when_durable(self, seq: int) -> None:
        self._durable().wake_when_durable(seq)

    def take_events(self) -> np.ndarray[Any, Any]:
        """The events queued by the lean calls, as `wire.EVENT_DTYPE` records."""
        if not isinstance(self._core, _core.Engine):
            return np.empty(0, dtype=wire.EVENT_DTYPE)  # durable engines have no lean calls
        return np.frombuffer(memoryview(self._core.take_events()), dtype=wire.EVENT_DTYPE)

    def decode_events(self, events: np.ndarray[Any, Any] | bytes) -> list[Event]:
        """Event objects (with decimals) for event records from `submit` or `take_events` (or
        their bytes)."""
        return self._events(events if isinstance(events, bytes) else np.ascontiguousarray(events).tobytes())

    def decode_batch(self, events: bytes, first_seq: int, commands: int) -> list[list[Event]]:
        """`decode_events` of a batch's event records, a list for each of its `commands`
        (numbered from `first_seq`)."""
        return self._decoder.decode_batch(events, first_seq, commands)

    # ---- queries ----

    def balance(self, account: int, asset: str) -> tuple[Decimal, Decimal]:
        """(available, frozen) of an account in an asset; zero for an unknown account."""
        account = _id(account, "account")
        spec = self.asset(asset)
        available, frozen = self._core.balance(account, spec.asset_id)
        return spec.amount(available), spec.amount(frozen)

    def book(self, instrument: str, depth: int = 5) -> dict[str, list[tuple[Decimal, Decimal]]]:
        """Aggregated levels, best first: bids highest first, asks lowest first."""
        inst = self.instrument(instrument)
        if depth < 0:
            raise ValueError("depth must be >= 0")
        bids, asks = self._core.book(inst.instrument_id, depth)
        return {
            "bids": [(inst.price(p), inst.size(s)) for p, s in bids],
            "asks": [(inst.price(p), inst.size(s)) for p, s in asks],
        }

    def market_state(self, instrument: str) -> str:
        """The instrument's market state (`wire.MARKET_STATES`)."""
        code = self._core.market_state(self.instrument(instrument).instrument_id)
        assert code is not None, "known instruments have a state"
        return wire.MARKET_STATES[code]

    def auction(self, instrument: str) -> AuctionFigures:
        """The indicative uncross of the instrument's book: what a move to continuous trading
        would execute now (during a call auction, the figures published after every change)."""
        inst = self.instrument(instrument)
        figures = self._core.auction(inst.instrument_id)
        if figures is None:
            return AuctionFigures(price=None, volume=Decimal(0), imbalance=Decimal(0), imbalance_side=None)
        price_ticks, volume_lots, imbalance_lots, side = figures
        return AuctionFigures(
            price=inst.price(price_ticks),
            volume=inst.size(volume_lots),
            imbalance=inst.size(imbalance_lots),
            imbalance_side=None if side is None else wire.SIDES[side],
        )

    def order(self, account: int, order_id: int) -> Order | None:
        """An order of this account, live or recently closed; None if unknown."""
        found = self._core.order(_id(account, "account"), _id(order_id, "order_id"))
        return None if found is None else self._order(found)

    def orders(self, keys: list[tuple[int, int]]) -> list[Order | None]:
        """`order` of each (account, order_id), read in one call (the gateway reads every
        order a batch touched)."""
        try:
            found = self._core.orders(keys)
        except (OverflowError, TypeError):
            for account, order_id in keys:
                _id(account, "account"), _id(order_id, "order_id")  # raises ValueError, naming the bad one
            raise
        order = self._order
        return [None if each is None else order(each) for each in found]

    def _order(self, found: OrderFields) -> Order:
        return order_of_fields(self._instrument_by_id[found[2]], found)

    def read_batch(self, events: bytes) -> tuple[_core.TouchedOrders, list[int], list[str], bool]:
        """What the gateway reads right after a batch is applied, from its event records
        (`wire.EVENT_STRUCT` packed): the orders they name as the engine has them now (for
        `gateway.views.Views.apply`), the accounts they concern, the instruments whose book or
        trades they may have changed, and whether any event is public (a fill, an uncross, a
        market event)."""
        touched, accounts, instrument_ids, public = self._core.read_batch(events)
        return touched, accounts, [self._instrument_by_id[i].symbol for i in instrument_ids], public

    def preallocate(self, live_orders: int = 1 << 16) -> None:
        """Allocates and touches the engine's memory for `live_orders` live orders and for all
        retained closed orders now (about 100 MB; 390 MB for 1,000,000), so that no later command
        waits on the allocator or a page fault — what a deployment does at start. Changes no state."""
        if live_orders < 0:
            raise ValueError("live_orders must be >= 0")
        if not isinstance(self._core, _core.Engine):
            raise ValueError("preallocate is for the in-memory engine")
        self._core.preallocate(live_orders)

    @property
    def seq(self) -> int:
        """Sequence number of the last command applied."""
        return int(self._core.seq)

    def state_hash(self) -> str:
        """Hex SHA-256 of the full canonical state; equal for replicas of the same commands."""
        return str(self._core.state_hash())

    def check_invariants(self) -> None:
        """Raises AssertionError naming the broken invariant, if any."""
        self._core.check_invariants()

    # ---- durability (Engine(data_dir=...) only) ----

    def recovery(self) -> dict[str, Any]:
        """What opening the data directory found: `snapshot_seq`, `snapshot_path`,
        `snapshots_skipped` [(path, reason)], `replayed` (journal records applied),
        `tail_repaired` (file, offset, bytes dropped, reason) or None, `recovery_ms`."""
        found = dict(self._durable().recovery())
        if found["snapshot_path"] is not None:
            found["snapshot_path"] = os.fspath(found["snapshot_path"])
        return found

    def snapshot(self) -> tuple[int, str]:
        """Writes a snapshot of the current state now; returns (seq, path) once it is durable."""
        seq, path = self._durable().snapshot()
        return seq, os.fspath(path)

    def journal_status(self) -> dict[str, Any]:
        """`failing` (None, or why the journal cannot write), `durable_seq`, `syncs`, … ."""
        return dict(self._durable().journal_status())

    def sync_window(self, seconds: int) -> dict[str, Any]:
        """The journal's group commits of the last `seconds` (of the 65,536 newest): how many, the
        records they held, the p50, p99 and max of their write-and-sync times (µs; None without
        one), and the longest of each second (`sync_us_max_by_s`, oldest first)."""
        return self._durable().sync_window(seconds)

    def durable_position(self) -> tuple[str, int]:
        """(segment file, byte offset) up to which the journal is fsync'd."""
        path, offset = self._durable().durable_position()
        return os.fspath(path), offset

    # ---- replication (Engine(data_dir, zone=...) only) ----

    def _zone(self) -> _core.ZoneEngine:
        if not isinstance(self._core, _core.ZoneEngine):
            raise ValueError("this engine is not a zone's replica; that needs Engine(data_dir, zone=...)")
        return self._core

    def propose(self, commands: np.ndarray[Any, Any] | bytes) -> tuple[int, int, np.ndarray[Any, Any]]:
        """`submit` through Raft: (log index, first command's seq, `wire.EVENT_DTYPE` events)."""
        index, first_seq, events = self._zone().propose(_command_buffer(commands))
        return index, first_seq, np.frombuffer(events, dtype=wire.EVENT_DTYPE)

    def zone_status(self) -> dict[str, Any]:
        """This zone's view of its Raft group (see `_core.ZoneEngine.status`)."""
        return dict(self._zone().status())

    def transfer_leader(self, to: int) -> None:
        """Asks the leader to hand leadership to zone `to`; returns at once."""
        self._zone().transfer_leader(to)

    def take_applied(self, timeout_ms: int) -> list[tuple[Any, ...]]:
        """What this replica applied since the last call (see `_core.ZoneEngine.take_applied`)."""
        return self._zone().take_applied(timeout_ms)

    def wait_applied(self, index: int, timeout_ms: int) -> bool:
        return self._zone().wait_applied(index, timeout_ms)

    def close(self) -> None:
        """Syncs and closes a durable engine's journal, or stops a zone's replica (nothing to
        do in memory)."""
        if isinstance(self._core, _core.DurableEngine | _core.ZoneEngine):
            self._core.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _command_buffer(commands: np.ndarray[Any, Any] | bytes) -> memoryview | bytes:
    """The bytes of a batch of `wire.COMMAND_DTYPE` records, as the core reads them in place
    (bytes as they are: the core refuses a length that is not a whole number of records)."""
    if isinstance(commands, bytes):
        return commands
    if commands.dtype != wire.COMMAND_DTYPE:
        raise ValueError(f"commands must have dtype wire.COMMAND_DTYPE, not {commands.dtype}")
    return np.ascontiguousarray(commands).view(np.uint8).data


def _code(names: tuple[str, ...], value: str, what: str) -> int:
    try:
        return names.index(value)
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; one of {', '.join(names)}") from None


def _client_order_id(value: str | None) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str) or not _CLIENT_ORDER_ID.fullmatch(value):
        raise ValueError(f"client_order_id {value!r} must be 1 to 32 ASCII letters, digits, '-' or '_'")
    return value.encode()
