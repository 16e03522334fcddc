"""Prices the API forwards to CCV leave one log line each, `ccv.pricing_forwarded`, with what
came of them (CCV's status, or why no answer came) and never the body; and every answer to
prices the check let through counts its warnings in `Reconciler-Pricing-Warnings`, the 502 and
504 of a lost answer included (before, those had none, and nothing was logged)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.fake_ccv_writes import DROP, FakeCCVWrites, json_reply
from tests.fake_providers import Reply
from tests.server.test_api import GOOD_PRICES, Api

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
    "reply",
    [
        # A gateway's or login page's "200": something between reconciler and CCV answered.
        Reply(200, "<html>gateway ok</html>", "text/html"),
        Reply(200, "", "text/plain"),
        Reply(202, "OK", "application/json"),
    ],
)
async def test_a_2xx_that_is_not_ccvs_json_is_no_prices_set(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture, reply: Reply
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.pricing_replies = [reply]
    answered, document, headers = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert answered == 502, document
    assert document["error"] == (
        f"CCV's answer (HTTP {reply.status}) was not CCV's JSON but something else's between "
        "reconciler and CCV; the prices may not be set: setting them again is safe"
    )
    assert headers["Reconciler-Pricing-Warnings"] == "1"
    kind = reply.content_type
    assert trail(caplog) == [
        {
            "account": "default",
            "warnings": 1,
            "status": reply.status,
            "reason": f"not_ccv_json: {kind}",
            "level": "WARNING",
        }
    ]


async def test_ccvs_json_is_passed_back_whatever_its_content_type_says(
    api: Api, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.pricing_replies = [Reply(200, '{"message": "set"}', "text/plain")]
    answered, document, _ = await api.call("PATCH", "/api/v1/ccv/pricing", body=PRICES)
    assert (answered, document) == (200, {"message": "set"})
    assert [line["level"] for line in trail(caplog)] == ["INFO"]
