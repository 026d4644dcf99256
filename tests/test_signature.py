"""The gateway's signature check in Rust (`_core.okx_signature_ok`) against the obvious Python
(`auth.sign`, Base64 of `hmac`'s HMAC-SHA256, compared as strings): the same answer for any
secret, parts and sent signature, including near misses of the right one; and one known answer
from RFC 4231 (test case 2), so that both cannot be wrong together. And the `OK-ACCESS-*`
headers read in Rust (`_core.okx_access_headers`) against the obvious reading of ASGI headers,
with its timestamp in ms against `datetime.fromisoformat` (`auth.iso_ms`)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pyexchange import _core
from pyexchange.gateway import auth, okx

EXAMPLES_MAX = 20_000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1_000
SETTINGS = settings(max_examples=EXAMPLES_MAX, deadline=None)
PARTS = st.tuples(st.text(), st.text(max_size=40), st.sampled_from(["GET", "POST"]), st.text(), st.text())


def _near_miss(signature: str, data: st.DataObject) -> str:
    """The right signature changed a little: a character replaced, dropped or added, or its case."""
    how = data.draw(st.sampled_from(["replace", "drop", "add", "swapcase", "same"]))
    at = data.draw(st.integers(0, len(signature) - 1))
    if how == "replace":
        return signature[:at] + data.draw(st.characters()) + signature[at + 1 :]
    if how == "drop":
        return signature[:at] + signature[at + 1 :]
    if how == "add":
        return signature[:at] + data.draw(st.characters()) + signature[at:]
    return signature.swapcase() if how == "swapcase" else signature


@SETTINGS
@given(PARTS, st.data())
def test_the_check_agrees_with_python_hmac(parts: tuple[str, str, str, str, str], data: st.DataObject) -> None:
    secret, timestamp, method, path, body = parts
    right = auth.sign(secret, timestamp + method + path + body)
    sent = _near_miss(right, data) if data.draw(st.booleans()) else data.draw(st.text(max_size=60))
    assert _core.okx_signature_ok(secret, timestamp, method, path, body, sent) is (sent == right)
    assert _core.okx_signature_ok(secret, timestamp, method, path, body, right)


def test_a_known_answer_split_across_the_parts() -> None:
    sent = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="  # RFC 4231 case 2, key "Jefe", in Base64
    assert _core.okx_signature_ok("Jefe", "what do ", "ya want ", "for ", "nothing?", sent)
    assert not _core.okx_signature_ok("Jefe", "what do ", "ya want ", "for ", "nothing!", sent)
    assert not _core.okx_signature_ok("Jeff", "what do ", "ya want ", "for ", "nothing?", sent)


def test_a_sent_signature_that_is_not_unicode_is_refused() -> None:
    right = auth.sign("secret", "1GET/users/self/verify")
    assert not _core.okx_signature_ok("secret", "1", "GET", "/users/self/verify", "", right[:-1] + "\udc80")


USUAL_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)
ACCESS_NAMES = (b"ok-access-key", b"ok-access-sign", b"ok-access-timestamp", b"ok-access-passphrase")
HEADER_NAMES = st.sampled_from(
    [*ACCESS_NAMES, b"ok-access-other", b"content-type", b"OK-ACCESS-KEY", b"ok-access-keys"]
)


def _first_of_each(raw: list[tuple[bytes, bytes]]) -> list[str | None]:
    """The obvious reading: the first value of each name, as Latin-1."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        found.setdefault(name, value.decode("latin-1"))
    return [found.get(name) for name in ACCESS_NAMES]


@SETTINGS
@given(st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=30)), max_size=12))
def test_access_headers_are_the_first_of_each_name(raw: list[tuple[bytes, bytes]]) -> None:
    *headers, sent_ms = _core.okx_access_headers(raw)
    assert headers == _first_of_each(raw)
    timestamp = headers[2]
    if sent_ms is not None:
        assert timestamp is not None and sent_ms == auth.iso_ms(timestamp)


def _timestamps() -> st.SearchStrategy[str]:
    """Times of years 1 to 9999 in the usual form, and near misses of it."""
    usual = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_000)).map(
        lambda when: when.isoformat(timespec="milliseconds") + "Z"
    )
    edited = st.builds(lambda text, at, char: text[:at] + char + text[at + 1 :], usual, st.integers(0, 23),
                       st.sampled_from("0123456789-:.TZ+ 5x"))  # fmt: skip
    return st.one_of(usual, edited)


@SETTINGS
@given(_timestamps())
def test_the_timestamp_is_read_as_python_reads_it(timestamp: str) -> None:
    """The fast path reads exactly the timestamps of the usual form (what clients send) that
    `datetime.fromisoformat` reads, to the same ms; the others it leaves to Python."""
    sent_ms = _core.okx_access_headers([(b"ok-access-timestamp", timestamp.encode())])[4]
    try:
        expected = auth.iso_ms(timestamp)
    except okx.OkxError:
        assert sent_ms is None
        return
    assert sent_ms == (expected if USUAL_FORM.fullmatch(timestamp) else None)


def test_iso_ms_floors_without_float_rounding() -> None:
    assert auth.iso_ms("2020-12-08T09:08:57.715Z") == 1_607_418_537_715
    assert auth.iso_ms("2020-12-08T17:08:57.715999+08:00") == 1_607_418_537_715
    assert auth.iso_ms("1969-12-31T23:59:59.999500Z") == -1
    when = datetime(2021, 3, 4, 5, 6, 7, 8_000, tzinfo=UTC)
    assert auth.iso_ms(when.isoformat()) == (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
