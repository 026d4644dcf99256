"""pyexchange: an exchange trading core that keeps trading when a cloud zone dies.

`Engine` is the Python face of the deterministic Rust engine in `pyexchange._core`.
"""

from pyexchange._core import JournalUnavailable, NotLeader, OutcomeUnknown, ReplicaStopped
from pyexchange.engine import AuctionFigures, Engine, Event, Order

__all__ = [
    "AuctionFigures",
    "Engine",
    "Event",
    "JournalUnavailable",
    "NotLeader",
    "Order",
    "OutcomeUnknown",
    "ReplicaStopped",
]
