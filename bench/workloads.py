"""Seeded command workloads for the benchmark, as `COMMAND_DTYPE` arrays.

Two mixes:
- `exchange_core_mix`: exchange-core's throughput benchmark (one instrument, 1,000 accounts,
  about 1,000 resting orders; ~9% GTC, ~3% IOC, ~6% cancel, ~82% move). Its generator is
  followed closely (`TestOrdersGenerator` in exchange-core's tests): it keeps a book of its
  own to know which orders still rest, so cancels and moves name live orders.
- `venue_mix`: several instruments, thousands of accounts with limited funds, every order
  type, default self-trade prevention (see `venue_mix_with_ids`).

Invariants: the same `(n_commands, seed)` gives the same bytes; `ts_ns` never goes back;
every cancel and amend names an order id that our engine assigned earlier (ids go 1, 2,
3... to accepted places only), and in `exchange_core_mix` every place is accepted (stp
`none`, accounts funded by `funding`), so the ids are simply the places counted in order.
"""

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from bench._wire import (
    AMEND,
    BUY,
    CANCEL,
    CANCEL_MAKER,
    COMMAND_DTYPE,
    DEPOSIT,
    FOK,
    IOC,
    LIMIT,
    MARKET,
    PLACE,
    POST_ONLY,
    SELL,
    STP_NONE,
)
from bench.peers.plain_ladder import PlainLadder

# --- exchange-core's mix --------------------------------------------------------------------

EXCHANGE_CORE_ACCOUNTS = 1_000
EXCHANGE_CORE_ORDERS_TARGET = 1_000  # resting orders, both sides together
# exchange-core reads the book's order counts only every 512 commands (so the book
# oscillates around the target), and cancels and moves pick among the 512 oldest live orders.
EXCHANGE_CORE_CHECK_EVERY = 512
EXCHANGE_CORE_PICK_OLDEST = 512
EXCHANGE_CORE_MOVE_ALPHA = 0.01  # a move goes this share of the way to the last trade price
EXCHANGE_CORE_PRICE_TICKS = 60_000  # the centre (last trade price at the start): BTC at 60,000 USDT
EXCHANGE_CORE_TS_STEP_NS = 1_000

# The instrument and assets the mix assumes: BTC-USDT with tick 1 and lot 1 (one tick of one
# lot is 1 USDT; one lot is 1 BTC), both assets with 8 decimals, no fees, no minimum beyond
# one lot. `funding` sizes the deposits for it.
EXCHANGE_CORE_SETUP = {
    "assets": (("BTC", 8), ("USDT", 8)),
    "instrument": {
        "symbol": "BTC-USDT",
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "1",
        "lot_size": "1",
        "min_size": "1",
        "maker_fee_bps": 0,
        "taker_fee_bps": 0,
    },
}
UNITS_PER_LOT = 10**8  # BTC minor units in one lot
UNITS_PER_TICK_LOT = 10**8  # USDT minor units of one tick times one lot
UNITS_TOTAL_MAX = 2**64 - 1  # the engine keeps each asset's total deposited within u64


def exchange_core_mix(
    n_commands: int, seed: int = 1, price_ticks_centre: int = EXCHANGE_CORE_PRICE_TICKS
) -> np.ndarray:
    """exchange-core's benchmark mix on instrument 0, accounts 1..1000, stp `none`.

    Place: side 50/50; when that side of the book is below its target (500) a GTC limit at
    `last trade ± offset` on the passive side, else an IOC at the far end of the price band
    (so it sweeps); size `1 + a*b*c` with a, b, c uniform in 0..5. Cancel and move pick
    among the 512 oldest live orders; a move goes 1% of the way to the last trade price (at
    least one tick), re-entering as a taker. The first ~1,000 commands fill the book.

    Where it differs from exchange-core's generator: its RNG (numpy PCG64, not Java's); a
    fixed centre (`price_ticks_centre`, 60,000: about 700 levels; exchange-core draws one per
    seed between 2,000 and 2,000,000); no REDUCE commands (later exchange-core versions add
    them; the published 9/3/6/82 mix has none); the book's counts are read from our own
    ladder. A move is our AMEND with a new price and size 0.
    """
    assert n_commands >= 0
    gen = _ExchangeCoreGen(seed, price_ticks_centre)
    return gen.run(n_commands)


class _ExchangeCoreGen:
    """One generation run; state as in exchange-core's `TestOrdersGeneratorSession`."""

    def __init__(self, seed: int, centre: int) -> None:
        deviation = min(centre * 5 // 100, 10_000)
        assert deviation >= 1, "centre price too low for a price band"
        self.draw = _uniforms(seed)
        self.book = PlainLadder()
        self.deviation = deviation
        self.price_min = centre - 5 * deviation
        self.price_max = centre + 5 * deviation
        assert self.price_min >= 1
        self.last_price = centre
        self.half = EXCHANGE_CORE_ORDERS_TARGET // 2
        self.fast_fill_threshold = min(EXCHANGE_CORE_CHECK_EVERY, self.half * 3 // 4)
        self.seen_live = [0, 0]  # the book's order counts as last read
        self.filled = False  # the book reached its target once (exchange-core's filledAtSeq)
        # The oldest live order ids (at most 512, ascending) and the younger ones (ascending,
        # may hold dead ids, skipped when they move up).
        self.window: list[int] = []
        self.younger: deque[int] = deque()
        self.owner: dict[int, int] = {}
        self.next_id = 1

    def run(self, n_commands: int) -> np.ndarray:
        rows: list[tuple[int, int, int, int, int, int, int]] = []
        next_check = min(EXCHANGE_CORE_CHECK_EVERY, EXCHANGE_CORE_ORDERS_TARGET + 1)
        while len(rows) < n_commands:
            if not self._step(rows):
                continue  # nothing to cancel or move yet: draw again, as exchange-core does
            if len(rows) > next_check:
                next_check += EXCHANGE_CORE_CHECK_EVERY
                self.seen_live = list(self.book.live)
        return _to_commands(rows, instrument=0, stp=STP_NONE, ts_step_ns=EXCHANGE_CORE_TS_STEP_NS)

    def _step(self, rows: list[tuple[int, int, int, int, int, int, int]]) -> bool:
        draw, book, window = self.draw, self.book, self.window
        side = BUY if int(draw() * 4) >= 2 else SELL
        lack = self.half - self.seen_live[side]
        grow = lack > 0
        fast = not self.filled or lack > self.fast_fill_threshold
        if not self.filled and not grow:
            self.filled = True
        q = int(draw() * (40 if not grow else 2 if fast else 10))
        fills_before = len(book.fills)
        if q < 2:
            account = 1 + int(draw() * EXCHANGE_CORE_ACCOUNTS)
            order_id = self.next_id
            self.next_id += 1
            size = 1 + int(draw() * 6) * int(draw() * 6) * int(draw() * 6)
            if grow:
                price = self._gtc_price(side)
                book.place(order_id, side, price, size)
                rows.append((PLACE, account, 0, price, size, side, LIMIT))
            else:
                price = self.price_max if side == BUY else self.price_min
                book.place(order_id, side, price, size, True)
                rows.append((PLACE, account, 0, price, size, side, IOC))
            self.owner[order_id] = account
            if order_id in book.orders:
                self.younger.append(order_id)
        else:
            if not window:
                return False
            order_id = window[int(draw() * len(window))]
            if q == 2:
                book.cancel(order_id)
                window.remove(order_id)
                rows.append((CANCEL, self.owner[order_id], order_id, 0, 0, 0, 0))
            else:
                price = self._move_price(book.orders[order_id][1])
                book.amend(order_id, price)
                rows.append((AMEND, self.owner[order_id], order_id, price, 0, 0, 0))
                if order_id not in book.orders:
                    window.remove(order_id)  # the moved order filled as a taker
        if len(book.fills) > fills_before:
            self._after_fills(fills_before)
        if len(window) < EXCHANGE_CORE_PICK_OLDEST:
            self._refill()
        return True

    def _gtc_price(self, side: int) -> int:
        draw = self.draw
        dev = 1 + int(draw() ** 2 * self.deviation)
        p = int(draw() * dev) + int(draw() * dev) + int(draw() * dev) + int(draw() * dev)
        p = p // 4 * 2 - dev
        if (p > 0) != (side == SELL):
            p = -p  # sells rest above the last trade, buys below
        return self.last_price + p

    def _move_price(self, price: int) -> int:
        move = (self.last_price - price) * EXCHANGE_CORE_MOVE_ALPHA
        if price > self.last_price:
            step = math.floor(move)
        elif price < self.last_price:
            step = math.ceil(move)
        else:
            step = int(self.draw() * 2) * 2 - 1
        return max(1, price + step)

    def _after_fills(self, fills_before: int) -> None:
        """Follows the last trade price; drops filled makers from the window."""
        orders, window, fills = self.book.orders, self.window, self.book.fills
        for k in range(fills_before, len(fills)):
            maker_id, price = fills[k][1], fills[k][2]
            self.last_price = min(self.price_max, max(self.price_min, price))
            if maker_id not in orders and window and maker_id <= window[-1]:
                window.remove(maker_id)

    def _refill(self) -> None:
        window, younger, orders = self.window, self.younger, self.book.orders
        while len(window) < EXCHANGE_CORE_PICK_OLDEST and younger:
            order_id = younger.popleft()
            if order_id in orders:
                window.append(order_id)


def funding(commands: np.ndarray, fee_bps_max: int = 0) -> list[tuple[int, str, int]]:
    """Deposits `(account, asset, amount_units)` so that no order of `commands` is refused.

    For `EXCHANGE_CORE_SETUP` (BTC-USDT, tick 1, lot 1, 8 decimals; amounts in minor units),
    where every place is accepted, so order ids are the places counted in order. Each account
    gets, in USDT, for every buy it places, its size times the per-lot hold at the highest
    price that order ever has (place or amend; fee included at `fee_bps_max`), and in BTC
    every lot it offers to sell. That bounds all it can owe at once, whatever fills: fills
    of an order cost at most its per-lot hold at its limit, an amend re-holds at most the
    remaining size, and the remaining size never grows (moves keep it).
    """
    is_place = commands["kind"] == PLACE
    places = commands[is_place]
    price_max = places["price_ticks"].astype(np.int64)  # per order id - 1
    amends = commands[commands["kind"] == AMEND]
    np.maximum.at(price_max, amends["order_id"].astype(np.int64) - 1, amends["price_ticks"].astype(np.int64))
    notional = price_max.astype(object) * UNITS_PER_TICK_LOT  # Python ints: no overflow
    per_lot = notional + (-(-notional * fee_bps_max // 10_000))
    needs: dict[tuple[int, str], int] = {}
    for account, side, size, hold in zip(
        places["account"].tolist(), places["side"].tolist(), places["size_lots"].tolist(), per_lot.tolist(), strict=True
    ):
        key = (account, "USDT") if side == BUY else (account, "BTC")
        needs[key] = needs.get(key, 0) + size * (hold if side == BUY else UNITS_PER_LOT)
    for asset in ("BTC", "USDT"):
        total = sum(x for (_, a), x in needs.items() if a == asset)
        assert total <= UNITS_TOTAL_MAX, f"{asset} deposits overflow u64: use fewer commands"
    return [(account, asset, amount) for (account, asset), amount in sorted(needs.items())]


def deposit_commands(deposits: list[tuple[int, str, int]], asset_ids: dict[str, int]) -> np.ndarray:
    """`DEPOSIT` records for `deposits` (`instrument` holds the asset id, `size_lots` the amount)."""
    out = np.zeros(len(deposits), dtype=COMMAND_DTYPE)
    out["kind"] = DEPOSIT
    out["account"] = [d[0] for d in deposits]
    out["instrument"] = [asset_ids[d[1]] for d in deposits]
    out["size_lots"] = [d[2] for d in deposits]
    return out


# --- a venue's mix ----------------------------------------------------------------------------

# Assets and instruments, in the order the harness must add them (ids are given in order
# from 0). All assets have 8 decimals. Prices are the start of each instrument's fair value.
VENUE_ASSETS = (("USDT", 8), ("BTC", 8), ("ETH", 8), ("SOL", 8), ("XRP", 8), ("DOGE", 8), ("LTC", 8), ("ADA", 8))
# symbol, base, quote, tick_size, lot_size (= min_size), start price in quote, share of commands
VENUE_INSTRUMENTS = (
    ("BTC-USDT", "BTC", "USDT", "0.1", "0.00001", "60000", 0.30),
    ("ETH-USDT", "ETH", "USDT", "0.01", "0.0001", "3000", 0.20),
    ("SOL-USDT", "SOL", "USDT", "0.01", "0.001", "150", 0.12),
    ("XRP-USDT", "XRP", "USDT", "0.0001", "0.1", "0.6", 0.10),
    ("DOGE-USDT", "DOGE", "USDT", "0.00001", "1", "0.15", 0.08),
    ("LTC-USDT", "LTC", "USDT", "0.01", "0.001", "80", 0.07),
    ("ADA-USDT", "ADA", "USDT", "0.0001", "1", "0.45", 0.07),
    ("ETH-BTC", "ETH", "BTC", "0.00001", "0.001", "0.05", 0.06),
)
VENUE_MAKER_FEE_BPS = 8
VENUE_TAKER_FEE_BPS = 10
VENUE_MARKET_PROTECTION_BPS = 500
VENUE_ACCOUNTS = 5_000
# Shares of the trading commands (deposits come on top, each before an account's first use
# of an asset, and count in `n_commands`).
VENUE_MIX = (
    ("limit", 0.40),
    ("post_only", 0.10),
    ("ioc", 0.08),
    ("market", 0.02),
    ("fok", 0.02),
    ("cancel", 0.30),
    ("amend", 0.08),
)
VENUE_TS_STEP_NS = 1_000
_DEPOSIT_USD_MEDIAN = 10_000.0  # per account and asset, lognormal
_MAKER_USD_MEDIAN = 400.0  # per limit and post-only order, lognormal
_TAKER_USD_MEDIAN = 120.0  # per ioc, fok and market order, lognormal (takers trade smaller)
_FAIR_STEP = 0.0002  # per command on the instrument, lognormal random walk
_LATE_CANCEL_SHARE = 0.03  # cancels of an order that has just closed (refused: unknown order)
# Resting orders the books hover around, split by instrument share. With fixed command
# shares a book has no size of its own (cancels find a target whatever the depth), so a
# cancel becomes a limit while a book is short, and a limit a cancel while it is long, with
# probability the relative gap (traders add quotes to a thin book, pull them from a deep
# one). The shares drift from `VENUE_MIX` by what that takes; `venue_stats` reports them.
VENUE_RESTING_TARGET = 8_000


def venue_setup() -> dict:
    """What the harness adds before the venue mix, with each instrument's integer units."""
    from decimal import Decimal

    from bench.venue_model import InstrumentUnits

    asset_id = {name: i for i, (name, _) in enumerate(VENUE_ASSETS)}
    decimals = dict(VENUE_ASSETS)
    instruments = []
    for symbol, base, quote, tick, lot, price, share in VENUE_INSTRUMENTS:
        tick_d, lot_d = Decimal(tick), Decimal(lot)
        lot_units = lot_d * 10 ** decimals[base]
        per_tick_lot = tick_d * lot_d * 10 ** decimals[quote]
        assert lot_units == int(lot_units) >= 1 and per_tick_lot == int(per_tick_lot) >= 1, symbol
        units = InstrumentUnits(
            base=asset_id[base],
            quote=asset_id[quote],
            lot_units=int(lot_units),
            quote_units_per_tick_lot=int(per_tick_lot),
            min_size_lots=1,
            maker_fee_bps=VENUE_MAKER_FEE_BPS,
            taker_fee_bps=VENUE_TAKER_FEE_BPS,
            market_protection_bps=VENUE_MARKET_PROTECTION_BPS,
        )
        instruments.append(
            {
                "symbol": symbol,
                "base": base,
                "quote": quote,
                "tick_size": tick,
                "lot_size": lot,
                "min_size": lot,
                "maker_fee_bps": VENUE_MAKER_FEE_BPS,
                "taker_fee_bps": VENUE_TAKER_FEE_BPS,
                "market_protection_bps": VENUE_MARKET_PROTECTION_BPS,
                "price_ticks_start": int(Decimal(price) / tick_d),
                "share": share,
                "units": units,
            }
        )
    return {"assets": VENUE_ASSETS, "instruments": instruments}


def venue_mix(n_commands: int, seed: int = 1) -> np.ndarray:
    """A venue-like mix: 8 instruments, 5,000 accounts with limited funds, stp `cancel_maker`.

    Trading commands follow `VENUE_MIX`; accounts (skewed: a few are very active) deposit a
    lognormal amount of an asset just before they first need it, so some orders are refused
    for funds. Passive orders sit behind the touch and each instrument's fair value (a
    random walk); one limit in sixteen is marketable; some post-only orders would cross
    (refused); ioc and fok orders reach a little through the touch; fok orders
    sometimes cannot fill (expire); 3% of cancels name an order that has just closed. See
    `venue_setup` for the assets and instruments the harness adds first, in that order.
    """
    return venue_mix_with_ids(n_commands, seed)[0]


def venue_mix_with_ids(n_commands: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(commands, order ids): the id our engine gives the place at each row, 0 elsewhere or
    when it refuses it, as `bench.venue_model` predicts from SEMANTICS.md."""
    commands, order_ids, _ = venue_mix_expected(n_commands, seed)
    return commands, order_ids


@dataclass(frozen=True)
class VenueWorkload:
    """The venue mix split for a harness: setup, then deposits, then the timed commands.

    `setup` holds what `Engine.add_asset` / `add_instrument(**spec)` take, in order (so asset
    and instrument ids are their positions). Moving the deposits to a prefix changes no
    outcome: each (account, asset) is deposited once, just before its first use, and nothing
    touches it earlier. The prefix is stamped `ts_ns` 0, the commands keep their stamps.
    """

    setup: dict
    prefix: np.ndarray
    commands: np.ndarray
    order_ids: np.ndarray


def venue_workload(n_commands: int, seed: int = 1) -> VenueWorkload:
    """`venue_mix_with_ids(n_commands, seed)` split into its leading deposits (setup) and the
    timed commands, which keep their own deposits in place (the ledger is in play, and moving
    a deposit earlier would change which orders are accepted, and so every order id)."""
    commands, order_ids = venue_mix_with_ids(n_commands, seed)
    leading = int(np.argmax(commands["kind"] != DEPOSIT))
    prefix = commands[:leading].copy()
    keys = ("symbol", "tick_size", "lot_size", "min_size", "maker_fee_bps", "taker_fee_bps", "market_protection_bps")
    setup = {
        "assets": list(VENUE_ASSETS),
        "instruments": [{k: i[k] for k in keys} for i in venue_setup()["instruments"]],
    }
    return VenueWorkload(setup, prefix, commands[leading:], order_ids[leading:])


def venue_mix_expected(n_commands: int, seed: int = 1):
    """(commands, order ids, model): the model holds the expected fills and rejections."""
    gen = _VenueGen(seed)
    return gen.run(n_commands)


class _VenueGen:
    def __init__(self, seed: int) -> None:
        from bench.venue_model import VenueModel

        setup = venue_setup()
        self.instruments = setup["instruments"]
        self.units = [i["units"] for i in self.instruments]
        self.model = VenueModel(self.units)
        uniform_seed, normal_seed = np.random.SeedSequence(seed).spawn(2)
        self.draw = _stream(np.random.Generator(np.random.PCG64(uniform_seed)).random)
        self.normal = _stream(np.random.Generator(np.random.PCG64(normal_seed)).standard_normal)
        self.fair = [float(i["price_ticks_start"]) for i in self.instruments]
        self.start = list(self.fair)
        shares = np.cumsum([i["share"] for i in self.instruments])
        self.instrument_cdf = (shares / shares[-1]).tolist()
        self.resting_target = [max(1.0, VENUE_RESTING_TARGET * i["share"] / shares[-1]) for i in self.instruments]
        kinds = np.cumsum([share for _, share in VENUE_MIX])
        self.kind_cdf = (kinds / kinds[-1]).tolist()
        self.kind_names = [name for name, _ in VENUE_MIX]
        self.live: list[list[int]] = [[] for _ in self.instruments]  # may hold closed ids
        self.closed: deque[tuple[int, int, int]] = deque(maxlen=256)  # (id, account, instrument)
        self.owner: dict[int, int] = {}
        self.funded: set[tuple[int, int]] = set()

    def run(self, n_commands: int):
        rows: list[tuple[int, int, int, int, int, int, int]] = []
        instruments: list[int] = []
        ids: list[int] = []
        while len(rows) < n_commands:
            self._step(rows, instruments, ids, n_commands)
        commands = _to_commands(
            rows, np.array(instruments, dtype=np.uint32), stp=CANCEL_MAKER, ts_step_ns=VENUE_TS_STEP_NS
        )
        return commands, np.array(ids, dtype=np.uint64), self.model

    def _step(self, rows: list, instruments: list[int], ids: list[int], n_commands: int) -> None:
        draw, model = self.draw, self.model
        inst = _pick(self.instrument_cdf, draw())
        fair = self.fair[inst] * math.exp(_FAIR_STEP * self.normal())
        self.fair[inst] = fair + 0.001 * (self.start[inst] - fair)  # a weak pull back to the start
        kind = self.kind_names[_pick(self.kind_cdf, draw())]
        if kind == "cancel" or kind == "limit":
            want = self.resting_target[inst]
            gap = (model.resting(inst) - want) / want
            if kind == "cancel" and gap < 0 and draw() < -gap:
                kind = "limit"
            elif kind == "limit" and gap > 0 and draw() < gap:
                kind = "cancel"
        if kind == "cancel" or kind == "amend":
            target = self._target(inst, late=kind == "cancel" and draw() < _LATE_CANCEL_SHARE)
            if target is not None:
                order_id, account = target
                if kind == "cancel":
                    model.cancel(account, inst, order_id)
                    rows.append((CANCEL, account, order_id, 0, 0, 0, 0))
                else:
                    price, size = self._amend(inst, order_id)
                    model.amend(account, inst, order_id, price, size)
                    rows.append((AMEND, account, order_id, price, size, 0, 0))
                instruments.append(inst)
                ids.append(0)
                return
            kind = "limit"  # nothing rests yet
        account = 1 + int(VENUE_ACCOUNTS * draw() ** 2)
        spec = self.units[inst]
        funded = self.funded
        for asset in (spec.base, spec.quote):
            if (account, asset) not in funded and len(rows) < n_commands - 1:
                funded.add((account, asset))
                amount = self._deposit_units(inst, asset)
                model.deposit(account, asset, amount)
                rows.append((DEPOSIT, account, 0, 0, amount, 0, 0))
                instruments.append(asset)
                ids.append(0)
        side = BUY if draw() < 0.5 else SELL
        order_type, price, size = self._order(inst, kind, side)
        order_id = model.place(account, inst, side, order_type, price, size, CANCEL_MAKER)
        rows.append((PLACE, account, 0, price, size, side, order_type))
        instruments.append(inst)
        ids.append(order_id)
        if order_id:
            self.owner[order_id] = account
            if order_id in model.orders:
                self.live[inst].append(order_id)

    def _order(self, inst: int, kind: str, side: int) -> tuple[int, int, int]:
        draw, fair, model = self.draw, self.fair[inst], self.model
        sign = 1 if side == BUY else -1
        opposite = model.best(inst, 1 - side)
        taker = kind != "limit" and kind != "post_only"
        size = self._lots(inst, (_TAKER_USD_MEDIAN if taker else _MAKER_USD_MEDIAN) * math.exp(1.2 * self.normal()))
        if kind == "limit" and draw() < 0.06:  # marketable: through the touch
            reach = opposite if opposite is not None else _ticks(fair)
            return LIMIT, _ticks(reach * (1 + sign * 0.001 * draw())), size
        if kind == "post_only" and opposite is not None and draw() < 0.15:
            return POST_ONLY, opposite, size  # would cross: refused
        if kind == "limit" or kind == "post_only":  # passive: behind fair and the touch
            price = _ticks(fair * (1 - sign * 0.0015 * -math.log(1 - draw())))
            if opposite is not None:
                price = min(price, opposite - 1) if side == BUY else max(price, opposite + 1)
            return (LIMIT if kind == "limit" else POST_ONLY), max(1, price), size
        reach = opposite if opposite is not None else _ticks(fair)
        if kind == "market":
            return MARKET, 0, max(1, size // 2)
        price = max(1, _ticks(reach * (1 + sign * 0.0005 * draw())))
        if kind == "fok":
            return FOK, price, size * (20 if draw() < 0.3 else 1)
        return IOC, price, size

    def _amend(self, inst: int, order_id: int) -> tuple[int, int]:
        """(new price, new total size); one of them 0 (unchanged)."""
        from bench.venue_model import LIMIT_TICKS, REMAINING, TOTAL

        order = self.model.orders[order_id]
        draw = self.draw
        if draw() < 0.7:
            step = max(1, round(self.fair[inst] * 0.002 * draw()))
            return max(1, order[LIMIT_TICKS] + (step if draw() < 0.5 else -step)), 0
        filled = order[TOTAL] - order[REMAINING]
        return 0, filled + max(1, round(order[REMAINING] * (0.5 + draw())))

    def _target(self, inst: int, late: bool) -> tuple[int, int] | None:
        """(order id, owner): a live order of the instrument, or (late) one just closed."""
        if late:
            for order_id, account, instrument in reversed(self.closed):
                if instrument == inst:
                    return order_id, account
        live, orders = self.live[inst], self.model.orders
        while live:
            j = int(self.draw() * len(live))
            order_id = live[j]
            if order_id in orders:
                return order_id, self.owner[order_id]
            live[j] = live[-1]
            live.pop()
            self.closed.append((order_id, self.owner[order_id], inst))
        return None

    def _lots(self, inst: int, usd: float) -> int:
        """Lots worth about `usd` at the fair price."""
        spec = self.units[inst]
        quote_units = spec.notional(max(1, round(self.fair[inst])), 1)
        usd_per_lot = quote_units / 1e8 * (self.fair[0] / 10 if spec.quote != 0 else 1.0)
        return max(spec.min_size_lots, round(usd / usd_per_lot))

    def _deposit_units(self, inst: int, asset: int) -> int:
        usd = _DEPOSIT_USD_MEDIAN * math.exp(self.normal())
        spec = self.units[inst]
        if asset == 0:  # USDT
            return max(1, round(usd * 1e8))
        if asset == 1:  # BTC (price of BTC-USDT: ticks of 0.1)
            return max(1, round(usd / (self.fair[0] / 10) * 1e8))
        usd_per_base = spec.notional(max(1, round(self.fair[inst])), 1) / spec.lot_units
        if spec.quote == 1:  # quoted in BTC
            usd_per_base *= self.fair[0] / 10
        return max(1, round(usd / usd_per_base * 1e8))


def _pick(cdf: list[float], u: float) -> int:
    i = bisect_right(cdf, u)
    return min(i, len(cdf) - 1)


def _ticks(price: float) -> int:
    return max(1, round(price))


# --- helpers --------------------------------------------------------------------------------


def _uniforms(seed: int) -> Callable[[], float]:
    """Uniform floats in [0, 1) from numpy's PCG64, drawn in chunks, one per call."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return _stream(rng.random)


def _stream(sample: Callable[[int], np.ndarray], chunk: int = 1 << 16) -> Callable[[], float]:
    def floats() -> Iterator[float]:
        while True:
            yield from sample(chunk).tolist()

    return floats().__next__


def _to_commands(
    rows: list[tuple[int, int, int, int, int, int, int]],
    instrument: int | np.ndarray,
    stp: int | np.ndarray,
    ts_step_ns: int,
) -> np.ndarray:
    """Rows of (kind, account, order_id, price, size, side, order_type) as records."""
    n = len(rows)
    table = np.array(rows, dtype=np.int64).reshape(n, 7)
    out = np.zeros(n, dtype=COMMAND_DTYPE)
    out["ts_ns"] = np.arange(1, n + 1, dtype=np.int64) * ts_step_ns
    for column, name in enumerate(("kind", "account", "order_id", "price_ticks", "size_lots", "side", "order_type")):
        out[name] = table[:, column]
    out["instrument"] = instrument
    out["stp"] = stp
    return out


# --- statistics -----------------------------------------------------------------------------

KIND_LABELS = {PLACE: "place", CANCEL: "cancel", AMEND: "amend", DEPOSIT: "deposit"}
TYPE_LABELS = {LIMIT: "limit", MARKET: "market", IOC: "ioc", FOK: "fok", POST_ONLY: "post_only"}


def describe(name: str, n_commands: int, seed: int = 1) -> dict:
    """Generation time, command shares and the final state of the generator's own book."""
    import time

    started = time.perf_counter()
    if name == "exchange_core":
        gen = _ExchangeCoreGen(seed, EXCHANGE_CORE_PRICE_TICKS)
        commands = gen.run(n_commands)
        seconds = time.perf_counter() - started
        book = gen.book
        state = {
            "resting_orders": len(book.orders),
            "price_levels": len(book.levels[0]) + len(book.levels[1]),
            "fills": len(book.fills),
            "last_trade_price_ticks": gen.last_price,
        }
    else:
        commands, order_ids, model = venue_mix_expected(n_commands, seed)
        seconds = time.perf_counter() - started
        state = {
            "resting_orders": len(model.orders),
            "price_levels": sum(len(b.levels[0]) + len(b.levels[1]) for b in model.books),
            "fills": len(model.fills),
            "accepted_places": int((order_ids > 0).sum()),
            "rejected": dict(model.rejected),
            "expired": dict(model.expired),
            "accounts": len(set(commands["account"].tolist())),
        }
    labels = [
        TYPE_LABELS[t] if k == PLACE else KIND_LABELS[k]
        for k, t in zip(commands["kind"].tolist(), commands["order_type"].tolist(), strict=True)
    ]
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    shares = {k: round(100 * v / len(commands), 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    return {"workload": name, "commands": len(commands), "seconds": round(seconds, 2), "shares_pct": shares, **state}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Generate a workload and print its statistics.")
    parser.add_argument("workload", choices=("exchange_core", "venue"))
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(describe(args.workload, args.commands, args.seed), indent=1))
