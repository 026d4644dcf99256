"""Peers: other order books a Python user could install, behind one interface.

Each peer module has `NAME`, `SUPPORTS` (the command kinds it runs; the rest of a workload
is skipped and not counted) and `run(commands, order_ids=None) -> PeerResult`. `commands`
is a `COMMAND_DTYPE` array; `order_ids[i]` is the id our engine gives the place at row `i`
(0 for other rows and for places it rejects), since cancels and amends name those ids. A
peer with ids of its own maps them back, so every `fills` list speaks our ids and can be
compared with the reference (`plain_ladder`) element by element.
"""

from dataclasses import dataclass, field

import numpy as np

from bench._wire import PLACE

PEER_MODULES = ("plain_ladder", "liquibook_peer", "nanobook_peer", "nautilus_peer")


@dataclass
class PeerResult:
    name: str
    seconds: float
    n_commands_done: int
    fills: list[tuple[int, int, int, int]]
    notes: str = ""
    error: str | None = None
    # Final book per instrument: {instrument: (bids, asks)}, levels as (price, size), best first.
    books: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = field(default_factory=dict)

    @property
    def commands_per_second(self) -> float:
        return self.n_commands_done / self.seconds if self.seconds > 0 else 0.0


def sequential_order_ids(commands: np.ndarray) -> np.ndarray:
    """Ids when every place is accepted: 1, 2, 3... in row order, 0 on other rows."""
    is_place = commands["kind"] == PLACE
    return (np.cumsum(is_place, dtype=np.uint64) * is_place).astype(np.uint64)


def columns(commands: np.ndarray, order_ids: np.ndarray | None) -> zip:
    """Rows as plain-int tuples (kind, type, side, instrument, id, price, size, place id).

    Python ints from `tolist()` once, so the per-command loop of a peer does no numpy work.
    """
    if order_ids is None:
        order_ids = sequential_order_ids(commands)
    assert len(order_ids) == len(commands)
    return zip(
        commands["kind"].tolist(),
        commands["order_type"].tolist(),
        commands["side"].tolist(),
        commands["instrument"].tolist(),
        commands["order_id"].tolist(),
        commands["price_ticks"].tolist(),
        commands["size_lots"].tolist(),
        order_ids.tolist(),
        strict=True,
    )
