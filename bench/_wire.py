"""The wire dtypes and codes of `pyexchange.wire`, for the benchmark.

Imported from the package when it imports; else `pyexchange/wire.py` is loaded by path (it
needs only numpy), so generating workloads and running peers needs no build of the engine.
"""

import importlib.util
import pathlib

try:
    from pyexchange import wire
except ImportError:  # the package's compiled part is not built here
    _path = pathlib.Path(__file__).resolve().parent.parent / "pyexchange" / "wire.py"
    _spec = importlib.util.spec_from_file_location("_pyexchange_wire", _path)
    assert _spec is not None and _spec.loader is not None
    wire = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(wire)

COMMAND_DTYPE = wire.COMMAND_DTYPE
PLACE, CANCEL, AMEND, CANCEL_ALL, DEPOSIT = (
    wire.PLACE,
    wire.CANCEL,
    wire.AMEND,
    wire.CANCEL_ALL,
    wire.DEPOSIT,
)
BUY, SELL = wire.BUY, wire.SELL
LIMIT, MARKET, IOC, FOK, POST_ONLY = wire.LIMIT, wire.MARKET, wire.IOC, wire.FOK, wire.POST_ONLY
CANCEL_MAKER, CANCEL_TAKER, CANCEL_BOTH, STP_NONE = (
    wire.CANCEL_MAKER,
    wire.CANCEL_TAKER,
    wire.CANCEL_BOTH,
    wire.STP_NONE,
)
