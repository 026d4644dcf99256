"""The Python record layouts and code names agree with the compiled module, byte for byte."""

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
