"""Halting and the phased reopening against a real server: `pyexchange market halt|reopen`
through the operator API, what each phase takes and refuses with OKX codes, the state in
`public/instruments`, `system/status` and the `call-auction-details` channel, the one
auction print, the plan's record; and cancel-all-after countdowns that stand still while
the exchange itself is halted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from pyexchange import Engine, wire
from pyexchange import config as config_module
from pyexchange.gateway import exchange as exchange_module
from pyexchange.gateway.exchange import Exchange
from pyexchange.gateway.sequencer import collect
from pyexchange.gateway.views import Views
from tests.gateway_server import Server, running_server
from tests.test_gateway_flow import _rest

BTC, ETH = "BTC-USDT", "ETH-USDT"
# Phases long enough that a request sent when a phase is seen lands in it on a slow machine.
PLAN = """[reopen]
phases = [["cancel_only", 1.5], ["pre_open", 1.5], ["call_auction", 2.5]]
auction_random_end_s = 0.5
auction_band_bps = 1000
auction_extension_s = 0.5
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("reopen")
    default = (Path(__file__).parents[1] / "pyexchange" / "default_config.toml").read_text()
    start, end = default.index("[reopen]"), default.index("[risk]")
    (root / "config.toml").write_text(default[:start] + PLAN + "\n" + default[end:])
    with running_server(root / "zone", root / "config.toml") as zone:
        yield zone


def _operator(server: Server, path: str) -> Any:
    token = (server.data_dir / "operator-token").read_text().strip()
    return httpx.get(server.base_url + path, headers={"Authorization": f"Bearer {token}"}).json()["data"][0]


def _market_cli(server: Server, *args: str) -> Any:
    command = [sys.executable, "-m", "pyexchange", "market", *args, "--data-dir", str(server.data_dir),
               "--url", server.base_url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def _order(server: Server, n: int, side: str, px: str, ord_type: str = "limit", inst: str = BTC) -> dict[str, str]:
    body = {"instId": inst, "tdMode": "cash", "side": side, "ordType": ord_type, "px": px, "sz": "0.01"}
    answer: dict[str, str] = _rest(server, n, "POST", "/api/v5/trade/order", body).json()["data"][0]
    return answer


def _cancel(server: Server, n: int, ord_id: str) -> str:
    body = {"instId": BTC, "ordId": ord_id}
    code: str = _rest(server, n, "POST", "/api/v5/trade/cancel-order", body).json()["data"][0]["sCode"]
    return code


def _instrument(server: Server, inst: str = BTC) -> dict[str, str]:
    row: dict[str, str] = _rest(server, 0, "GET", f"/api/v5/public/instruments?instType=SPOT&instId={inst}").json()[
        "data"
    ][0]
    return row


def _wait_state(server: Server, state: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while _instrument(server)["marketState"] != state:
        assert time.monotonic() < deadline, f"{BTC} never reached {state}"
        time.sleep(0.05)


def test_halt_then_reopen_through_every_phase(server: Server) -> None:
    assert _order(server, 0, "buy", "30000")["sCode"] == _order(server, 1, "sell", "30000")["sCode"] == "0"
    resting = _order(server, 0, "buy", "29000")  # the trade above is the reference price: 30000
    assert resting["sCode"] == "0"

    halted = _market_cli(server, "halt", "--all")
    assert halted["data"][0]["state"] == "halted"
    assert (_instrument(server)["state"], _instrument(server)["marketState"]) == ("suspend", "halted")
    titles = [e["title"] for e in _rest(server, 0, "GET", "/api/v5/system/status").json()["data"]]
    assert f"{BTC}: halted" in titles and f"{ETH}: halted" in titles
    assert _order(server, 1, "sell", "31000")["sCode"] == "51022"
    assert _cancel(server, 0, resting["ordId"]) == "51022", "a halt takes queries only"

    pushes: list[dict[str, Any]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_auction, args=(server, pushes, stop))
    watcher.start()
    deadline = time.monotonic() + 10
    while not pushes:  # subscribed: the first push is the state now
        assert time.monotonic() < deadline, "no call-auction-details snapshot"
        time.sleep(0.05)

    restarts = _operator(server, "/operator/v1/admission")["ramp"]["restarts"]
    reopening = _market_cli(server, "reopen", "--all", "--seed", "7")["data"][0]
    assert (reopening["instIds"], reopening["seed"], reopening["done"]) == ([BTC, ETH, "SOL-USDT"], 7, False)
    _wait_state(server, "cancel_only")
    assert _order(server, 1, "sell", "31000", "post_only")["sCode"] == "51022"
    assert _cancel(server, 0, resting["ordId"]) == "0", "cancel-only takes cancels"

    _wait_state(server, "pre_open")
    assert _order(server, 1, "sell", "30500")["sCode"] == "51110", "pre-open takes post-only orders only"
    maker = _order(server, 1, "sell", "30500", "post_only")
    assert maker["sCode"] == "0"

    _wait_state(server, "call_auction")
    assert _instrument(server)["state"] == "preopen"
    assert _order(server, 0, "buy", "31000", "ioc")["sCode"] == "51124"
    taker = _order(server, 0, "buy", "30600")
    assert taker["sCode"] == "0", "a crossing limit order rests during the call"
    book = _rest(server, 0, "GET", f"/api/v5/market/books?instId={BTC}").json()["data"][0]
    assert book["bids"][0][0] == "30600" and book["asks"][0][0] == "30500", "crossed until the uncross"
    details = _rest(server, 0, "GET", f"/api/v5/market/call-auction-details?instId={BTC}").json()["data"][0]
    assert (details["state"], details["eqPx"], details["matchedSz"]) == ("callAuction", "30500", "0.01")

    _wait_state(server, "continuous")
    time.sleep(0.3)
    stop.set()
    watcher.join()

    record = _market_cli(server, "status")["data"][0]
    phases = record["reopening"]["phases"]
    assert [p["state"] for p in phases] == ["cancel_only", "pre_open", "call_auction", "continuous"]
    assert 2.0 <= phases[2]["plannedS"] <= 2.5, "the auction ends at a random moment of its last 0.5 s"
    assert phases[2]["uncross"] == {BTC: {"px": "30500", "sz": "0.01"}}
    assert record["reopening"]["done"] is True
    trades = _rest(server, 0, "GET", f"/api/v5/market/trades?instId={BTC}&limit=5").json()["data"]
    assert (trades[0]["px"], trades[0]["sz"]) == ("30500", "0.01"), "one auction print"
    filled = _rest(server, 0, "GET", f"/api/v5/trade/order?instId={BTC}&ordId={taker['ordId']}").json()["data"][0]
    assert (filled["state"], filled["avgPx"]) == ("filled", "30500")
    states = [p["marketState"] for p in pushes]
    assert states[0] == "halted" and states[-1] == "continuous"
    assert {"cancel_only", "pre_open", "call_auction"} <= set(states)
    assert any(p["eqPx"] == "30500" and p["matchedSz"] == "0.01" for p in pushes), "the indicative uncross is pushed"
    assert _instrument(server)["state"] == _instrument(server, ETH)["state"] == "live"
    assert _operator(server, "/operator/v1/admission")["ramp"]["restarts"] > restarts, "continuous restarts the ramp"


def _watch_auction(server: Server, pushes: list[dict[str, Any]], stop: threading.Event) -> None:
    with connect(server.ws_url + "/public") as ws:
        ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "call-auction-details", "instId": BTC}]}))
        while not stop.is_set():
            try:
                data = json.loads(ws.recv(timeout=0.1))
            except TimeoutError:
                continue
            if data.get("arg", {}).get("channel") == "call-auction-details" and "data" in data:
                pushes.extend(data["data"])


def test_the_operator_market_api_refuses_bad_requests(server: Server) -> None:
    token = (server.data_dir / "operator-token").read_text().strip()
    for body, code in [
        ({"action": "open", "instId": BTC}, "51000"),
        ({"action": "halt"}, "51000"),
        ({"action": "halt", "instId": BTC, "all": True}, "51000"),
        ({"action": "halt", "instId": {}}, "51001"),
        ({"action": "halt", "instId": "DOGE-USDT"}, "51001"),
        ({"action": "halt", "instId": f"{BTC},DOGE-USDT"}, "51001"),
        ({"action": "reopen", "instId": BTC, "seed": -1}, "51000"),
    ]:
        answer = httpx.post(server.base_url + "/operator/v1/market", json=body,
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert answer.json()["code"] == code, body
    assert httpx.get(server.base_url + "/operator/v1/market").json()["code"] == "50111", "the token is required"
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _market_cli(server, "halt", "DOGE-USDT")
    assert "Instrument ID 'DOGE-USDT' does not exist" in refused.value.stderr
    assert _instrument(server)["marketState"] == "continuous", "nothing was done"


def test_cancel_all_after_stands_still_while_the_exchange_is_halted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange_module, "DEAD_MAN_TICK_S", 0.02)
    config = config_module.load()
    engine = Engine()
    for inst in config.instruments:
        engine.add_instrument(inst.symbol, tick_size=inst.tick_size, lot_size=inst.lot_size, min_size=inst.min_size,
                              maker_fee_bps=inst.maker_fee_bps, taker_fee_bps=inst.taker_fee_bps)  # fmt: skip
    exchange = Exchange(config, tmp_path, engine)
    fired: list[int] = []

    async def cancel_all(account: int, symbol: str | None = None) -> list[Any]:
        fired.append(account)
        return []

    monkeypatch.setattr(exchange, "cancel_all", cancel_all)

    async def scenario() -> None:
        switches = asyncio.get_running_loop().create_task(exchange.run_dead_man_switches())
        exchange.halt("quorum lost")
        exchange.cancel_all_after(7, 1)  # a 1 s countdown while the orchestrator's halt lasts 1.5 s
        await asyncio.sleep(1.5)
        assert fired == [], "no countdown runs out while the exchange is halted"
        exchange.halt(None)
        await asyncio.sleep(0.6)
        assert fired == [], "the countdown resumed where it stood"
        await asyncio.sleep(0.8)
        assert fired == [7]
        for market in exchange.views.markets.values():
            market.state = "halted"  # every instrument halted: the exchange is halted as well
        exchange.cancel_all_after(8, 1)
        await asyncio.sleep(1.3)
        assert fired == [7]
        switches.cancel()

    asyncio.run(scenario())


def test_views_replayed_over_a_seeded_state_learn_when_it_began() -> None:
    """A restarted gateway seeds its views from the engine's states, then replays the journal:
    the replay must still date each state (system/status shows when it began)."""
    engine = Engine(clock=lambda: 5_000_000_000)
    engine.add_instrument(BTC, tick_size="0.1", lot_size="0.001", min_size="0.001", maker_fee_bps=2, taker_fee_bps=5)
    records = np.zeros(1, dtype=wire.COMMAND_DTYPE)
    records[0] = (7_000_000_000, 0, 0, 0, 1000, 0, wire.SET_MARKET_STATE, 0, wire.MARKET_STATES.index("halted"), 0, b"")
    first_seq = engine.seq + 1
    events = engine.submit(records)
    views = Views(engine.instruments())
    views.markets[BTC].state = engine.market_state(BTC)  # seeded: halted, since not known
    views.apply(collect(engine, records.tobytes(), first_seq, events))
    assert (views.markets[BTC].state, views.markets[BTC].since_ms) == ("halted", 7_000)


@pytest.mark.parametrize(
    ("reopen", "error"),
    [
        ({"phases": [["pre_open", 1], ["cancel_only", 1]]}, "reopen.phases must be a list of [state, seconds] in"),
        ({"phases": [["continuous", 1]]}, "reopen.phases must be a list"),
        ({"phases": [["cancel_only", 0]]}, "reopen.phases[0] seconds must be a number of seconds, more than 0"),
        ({"auction_random_end_s": 200}, "reopen.auction_random_end_s (200.0) must not pass the call auction's 120.0 s"),
        ({"auction_random_end_s": -1}, "reopen.auction_random_end_s must be a number of seconds, 0 or more"),
        ({"auction_band_bps": 0}, "reopen.auction_band_bps must be an integer from 1 to 10000"),
        ({"auction_extension_s": "30"}, "reopen.auction_extension_s must be a number of seconds, more than 0"),
    ],
)
def test_a_bad_reopening_plan_is_refused_naming_the_key(reopen: dict[str, Any], error: str) -> None:
    doc = tomllib.loads((Path(__file__).parents[1] / "pyexchange" / "default_config.toml").read_text())
    doc["reopen"] = {**doc["reopen"], **reopen}
    with pytest.raises(ValueError) as refused:
        config_module.parse(doc)
    assert str(refused.value).startswith(error), refused.value
