"""The start of an answer that is no CCNow answer, as its `ccnow.answer_unreadable` line shows
it, never shows the account's password in a way a reader of the log could take it back: in
UTF-16, in JSON escapes, HTML character references or base64, split by a line end, or a short
start of it before a cut (`...`) or at the body's end. And a gateway's page with a status other
than 200 (a 502, Cloudflare's 520) gets the same line, once per post as a 200's does. A fake
CCNow on 127.0.0.1 answers; the password is the account's, from the environment."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply, html_page
from tests.writes.test_ccnow_actions import A, ccnow, commands
from tests.writes.test_ccnow_unreadable_answer_lines import lines

SIGNS = "Zq9+pw!x7Kd"
ESCAPED = "Zq9&pw<x7Kd"

# The answers a gateway or a page before CCNow may bring back with the post's password in it.
ECHOES: dict[str, tuple[str, bytes]] = {
    "utf16": (SIGNS, "bad: x_password=Zq9+pw!x7Kd".encode("utf-16-le")),
    "utf16_bom": (ESCAPED, "x_password=Zq9&pw<x7Kd".encode("utf-16")),
    "json_escapes": (ESCAPED, b'{"blocked":{"x_password":"Zq9\\u0026pw\\u003cx7Kd"}}'),
    "cut_short": (SIGNS, b"400 bad form: x_password=Zq9+pw!..."),
    "at_the_end": (SIGNS, b"400 bad form: x_password=Zq9+pw!"),
    "cut_encoded": (SIGNS, b"400 bad form: x_password=Zq9%2Bpw%21..."),
    "html_references": (SIGNS, b"<p>x_password=&#90;&#113;&#57;+pw!x7Kd</p>"),
    "wrapped": (SIGNS, b"x_password=Zq9+pw\n!x7Kd"),
    "base64": (SIGNS, base64.b64encode(b"x_clientid=amy&x_password=Zq9%2Bpw%21x7Kd")),
    "whole": (SIGNS, b"x_password=Zq9%2Bpw%21x7Kd&x=1"),
    # A password with blanks inside (allowed but at its ends): run together, it must still be
    # found, whole or wrapped at a line end.
    "inner_blanks": ("Kx7  pQ2!rT9#wz", b"<p>x_password=Kx7  pQ2!rT9#wz</p>"),
    "inner_blank_wrapped": ("Zq9+pw!a b/c&d=%e", b"x_password=Zq9+pw\r\n!a b/c&d=%e"),
}


def runs(password: str, size: int = 4) -> set[str]:
    """Every run of `size` characters of the password, in lower case."""
    low = password.lower()
    return {low[i : i + size] for i in range(len(low) - size + 1)}


def shown(snippet: str) -> list[str]:
    """What a reader of a snippet may read of it: as it is, and each run in it that base64
    decodes, decoded; each with its percent escapes read too, and its NULs left out (a UTF-16
    text read as UTF-8)."""
    views = [snippet, snippet.replace("\x00", "")]
    for word in re.findall(r"[A-Za-z0-9+/]{8,}", snippet):
        try:
            decoded = base64.b64decode(word + "=" * (-len(word) % 4), validate=True)
        except ValueError:
            continue
        views.append(decoded.decode("utf-8", "replace"))
    return views + [unquote(view) for view in views]


@pytest.mark.parametrize("name", list(ECHOES))
async def test_an_unreadable_answers_start_shows_no_run_of_the_password(
    tmp_path: Path, fake_ccnow: FakeCCNow, name: str
) -> None:
    password, body = ECHOES[name]
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(200, body, "text/html")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "adjust", A, "--amount", "1.00", RECONCILER_CCNOW_PASSWORD=password)
    assert result.code == 75, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "uncertain", "unreadable_answer")]
    [line] = lines(result.stderr, "ccnow.answer_unreadable")
    for view in shown(line["snippet"]):
        assert not {run for run in runs(password) if run in view.lower()}, (view, line)
    assert not {run for run in runs(password) if run in result.stderr.lower()}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(502, f"<html>\n<h1>502</h1> login?password={CCNOW_PASSWORD}</html>", "text/html"),
        Reply(520, "", "text/html; charset=UTF-8"),
        Reply(500, "Internal Server Error", "text/plain"),
    ],
)
@pytest.mark.parametrize("action", ["adjust", "ship"])
async def test_a_gateways_answer_other_than_200_gets_the_same_line_once_per_post(
    tmp_path: Path, fake_ccnow: FakeCCNow, reply: Reply, action: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    # A ship is posted again after the first (retries = 1): the second answer is the last.
    fake_ccnow.script = [html_page(502), reply] if action == "ship" else [reply]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    args = ["--amount", "1.00"] if action == "adjust" else []
    result = await ccnow(cfg, action, A, *args)
    assert result.code == 75, result.stdout + result.stderr
    assert CCNOW_PASSWORD not in result.stderr
    [line] = lines(result.stderr, "ccnow.answer_unreadable")
    assert line["level"] == "warning"
    assert line["http_status"] == reply.status
    assert line["content_type"] == reply.content_type.split(";")[0].lower()
    body = reply.body if isinstance(reply.body, str) else reply.body.decode()
    masked = " ".join(body.split()).replace(CCNOW_PASSWORD, "***")
    assert line["snippet"] == masked
    assert (line["order_ids"], line["command_ids"]) == ([A], [1])


async def test_ccnows_own_words_with_a_status_other_than_200_get_no_such_line(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(500, "error_message Database error, action not performed\n")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "adjust", A, "--amount", "1.00")
    assert result.code == 75, result.stdout + result.stderr
    assert lines(result.stderr, "ccnow.answer_unreadable") == []
