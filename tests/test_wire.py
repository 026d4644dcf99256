"""The Python record layouts and code names agree with the compiled module, byte for byte."""

import numpy as np

from pyexchange import _core, wire


def test_record_sizes_match_the_compiled_layouts() -> None:
    assert wire.COMMAND_DTYPE.itemsize == _core.COMMAND_RECORD_BYTES == 80
    assert wire.EVENT_DTYPE.itemsize == _core.EVENT_RECORD_BYTES == 88


def test_code_names_match_the_compiled_names() -> None:
    assert list(wire.SIDES) == _core.SIDES
    assert list(wire.ORDER_TYPES) == _core.ORDER_TYPES
    assert list(wire.STP_MODES) == _core.STP_MODES
    assert list(wire.EVENT_KINDS[1:]) == _core.EVENT_KINDS
    assert list(wire.REASONS) == _core.REASONS
    assert list(wire.MARKET_STATES) == _core.MARKET_STATES


def test_struct_formats_lay_records_out_as_the_dtypes_do() -> None:
    """The gateway packs commands with `struct` and reads events with it: the same bytes as numpy's."""
    command = (-7, 2**64 - 1, 3, 2**63, 5, 2**32 - 1, wire.PLACE, wire.SELL, wire.POST_ONLY, wire.STP_NONE, b"cid-1")
    records = np.zeros(1, dtype=wire.COMMAND_DTYPE)
    records[0] = command
    assert wire.COMMAND_STRUCT.pack(*command) == records.tobytes()
    event = (2**64 - 1, -9, 1, 2, 3, 4, 5, 6, 7, 8, 2**32 - 2, wire.FILL, 3, wire.BUY, 1)
    events = np.zeros(1, dtype=wire.EVENT_DTYPE)
    events[0] = event
    assert wire.EVENT_STRUCT.unpack(events.tobytes()) == event
