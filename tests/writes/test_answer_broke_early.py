"""A write's answer whose status line, headers and the body's first bytes came in one read, and
which aiohttp refused there (a chunk broken right after the headers, a header line past its
8 KiB, a `br` body it cannot decode): aiohttp raised before it made a response, and the
status and `Location` were lost with it. A CCV submit answered `303 See Other` with its order's
`Location` was stored as a lost answer, `ccv resolve --not-sent` closed it and the reference
went to CCV again: two orders. Each answer here is sent by a fake on 127.0.0.1 as the exact
bytes, in one write."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from aiohttp.http_parser import HttpResponseParser, HttpResponseParserPy

from reconciler.sources.connection import Head, answer_head
from reconciler.writes.submit_outcome import NOT_SENT_REFUSED_HEADER, own_from_header
from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import DROP, SUBMIT_PATH, FakeCCVWrites, submit_body
from tests.fake_providers import Raw, Reply
from tests.server.test_api import GOOD_PRICES, TOKEN, api_toml, serve_api
from tests.writes.test_submit_crash import query

ORDER = f"{SUBMIT_PATH}/abc-140"
BROKEN_CHUNK = b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\nZZ\r\n"
SEE_OTHER = Raw(
    raw=b"HTTP/1.1 303 See Other\r\nLocation: " + ORDER.encode() + b"\r\n" + BROKEN_CHUNK
)
BROTLI = Raw(
    raw=b"HTTP/1.1 201 Created\r\nLocation: " + ORDER.encode() + b"\r\nContent-Encoding: br\r\n"
    b"Content-Length: 5\r\n\r\nabcde"
)
# Review 29h: its Location folded onto the next line (aiohttp reads it), was read as none here,
# and a leading blank line (aiohttp passes over it) as no head at all.
FOLDED = Raw(
    raw=b"HTTP/1.1 303 See Other\r\nLocation:\r\n " + ORDER.encode() + b"\r\n" + BROKEN_CHUNK
)
LEADING_CRLF = Raw(
    raw=b"\r\nHTTP/1.1 201 Created\r\nLocation: " + ORDER.encode() + b"\r\n" + BROKEN_CHUNK
)
NO_STATUS_LINE = Raw(raw=b"HTTP/1.1 2x1 Created\r\nLocation: " + ORDER.encode() + b"\r\n\r\n")
CUT_IN_HEAD = Raw(raw=b"HTTP/1.1 201 Created\r\nLoca")

# CCV's answer, what `ccv submit` says of it and what `ccv resolve --not-sent` refuses it for.
MADE = {
    "303-broken-chunk": (
        SEE_OTHER,
        (303, ORDER),
        "CCV answered HTTP 303, but the rest of its answer could not be read (malformed HTTP)",
        "HTTP 303 See Other and Location",
    ),
    "303-folded-location": (
        FOLDED,
        (303, ORDER),
        "CCV answered HTTP 303, but the rest of its answer could not be read (malformed HTTP)",
        "HTTP 303 See Other and Location",
    ),
    "201-after-a-blank-line": (
        LEADING_CRLF,
        (201, ORDER),
        "CCV answered HTTP 201, but the rest of its answer could not be read (malformed HTTP)",
        "HTTP 201 and Location",
    ),
    "201-br": (
        BROTLI,
        (201, ORDER),
        "CCV answered HTTP 201, but its body could not be read (answer in a content-encoding",
        "HTTP 201 and Location",
    ),
    # No status to keep: an answer came all the same, and it may have been a `201 Created`.
    "no-status-line": (
        NO_STATUS_LINE,
        (None, None),
        "CCV's answer could not be read (answer_head_unread)",
        "status line and headers could not be read (answer_head_unread)",
    ),
    "cut-in-its-head": (
        CUT_IN_HEAD,
        (None, None),
        "CCV's answer could not be read (answer_head_unread)",
        "status line and headers could not be read (answer_head_unread)",
    ),
}


@pytest.mark.parametrize("case", list(MADE))
async def test_a_submit_whose_answer_aiohttp_refused_at_once_is_not_closed_as_not_sent(
    tmp_path: Path, fake: FakeCCVWrites, case: str
) -> None:
    answer, (status, where), said, refused = MADE[case]
    fake.submit_replies = [answer]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="early-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert f"reconciler: {said}" in submitted.stderr
    assert "before its answer came" not in submitted.stderr
    assert "--not-sent" not in submitted.stderr, submitted.stderr
    location = None if where is None else fake.base_url + where
    if location is not None:
        assert f"(Location: {location})" in submitted.stderr
    assert query(tmp_path, "SELECT state, http_status, location FROM submissions") == [
        ("uncertain", status, location)
    ]
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "early-1", "--not-sent")
    assert result.code == 65 and refused in result.stderr, result.stderr
    again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert again.code == 65 and "submitted already" in again.stderr, again.stderr
    assert len(fake.submits) == 1


async def test_a_201_with_a_header_line_past_8_kib_is_read_and_its_order_followed(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # aiohttp refused the whole answer for its 9 KB header line: CCV's order, named in its
    # body, was stored as a lost answer.
    body = b'{"orderId": "abc-142"}'
    head = b"HTTP/1.1 201 Created\r\nX-Trace: " + b"t" * 9000 + b"\r\n"
    length = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    fake.submit_replies = [Raw(raw=head + length + body)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="long-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert (submitted.code, submitted.stdout) == (0, "abc-142\n"), submitted.stderr
    assert query(tmp_path, "SELECT state, order_id FROM submissions") == [("succeeded", "abc-142")]


async def test_the_daemon_passes_on_the_status_and_location_of_such_an_answer(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    fake.submit_replies = [SEE_OTHER]
    fake.pricing_replies = [Raw(raw=b"HTTP/1.1 200 OK\r\n" + BROKEN_CHUNK)]
    body = submit_body(externalReference="early-2")
    async with serve_api(tmp_path, fake) as api:
        async with api.http.post(
            f"{api.url}/api/v1/ccv/orders",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == fake.base_url + ORDER
            assert response.headers["Reconciler-Submission-State"] == "uncertain"
            refused = own_from_header(response.headers[NOT_SENT_REFUSED_HEADER])
            assert "HTTP 303 See Other and Location" in refused
        word = {"external_reference": "early-2", "sent": False}
        status, document, _ = await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word)
        assert status == 409, document
        assert (await api.call("POST", "/api/v1/ccv/orders", body=body))[0] == 409
        # The prices' answer: CCV's word for the rest, a 502 (its 2xx, unread, says nothing of
        # the prices; once "CCV's answer was lost", then CCV's 200 with that word).
        # No status line to read: reconciler's 502, which advises no word that CCV has none.
        fake.submit_replies = [NO_STATUS_LINE]
        other = submit_body(externalReference="early-3")
        status, document, headers = await api.call("POST", "/api/v1/ccv/orders", body=other)
        assert (status, document["state"]) == (502, "uncertain"), document
        assert "--not-sent" not in document["error"], document
        refused = own_from_header(headers[NOT_SENT_REFUSED_HEADER])
        assert "status line and headers could not be read (answer_head_unread)" in refused
        status, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=GOOD_PRICES)
        own = "CCV answered HTTP 200, but the rest of its answer could not be read (malformed HTTP)"
        said = "; the prices may or may not be set: setting them again is safe"
        assert (status, document) == (502, {"error": own + said})
    assert len(fake.submits) == 2 and len(fake.pricing_calls) == 1


# A 401 or 429 whose body broke in the same read as its head:
# tests/writes/test_ccnow_broken_action_answers.py (queued when no byte of its body came, else
# uncertain: the rest may have been orders' lines).


async def test_an_undecodable_answer_an_earlier_release_kept_without_its_status_is_refused(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Such a `201 Created` in `br` was kept as `undecodable answer`, no status: the word that
    # CCV never got it closed it, though CCV had answered.
    fake.submit_replies = [Reply(DROP)]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="old-1")).encode()
    assert (await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)).code == 75
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE submissions SET reason = 'undecodable answer'")
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "old-1", "--not-sent")
    assert result.code == 65, result.stderr
    assert "could not be read (undecodable answer): it may have made the order" in result.stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]


# What aiohttp's parsers read: the C one (what its connections use when built) and the
# pure-Python one (AIOHTTP_NO_EXTENSIONS), where they differ.
PARSERS = {"c": HttpResponseParser, "python": HttpResponseParserPy}
HEADS: list[tuple[bytes, Head | None, Head | None]] = [
    # An interim answer first; both Locations (the first pointing nowhere would leave the next).
    (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 303 See Other\r\n"
        b"location:  /o/1 \r\nLocation: /o/2\r\n\r\nZZ",
        Head(303, ("/o/1", "/o/2"), None, "", 100),
        Head(303, ("/o/1", "/o/2"), None, "", 100),
    ),
    (
        b"HTTP/1.0 429\nRetry-After: 7\nContent-Type: text/plain\n\n",
        Head(429, (), "7", "text/plain", 54),
        Head(429, (), "7", "text/plain", 54),
    ),
    # Every Location line as it came, an empty one too: `_location` passes over it.
    (
        b"HTTP/1.1 303 See Other\r\nLocation:\r\nLocation: /o/2\r\n\r\n",
        Head(303, ("", "/o/2"), None, "", 53),
        Head(303, ("", "/o/2"), None, "", 53),
    ),
    # A Location folded onto the next line (a space or a tab before it).
    (
        b"HTTP/1.1 303 See Other\r\nLocation:\r\n /o/3\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        Head(303, ("/o/3",), None, "", 72),
        Head(303, ("/o/3",), None, "", 72),
    ),
    (
        b"HTTP/1.1 303 See Other\r\nLocation:\r\n\t/o/3\r\n\r\n",
        Head(303, ("/o/3",), None, "", 44),
        Head(303, ("/o/3",), None, "", 44),
    ),
    # A blank line before the status line: the C parser passes over it.
    (
        b"\r\nHTTP/1.1 201 Created\r\nLocation: /o/5\r\n\r\n",
        Head(201, ("/o/5",), None, "", 42),
        None,
    ),
    # A UTF-8 Location, as aiohttp decodes it (was read as latin-1: `/o/Ã©`).
    (
        "HTTP/1.1 201 Created\r\nLocation: /o/é\r\n\r\n".encode(),
        Head(201, ("/o/é",), None, "", 41),
        Head(201, ("/o/é",), None, "", 41),
    ),
    # A header line past aiohttp's bound for the writes (64 KiB), within what is kept.
    (
        b"HTTP/1.1 201 Created\r\nX: " + b"t" * 70_000 + b"\r\nLocation: /o/6\r\n\r\n",
        Head(201, ("/o/6",), None, "", 70045),
        Head(201, ("/o/6",), None, "", 70045),
    ),
    (b"HTTP/1.1 201 Created\r\nLocation: /o/4\r\n", None, None),  # cut before its end
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\nHTTP/1.1 201 x\r\n\r\n", None, None),
    (b"HTTP/2 201\r\n\r\n", None, None),
    (b"<html>\r\n\r\n", None, None),
]


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize(("heard", "c_head", "python_head"), HEADS)
async def test_the_head_read_again_is_the_final_status_the_first_of_each_header_and_its_end(
    parser: str,
    heard: bytes,
    c_head: Head | None,
    python_head: Head | None,
) -> None:
    if parser == "c" and HttpResponseParser is HttpResponseParserPy:
        pytest.skip("aiohttp was built without its C parser")
    assert answer_head(heard, PARSERS[parser]) == (c_head if parser == "c" else python_head)
