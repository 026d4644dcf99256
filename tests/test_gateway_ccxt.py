"""ccxt's own okx client (REST) and ccxt.pro's (WebSocket), unchanged and pointed at a real
`pyexchange serve` process, drive every call the gateway promises; what they parse is checked
against what the engine did, and a restart must give the same answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pytest

from tests.gateway_server import Server, running_server

BTC = "BTC/USDT"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("zone")) as zone:
        yield zone


def test_public_calls(server: Server) -> None:
    ex = server.okx(0)
    markets = ex.load_markets()
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT"} <= set(markets)
    btc = markets[BTC]
    assert (btc["precision"]["price"], btc["precision"]["amount"], btc["limits"]["amount"]["min"]) == (
        0.1,
        1e-05,
        1e-05,
    )
    assert btc["spot"] and btc["active"]
    assert abs(ex.fetch_time() - ex.milliseconds()) < 5_000
    assert ex.fetch_status()["status"] == "ok"
    book = ex.fetch_order_book(BTC)
    assert set(book) >= {"bids", "asks", "timestamp"}
    assert ex.fetch_ticker(BTC)["symbol"] == BTC
    assert isinstance(ex.fetch_trades(BTC), list)


def test_balance_and_currencies(server: Server) -> None:
    ex = server.okx(2)
    ex.load_markets()
    assert {"USDT", "BTC", "ETH", "SOL"} <= set(ex.currencies)
    balance = ex.fetch_balance()
    assert balance["SOL"]["total"] == 5000
    assert balance["SOL"]["free"] == 5000 and balance["SOL"]["used"] == 0


def test_orders_fills_and_history(server: Server) -> None:
    maker, taker = server.okx(0), server.okx(1)
    maker.load_markets()
    taker.load_markets()
    before = taker.fetch_balance()["USDT"]["total"]
    resting = maker.create_order(BTC, "limit", "sell", 0.5, 30000, {"clOrdId": "makerA1"})
    assert resting["clientOrderId"] == "makerA1"
    assert maker.fetch_order(resting["id"], BTC)["status"] == "open"
    assert [o["id"] for o in maker.fetch_open_orders(BTC)] == [resting["id"]]
    assert maker.fetch_order_book(BTC)["asks"][0][:2] == [30000.0, 0.5]

    bought = taker.create_order(BTC, "market", "buy", 0.2)
    order = taker.fetch_order(bought["id"], BTC)
    assert (order["status"], order["filled"], order["average"]) == ("closed", 0.2, 30000.0)
    assert order["fee"] == {"cost": 6.0, "currency": "USDT"}  # 0.2 * 30000 * 10 bps taker
    trades = taker.fetch_my_trades(BTC)
    assert [(t["order"], t["side"], t["price"], t["amount"], t["takerOrMaker"]) for t in trades] == [
        (bought["id"], "buy", 30000.0, 0.2, "taker")
    ]
    maker_trades = maker.fetch_my_trades(BTC)
    assert [(t["order"], t["takerOrMaker"], t["fee"]["cost"]) for t in maker_trades] == [(resting["id"], "maker", 4.8)]
    assert taker.fetch_balance()["USDT"]["total"] == before - 6000 - 6
    public = taker.fetch_trades(BTC)
    assert (public[-1]["price"], public[-1]["amount"], public[-1]["side"]) == (30000.0, 0.2, "buy")
    assert taker.fetch_ticker(BTC)["last"] == 30000.0
    candles = taker.fetch_ohlcv(BTC, "1m")
    assert candles[-1][1:] == [30000.0, 30000.0, 30000.0, 30000.0, 0.2]

    partly = maker.fetch_order(resting["id"], BTC)
    assert (partly["status"], partly["filled"], partly["remaining"]) == ("open", 0.2, 0.3)
    canceled = maker.cancel_order(resting["id"], BTC)
    assert canceled["id"] == resting["id"]
    assert maker.fetch_order(resting["id"], BTC)["status"] == "canceled"
    assert maker.fetch_open_orders(BTC) == []
    assert [o["id"] for o in taker.fetch_closed_orders(BTC)] == [bought["id"]]


@pytest.mark.parametrize(
    ("order_type", "price", "params", "expected_status", "time_in_force"),
    [
        ("limit", 28000, {"postOnly": True}, "open", "PO"),
        ("limit", 28000, {"timeInForce": "IOC"}, "canceled", "IOC"),
        ("limit", 28000, {"timeInForce": "FOK"}, "canceled", "FOK"),
        ("limit", 28000, {}, "open", None),
    ],
)
def test_order_types(
    server: Server, order_type: str, price: float, params: dict[str, Any], expected_status: str, time_in_force: str
) -> None:
    ex = server.okx(2)
    ex.load_markets()
    placed = ex.create_order(BTC, order_type, "buy", 0.01, price, params)
    order = ex.fetch_order(placed["id"], BTC)
    assert order["status"] == expected_status
    assert (order["postOnly"] is True) == bool(params.get("postOnly"))
    assert order["timeInForce"] == time_in_force
    if expected_status == "open":
        ex.cancel_order(placed["id"], BTC)


def test_post_only_that_would_cross_is_refused(server: Server) -> None:
    seller, buyer = server.okx(0), server.okx(2)
    seller.load_markets()
    buyer.load_markets()
    ask = seller.create_order("ETH/USDT", "limit", "sell", 1, 2000)
    with pytest.raises(ccxt.ExchangeError, match=r"51019.*post-only"):  # ccxt knows 51019 only generically
        buyer.create_order("ETH/USDT", "limit", "buy", 1, 2000, {"postOnly": True})
    seller.cancel_order(ask["id"], "ETH/USDT")


def test_client_order_id_is_idempotent(server: Server) -> None:
    ex = server.okx(2)
    ex.load_markets()
    first = ex.create_order(BTC, "limit", "buy", 0.01, 28100, {"clOrdId": "retry1"})
    again = ex.create_order(BTC, "limit", "buy", 0.01, 28100, {"clOrdId": "retry1"})
    assert again["id"] == first["id"]
    assert [o["id"] for o in ex.fetch_open_orders(BTC) if o["clientOrderId"] == "retry1"] == [first["id"]]
    with pytest.raises(ccxt.InvalidOrder, match="Duplicated client order ID"):
        ex.create_order(BTC, "limit", "buy", 0.02, 28100, {"clOrdId": "retry1"})
    assert ex.fetch_order(None, BTC, {"clOrdId": "retry1"})["id"] == first["id"]
    ex.cancel_order(None, BTC, {"clOrdId": "retry1"})
    assert ex.fetch_order(first["id"], BTC)["status"] == "canceled"


def test_insufficient_funds_is_refused_with_nothing_held(server: Server) -> None:
    ex = server.okx(2)
    ex.load_markets()
    before = ex.fetch_balance()["USDT"]
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(BTC, "limit", "buy", 99, 29000)
    assert ex.fetch_balance()["USDT"] == before


def test_unknown_order(server: Server) -> None:
    ex = server.okx(2)
    ex.load_markets()
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order("987654321", BTC)
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order("987654321", BTC)


def test_websocket_book_trades_and_orders(server: Server) -> None:
    asyncio.run(_websocket_session(server))


async def _websocket_session(server: Server) -> None:
    watcher, trader, maker = server.okx_pro(0), server.okx_pro(1), server.okx_pro(2)
    try:
        await asyncio.gather(watcher.load_markets(), trader.load_markets(), maker.load_markets())
        symbol = "SOL/USDT"
        await watcher.watch_order_book(symbol)  # the snapshot
        trades_task = asyncio.ensure_future(watcher.watch_trades(symbol))
        orders_task = asyncio.ensure_future(trader.watch_orders(symbol))
        await asyncio.sleep(0.5)  # both subscriptions acknowledged before anything trades
        placed = []
        for i in range(40):  # many updates: orders rest, are canceled and trade across levels
            price = 100 + (i % 10) * 0.5
            placed.append(await maker.create_order(symbol, "limit", "sell", 1 + i % 3, price))
        for order in placed[::4]:
            await maker.cancel_order(order["id"], symbol)
        bought = await trader.create_order(symbol, "limit", "buy", 5, 101)
        trades = await asyncio.wait_for(trades_task, 10)
        assert trades and trades[0]["symbol"] == symbol and 100 <= trades[0]["price"] <= 101
        orders = await asyncio.wait_for(orders_task, 10)
        assert [o["id"] for o in orders] == [bought["id"]]
        assert orders[-1]["filled"] == 5
        # The book ccxt.pro keeps from the snapshot and every update (each checked against its
        # predecessor by seqId) equals the engine's.
        rest_book = await watcher.fetch_order_book(symbol, 400)
        for _ in range(100):
            kept = watcher.orderbooks[symbol]
            if kept["asks"][:] == [level[:2] for level in rest_book["asks"]]:
                break
            await asyncio.sleep(0.05)
        assert [list(level) for level in kept["asks"]] == [level[:2] for level in rest_book["asks"]]
        assert [list(level) for level in kept["bids"]] == [level[:2] for level in rest_book["bids"]]
        assert len(kept["asks"]) == 10 - 1  # ten price levels, the first one bought out
    finally:
        await asyncio.gather(watcher.close(), trader.close(), maker.close())


def test_restart_recovers_orders_and_history(tmp_path: Path) -> None:
    data_dir = tmp_path / "zone"
    with running_server(data_dir) as first:
        maker, taker = first.okx(0), first.okx(1)
        maker.load_markets()
        taker.load_markets()
        resting = maker.create_order(BTC, "limit", "sell", 1, 30000, {"clOrdId": "beforeRestart"})
        taker.create_order(BTC, "limit", "buy", 0.3, 30000)
        before = {
            "open": maker.fetch_open_orders(BTC),
            "trades": taker.fetch_my_trades(BTC),
            "closed": taker.fetch_closed_orders(BTC),
            "balance": maker.fetch_balance()["total"],
            "book": maker.fetch_order_book(BTC)["asks"],
        }
    with running_server(data_dir) as second:
        maker, taker = second.okx(0), second.okx(1)
        maker.load_markets()
        taker.load_markets()
        assert maker.fetch_open_orders(BTC) == before["open"]
        assert taker.fetch_my_trades(BTC) == before["trades"]
        assert taker.fetch_closed_orders(BTC) == before["closed"]
        assert maker.fetch_balance()["total"] == before["balance"]
        assert maker.fetch_order_book(BTC)["asks"] == before["book"]
        again = maker.create_order(BTC, "limit", "sell", 1, 30000, {"clOrdId": "beforeRestart"})
        assert again["id"] == resting["id"]


def test_trading_fees_and_account(server: Server) -> None:
    ex = server.okx(1)
    ex.load_markets()
    fee = ex.fetch_trading_fee(BTC)
    assert (fee["maker"], fee["taker"]) == (0.0008, 0.001)
    accounts = ex.fetch_accounts()
    assert accounts[0]["id"] == str(server.credentials[1]["account"])


def test_websocket_order_entry_balance_and_ticker(server: Server) -> None:
    asyncio.run(_websocket_order_entry(server))


async def _websocket_order_entry(server: Server) -> None:
    seller, buyer = server.okx_pro(0), server.okx_pro(1)
    try:
        await asyncio.gather(seller.load_markets(), buyer.load_markets())
        symbol = "ETH/USDT"
        assert isinstance(seller.markets[symbol]["instIdCode"], int)  # what ccxt.pro cancels by
        await seller.watch_balance()  # the balances at once, then a push per change
        await buyer.watch_ticker(symbol)
        balance_pushed = asyncio.ensure_future(seller.watch_balance())  # waits for the next push
        await asyncio.sleep(0.1)
        placed = await seller.create_order_ws(symbol, "limit", "sell", 2, 2100)
        balance = await asyncio.wait_for(balance_pushed, 10)
        assert balance["ETH"]["used"] == 2
        edited = await seller.edit_order_ws(placed["id"], symbol, "limit", "sell", 1.5, 2100)
        assert edited["id"] == placed["id"]
        assert (await seller.fetch_order(placed["id"], symbol))["amount"] == 1.5
        await buyer.create_order(symbol, "market", "buy", 0.5)
        for _ in range(100):  # the ticker ccxt.pro keeps from the pushes of the `tickers` channel
            if buyer.tickers[symbol]["last"] == 2100:
                break
            await asyncio.sleep(0.05)
        assert buyer.tickers[symbol]["last"] == 2100
        canceled = await seller.cancel_order_ws(placed["id"], symbol)
        assert canceled["id"] == placed["id"]
        order = await seller.fetch_order(placed["id"], symbol)
        assert (order["status"], order["filled"]) == ("canceled", 0.5)
    finally:
        await asyncio.gather(seller.close(), buyer.close())
