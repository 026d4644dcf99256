"""The compiled engine (`core_rs`, PyO3). Integers in, integers out; `pyexchange.Engine`
is the convenient face. Event records are `wire.EVENT_DTYPE` bytes (88 bytes each)."""

from typing import final

from typing_extensions import Buffer

__all__ = [
    "COMMAND_RECORD_BYTES",
    "EVENT_KINDS",
    "EVENT_RECORD_BYTES",
    "ORDER_STATES",
    "ORDER_TYPES",
    "REASONS",
    "SIDES",
    "STP_MODES",
    "Engine",
    "EventBuffer",
]

COMMAND_RECORD_BYTES: int
EVENT_RECORD_BYTES: int
SIDES: list[str]
ORDER_TYPES: list[str]
STP_MODES: list[str]
EVENT_KINDS: list[str]
REASONS: list[str]
ORDER_STATES: list[str]

@final
class EventBuffer(Buffer):
    """Event records owned by the engine, viewed without a copy through the buffer protocol."""

    def __len__(self) -> int:
        """Number of events."""

@final
class Engine:
    """One deterministic engine: instruments, books, orders and the ledger."""

    def __init__(self) -> None: ...
    @property
    def seq(self) -> int:
        """Sequence number of the last command applied."""
    @property
    def ts_ns(self) -> int:
        """Timestamp of the last command applied."""
    def add_asset(self, ts_ns: int, name: str, decimals: int) -> int:
        """Adds an asset; returns its id. Raises ValueError for a bad or duplicate spec."""
    def add_instrument(
        self,
        ts_ns: int,
        symbol: str,
        base_asset: int,
        quote_asset: int,
        lot_units: int,
        quote_units_per_tick_lot: int,
        min_size_lots: int,
        maker_fee_bps: int,
        taker_fee_bps: int,
        market_protection_bps: int,
    ) -> int:
        """Adds a spot instrument in integer units; returns its id."""
    def deposit(self, ts_ns: int, account: int, asset: int, amount_units: int) -> bytes: ...
    def place(
        self,
        ts_ns: int,
        account: int,
        instrument: int,
        side: int,
        order_type: int,
        stp: int,
        price_ticks: int,
        size_lots: int,
        client_order_id: bytes,
    ) -> bytes:
        """Places an order; returns its event records."""
    def cancel(self, ts_ns: int, account: int, instrument: int, order_id: int) -> bytes: ...
    def amend(
        self, ts_ns: int, account: int, instrument: int, order_id: int, new_price_ticks: int, new_size_lots: int
    ) -> bytes:
        """Amends a resting order (0 = unchanged; size is the new total size)."""
    def cancel_all(self, ts_ns: int, account: int, instrument: int | None = None) -> bytes: ...
    def place_ticks(
        self, account: int, instrument: int, side: int, order_type: int, price_ticks: int, size_lots: int, stp: int = 0
    ) -> int:
        """Lean place at the last timestamp: the order id, or 0 if rejected. Events queue."""
    def preallocate(self, live_orders: int) -> None:
        """Allocates and touches memory for live and retained closed orders now."""
    def deposit_units(self, account: int, asset: int, amount_units: int) -> bool:
        """Lean deposit: whether it was credited. Events queue."""
    def cancel_ticks(self, account: int, instrument: int, order_id: int) -> bool:
        """Lean cancel: whether it canceled. Events queue."""
    def amend_ticks(
        self, account: int, instrument: int, order_id: int, new_price_ticks: int, new_size_lots: int
    ) -> bool:
        """Lean amend: whether it was accepted. Events queue."""
    def take_events(self) -> EventBuffer:
        """The queued event records of the lean calls; empties the queue."""
    def submit(self, commands: Buffer) -> EventBuffer:
        """Applies a batch of 80-byte command records with the GIL released; returns event
        records. A bad record raises ValueError and applies nothing. The engine reads the
        buffer in place: do not write to it until submit returns."""
    def balance(self, account: int, asset: int) -> tuple[int, int]:
        """(available, frozen) in minor units."""
    def book(self, instrument: int, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids, asks) as (price_ticks, size_lots), best first."""
    def order(
        self, account: int, order_id: int
    ) -> tuple[int, int, int, int, int, int, int, int, int, int, int, bytes] | None:
        """(id, account, instrument, side, order_type, stp, state, price_ticks, size_lots,
        filled_lots, filled_price_lots, client_order_id), or None."""
    def instrument_id(self, symbol: str) -> int | None: ...
    def asset_id(self, name: str) -> int | None: ...
    def live_orders(self) -> int: ...
    def state_hash(self) -> str:
        """Hex SHA-256 of the canonical state."""
    def check_invariants(self) -> None:
        """Raises AssertionError naming the broken invariant."""
