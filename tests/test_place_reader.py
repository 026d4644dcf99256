"""The Rust fast path of `place` requests (`requests.PlaceReader`) against the Python reading it
speeds up (`requests.place`), the reference: for any body, when the fast path answers, the
Python reading must give the very same intent (same instrument, same strings, same decimals
digit for digit, same ticks and lots); when the fast path declines, the Python reading answers
(and its errors are the gateway's). And well-formed orders, which are what clients send, must
take the fast path, or it would speed up nothing. The same for the fast path that reads the
JSON text itself (a REST body, a WebSocket `order` op's whole message), against what the
gateway reads from that text without it (`orjson`, then the session's checks and `place`)."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyexchange import Engine
from pyexchange.gateway import okx, requests

EXAMPLES_MAX = 20_000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1_500
SETTINGS = settings(max_examples=EXAMPLES_MAX, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INSTRUMENTS = {  # symbol: tick size, lot size, min size
    "BTC-USDT": ("0.1", "0.00001", "0.00001"),
    "ODD-USDT": ("0.05", "10", "20"),
    "TINY-USDT": ("0.0001", "0.01", "0.05"),
}
FIELDS = ("instId", "tdMode", "side", "ordType", "stpMode", "sz", "px", "tgtCcy", "tag", "clOrdId", "instIdCode")


def _instruments() -> dict[str, Any]:
    engine = Engine()
    for symbol, (tick, lot, min_size) in INSTRUMENTS.items():
        engine.add_instrument(symbol, tick_size=tick, lot_size=lot, min_size=min_size)
    return {inst.symbol: inst for inst in engine.instruments()}


INSTRUMENTS_BY_SYMBOL = _instruments()
READER = requests.PlaceReader(INSTRUMENTS_BY_SYMBOL)


def _multiple(step: str) -> st.SearchStrategy[str]:
    """A positive multiple of `step`, written plainly, sometimes with trailing zeros."""
    return st.tuples(st.one_of(st.integers(1, 10), st.integers(1, 10**9)), st.sampled_from(["", "0", "000"])).map(
        lambda n_zeros: _plain(n_zeros[0] * Decimal(step), n_zeros[1])
    )


def _plain(value: Decimal, zeros: str) -> str:
    text = format(value, "f")
    return text + zeros if "." in text else text


ODD_NUMBERS = ["0", "0.0", "00.00", "-1", "+1", "1e3", "1E-5", " 1", "1 ", "1_0", "1.", ".5", "1.2.3", "\u0663",
               "0.1\u0660", "NaN", "Infinity", "", "4611686018427387904", "4611686018427387905"]  # fmt: skip
NUMBER = st.one_of(
    st.from_regex(r"[0-9]{1,14}(\.[0-9]{1,12})?", fullmatch=True),
    st.from_regex(r"[0-9]{20,30}(\.[0-9]{1,15})?", fullmatch=True),  # around the fast path's digit limit
    st.sampled_from(ODD_NUMBERS),
    st.integers(-5, 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)
TEXT_JUNK = st.one_of(st.none(), st.integers(), st.text(max_size=40), st.sampled_from(["", " ", "\x00"]),
                      st.lists(st.integers(), max_size=2))  # fmt: skip


def _field(valid: list[str]) -> st.SearchStrategy[Any]:
    near = [v.upper() for v in valid] + [v + " " for v in valid]
    return st.one_of(st.sampled_from(valid), st.sampled_from(near), TEXT_JUNK)


ANY_FIELD = {
    "instId": _field([*INSTRUMENTS, "ETH-USDT"]),
    "tdMode": _field(["cash", "cross", "isolated"]),
    "side": _field(["buy", "sell"]),
    "ordType": _field(list(requests.ORDER_TYPES)),
    "stpMode": _field([*requests.STP_MODES, "none"]),
    "sz": st.one_of(NUMBER, _multiple("0.00001"), _multiple("10"), _multiple("0.01")),
    "px": st.one_of(NUMBER, _multiple("0.1"), _multiple("0.05"), _multiple("0.0001")),
    "tgtCcy": _field(["base_ccy", "quote_ccy"]),
    "tag": st.one_of(st.text(max_size=20), TEXT_JUNK),
    "clOrdId": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{0,34}", fullmatch=True), TEXT_JUNK),
    "instIdCode": st.one_of(st.integers(0, 4), st.sampled_from(["1", "2", "x", ""]), st.none()),
}


@st.composite
def good_orders(draw: st.DrawFn, *, loose: bool = False) -> dict[str, Any]:
    """A well-formed order of the kinds clients send, every field a string; `loose`, its size
    may be under the minimum and its price off the tick."""
    symbol = draw(st.sampled_from(sorted(INSTRUMENTS)))
    tick, lot, min_size = (Decimal(v) for v in INSTRUMENTS[symbol])
    order_type = draw(st.sampled_from(requests.ORDER_TYPES))
    side = draw(st.sampled_from(["buy", "sell"]))
    lots_min = 1 if loose else int(min_size / lot)
    lots = draw(st.one_of(st.integers(lots_min, lots_min + 5), st.integers(lots_min, 10**12)))
    body: dict[str, Any] = {"instId": symbol, "tdMode": "cash", "side": side, "ordType": order_type,
                            "sz": _plain(lots * lot, draw(st.sampled_from(["", "0"])))}  # fmt: skip
    if order_type == "market":
        if side == "buy" or draw(st.booleans()):
            body["tgtCcy"] = "base_ccy"
    else:
        ticks = Decimal(draw(st.integers(1, 10**12)))
        off_tick = draw(st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("0.01")])) if loose else Decimal(0)
        body["px"] = _plain((ticks + off_tick) * tick, "")
    if draw(st.booleans()):
        body["clOrdId"] = draw(st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True))
    if draw(st.booleans()):
        body["stpMode"] = draw(st.sampled_from(requests.STP_MODES))
    if draw(st.booleans()):
        body["tag"] = draw(st.text(max_size=16))
    return body


@st.composite
def near_good_orders(draw: st.DrawFn) -> Any:
    """A well-formed order with a field or two changed to anything, or dropped; or any body."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.fixed_dictionaries({}, optional=ANY_FIELD), st.sampled_from([None, [], "order", 1])))
    body = draw(good_orders(loose=True))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        if draw(st.booleans()):
            body[name] = draw(ANY_FIELD[name])
        else:
            body.pop(name, None)
    return body


def _python_reading(body: Any) -> requests.PlaceIntent | None:
    try:
        return requests.place(body, INSTRUMENTS_BY_SYMBOL)
    except okx.OkxError:
        return None


def _exactly(intent: requests.PlaceIntent) -> tuple[Any, ...]:
    """Its type, then every field with its type, decimals by their digits (`Decimal("1.0") == Decimal("1")`)."""
    return (type(intent), *((type(v), str(v) if isinstance(v, Decimal) else id(v) if v is intent.instrument else v)
                            for v in intent))  # fmt: skip


@SETTINGS
@given(near_good_orders())
def test_the_fast_path_answers_only_what_the_python_reading_answers_alike(body: Any) -> None:
    fast = READER.fast.read(body)
    reference = _python_reading(body)
    if fast is not None:
        assert reference is not None, f"the fast path took {body!r}, which the Python reading refuses"
        assert _exactly(fast) == _exactly(reference)
    assert _exactly_or_none(READER, body) == (None if reference is None else _exactly(reference))


def _exactly_or_none(reader: requests.PlaceReader, body: Any) -> tuple[Any, ...] | None:
    try:
        return _exactly(reader(body))
    except okx.OkxError:
        return None


@SETTINGS
@given(good_orders())
def test_well_formed_orders_take_the_fast_path(body: dict[str, Any]) -> None:
    fast = READER.fast.read(body)
    assert fast is not None, f"the fast path declined {body!r}"
    reference = _python_reading(body)
    assert reference is not None
    assert _exactly(fast) == _exactly(reference)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"sz": 1}, "a JSON number"),
        ({"px": 100.5}, "a JSON number"),
        ({"instId": "", "instIdCode": 1}, "instIdCode instead of instId"),
        ({"tag": "x" * 17}, "a tag the Python reading cuts to 16 characters"),
        ({"sz": "0.00100000000000000000000000"}, "more digits than the fast path reads"),
    ],
)
def test_what_the_fast_path_leaves_to_the_python_reading(change: dict[str, Any], why: str) -> None:
    body = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "100"}
    body.update(change)
    assert READER.fast.read(body) is None, why
    reference = _python_reading(body)
    assert reference is not None, "the Python reading takes it"
    assert _exactly(READER(body)) == _exactly(reference)


def test_the_reader_raises_the_python_readings_error() -> None:
    body = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "100.05"}
    with pytest.raises(okx.OkxError) as caught:
        READER(body)
    assert (caught.value.code, caught.value.msg) == (okx.PARAMETER_ERROR, "Parameter px error: 100.05 is not a "
                                                     "multiple of the tick size 0.1")  # fmt: skip


def _gateway_reading(raw: bytes) -> requests.PlaceIntent | None:
    """What the gateway reads from a body without the JSON fast path."""
    try:
        return _python_reading(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None


def _exactly_if(intent: requests.PlaceIntent | None) -> tuple[Any, ...] | None:
    return None if intent is None else _exactly(intent)


@SETTINGS
@given(near_good_orders())
def test_the_json_fast_path_answers_only_what_the_gateway_reads_alike(body: Any) -> None:
    raw = json.dumps(body).encode()  # (not orjson: it refuses integers past 64 bits; NaN stays NaN)
    fast = READER.fast.read_json(raw)
    if fast is not None:
        assert _exactly(fast) == _exactly_if(_gateway_reading(raw)), f"the JSON fast path took {raw!r}"
        assert _exactly(fast) == _exactly_if(READER.fast.read(orjson.loads(raw)))


@SETTINGS
@given(good_orders(), st.sampled_from([{}, {"reduceOnly": False, "ccy": None, "attach": [{"px": 1}]}]))
def test_well_formed_json_orders_take_the_json_fast_path(body: dict[str, Any], others: dict[str, Any]) -> None:
    """Fields it does not read, of any type, change nothing."""
    raw = json.dumps({**others, **body}).encode()
    fast = READER.fast.read_json(raw)
    assert fast is not None, f"the JSON fast path declined {raw!r}"
    assert _exactly(fast) == _exactly_if(_gateway_reading(raw))


LIMIT = b'"instId": "BTC-USDT", "tdMode": "cash", "ordType": "limit", "sz": "0.001", "side": "buy"'


@pytest.mark.parametrize(
    ("raw", "side"),
    [
        (b"{" + LIMIT + b', "px": "100", "side": "sell"}', "sell"),  # a repeated key counts by its last value
        (b'{"instId": "BTC\\u002dUSDT", "tdMode": "c\\u0061sh", "ordType": "limit", "sz": "0.001", "side": "buy", '
         b'"px": "100", "\\u0063lOrdId": "a1"}', "buy"),  # escapes, in values and in keys
        (b" \n{" + LIMIT + b', "px": "100"}\t', "buy"),
        (b"{" + LIMIT + b', "px": 100}', None),  # a JSON number
        (b"{" + LIMIT + b', "px": "100"', None),  # not JSON
        (b"{" + LIMIT + b', "px": "1\xff"}', None),  # not UTF-8
        (b"{" + LIMIT + b', "px": "100", "tag": "\\ud800"}', None),  # a lone surrogate
        (b"[{" + LIMIT + b', "px": "100"}]', None),
        (b"", None),
    ],
)  # fmt: skip
def test_json_the_fast_path_reads_and_leaves(raw: bytes, side: str | None) -> None:
    fast = READER.fast.read_json(raw)
    assert (None if fast is None else fast.side) == side
    if fast is not None:
        assert _exactly(fast) == _exactly_if(_gateway_reading(raw))
        assert fast.instrument.symbol == "BTC-USDT" and fast.client_order_id in ("", "a1")


def _session_reading(message: str) -> tuple[str | None, requests.PlaceIntent] | None:
    """(id, intent) if the session takes `message` as an `order` op whose order `place` reads."""
    try:
        parsed = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or parsed.get("op") != "order":
        return None
    op_id, args = parsed.get("id"), parsed.get("args")
    if op_id is not None and (not isinstance(op_id, str) or len(op_id) > 32):
        return None
    if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
        return None
    intent = _python_reading(args[0])
    return None if intent is None else (op_id, intent)


OP_IDS = st.one_of(st.none(), st.text(max_size=34), st.integers(), st.just(""))
OPS = st.sampled_from(["order", "batch-orders", "cancel-order", "Order", "order "])
ORDER_OPS = st.fixed_dictionaries(
    {"op": OPS, "args": st.one_of(st.lists(near_good_orders(), max_size=2), st.just([]), TEXT_JUNK)},
    optional={"id": OP_IDS, "expTime": st.one_of(st.text(max_size=5), st.integers())},
)


@SETTINGS
@given(ORDER_OPS)
def test_the_order_op_fast_path_answers_only_what_the_session_reads_alike(op: dict[str, Any]) -> None:
    message = json.dumps(op)
    fast = READER.fast.read_order_op(message)
    if fast is not None:
        reference = _session_reading(message)
        assert reference is not None, f"the fast path took {message!r}, which the session does not read so"
        assert fast[0] == reference[0] and _exactly(fast[1]) == _exactly(reference[1])


def test_an_order_op_must_be_an_object() -> None:
    """A JSON array is no op, even with an op's values in an op's order (as a derived serde
    struct would read it)."""
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "100"}
    assert READER.fast.read_order_op(json.dumps({"id": "a", "op": "order", "args": [order]})) is not None
    assert READER.fast.read_order_op(json.dumps(["a", "order", [order]])) is None
    assert READER.fast.read_json(json.dumps(list(order.values())).encode()) is None


@SETTINGS
@given(good_orders(), st.one_of(st.none(), st.from_regex(r"[a-z0-9]{0,32}", fullmatch=True)))
def test_well_formed_order_ops_take_the_fast_path(order: dict[str, Any], op_id: str | None) -> None:
    message = json.dumps({"op": "order", "args": [order]} | ({} if op_id is None else {"id": op_id}))
    fast = READER.fast.read_order_op(message)
    assert fast is not None, f"the fast path declined {message!r}"
    reference = _session_reading(message)
    assert reference is not None and fast[0] == reference[0] and _exactly(fast[1]) == _exactly(reference[1])
