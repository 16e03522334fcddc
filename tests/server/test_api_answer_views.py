"""A secret CCV echoed in a form the masking in place does not see (review 30c): a JSON
string's start cut before an ellipsis once its escapes are read, a UTF-16 text or HTML body,
HTML character references, JSON escapes in a body that is no JSON text (JSONP, a `<script>`).
The API's client and `ccv submit` see none of it: a JSON string is masked as a body is, and
an answer whose secret only such a view shows is reconciler's word instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.writes.ccv_http import HELD_SECRET, masked_answer
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY
from tests.server.test_api import GOOD_PRICES, Api, api_toml
from tests.server.test_api_passed_back import raw

KEY = "t_AbcdEfghXyz9Q"
OWN_WORD = json.dumps({"error": HELD_SECRET}).encode()


# A start of the key cut before an ellipsis, in a JSON escape: holds_secret, which decided per
# string, takes no such start; the plain spelling was masked (`***...`).
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le"])
def test_a_start_of_a_secret_cut_in_a_json_escape_is_masked_as_in_plain_text(
    encoding: str,
) -> None:
    echo = '{"m": "key t_Abcd\\u0045fgh... refused", "n": 1.50}'.encode(encoding)
    masked, again = masked_answer(echo, [KEY])
    assert again
    assert masked == b'{"m": "key ***... refused", "n": 1.50}'
    plain = b'{"m": "key t_AbcdEfgh... refused"}'
    assert masked_answer(plain, [KEY]) == (b'{"m": "key ***... refused"}', False)


def _entities(text: str) -> str:
    return "".join(f"&#x{ord(c):x};" for c in text)


# Bodies whose secret a client reads once it decodes them as they say, or reads their escapes.
HELD = {
    "utf-16 html": f"<p>invalid key {KEY}</p>".encode("utf-16"),
    "utf-16-le html, no BOM": f"<p>invalid key {KEY}</p>".encode("utf-16-le"),
    "utf-16-be text, no BOM": f"invalid key {KEY}".encode("utf-16-be"),
    "utf-32 text": f"invalid key {KEY}".encode("utf-32"),
    "html references": f"<p>invalid key {_entities(KEY)}</p>".encode(),
    "named references": b"<p>invalid key t&lowbar;AbcdEfghXyz9Q</p>",
    "jsonp": b'cb({"m": "' + KEY.replace("_", "\\u005f").encode() + b'"}',
    "script": b'<script>var k = "' + KEY.replace("_", "\\x5f").encode() + b'";</script>',
    "utf-16 jsonp": ('cb({"m": "' + KEY.replace("_", "\\u005f") + '"})').encode("utf-16"),
    "references of escapes": f"<p>{_entities(KEY.replace('_', chr(92) + 'u005f'))}</p>".encode(),
}


@pytest.mark.parametrize("name", list(HELD))
def test_an_answer_holding_a_secret_only_a_decoded_view_shows_is_reconcilers_word(
    name: str,
) -> None:
    assert masked_answer(HELD[name], [KEY]) == (OWN_WORD, True)


# The same shapes without a secret: passed on byte for byte.
NOT_HELD = [
    "<p>invalid key, café</p>".encode("utf-16"),
    f"<p>{_entities('no key here')} &amp; t&lowbar;Ab</p>".encode(),
    b'cb({"m": "caf\\u00e9 \\x41 \\/ ok"})',
    b"\x00\x01binary\x00\xff",
]


@pytest.mark.parametrize("body", NOT_HELD)
def test_an_answer_without_a_secret_in_any_view_is_passed_on_as_it_came(body: bytes) -> None:
    assert masked_answer(body, [KEY]) == (body, False)


UTF16_HTML = raw(
    "400 Bad Request",
    b"Content-Type: text/html; charset=utf-16\r\n",
    f"<p>invalid key {CCV_KEY}</p>".encode("utf-16"),
)
ENTITIES = raw(
    "400 Bad Request",
    b"Content-Type: text/html\r\n",
    f"<p>invalid key {_entities(CCV_KEY)}</p>".encode(),
)


async def test_the_api_passes_back_reconcilers_word_for_an_answer_holding_a_secret(
    api: Api, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [UTF16_HTML]
    fake.pricing_replies = [ENTITIES]
    for method, path, body in (
        ("POST", "/api/v1/ccv/orders", submit_body(externalReference="v-1")),
        ("PATCH", "/api/v1/ccv/pricing", GOOD_PRICES),
    ):
        status, document, headers = await api.call(method, path, body=body)
        # CCV's status kept: the submit was refused.
        assert (status, document) == (400, {"error": HELD_SECRET})
        assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert api.rows("SELECT state, reason FROM submissions") == [("failed", "http_400")]


async def test_ccv_submit_prints_reconcilers_word_for_a_utf16_answer_holding_the_key(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Was: its NULs printed as spaces, `t _ f a k e - c c v - k e y ...`.
    fake.submit_replies = [UTF16_HTML]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="v-2")).encode()
    result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 65, result.stderr
    assert HELD_SECRET in result.stderr
    spaced = " ".join(CCV_KEY)
    assert spaced[:9] not in result.stderr and CCV_KEY not in result.stderr
