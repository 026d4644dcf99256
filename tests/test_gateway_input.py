"""Malformed requests, signed by hand with httpx against a real `pyexchange serve`, must each get
an OKX error envelope with its exact code (never a 5xx) and leave the account's balances and
orders exactly as they were; then schemathesis fuzzes every operation of the app's own OpenAPI
schema, signed, and no answer may be a 5xx or anything but an OKX envelope."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastapi
import httpx
import hypothesis
import hypothesis.strategies as st
import pytest
import requests
import schemathesis

from pyexchange.gateway import okx, operator, rest
from pyexchange.gateway.app import add_routers
from pyexchange.gateway.auth import sign
from tests.gateway_server import Server, running_server

FUZZ_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "30"))
ORDER = "/api/v5/trade/order"
BATCH = "/api/v5/trade/batch-orders"
CANCEL = "/api/v5/trade/cancel-order"
AMEND = "/api/v5/trade/amend-order"
CANCEL_ALL_AFTER = "/api/v5/trade/cancel-all-after"
GOOD = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "100"}
GOOD_SOL = {**GOOD, "instId": "SOL-USDT", "sz": "0.1", "px": "10"}
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


# ---- signing and sending ----


def iso_ms(at_s: float) -> str:
    """OKX's OK-ACCESS-TIMESTAMP: ISO 8601 in UTC with milliseconds, e.g. 2020-12-08T09:08:57.715Z."""
    return datetime.fromtimestamp(at_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signed_headers(creds: dict[str, Any], method: str, path: str, body: str, timestamp: str) -> dict[str, str]:
    return {"OK-ACCESS-KEY": creds["apiKey"], "OK-ACCESS-PASSPHRASE": creds["passphrase"],
            "OK-ACCESS-TIMESTAMP": timestamp,
            "OK-ACCESS-SIGN": sign(creds["secretKey"], timestamp + method + path + body)}  # fmt: skip


class Client:
    """One demo account's signed REST calls; each POST gets a fresh millisecond, so that no test
    request is refused as a replay of the one before."""

    def __init__(self, server: Server, n: int) -> None:
        self.base_url, self.creds = server.base_url, server.credentials[n]
        self.http = httpx.Client(timeout=30)
        self.resting: dict[str, str] = {}  # a placeholder in a request template -> the ordId it stands for
        self._last_ms = 0

    def timestamp(self) -> str:
        now_ms = time.time_ns() // 1_000_000
        while now_ms <= self._last_ms:
            time.sleep(0.001)
            now_ms = time.time_ns() // 1_000_000
        self._last_ms = now_ms
        return iso_ms(now_ms / 1000)

    def prepare(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> httpx.Request:
        """The request as it will travel: signing needs the exact path, query and body bytes."""
        content = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else b"")
        if body is not None and not isinstance(body, bytes | str):
            content = json.dumps(body).encode()
        return self.http.build_request(method, self.base_url + path, params=params, content=content,
                                       headers={"Content-Type": "application/json"})  # fmt: skip

    def sign(self, request: httpx.Request, timestamp: str | None = None) -> httpx.Request:
        body = request.content.decode("utf-8", errors="replace")
        path = request.url.raw_path.decode("ascii")
        request.headers.update(signed_headers(self.creds, request.method, path, body, timestamp or self.timestamp()))
        return request

    def send(self, request: httpx.Request) -> httpx.Response:
        return self.http.send(request)

    def call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> httpx.Response:
        return self.send(self.sign(self.prepare(method, path, body, params)))

    def data(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        answer = self.call("GET", path, params=params)
        assert answer.status_code == 200, answer.text
        envelope = answer.json()
        assert envelope["code"] == "0", envelope
        data: list[dict[str, Any]] = envelope["data"]
        return data

    def state(self) -> dict[str, Any]:
        """Everything a request could change for this account: balances (without the time of the
        answer), live orders and closed orders."""
        balance = self.data("/api/v5/account/balance")[0]
        details = sorted(({k: v for k, v in d.items() if k != "uTime"} for d in balance["details"]),
                         key=lambda d: d["ccy"])  # fmt: skip
        return {"balances": details, "live": self.data("/api/v5/trade/orders-pending"),
                "closed": self.data("/api/v5/trade/orders-history", {"instType": "SPOT"})}  # fmt: skip

    def live_ids(self) -> set[str]:
        return {o["ordId"] for o in self.data("/api/v5/trade/orders-pending")}

    def place(self, order: dict[str, str]) -> str:
        answer = self.call("POST", ORDER, order).json()
        assert answer["code"] == "0" and answer["data"][0]["sCode"] == "0", answer
        order_id: str = answer["data"][0]["ordId"]
        return order_id


def error_envelope(answer: httpx.Response) -> dict[str, Any]:
    """The body as an OKX error envelope: a non-"0" code, a message, and data a list."""
    assert answer.status_code < 500, (answer.status_code, answer.text)
    body = answer.json()
    assert isinstance(body, dict) and set(body) == {"code", "msg", "data"}, body
    assert isinstance(body["data"], list), body
    assert body["code"] != "0" and isinstance(body["msg"], str) and body["msg"], body
    return body


def assert_refused(answer: httpx.Response, expect: Expect) -> None:
    body = error_envelope(answer)
    assert (answer.status_code, body["code"]) == (expect.status, expect.code), body
    if expect.s_code is None:
        assert body["data"] == [], body
    else:
        codes = [item["sCode"] for item in body["data"]]
        wanted = list(expect.s_code) if isinstance(expect.s_code, tuple) else [expect.s_code] * len(codes)
        assert codes and codes == wanted and all(item["sMsg"] for item in body["data"]), body
    if expect.msg_has:
        assert expect.msg_has in (body["data"][0]["sMsg"] if expect.s_code else body["msg"]), body


# ---- fixtures ----


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("input-zone")) as zone:
        yield zone


@pytest.fixture(scope="module")
def victim(server: Server) -> Client:
    """Account 0, with one resting order in BTC-USDT and one in SOL-USDT for bad cancels and amends to aim at."""
    client = Client(server, 0)
    client.resting = {"$BTC": client.place({**GOOD, "clOrdId": "restBtc"}),
                      "$SOL": client.place({**GOOD_SOL, "clOrdId": "restSol"})}  # fmt: skip
    return client


@pytest.fixture(scope="module")
def trader(server: Server) -> Client:
    return Client(server, 1)


# ---- bad input, one request at a time ----


@dataclass(frozen=True)
class Expect:
    status: int
    code: str
    s_code: str | tuple[str, ...] | None = None  # the sCode of every order (or of each, in order), for code "1"
    msg_has: str = ""


def top(code: str, msg_has: str = "", status: int = 400) -> Expect:
    return Expect(status, code, None, msg_has)


def each(s_code: str, msg_has: str = "") -> Expect:
    """Order entry's answer: HTTP 200, code "1", and this sCode for every order."""
    return Expect(200, "1", s_code, msg_has)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**base, **changes}.items() if v is not DROP}


DROP = object()
BAD_NUMBERS = ["1e400", "99999999999999999999999999999999", "NaN", "Infinity", "-Infinity", "-1", "0", "-0",
        "1E+99999999999", "1e-400", "0x10", "1/2", "", " "]  # fmt: skip
BAD_NUMBER_CODES = {"": "50014", " ": "51000"}

PLACE_CASES: list[tuple[str, Any, Expect]] = [
    ("bad JSON", '{"instId": "BTC-USDT",', top("50002")),
    ("empty body", "", top("50000")),
    ("not UTF-8", b"\xff\xfe{}", top("50002")),
    ("nested 100000 deep", "[" * 100_000 + "]" * 100_000, top("51000", "larger than", status=413)),
    ("nested 10000 deep", "[" * 10_000 + "]" * 10_000, top("50002")),
    ("an array of the order", [GOOD], each("51000", "JSON object")),
    ("an empty array", [], each("51000")),
    ("null", "null", each("51000")),
    ("a number", "7", each("51000")),
    ("a JSON 1e400", "1e400", top("50002")),
    ("a string", '"order"', each("51000")),
    ("true", "true", each("51000")),
    ("an empty object", {}, each("50014", "instId")),
    *[(f"missing {f}", with_(GOOD, **{f: DROP}), each("50014", f))
      for f in ("instId", "tdMode", "side", "ordType", "sz", "px")],
    *[(f"{f} null", with_(GOOD, **{f: None}), each("50014", f)) for f in ("instId", "sz", "px")],
    ("instId a number", with_(GOOD, instId=1), each("51000", "instId")),
    ("instId an object", with_(GOOD, instId={"id": "BTC-USDT"}), each("51000", "instId")),
    ("instId an array", with_(GOOD, instId=["BTC-USDT"]), each("51000", "instId")),
    ("instId true", with_(GOOD, instId=True), each("51000", "instId")),
    ("side a number", with_(GOOD, side=0), each("51000", "side")),
    ("tdMode false", with_(GOOD, tdMode=False), each("51000", "tdMode")),
    ("sz an object", with_(GOOD, sz={"value": "0.001"}), each("51000", "sz")),
    ("sz true", with_(GOOD, sz=True), each("51000", "sz")),
    ("px an array", with_(GOOD, px=["100"]), each("51000", "px")),
    ("px a JSON 1e400", '{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.001","px":1e400}',
     top("50002")),
    ("px a JSON 32-digit number", with_(GOOD, px=99999999999999999999999999999999), each("51000", "px")),
    ("px with an exponent", with_(GOOD, px="1e2"), each("51000", "px")),
    ("px with spaces", with_(GOOD, px=" 100 "), each("51000", "px")),
    ("px with an underscore", with_(GOOD, px="1_00"), each("51000", "px")),
    ("px in Arabic-Indic digits", with_(GOOD, px="\u0661\u0660\u0660"), each("51000", "px")),
    ("tag a number", with_(GOOD, tag=7), each("51000", "tag")),
    ("stpMode a number", with_(GOOD, stpMode=1), each("51000", "stpMode")),
    ("unknown instrument", with_(GOOD, instId="DOGE-USDT"), each("51001")),
    ("instrument in lower case", with_(GOOD, instId="btc-usdt"), each("51001")),
    ("instrument 1 MB long", with_(GOOD, instId="A" * 1_000_000), top("51000", "larger than", status=413)),
    ("instrument 50 kB long", with_(GOOD, instId="A" * 50_000), each("51001")),
    ("tdMode cross", with_(GOOD, tdMode="cross"), each("51000", "tdMode")),
    ("side BUY", with_(GOOD, side="BUY"), each("51000", "side")),
    ("side 50 kB long", with_(GOOD, side="b" * 50_000), each("51000", "side")),
    ("ordType stop", with_(GOOD, ordType="stop"), each("51000", "ordType")),
    ("stpMode none", with_(GOOD, stpMode="none"), each("51000", "stpMode")),
    ("market buy in quote currency", with_(GOOD, ordType="market", px=DROP), each("51000", "tgtCcy")),
    ("off-tick px", with_(GOOD, px="100.05"), each("51000", "tick size")),
    ("off-lot sz", with_(GOOD, sz="0.000001"), each("51000", "lot size")),
    ("below-min sz", with_(GOOD_SOL, sz="0.005"), each("51020")),
    ("sz 50 kB of digits", with_(GOOD, sz="1" * 50_000), each("51000", "sz")),
    ("a body over 64 KiB", with_(GOOD, sz="1" * 100_000), top("51000", "larger than", status=413)),
    ("sz above the instrument's max", with_(GOOD, sz="100000"), each("51203")),
    *[(f"sz {v!r}", with_(GOOD, sz=v), each(BAD_NUMBER_CODES.get(v, "51000"), "sz")) for v in BAD_NUMBERS],
    *[(f"px {v!r}", with_(GOOD, px=v), each(BAD_NUMBER_CODES.get(v, "51000"), "px")) for v in BAD_NUMBERS],
    *[(f"clOrdId {v!r}"[:40], with_(GOOD, clOrdId=v), each("51000", "clOrdId"))
      for v in ("has space", "slash/", "ünï", "x" * 33, "a\u0000b", 12345, ["a"], True)],
]  # fmt: skip

BATCH_CASES: list[tuple[str, Any, Expect]] = [
    ("bad JSON", "[{", top("50002")),
    ("an object, not an array", GOOD, top("51000", "array")),
    ("an empty array", [], top("51000", "array")),
    ("null", "null", top("51000")),
    ("21 orders", [GOOD] * 21, top("51004", "21")),
    ("100 orders", [GOOD] * 100, top("51004")),
    ("scalars", [1, "x", None, True], each("51000", "JSON object")),
    ("all bad", [with_(GOOD, px="100.05"), with_(GOOD, instId="DOGE-USDT")], Expect(200, "1", ("51000", "51001"))),
    ("20 off-lot orders", [with_(GOOD, sz="0.000001")] * 20, each("51000", "lot size")),
]

CANCEL_CASES: list[tuple[str, Any, Expect]] = [
    ("bad JSON", '{"instId"', top("50002")),
    ("empty body", "   ", top("50000")),
    ("an array of the cancel", [{"instId": "BTC-USDT", "ordId": "$BTC"}], each("51000")),
    ("null", "null", each("51000")),
    ("missing instId", {"ordId": "$BTC"}, each("50014", "instId")),
    ("missing ordId and clOrdId", {"instId": "BTC-USDT"}, each("50014", "ordId")),
    ("unknown instrument", {"instId": "DOGE-USDT", "ordId": "$BTC"}, each("51001")),
    ("the order under another instrument", {"instId": "ETH-USDT", "ordId": "$BTC"}, each("51400")),
    ("ordId a number", '{"instId": "BTC-USDT", "ordId": $BTC}', each("51000", "ordId")),
    ("ordId in Arabic-Indic digits", {"instId": "BTC-USDT", "ordId": "$BTC_ARABIC"}, each("51000", "ordId")),
    ("ordId a superscript digit", {"instId": "BTC-USDT", "ordId": "²"}, each("51000", "ordId")),
    ("ordId with a sign", {"instId": "BTC-USDT", "ordId": "+$BTC"}, each("51000", "ordId")),
    ("ordId 0", {"instId": "BTC-USDT", "ordId": "0"}, each("51000", "ordId")),
    ("ordId -1", {"instId": "BTC-USDT", "ordId": "-1"}, each("51000", "ordId")),
    ("ordId past int64", {"instId": "BTC-USDT", "ordId": "99999999999999999999999999999999"}, each("51000", "ordId")),
    ("ordId 5000 digits", {"instId": "BTC-USDT", "ordId": "9" * 5000}, each("51000", "ordId")),
    ("unknown ordId", {"instId": "BTC-USDT", "ordId": "123456789"}, each("51400")),
    ("unknown clOrdId", {"instId": "BTC-USDT", "clOrdId": "noSuchOrder"}, each("51400")),
    ("bad clOrdId", {"instId": "BTC-USDT", "clOrdId": "rest Btc"}, each("51000", "clOrdId")),
    ("clOrdId 33 long", {"instId": "BTC-USDT", "clOrdId": "r" * 33}, each("51000", "clOrdId")),
    ("clOrdId a number", {"instId": "BTC-USDT", "clOrdId": 1}, each("51000", "clOrdId")),
]

AMEND_CASES: list[tuple[str, Any, Expect]] = [
    ("bad JSON", "{", top("50002")),
    ("an array of the amend", [{"instId": "BTC-USDT", "ordId": "$BTC", "newSz": "0.002"}], each("51000")),
    ("no change asked", {"instId": "BTC-USDT", "ordId": "$BTC"}, each("50014", "newSz")),
    ("missing instId", {"ordId": "$BTC", "newSz": "0.002"}, each("50014", "instId")),
    ("unknown instrument", {"instId": "DOGE-USDT", "ordId": "$BTC", "newSz": "0.002"}, each("51001")),
    ("ordId in Arabic-Indic digits", {"instId": "BTC-USDT", "ordId": "$BTC_ARABIC", "newSz": "0.002"},
     each("51000", "ordId")),
    ("newSz an object", '{"instId": "BTC-USDT", "ordId": "$BTC", "newSz": {}}', each("51000", "newSz")),
    ("newPx null and newSz null", {"instId": "BTC-USDT", "ordId": "$BTC", "newPx": None, "newSz": None},
     each("50014", "newSz")),
    ("newPx off-tick", {"instId": "BTC-USDT", "ordId": "$BTC", "newPx": "100.05"}, each("51000", "tick size")),
    ("newSz off-lot", {"instId": "BTC-USDT", "ordId": "$BTC", "newSz": "0.000001"}, each("51000", "lot size")),
    ("newSz below min", {"instId": "SOL-USDT", "ordId": "$SOL", "newSz": "0.005"}, each("51020")),
    ("newSz above max", {"instId": "BTC-USDT", "ordId": "$BTC", "newSz": "100000"}, each("51203")),
    ("reqId a number", {"instId": "BTC-USDT", "ordId": "$BTC", "newSz": "0.002", "reqId": 5}, each("51000", "reqId")),
    ("unknown ordId", {"instId": "BTC-USDT", "ordId": "123456789", "newSz": "0.002"}, each("51400")),
    *[(f"newSz {v!r}", {"instId": "BTC-USDT", "ordId": "$BTC", "newSz": v, "newPx": "101"},
       each(BAD_NUMBER_CODES.get(v, "51000"), "newSz")) for v in BAD_NUMBERS if v],
    *[(f"newPx {v!r}", {"instId": "BTC-USDT", "ordId": "$BTC", "newPx": v, "newSz": "0.002"},
       each(BAD_NUMBER_CODES.get(v, "51000"), "newPx")) for v in BAD_NUMBERS if v],
]  # fmt: skip

CANCEL_ALL_AFTER_CASES: list[tuple[str, Any, Expect]] = [
    ("bad JSON", '{"timeOut": ', top("50002")),
    ("an array", [{"timeOut": "10"}], top("51000", "JSON object")),
    ("missing timeOut", {}, top("50014", "timeOut")),
    ("timeOut None", {"timeOut": None}, top("50014", "timeOut")),
    *[(f"timeOut {v!r}"[:40], {"timeOut": v}, top("51000", "timeOut"))
      for v in ("5", "121", "-1", "abc", "1e400", "99999999999999999999999999999999", "NaN", "30.0", "٣٠", "²",
                "9" * 5000, True, 30.5, [30], {"s": 30})],
]  # fmt: skip

GET_CASES: list[tuple[str, str, dict[str, str], Expect]] = [
    ("books without instId", "/api/v5/market/books", {}, top("50014", "instId")),
    ("books of an unknown instrument", "/api/v5/market/books", {"instId": "DOGE-USDT"}, top("51001")),
    *[(f"books sz {v!r}"[:40], "/api/v5/market/books", {"instId": "BTC-USDT", "sz": v},
       top("51000", "positive integer"))
      for v in ("abc", "0", "-1", "1e400", "99999999999999999999999999999999", "NaN", "²", "٣", "9" * 5000, "1.5")],
    ("candles of an unknown instrument", "/api/v5/market/candles", {"instId": "DOGE-USDT"}, top("51001")),
    ("candles bar 7m", "/api/v5/market/candles", {"instId": "BTC-USDT", "bar": "7m"}, top("51000", "bar")),
    *[(f"candles {p} {v!r}"[:40], "/api/v5/market/candles", {"instId": "BTC-USDT", p: v}, top("51000", p))
      for p in ("after", "before") for v in ("abc", "-1", "²", "٣", "1e400", "99999999999999999999")],
    *[(f"candles limit {v!r}", "/api/v5/market/candles", {"instId": "BTC-USDT", "limit": v}, top("51000", "limit"))
      for v in ("0", "-5", "²", "99999999999")],
    ("order without instId", "/api/v5/trade/order", {"ordId": "1"}, top("50014", "instId")),
    ("order without ids", "/api/v5/trade/order", {"instId": "BTC-USDT"}, top("50014", "ordId")),
    ("order of an unknown instrument", "/api/v5/trade/order", {"instId": "DOGE-USDT", "ordId": "1"}, top("51001")),
    *[(f"order ordId {v!r}"[:40], "/api/v5/trade/order", {"instId": "BTC-USDT", "ordId": v}, top("51000", "ordId"))
      for v in ("abc", "-1", "0", "²", "٣", "9" * 5000)],
    ("order unknown", "/api/v5/trade/order", {"instId": "BTC-USDT", "ordId": "123456789"}, top("51603")),
    ("order bad clOrdId", "/api/v5/trade/order", {"instId": "BTC-USDT", "clOrdId": "a b"}, top("51000", "clOrdId")),
    ("history without instType", "/api/v5/trade/orders-history", {}, top("50014", "instType")),
    ("history instType FOO", "/api/v5/trade/orders-history", {"instType": "FOO"}, top("51000", "instType")),
    ("history state live", "/api/v5/trade/orders-history", {"instType": "SPOT", "state": "live"},
     top("51000", "state")),
    ("history of an unknown instrument", "/api/v5/trade/orders-history", {"instType": "SPOT", "instId": "X-Y"},
     top("51001")),
    *[(f"history {p} {v!r}"[:40], "/api/v5/trade/orders-history", {"instType": "SPOT", p: v}, top("51000", p))
      for p in ("after", "before", "begin", "end", "limit") for v in ("abc", "-1", "²", "99999999999999999999")],
    ("balance of an unknown currency", "/api/v5/account/balance", {"ccy": "DOGE"}, top("51000", "ccy")),
    ("balance of an empty currency", "/api/v5/account/balance", {"ccy": "BTC,"}, top("51000", "ccy")),
    ("balance of a 2000-character currency", "/api/v5/account/balance", {"ccy": "X" * 2000}, top("51000", "ccy")),
]  # fmt: skip


def _body(template: Any, resting: dict[str, str]) -> Any:
    if isinstance(template, bytes):
        return template
    text = template if isinstance(template, str) else json.dumps(template)
    for name in sorted(resting, key=len, reverse=True):
        text = text.replace(f"{name}_ARABIC", resting[name].translate(ARABIC_INDIC)).replace(name, resting[name])
    return text


def _cases(path: str, cases: list[tuple[str, Any, Expect]]) -> list[Any]:
    return [pytest.param(path, body, expect, id=f"{path.rsplit('/', 1)[1]}: {name}") for name, body, expect in cases]


@pytest.mark.parametrize(
    ("path", "body", "expect"),
    _cases(ORDER, PLACE_CASES) + _cases(BATCH, BATCH_CASES) + _cases(CANCEL, CANCEL_CASES)
    + _cases(AMEND, AMEND_CASES) + _cases(CANCEL_ALL_AFTER, CANCEL_ALL_AFTER_CASES),
)  # fmt: skip
def test_bad_post_is_refused_without_effect(victim: Client, path: str, body: Any, expect: Expect) -> None:
    before = victim.state()
    answer = victim.call("POST", path, _body(body, victim.resting))
    assert_refused(answer, expect)
    assert victim.state() == before


@pytest.mark.parametrize(("path", "params", "expect"), [pytest.param(p, q, e, id=n) for n, p, q, e in GET_CASES])
def test_bad_query_is_refused_without_effect(victim: Client, path: str, params: dict[str, str], expect: Expect) -> None:
    before = victim.state()
    assert_refused(victim.call("GET", path, params=params), expect)
    assert victim.state() == before


def test_state_holds_the_resting_orders(victim: Client) -> None:
    """The bad cancels and amends above aimed at live orders: they are still there, unchanged."""
    live = {o["clOrdId"]: (o["ordId"], o["px"], o["sz"], o["state"]) for o in victim.state()["live"]}
    resting = victim.resting
    assert live == {"restBtc": (resting["$BTC"], "100", "0.001", "live"),
                    "restSol": (resting["$SOL"], "10", "0.1", "live")}  # fmt: skip


@pytest.mark.parametrize(("method", "path"), [("PUT", ORDER), ("GET", CANCEL), ("DELETE", BATCH), ("PATCH", AMEND)])
def test_order_entry_paths_refuse_other_methods(victim: Client, method: str, path: str) -> None:
    """Order entry is answered before FastAPI's routing (`app.OrderEntry`), but only for POST:
    other methods still reach the routes, which refuse them with 405 in an OKX envelope."""
    before = victim.state()
    answer = victim.call(method, path, json.dumps({"instId": "BTC-USDT", "ordId": victim.resting["$BTC"]}))
    assert_refused(answer, top("51000", "Method Not Allowed", status=405))
    assert victim.state() == before


# ---- a batch: each order stands alone ----


@pytest.mark.parametrize(
    ("bad", "s_code"),
    [
        pytest.param(with_(GOOD, px="100.05"), "51000", id="off-tick"),
        pytest.param(with_(GOOD, px="1E+99999999999"), "51000", id="px 1E+99999999999"),
        pytest.param(with_(GOOD, instId="DOGE-USDT"), "51001", id="unknown instrument"),
        pytest.param(with_(GOOD_SOL, sz="0.005"), "51020", id="below min"),
        pytest.param(with_(GOOD, sz=DROP), "50014", id="missing sz"),
        pytest.param("order", "51000", id="not an object"),
    ],
)
def test_batch_places_the_good_order_and_refuses_the_bad_one(trader: Client, bad: Any, s_code: str) -> None:
    live_before = trader.live_ids()
    answer = trader.call("POST", BATCH, [with_(GOOD, px="99"), bad])
    body = answer.json()
    assert (answer.status_code, body["code"], body["msg"]) == (200, "2", "Bulk operation partially succeeded."), body
    placed, refused = body["data"]
    assert placed["sCode"] == "0" and placed["ordId"], body
    assert refused["sCode"] == s_code and refused["sMsg"] and refused["ordId"] == "", body
    assert trader.live_ids() == live_before | {placed["ordId"]}
    canceled = trader.call("POST", CANCEL, {"instId": "BTC-USDT", "ordId": placed["ordId"]}).json()
    assert canceled["code"] == "0", canceled
    assert trader.live_ids() == live_before


# ---- text that is not text ----

SURROGATE = "\\ud800"  # a lone UTF-16 surrogate: a valid JSON escape, but no Unicode character


@pytest.fixture(scope="module")
def bystander(server: Server) -> Client:
    """Account 2, with one resting order, for bugs whose effect would spoil the other accounts' tests."""
    client = Client(server, 2)
    client.resting = {"$BTC": client.place({**GOOD, "clOrdId": "bystander"})}
    return client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(ORDER, json.dumps({**GOOD, "px": "97", "tag": "T"}).replace('"T"', f'"{SURROGATE}"'), id="tag"),
        pytest.param(AMEND, f'{{"instId": "BTC-USDT", "ordId": "$BTC", "newSz": "0.002", "reqId": "{SURROGATE}"}}',
                     id="reqId"),
    ],
)  # fmt: skip
def test_lone_surrogate_is_refused_without_effect(bystander: Client, path: str, body: str) -> None:
    before = bystander.state()
    answer = bystander.call("POST", path, _body(body, bystander.resting))
    assert_refused(answer, top("50002"))  # strict JSON: a lone surrogate is not valid UTF-8 text
    assert bystander.state() == before


def test_lone_surrogate_tag_of_cancel_all_after_is_invalid_json(bystander: Client) -> None:
    answer = bystander.call("POST", CANCEL_ALL_AFTER, f'{{"timeOut": "0", "tag": "{SURROGATE}"}}')
    assert_refused(answer, top("50002"))


# ---- authentication ----


def _faults(creds: dict[str, Any], other: dict[str, Any]) -> dict[str, tuple[Callable[..., None], str]]:
    """Each fault: how it spoils (headers, method, path, body) before sending, and OKX's code for it."""

    def drop(name: str) -> Callable[..., None]:
        return lambda h, *_: h.pop(name)

    def blank(name: str) -> Callable[..., None]:
        return lambda h, *_: h.update({name: ""})

    def set_(name: str, value: str) -> Callable[..., None]:
        return lambda h, *_: h.update({name: value})

    def resign(secret: str = creds["secretKey"], shift_s: float = 0, ts: str | None = None,
               method: Callable[[str], str] = str, path: Callable[[str], str] = str,
               body: Callable[[str], str] = str) -> Callable[..., None]:  # fmt: skip
        def spoil(h: dict[str, str], m: str, p: str, b: str) -> None:
            stamp = ts if ts is not None else iso_ms(time.time() + shift_s)
            signature = sign(secret, stamp + method(m) + path(p) + body(b))
            h.update({"OK-ACCESS-TIMESTAMP": stamp, "OK-ACCESS-SIGN": signature})

        return spoil

    return {
        **{f"no {n}": (drop(f"OK-ACCESS-{n}"), c) for n, c in
           (("KEY", "50103"), ("PASSPHRASE", "50104"), ("SIGN", "50106"), ("TIMESTAMP", "50107"))},
        **{f"empty {n}": (blank(f"OK-ACCESS-{n}"), c) for n, c in
           (("KEY", "50103"), ("PASSPHRASE", "50104"), ("SIGN", "50106"), ("TIMESTAMP", "50107"))},
        "wrong passphrase": (set_("OK-ACCESS-PASSPHRASE", creds["passphrase"] + "x"), "50105"),
        "another key's passphrase": (set_("OK-ACCESS-PASSPHRASE", other["passphrase"]), "50105"),
        "unknown key": (set_("OK-ACCESS-KEY", "0" * len(creds["apiKey"])), "50111"),
        "another account's key": (set_("OK-ACCESS-KEY", other["apiKey"]), "50113"),  # signed with our secret
        "signed with another secret": (resign(secret=other["secretKey"]), "50113"),
        "sign not base64": (set_("OK-ACCESS-SIGN", "not a signature"), "50113"),
        "sign of another body": (resign(body=lambda b: b + " "), "50113"),
        "sign of another path": (resign(path=lambda p: p.replace("/api/v5", "/api/v5/")), "50113"),
        "sign of the method in lower case": (resign(method=str.lower), "50113"),
        "timestamp 60 s old": (resign(shift_s=-60), "50102"),
        "timestamp 60 s ahead": (resign(shift_s=60), "50102"),
        "timestamp without a zone": (resign(ts=iso_ms(time.time()).rstrip("Z")), "50112"),
        "timestamp in Unix ms": (resign(ts=str(time.time_ns() // 1_000_000)), "50112"),
        "timestamp malformed": (resign(ts="yesterday at noon"), "50112"),
        "timestamp year 0001": (resign(ts="0001-01-01T00:00:00.000Z"), "50102"),
    }  # fmt: skip


AUTH_FAULTS = list(_faults(*[dict.fromkeys(("apiKey", "passphrase", "secretKey"), "")] * 2))
AUTH_TARGETS = [("POST", ORDER, None), ("GET", "/api/v5/account/balance", {"ccy": "BTC"})]


@pytest.mark.parametrize("fault", AUTH_FAULTS)
@pytest.mark.parametrize(("method", "path", "params"), AUTH_TARGETS, ids=["place", "balance"])
def test_auth_failure_is_refused_without_effect(server: Server, victim: Client, fault: str, method: str, path: str,
                                                params: dict[str, str] | None) -> None:  # fmt: skip
    spoil, code = _faults(victim.creds, server.credentials[2])[fault]
    before = victim.state()
    request = victim.prepare(method, path, GOOD if method == "POST" else None, params)
    signed_path, body = request.url.raw_path.decode(), request.content.decode()
    headers = signed_headers(victim.creds, method, signed_path, body, victim.timestamp())
    spoil(headers, method, signed_path, body)
    request.headers.update(headers)
    assert_refused(victim.send(request), top(code, status=401))
    assert victim.state() == before


def test_non_ascii_signature_is_refused(victim: Client) -> None:
    path = "/api/v5/account/balance"
    signed = signed_headers(victim.creds, "GET", path, "", victim.timestamp())
    headers = {k.encode(): v.encode() for k, v in signed.items()}
    headers[b"OK-ACCESS-SIGN"] = b"\xe9t\xe9"  # bytes past ASCII, which the server reads as latin-1
    request = victim.http.build_request("GET", victim.base_url + path, headers=headers)
    assert (b"OK-ACCESS-SIGN", b"\xe9t\xe9") in request.headers.raw
    assert_refused(victim.send(request), top("50113", status=401))


def test_exact_replay_of_a_signed_post_is_refused(trader: Client) -> None:
    request = trader.sign(trader.prepare("POST", ORDER, with_(GOOD, px="98")))
    live_before = trader.live_ids()
    first = trader.send(request).json()
    assert first["code"] == "0", first
    placed = first["data"][0]["ordId"]
    assert trader.live_ids() == live_before | {placed}
    replay = trader.send(trader.http.build_request("POST", request.url, content=request.content,
                                                   headers=request.headers))  # fmt: skip
    assert_refused(replay, top("50113", "replay", status=401))
    assert trader.live_ids() == live_before | {placed}
    assert trader.call("POST", CANCEL, {"instId": "BTC-USDT", "ordId": placed}).json()["code"] == "0"


def test_signed_get_may_be_repeated(trader: Client) -> None:
    """The replay guard is for orders: the same signed GET within the window is answered twice."""
    request = trader.sign(trader.prepare("GET", "/api/v5/account/balance", params={"ccy": "SOL"}))
    first, second = trader.send(request), trader.send(request)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["data"][0]["details"][0]["availBal"] == second.json()["data"][0]["details"][0]["availBal"]


# ---- the rate limit ----


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A zone whose accounts may place two orders and then one every 1000 s."""
    text = (Path(__file__).parent.parent / "pyexchange" / "default_config.toml").read_text()
    for old, new in (('orders_per_second_per_account = "500"', 'orders_per_second_per_account = "0.001"'),
                     ("orders_burst_per_account = 1000", "orders_burst_per_account = 2")):  # fmt: skip
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config = tmp_path_factory.mktemp("tight-config") / "tight.toml"
    config.write_text(text)
    with running_server(tmp_path_factory.mktemp("tight-zone"), config) as zone:
        yield zone


def test_rate_limited_order_is_refused_without_effect(tight_server: Server) -> None:
    client = Client(tight_server, 0)
    placed = {client.place(with_(GOOD, px=px)) for px in ("100", "101")}
    assert client.live_ids() == placed
    before = client.state()
    for body in (with_(GOOD, px="102"), [with_(GOOD, px="103"), with_(GOOD, px="104")]):
        answer = client.call("POST", ORDER if isinstance(body, dict) else BATCH, body)
        assert_refused(answer, top("50011", "rate limit", status=429))
        assert answer.headers["Retry-After"] == "1"
        assert client.state() == before
    canceled = client.call("POST", CANCEL, {"instId": "BTC-USDT", "ordId": min(placed)}).json()
    assert canceled["code"] == "0", canceled  # cancels are never rate limited


# ---- schemathesis: the app's own schema, fuzzed and signed ----

AUTH_CODES = {"50102", "50103", "50104", "50105", "50106", "50107", "50111", "50112", "50113"}


class SignEverything(requests.auth.AuthBase):
    """Signs each request as it leaves, over the exact path, query and body bytes requests sends, with
    a fresh millisecond each (so no fuzzed POST is a replay), and adds the operator's bearer token."""

    def __init__(self, creds: dict[str, Any], operator_token: str) -> None:
        self.creds, self.operator_token = creds, operator_token
        self._last_ms = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        assert isinstance(body, bytes | str), type(body)
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        now_ms = max(time.time_ns() // 1_000_000, self._last_ms + 1)
        self._last_ms = now_ms
        request.headers.update(signed_headers(self.creds, request.method or "", request.path_url, text,
                                              iso_ms(now_ms / 1000)))  # fmt: skip
        request.headers["Authorization"] = f"Bearer {self.operator_token}"
        return request


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A zone of its own: the fuzzer may trip the kill switch, the rate limit or cancel-all-after."""
    with running_server(tmp_path_factory.mktemp("fuzz-zone")) as zone:
        yield zone


@pytest.fixture(scope="module")
def fuzz_session(fuzz_server: Server) -> Iterator[requests.Session]:
    with requests.Session() as session:
        token = (fuzz_server.data_dir / "operator-token").read_text().strip()
        session.auth = SignEverything(fuzz_server.credentials[2], token)
        yield session


def _routes_openapi() -> dict[str, Any]:
    """The OpenAPI document of the gateway's HTTP routes, built without a zone, so that schemathesis can
    make its tests at collection time; `test_fuzzed_schema_is_the_served_one` holds it to the served one.
    (`schemathesis.pytest.from_fixture` would load the served one lazily, but schemathesis 4.32 reads
    `request.node._nodeid`, which pytest 9 no longer has.)"""
    app = fastapi.FastAPI(default_response_class=okx.OrjsonResponse)  # as `create_app` makes it
    add_routers(app, (rest.router, operator.router))
    return app.openapi()


ROUTES_OPENAPI = _routes_openapi()
schema = schemathesis.openapi.from_dict(ROUTES_OPENAPI)


def test_fuzzed_schema_is_the_served_one(fuzz_server: Server) -> None:
    served = httpx.get(f"{fuzz_server.base_url}/openapi.json", timeout=30).json()
    assert (served["paths"], served.get("components")) == (ROUTES_OPENAPI["paths"], ROUTES_OPENAPI.get("components"))
    assert {ORDER, BATCH, CANCEL, AMEND, CANCEL_ALL_AFTER, "/operator/v1/kill-switch"} <= set(served["paths"])


# Values the gateway accepts, so that fuzzed requests get past the first check (a random instId never
# names an instrument) and reach the engine: a case keeps its fields, or has some or all swapped for these.
REAL_VALUES = {
    "instId": st.sampled_from(["BTC-USDT", "ETH-USDT", "SOL-USDT"]), "instType": st.just("SPOT"),
    "ccy": st.sampled_from(["BTC", "USDT", "SOL,USDT"]), "bar": st.sampled_from(["1m", "1H", "1Dutc"]),
    "tdMode": st.just("cash"), "side": st.sampled_from(["buy", "sell"]),
    "ordType": st.sampled_from(["limit", "market", "post_only", "fok", "ioc"]),
    "sz": st.sampled_from(["0.01", "0.1", "1"]), "newSz": st.sampled_from(["0.02", "2"]),
    "px": st.sampled_from(["10", "100", "30000"]), "newPx": st.sampled_from(["11", "29000"]),
    "tgtCcy": st.just("base_ccy"), "ordId": st.integers(1, 40).map(str), "timeOut": st.sampled_from(["0", "10"]),
    "state": st.sampled_from(["canceled", "filled", "live"]), "limit": st.sampled_from(["1", "100"]),
    "action": st.sampled_from(["block", "unblock"]), "account": st.integers(1, 4),
}  # fmt: skip


def _fields(context: schemathesis.HookContext) -> set[str]:
    """The query parameters and body fields the operation declares."""
    assert context.operation is not None
    spec = ROUTES_OPENAPI["paths"][context.operation.path][context.operation.method.lower()]
    body = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    return {p["name"] for p in spec.get("parameters", [])} | set(body.get("items", body).get("properties", {}))


def _realistic(value: Any, fields: set[str]) -> st.SearchStrategy[Any]:
    """`value` as generated, with some of its fields swapped for accepted values, or with every field
    the operation knows set to one (so that, say, a limit order gets a price)."""
    if isinstance(value, dict):
        some = {k: REAL_VALUES[k] for k in value if k in REAL_VALUES}
        every = {k: REAL_VALUES[k] for k in fields | set(value) if k in REAL_VALUES}
        swaps = st.one_of(st.fixed_dictionaries(every), st.fixed_dictionaries({}, optional=some), st.just({}))
        return swaps.map(lambda real: {**value, **real})
    if isinstance(value, list) and value:
        return st.tuples(*(_realistic(item, fields) for item in value)).map(list)
    return st.just(value)


def flatmap_query(context: schemathesis.HookContext, query: Any) -> st.SearchStrategy[Any]:
    return _realistic(query, _fields(context))


def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    return _realistic(body, _fields(context))


@schema.hooks.apply(flatmap_query)
@schema.hooks.apply(flatmap_body)
@schema.parametrize()
@hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much,
                                            hypothesis.HealthCheck.data_too_large])  # fmt: skip
def test_fuzzed_requests_never_get_a_5xx(case: schemathesis.Case[Any], fuzz_server: Server,
                                         fuzz_session: requests.Session) -> None:  # fmt: skip
    """Every answer is an OKX envelope under 500, an error has a message, and no signed request is
    refused by authentication: the private routes were exercised past it."""
    response = case.call(base_url=fuzz_server.base_url, session=fuzz_session, timeout=30)
    where = f"{case.method} {response.request.url} body={response.request.body!r:.300}"
    assert response.status_code < 500, f"{where} -> {response.status_code} {response.text[:300]}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"code", "msg", "data"}, f"{where} -> {body}"
    assert isinstance(body["data"], list) and isinstance(body["code"], str), f"{where} -> {body}"
    assert body["code"] not in AUTH_CODES, f"{where} -> {body}"
    assert (body["code"] == "0") == (200 <= response.status_code < 300 and body["msg"] == ""), f"{where} -> {body}"
    assert body["code"] == "0" or body["msg"], f"{where} -> {body}"
