"""Prices the API forwards to CCV leave one log line each, `ccv.pricing_forwarded`, with what
came of them (CCV's status, or why no answer came) and never the body; and every answer to
prices the check let through counts its warnings in `Reconciler-Pricing-Warnings`, the 502 and
504 of a lost answer included (before, those had none, and nothing was logged)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from reconciler.writes.ccv_http import MAX_ANSWER_BYTES
from tests.fake_ccv_writes import DROP, FakeCCVWrites, json_reply
from tests.fake_providers import Raw, Reply
from tests.server.test_api import GOOD_PRICES, TOKEN, Api, serve_api
from tests.writes.test_answer_broke_early import BROKEN_CHUNK

MARK = "notes-7f3a-never-logged"
# One warning: a totalRevenueForFullYear no usual recipe makes (the document does not say).
PRICES = {**GOOD_PRICES, "totalRevenueForFullYear": 999, "order": {"orderNotes": MARK}}


def trail(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The `ccv.pricing_forwarded` lines' fields, with their level."""
    return [
        {**r.fields, "level": r.levelname}  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "ccv.pricing_forwarded"
    ]


@pytest.mark.parametrize(
    ("reply", "status", "line"),
    [
        (None, 200, {"status": 200, "reason": None, "level": "INFO"}),
        (
            json_reply(400, {"error": "bad"}),
            400,
            {"status": 400, "reason": None, "level": "WARNING"},
        ),
        (
            Reply(200, "{}", "application/json", delay_s=5.0),
            504,
            {"status": None, "reason": "answer_lost: timeout", "level": "WARNING"},
        ),
        (
            Reply(DROP),
            502,
            {"status": None, "reason": "answer_lost: connection", "level": "WARNING"},
        ),
    ],
)
async def test_each_forwarded_patch_is_logged_with_its_outcome_and_counts_its_warnings(
    api: Api,
    fake: FakeCCVWrites,
    caplog: pytest.LogCaptureFixture,
    reply: Reply | None,
    status: int,
    line: dict[str, Any],
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.pricing_replies = [] if reply is None else [reply]
    answered, _, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert answered == status
    assert headers["Reconciler-Pricing-Warnings"] == "1"
    assert len(fake.pricing_calls) == 1
    assert trail(caplog) == [{"account": "default", "warnings": 1, **line}]
    assert not [r for r in caplog.records if MARK in r.getMessage() or MARK in str(vars(r))]


async def test_prices_that_never_reached_ccv_are_logged_and_count_their_warnings(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await fake.close()  # nothing listens on the account's port any more: connection refused
    answered, document, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert (answered, document["error"]) == (502, "CCV could not be reached; nothing was sent")
    assert headers["Reconciler-Pricing-Warnings"] == "1"
    [line] = trail(caplog)
    assert (line["status"], line["reason"], line["level"]) == (
        None,
        "not_sent: connection",
        "WARNING",
    )


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        # A gateway's or login page's "200": something between reconciler and CCV answered.
        (Reply(200, "<html>gateway ok</html>", "text/html"), "text/html"),
        (
            Reply(200, '{"message": "set"}', "Application/XHTML+xml"),
            "application/xhtml+xml",
        ),
        # Its body a page whatever its media type says: the first byte but blanks is `<`.
        (Reply(200, " \r\n\t<!DOCTYPE html><p>ok</p>", "text/plain"), "text/plain"),
        (Reply(201, "<?xml version='1.0'?><ok/>", "application/json"), "application/json"),
        (Reply(202, "\ufeff<html></html>", ""), "none"),
    ],
)
async def test_a_2xx_that_is_a_page_is_no_prices_set(
    api: Api,
    fake: FakeCCVWrites,
    caplog: pytest.LogCaptureFixture,
    reply: Reply,
    kind: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.pricing_replies = [reply]
    answered, document, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert answered == 502, document
    assert document["error"] == (
        f"CCV's answer (HTTP {reply.status}) was an HTML page, not CCV's answer but something "
        "else's between reconciler and CCV; the prices may not be set: setting them again is safe"
    )
    assert headers["Reconciler-Pricing-Warnings"] == "1"
    assert trail(caplog) == [
        {
            "account": "default",
            "warnings": 1,
            "status": reply.status,
            "reason": f"html_page: {kind}",
            "level": "WARNING",
        }
    ]


@pytest.mark.parametrize(
    "reply",
    [
        # The document says only "200 Shopping cart pricing details set": an empty body or a
        # short text is as much CCV's word as JSON is.
        Reply(200, "", "text/plain"),
        Reply(200, "", "application/json"),
        Reply(200, "Shopping cart pricing details set", "text/plain"),
        Reply(202, "OK", "application/json"),
        Reply(200, "  OK <b>", "text/plain"),
        # An empty body is no page whatever its label: many servers call any answer text/html.
        Reply(200, "", "text/html"),
        Reply(204, "", "text/html"),
        Reply(200, " \r\n", "text/html"),
    ],
)
async def test_a_2xx_that_is_no_page_is_passed_back_as_prices_set(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture, reply: Reply
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.pricing_replies = [reply]
    async with api.http.patch(
        f"{api.url}/api/v1/ccv/pricing",
        json=PRICES,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == reply.status, await response.text()
        assert await response.text() == reply.body
        assert response.headers["Content-Type"] == reply.content_type
        assert response.headers["Reconciler-Pricing-Warnings"] == "1"
    assert trail(caplog) == [
        {"account": "default", "warnings": 1, "status": reply.status, "reason": None}
        | {"level": "INFO"}
    ]


TOO_LARGE = Reply(200, '{"m": "' + "x" * MAX_ANSWER_BYTES + '"}', "application/json")


@pytest.mark.parametrize(
    ("reply", "own"),
    [
        (TOO_LARGE, "CCV answered HTTP 200, but its answer was too large to pass on"),
        (
            Raw(raw=b"HTTP/1.1 200 OK\r\n" + BROKEN_CHUNK),
            "CCV answered HTTP 200, but the rest of its answer could not be read (malformed HTTP)",
        ),
        (
            Raw(
                raw=b"HTTP/1.1 202 Accepted\r\nContent-Encoding: br\r\n"
                b"Content-Length: 4\r\n\r\nZZZZ"
            ),
            "CCV answered HTTP 202, but its body could not be read",
        ),
    ],
)
async def test_a_2xx_whose_body_could_not_be_read_is_no_prices_set(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture, reply: Reply, own: str
) -> None:
    # Before, CCV's 2xx came back with reconciler's error text as its body: prices set?
    caplog.set_level(logging.DEBUG)
    fake.pricing_replies = [reply]
    answered, document, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert answered == 502, document
    said = "; the prices may or may not be set: setting them again is safe"
    assert document["error"].startswith(own) and document["error"].endswith(said), document
    assert headers["Reconciler-Pricing-Warnings"] == "1"
    [line] = trail(caplog)
    assert (line["status"], line["level"]) == (200 if "200" in own else 202, "WARNING")
    assert line["reason"].startswith(own)


async def test_a_key_in_a_pages_media_type_is_masked_before_it_is_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The media type shown is cut at 80 characters: a cut inside the key, lower-cased before
    # it was masked, left its first letters.
    caplog.set_level(logging.DEBUG)
    key = "t_Mixed-KEY-7Qz9x"
    kind = "text/html" + "x" * 67 + key
    async with FakeCCVWrites(api_key=key) as fake:
        fake.pricing_replies = [Reply(200, "<html></html>", kind)]
        async with serve_api(tmp_path, fake, ccv_key=key) as api:
            answered, _, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert answered == 502
    [line] = trail(caplog)
    low = key.lower()
    assert not [low[i : i + 4] for i in range(len(low) - 3) if low[i : i + 4] in line["reason"]]
    assert line["reason"] == "html_page: text/html" + "x" * 67 + "***", line


async def test_ccvs_json_is_passed_back_whatever_its_content_type_says(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.pricing_replies = [Reply(200, '{"message": "set"}', "text/plain")]
    answered, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert (answered, document) == (200, {"message": "set"})
    assert [line["level"] for line in trail(caplog)] == ["INFO"]
