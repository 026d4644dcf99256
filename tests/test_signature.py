"""The gateway's signature check in Rust (`_core.okx_signature_ok`) against the obvious Python
(`auth.sign`, Base64 of `hmac`'s HMAC-SHA256, compared as strings): the same answer for any
secret, parts and sent signature, including near misses of the right one; and one known answer
from RFC 4231 (test case 2), so that both cannot be wrong together."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from pyexchange import _core
from pyexchange.gateway import auth

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
