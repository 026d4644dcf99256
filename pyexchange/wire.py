"""Fixed-size records that cross the Python/Rust boundary in batches.

The layouts mirror `core_rs/src/wire.rs` byte for byte (`#[repr(C)]` there, packed numpy
dtypes here). Codes are the same small integers on both sides; `tests/test_wire.py` checks
the sizes and the code names against the compiled module. The same layouts as `struct`
formats serve code that handles a few records at a time, for which numpy's fixed cost per call
is more than `struct`'s per record (the gateway's batches).
"""

import struct

import numpy as np

COMMAND_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("account", "<u8"),
        ("order_id", "<u8"),
        ("price_ticks", "<u8"),
        ("size_lots", "<u8"),
        ("instrument", "<u4"),
        ("kind", "u1"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("stp", "u1"),
        ("client_order_id", "S32"),
    ]
)

EVENT_DTYPE = np.dtype(
    [
        ("seq", "<u8"),
        ("ts_ns", "<i8"),
        ("order_id", "<u8"),
        ("account", "<u8"),
        ("maker_order_id", "<u8"),
        ("maker_account", "<u8"),
        ("price_ticks", "<u8"),
        ("size_lots", "<u8"),
        ("taker_fee", "<u8"),
        ("maker_fee", "<u8"),
        ("instrument", "<u4"),
        ("kind", "u1"),
        ("reason", "u1"),
        ("side", "u1"),
        ("is_asset", "u1"),
    ]
)

# Command kinds.
PLACE, CANCEL, AMEND, CANCEL_ALL, DEPOSIT = 1, 2, 3, 4, 5
# A market-state move: the state code in `order_type`, the auction band (bps) in `size_lots`.
SET_MARKET_STATE = 8
# Sides.
BUY, SELL = 0, 1
# Order types.
LIMIT, MARKET, IOC, FOK, POST_ONLY = 0, 1, 2, 3, 4
# Self-trade prevention modes.
CANCEL_MAKER, CANCEL_TAKER, CANCEL_BOTH, STP_NONE = 0, 1, 2, 3
# Event kinds.
ACCEPTED, REJECTED, FILL, CANCELED, EXPIRED, AMENDED, DEPOSITED = 1, 2, 3, 4, 5, 6, 7
MARKET_STATE, AUCTION, UNCROSS = 8, 9, 10
# cancel_all over every instrument.
ALL_INSTRUMENTS = 0xFFFF_FFFF
# The side of an event that concerns no side (deposits, unknown orders).
SIDE_NONE = 0xFF

SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market", "ioc", "fok", "post_only")
STP_MODES = ("cancel_maker", "cancel_taker", "cancel_both", "none")
# The code of each name above, for a command built from names (one dict lookup an order).
SIDE_CODES = {name: code for code, name in enumerate(SIDES)}
ORDER_TYPE_CODES = {name: code for code, name in enumerate(ORDER_TYPES)}
STP_CODES = {name: code for code, name in enumerate(STP_MODES)}
EVENT_KINDS = (
    "", "accepted", "rejected", "fill", "canceled", "expired", "amended", "deposited", "market_state", "auction",
    "uncross",
)  # fmt: skip
MARKET_STATES = ("continuous", "halted", "cancel_only", "pre_open", "call_auction")
REASONS = (
    "",
    "instrument_unknown",
    "instrument_size_invalid",
    "instrument_price_invalid",
    "matching_no_liquidity",
    "matching_post_only_would_cross",
    "matching_book_full",
    "matching_unknown_order",
    "matching_amend_no_change",
    "matching_amend_size_not_above_filled",
    "matching_fok_not_fillable",
    "matching_self_trade_prevented",
    "matching_immediate_remainder",
    "ledger_insufficient_funds",
    "ledger_reserved_account",
    "ledger_unknown_asset",
    "ledger_amount_invalid",
    "order_client_order_id_in_use",
    "market_halted",
    "market_cancel_only",
    "market_pre_open",
    "market_call_auction",
    "auction_price_outside_band",
)

COMMAND_STRUCT = struct.Struct("<qQQQQIBBBB32s")  # a client order id is NUL-padded
EVENT_STRUCT = struct.Struct("<QqQQQQQQQQIBBBB")

assert COMMAND_DTYPE.itemsize == COMMAND_STRUCT.size == 80
assert EVENT_DTYPE.itemsize == EVENT_STRUCT.size == 88
