"""OKX request signing: `OK-ACCESS-SIGN` = Base64(HMAC-SHA256(secret, timestamp + method +
requestPath + body)), with the key, the passphrase and an ISO 8601 timestamp in headers. A
timestamp more than the window (30 s by default) away from our clock is refused (50102), so a
captured request cannot be replayed later; within the window, a signed POST already seen is
refused too (an exact replay). WebSocket `login` signs `timestamp + "GET" +
"/users/self/verify"` with the timestamp in Unix seconds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from pyexchange import _core
from pyexchange.accounts import ApiKey, KeyStore
from pyexchange.gateway import okx

# Signed POSTs remembered against replays (20-40 bytes each): a whole window of 30 s at
# 33,000 a second, more than this gateway serves; past it the earliest to expire are forgotten.
SEEN_SIGNATURES_MAX = 1_000_000
SEEN_BUCKETS_PER_WINDOW = 4  # a lookup checks up to 9 buckets (expiries span two windows)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
# A request's `OK-ACCESS-*` headers: key, sign, timestamp, passphrase, and the timestamp in
# Unix ms if `_core.okx_access_headers` read it (`iso_ms` reads the others).
AccessHeaders = tuple[str | None, str | None, str | None, str | None, int | None]
WS_LOGIN_PATH = "/users/self/verify"


def sign(secret: str, prehash: str) -> str:
    """OKX's signature of `prehash`, as a client makes it (the gateway checks signatures with
    `_core.okx_signature_ok`). `hmac.new`, not `hmac.digest`, whose one-shot HMAC lets go of
    the GIL (CPython 3.11): a client in the server's process would hand it to the sequencer."""
    return base64.b64encode(hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()).decode()


class Authenticator:
    def __init__(self, keys: KeyStore, window_s: int) -> None:
        self.keys = keys
        self.window_ms = window_s * 1000
        self._seen = _core.SeenSignatures(max(1, self.window_ms // SEEN_BUCKETS_PER_WINDOW), SEEN_SIGNATURES_MAX)
        # (api key, passphrase digest) -> the scrypt check under way: concurrent requests of a
        # key new to this zone (a client failing over to it) share one check, not one each.
        self._checking: dict[tuple[str, bytes], asyncio.Future[bool]] = {}

    async def rest(self, access: AccessHeaders, method: str, request_path: str, body: str) -> ApiKey:
        """The key that signed this request, or an `OkxError` (50102-50113) saying why not.
        `access`: the request's `OK-ACCESS-*` headers (`_core.okx_access_headers`)."""
        api_key, signature, timestamp, passphrase, sent_ms = access
        api_key = api_key or _missing("OK-ACCESS-KEY", okx.KEY_HEADER_EMPTY)
        signature = signature or _missing("OK-ACCESS-SIGN", okx.SIGN_HEADER_EMPTY)
        timestamp = timestamp or _missing("OK-ACCESS-TIMESTAMP", okx.TIMESTAMP_HEADER_EMPTY)
        passphrase = passphrase or _missing("OK-ACCESS-PASSPHRASE", okx.PASSPHRASE_HEADER_EMPTY)
        if sent_ms is None:  # not the usual form
            sent_ms = iso_ms(timestamp)
        self._check_window(sent_ms)
        key = self.keys.get(api_key)
        if key is None:
            raise okx.OkxError(okx.KEY_INVALID, "Invalid OK-ACCESS-KEY")
        if not _core.okx_signature_ok(key.secret, timestamp, method, request_path, body, signature):
            raise okx.OkxError(okx.SIGNATURE_INVALID, "Invalid Sign")
        known = self.keys.remembered(key, passphrase)  # (no coroutine on every request for the usual case)
        if not (known if known is not None else await self._passphrase_checked(key, passphrase)):
            raise okx.OkxError(okx.PASSPHRASE_INCORRECT, "OK-ACCESS-PASSPHRASE incorrect")
        if method != "GET":
            self._once(signature, sent_ms)
        return key

    async def _passphrase_ok(self, key: ApiKey, passphrase: str) -> bool:
        """A passphrase once accepted is remembered and checked at once; else `_passphrase_checked`."""
        known = self.keys.remembered(key, passphrase)
        return known if known is not None else await self._passphrase_checked(key, passphrase)

    async def _passphrase_checked(self, key: ApiKey, passphrase: str) -> bool:
        """scrypt is slow on purpose (tens of ms), so it runs off the event loop."""
        ticket = (key.api_key, hashlib.sha256(passphrase.encode()).digest())
        running = self._checking.get(ticket)
        if running is None:
            running = asyncio.ensure_future(asyncio.to_thread(self.keys.passphrase_ok, key, passphrase))
            self._checking[ticket] = running
            running.add_done_callback(lambda _: self._checking.pop(ticket, None))
        return await asyncio.shield(running)

    async def ws_login(self, args: Mapping[str, object]) -> ApiKey:
        fields = {}
        for name in ("apiKey", "passphrase", "timestamp", "sign"):
            value = args.get(name)
            if not isinstance(value, str) or not value:
                raise okx.OkxError("60009", f"Login failed: {name} is missing")
            fields[name] = value
        try:
            sent_ms = int(fields["timestamp"]) * 1000
        except ValueError:
            raise okx.OkxError("60004", "Invalid timestamp: Unix time in seconds expected") from None
        if abs(time.time_ns() // 1_000_000 - sent_ms) > self.window_ms:
            raise okx.OkxError("60006", "Timestamp request expired")
        key = self.keys.get(fields["apiKey"])
        if key is None:
            raise okx.OkxError("60005", "Invalid OK-ACCESS-KEY")
        if not _core.okx_signature_ok(key.secret, fields["timestamp"], "GET", WS_LOGIN_PATH, "", fields["sign"]):
            raise okx.OkxError("60007", "Invalid sign")
        if not await self._passphrase_ok(key, fields["passphrase"]):
            raise okx.OkxError("60024", "Wrong passphrase")
        return key

    def _check_window(self, sent_ms: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        if abs(now_ms - sent_ms) > self.window_ms:
            raise okx.OkxError(okx.TIMESTAMP_EXPIRED, f"Timestamp request expired: it is more than "
                               f"{self.window_ms // 1000} s from the server time {now_ms}")  # fmt: skip

    def _once(self, signature: str, sent_ms: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        if not self._seen.first_time(signature, max(sent_ms + self.window_ms, now_ms), now_ms):
            raise okx.OkxError(okx.SIGNATURE_INVALID, "Invalid Sign: this signed request was already received (replay)")


def _missing(name: str, code: str) -> NoReturn:
    raise okx.OkxError(code, f"Request header {name} can not be empty")


def iso_ms(timestamp: str) -> int:
    """Unix ms of an ISO 8601 timestamp with a time zone (floored: no float rounding), as
    `_core.okx_access_headers` reads the usual form."""
    try:
        when = datetime.fromisoformat(timestamp)
    except ValueError:
        raise okx.OkxError(okx.TIMESTAMP_INVALID, "Invalid OK-ACCESS-TIMESTAMP: ISO 8601 expected, "
                           "e.g. 2020-12-08T09:08:57.715Z") from None  # fmt: skip
    if when.tzinfo is None:
        raise okx.OkxError(okx.TIMESTAMP_INVALID, "Invalid OK-ACCESS-TIMESTAMP: it needs a time zone (Z)")
    return (when - UNIX_EPOCH) // ONE_MS
