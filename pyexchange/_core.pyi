"""The compiled engine (`core_rs`, PyO3). Integers in, integers out; `pyexchange.Engine`
is the convenient face. Event records are `wire.EVENT_DTYPE` bytes (88 bytes each)."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from os import PathLike
from typing import Any, final

from typing_extensions import Buffer

__all__ = [
    "COMMAND_RECORD_BYTES",
    "EVENT_KINDS",
    "EVENT_RECORD_BYTES",
    "MARKET_STATES",
    "ORDER_STATES",
    "ORDER_TYPES",
    "REASONS",
    "SIDES",
    "STP_MODES",
    "DurableEngine",
    "Engine",
    "Event",
    "EventBuffer",
    "EventDecoder",
    "JournalUnavailable",
    "NotLeader",
    "OutcomeUnknown",
    "PlaceReader",
    "PrivateViews",
    "ReplicaStopped",
    "SeenSignatures",
    "TouchedOrders",
    "ZoneEngine",
    "journal_records",
    "journal_replay",
    "journal_verify",
    "okx_access_headers",
    "okx_signature_ok",
    "websocket_frames",
]

COMMAND_RECORD_BYTES: int
EVENT_RECORD_BYTES: int
SIDES: list[str]
ORDER_TYPES: list[str]
STP_MODES: list[str]
EVENT_KINDS: list[str]
REASONS: list[str]
ORDER_STATES: list[str]
MARKET_STATES: list[str]

@final
class PlaceReader:
    """The fast path of `gateway.requests.place`: the `PlaceIntent` of a well-formed order
    whose fields are all strings, or None (the Python reading decides)."""

    def __new__(
        cls,
        instruments: list[tuple[str, Any, str, str, str]],
        place_intent: Callable[..., Any],
        decimal: Callable[[str], Any],
        sides: Sequence[str],
        order_types: Sequence[str],
        stp_modes: Sequence[str],
        default_stp: str,
    ) -> PlaceReader: ...
    def read(self, body: object) -> Any | None: ...
    def read_json(self, body: bytes) -> Any | None:
        """`read` of an order's JSON text (a REST body), with no dict in between."""
    def read_order_op(self, message: str) -> tuple[str | None, Any] | None:
        """A WebSocket message that is exactly an `order` op of one order: (its id, the intent);
        None for anything else (the session reads it)."""

@final
class EventBuffer(Buffer):
    """Event records owned by the engine, viewed without a copy through the buffer protocol."""

    def __len__(self) -> int:
        """Number of events."""

@final
class Event:
    """One event of a command; fields that do not apply to its kind are None."""

    FIELDS: list[str]
    @property
    def seq(self) -> int: ...
    @property
    def ts_ns(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def account(self) -> int | None: ...
    @property
    def order_id(self) -> int | None: ...
    @property
    def side(self) -> str | None: ...
    @property
    def maker_order_id(self) -> int | None: ...
    @property
    def taker_order_id(self) -> int | None: ...
    @property
    def maker_account(self) -> int | None: ...
    @property
    def taker_account(self) -> int | None: ...
    @property
    def instrument(self) -> str | None: ...
    @property
    def asset(self) -> str | None: ...
    @property
    def price(self) -> Decimal | None: ...
    @property
    def size(self) -> Decimal | None: ...
    @property
    def imbalance(self) -> Decimal | None: ...
    @property
    def market_state(self) -> str | None: ...
    @property
    def maker_fee(self) -> Decimal | None: ...
    @property
    def taker_fee(self) -> Decimal | None: ...

@final
class EventDecoder:
    """Event records into `Event`s, with the names and decimals of the assets and instruments learned."""

    def __new__(
        cls,
        decimal: type[Decimal],
        kinds: Sequence[str],
        reasons: Sequence[str],
        sides: Sequence[str],
        market_states: Sequence[str],
    ) -> EventDecoder: ...
    def add_asset(self, asset_id: int, name: str, decimals: int) -> None: ...
    def add_instrument(
        self, instrument_id: int, symbol: str, tick_size: Decimal, lot_size: Decimal, quote_decimals: int
    ) -> None: ...
    def decode(self, events: bytes) -> list[Event]: ...
    def decode_batch(self, events: bytes, first_seq: int, commands: int) -> list[list[Event]]: ...

@final
class TouchedOrders:
    """The orders a batch touched as the engine had them right after it (`read_batch`)."""

_OrderFields = tuple[int, int, int, int, int, int, int, int, int, int, int, bytes]

@final
class PrivateViews:
    """The gateway's private views (orders, client order ids, fills), in integers."""

    def __new__(
        cls, closed_orders_max: int, fills_per_account_max: int, fills_per_command_max: int
    ) -> PrivateViews: ...
    def apply(self, events: bytes, first_seq: int, last_seq: int, touched: TouchedOrders) -> dict[int, int]: ...
    def order(
        self, order_id: int
    ) -> tuple[_OrderFields, bytes, int, int, int, tuple[int, int, int, int] | None, bool] | None: ...
    def order_id_of(self, account: int, client_order_id: str) -> int | None: ...
    def open_count(self, account: int) -> int: ...
    def open_ids(self, account: int) -> list[int]: ...
    def closed_ids(self, account: int) -> list[int]: ...
    def fills(self, account: int) -> list[tuple[int, int, int, bytes, int, int, int, int, bool, int]]: ...

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
    def set_market_state(self, ts_ns: int, instrument: int, state: int, auction_band_bps: int) -> bytes:
        """Moves an instrument to a market state (a `MARKET_STATES` index); entering continuous
        trading from a crossed book uncrosses it within the band, or stays put."""
    def market_state(self, instrument: int) -> int | None:
        """The instrument's market state code, or None for an unknown instrument."""
    def auction(self, instrument: int) -> tuple[int, int, int, int | None] | None:
        """(price_ticks, volume_lots, imbalance_lots, surplus side code or None) of the
        uncross the book would have now; None when nothing would execute."""
    def place_ticks(
        self, account: int, instrument: int, side: int, order_type: int, price_ticks: int, size_lots: int, stp: int = 0
    ) -> int:
        """Lean place at the last timestamp: the order id, or 0 if rejected. Events queue."""
    def preallocate(self, live_orders: int) -> None:
        """Allocates and touches memory for live and retained closed orders now."""
    def apply_journal_payload(self, payload: bytes) -> bytes:
        """Applies a command as the journal stores it (its own timestamp); its event records."""
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
    def orders(
        self, keys: list[tuple[int, int]]
    ) -> list[tuple[int, int, int, int, int, int, int, int, int, int, int, bytes] | None]:
        """`order` of each (account, order_id), read at one point of the sequence."""
    def read_batch(self, events: bytes) -> tuple[TouchedOrders, list[int], list[int], bool]:
        """What the views and the gateway read right after a batch is applied, from its event
        records: (the orders they name, the accounts they concern, the instruments they may
        have changed, whether any is public)."""
    def instrument_id(self, symbol: str) -> int | None: ...
    def asset_id(self, name: str) -> int | None: ...
    def assets(self) -> list[tuple[str, int]]:
        """Every asset as (name, decimals), by id."""
    def instruments(self) -> list[tuple[str, int, int, int, int, int, int, int, int]]:
        """Every instrument's spec, by id (the arguments of add_instrument after ts_ns)."""
    def live_orders(self) -> int: ...
    def state_hash(self) -> str:
        """Hex SHA-256 of the canonical state."""
    def check_invariants(self) -> None:
        """Raises AssertionError naming the broken invariant."""

class JournalUnavailable(RuntimeError):
    """The journal cannot write (disk full, I/O error): the command was not applied."""

class OutcomeUnknown(RuntimeError):
    """The command was applied but is not durable yet; retry a place with its client order id."""

@final
class DurableEngine:
    """The engine behind a journal and snapshots in a data directory: each command returns
    once it is fsync'd (the GIL is released while it waits)."""

    def __new__(
        cls,
        data_dir: str | PathLike[str],
        *,
        no_fsync_unsafe_benchmark_only: bool = False,
        group_commit_window_us: int = 0,
        snapshot_every_commands: int = 1_000_000,
        segment_bytes: int = 67108864,
        ack_timeout_ms: int = 10000,
        retain_journal: bool = False,
    ) -> DurableEngine: ...
    def recovery(self) -> dict[str, Any]:
        """What opening found: snapshot used, snapshots skipped, records replayed, tail cut."""
    @property
    def seq(self) -> int: ...
    @property
    def ts_ns(self) -> int: ...
    def add_asset(self, ts_ns: int, name: str, decimals: int) -> int: ...
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
    ) -> int: ...
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
    ) -> bytes: ...
    def cancel(self, ts_ns: int, account: int, instrument: int, order_id: int) -> bytes: ...
    def amend(
        self, ts_ns: int, account: int, instrument: int, order_id: int, new_price_ticks: int, new_size_lots: int
    ) -> bytes: ...
    def cancel_all(self, ts_ns: int, account: int, instrument: int | None = None) -> bytes: ...
    def set_market_state(self, ts_ns: int, instrument: int, state: int, auction_band_bps: int) -> bytes:
        """Moves an instrument to a market state (a `MARKET_STATES` index); entering continuous
        trading from a crossed book uncrosses it within the band, or stays put."""
    def market_state(self, instrument: int) -> int | None:
        """The instrument's market state code, or None for an unknown instrument."""
    def auction(self, instrument: int) -> tuple[int, int, int, int | None] | None:
        """(price_ticks, volume_lots, imbalance_lots, surplus side code or None) of the
        uncross the book would have now; None when nothing would execute."""
    def submit(self, commands: Buffer) -> EventBuffer:
        """Journals and applies a batch; returns its events once all of it is durable."""
    def submit_unsynced(self, commands: Buffer) -> tuple[EventBuffer, int]:
        """Journals and applies a batch without waiting for its sync: (events, last seq). None
        of the events may reach anyone before `durable_seq` covers the last seq."""
    def snapshot_due_within(self, commands: int) -> bool:
        """Whether applying `commands` more commands now would start a snapshot (which copies the
        engine before `submit_unsynced` returns if the shadow engine is out of step)."""
    @property
    def durable_seq(self) -> int:
        """The last seq a journal sync covers."""
    def durable_wake_fd(self) -> int:
        """The non-blocking eventfd that `wake_when_durable` adds to (made on the first call)."""
    def wake_when_durable(self, seq: int) -> None:
        """Adds 1 to `durable_wake_fd` once a sync covers `seq` or the journal stops without one."""
    def balance(self, account: int, asset: int) -> tuple[int, int]: ...
    def book(self, instrument: int, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]: ...
    def order(
        self, account: int, order_id: int
    ) -> tuple[int, int, int, int, int, int, int, int, int, int, int, bytes] | None: ...
    def orders(
        self, keys: list[tuple[int, int]]
    ) -> list[tuple[int, int, int, int, int, int, int, int, int, int, int, bytes] | None]: ...
    def read_batch(self, events: bytes) -> tuple[TouchedOrders, list[int], list[int], bool]: ...
    def instrument_id(self, symbol: str) -> int | None: ...
    def asset_id(self, name: str) -> int | None: ...
    def assets(self) -> list[tuple[str, int]]:
        """Every asset as (name, decimals), by id."""
    def instruments(self) -> list[tuple[str, int, int, int, int, int, int, int, int]]:
        """Every instrument's spec, by id (the arguments of add_instrument after ts_ns)."""
    def live_orders(self) -> int: ...
    def state_hash(self) -> str: ...
    def check_invariants(self) -> None: ...
    def snapshot(self) -> tuple[int, str]:
        """Takes a snapshot now; (seq, path) once written."""
    def journal_status(self) -> dict[str, Any]:
        """The journal's health (`failing`: None or the reason) and counters."""
    def sync_window(self, seconds: int) -> dict[str, Any]:
        """The group commits of the last `seconds`: `seconds`, `syncs`, `records`, `sync_us_p50`,
        `sync_us_p99`, `sync_us_max` (None without one), `sync_us_max_by_s` (oldest first)."""
    def durable_position(self) -> tuple[str, int]:
        """(segment file, byte offset) up to which the journal is synced."""
    def close(self) -> None:
        """Syncs and closes the journal."""

class NotLeader(RuntimeError):
    """This zone does not lead its group; nothing was done. args: (message, leader zone or
    None, leader address or None)."""

class ReplicaStopped(RuntimeError):
    """This zone's replica stopped (storage error or shutdown)."""

@final
class ZoneEngine:
    """One zone's replica of a Raft group: commands are proposed on the leader and answered
    once a majority of zones has them fsync'd and this replica applied them; queries read
    this replica (the GIL is released while a command waits)."""

    def __new__(
        cls,
        zone: int,
        data_dir: str | PathLike[str],
        listen_addr: str,
        members: Mapping[int, str],
        *,
        dial: Mapping[int, str] = ...,
        bootstrap: bool = False,
        heartbeat_ms: int = 30,
        election_timeout_min_ms: int = 150,
        election_timeout_max_ms: int = 300,
        snapshot_every_entries: int = 20_000,
        entries_kept_after_snapshot: int = 5_000,
        checkpoint_interval_ms: int = 1_000,
        propose_timeout_ms: int = 5_000,
        no_fsync_unsafe_benchmark_only: bool = False,
        follow: bool = False,
    ) -> ZoneEngine: ...
    @property
    def seq(self) -> int: ...
    @property
    def ts_ns(self) -> int: ...
    def add_asset(self, ts_ns: int, name: str, decimals: int) -> int: ...
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
    ) -> int: ...
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
    ) -> bytes: ...
    def cancel(self, ts_ns: int, account: int, instrument: int, order_id: int) -> bytes: ...
    def amend(
        self, ts_ns: int, account: int, instrument: int, order_id: int, new_price_ticks: int, new_size_lots: int
    ) -> bytes: ...
    def cancel_all(self, ts_ns: int, account: int, instrument: int | None = None) -> bytes: ...
    def set_market_state(self, ts_ns: int, instrument: int, state: int, auction_band_bps: int) -> bytes:
        """Moves an instrument to a market state (a `MARKET_STATES` index); entering continuous
        trading from a crossed book uncrosses it within the band, or stays put."""
    def market_state(self, instrument: int) -> int | None:
        """The instrument's market state code, or None for an unknown instrument."""
    def auction(self, instrument: int) -> tuple[int, int, int, int | None] | None:
        """(price_ticks, volume_lots, imbalance_lots, surplus side code or None) of the
        uncross the book would have now; None when nothing would execute."""
    def submit(self, commands: Buffer) -> bytes:
        """Proposes a batch (stamped with the leader's clock); its events once applied here."""
    def propose(self, commands: Buffer) -> tuple[int, int, bytes]:
        """`submit`, with the entry's log index and first seq: (index, first_seq, events)."""
    def balance(self, account: int, asset: int) -> tuple[int, int]: ...
    def book(self, instrument: int, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]: ...
    def order(
        self, account: int, order_id: int
    ) -> tuple[int, int, int, int, int, int, int, int, int, int, int, bytes] | None: ...
    def orders(
        self, keys: list[tuple[int, int]]
    ) -> list[tuple[int, int, int, int, int, int, int, int, int, int, int, bytes] | None]: ...
    def read_batch(self, events: bytes) -> tuple[TouchedOrders, list[int], list[int], bool]: ...
    def instrument_id(self, symbol: str) -> int | None: ...
    def asset_id(self, name: str) -> int | None: ...
    def assets(self) -> list[tuple[str, int]]: ...
    def instruments(self) -> list[tuple[str, int, int, int, int, int, int, int, int]]: ...
    def live_orders(self) -> int: ...
    def state_hash(self) -> str: ...
    def check_invariants(self) -> None: ...
    def status(self) -> dict[str, Any]:
        """zone, role, term, leader, last_log_index, committed_index, applied_index,
        snapshot_index, matched, quorum_ack_ms_ago, diverged, stopped."""
    def transfer_leader(self, to: int) -> None: ...
    def snapshot(self) -> None: ...
    def take_applied(self, timeout_ms: int) -> list[tuple[Any, ...]]:
        """("commands", index, first_seq, last_seq, records, events, refused) or ("reset", index, seq)."""
    def wait_applied(self, index: int, timeout_ms: int) -> bool: ...
    def close(self) -> None: ...

def journal_verify(data_dir: str | PathLike[str]) -> dict[str, Any]:
    """first_seq, last_seq, records, tail_damaged (file, offset, bytes, reason) or None;
    RuntimeError naming file, offset and seq for damage before the tail. Changes nothing."""

def journal_replay(
    data_dir: str | PathLike[str], from_seq: int, chunk_records: int, visit: Callable[[list[tuple[int, bytes]]], object]
) -> int:
    """Reads the journal once from `from_seq`, calling `visit` with lists of (seq, payload) of
    `chunk_records` each (the GIL held); an exception in `visit` stops it. Returns the count."""

def journal_records(
    data_dir: str | PathLike[str], from_seq: int, limit: int
) -> list[tuple[int, str, int, int, str, bytes]]:
    """Up to `limit` records from `from_seq`: (seq, file, offset, ts_ns, command, payload)."""

def okx_access_headers(
    raw: Iterable[tuple[bytes, bytes]],
) -> tuple[str | None, str | None, str | None, str | None, int | None]:
    """The first `ok-access-key`, `-sign`, `-timestamp` and `-passphrase` of a request's ASGI
    headers (Latin-1), None for one absent; and the timestamp in Unix ms if it is of the form
    `YYYY-MM-DDTHH:MM:SS.sssZ` (else None: `datetime.fromisoformat` reads it)."""

def okx_signature_ok(secret: str, timestamp: str, method: str, request_path: str, body: str, sent: str) -> bool:
    """Whether `sent` is Base64(HMAC-SHA256(secret, timestamp + method + request_path + body)),
    compared in constant time."""

@final
class SeenSignatures:
    """The signed requests seen within their window, in buckets by expiry (`bucket_ms`); at most
    `entries_max`, past which the bucket that expires first is forgotten early."""

    def __new__(cls, bucket_ms: int, entries_max: int) -> SeenSignatures: ...
    def first_time(self, signature: str, expires_ms: int, now_ms: int) -> bool:
        """Whether `signature` is new; if so it is remembered until `expires_ms` (Unix ms)."""

def websocket_frames(
    buffer: bytes, payload_bytes_max: int
) -> tuple[list[tuple[int, bool, bytes]], int, tuple[int, str] | None]:
    """The whole client frames at the start of `buffer`, each (opcode, fin, unmasked payload);
    the bytes they took; and the close code and reason if the next frame breaks RFC 6455 or
    declares a payload over `payload_bytes_max` (the frames before it are returned)."""
