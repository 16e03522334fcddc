"""What the receiver says about the requests it refuses: a notification URL of a configured
account that fails its signature or token (the URLs CCV holds after a change of secret or
public_url) is a warning an operator sees; junk from the network stays one debug line at most
per interval. A previous secret keeps older URLs working while they are replaced."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from reconciler.config import Secret
from reconciler.metrics import Metrics
from reconciler.notify import notification_url
from reconciler.server.receiver import build_app
from tests.server.conftest import (
    CCNOW_TOKEN,
    RECEIVER,
    Client,
    FakeHub,
    ccv_path,
    send,
    served,
    settled,
)

OLD_SECRET = "old-receiver-secret-0123456789"
ROTATED = dataclasses.replace(RECEIVER, previous_secret=Secret(OLD_SECRET))


@pytest.fixture
async def rotated(hub: FakeHub, metrics: Metrics) -> AsyncIterator[Client]:
    app = build_app(
        ROTATED,
        hub,
        ccv_accounts=["default"],
        ccnow_tokens={"default": Secret(CCNOW_TOKEN)},
        metrics=metrics,
    )
    async with TestClient(served(app)) as test_client:
        yield test_client


def signed_path(secret: str, order_id: str) -> str:
    receiver = dataclasses.replace(RECEIVER, secret=Secret(secret))
    return urlsplit(notification_url(receiver, "default", order_id=order_id)).path


def lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


async def test_a_url_signed_with_another_secret_is_one_warning_a_minute(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    stale = signed_path("a-secret-from-before-0123456789", "O-1")
    for _ in range(3):
        assert (await send(client, "POST", stale))[0] == 404
    # Another account's or reason's refusal is not hidden behind the first one's minute.
    for _ in range(2):
        assert (await send(client, "POST", f"/notify/ccnow/default/{CCNOW_TOKEN}x"))[0] == 404
    assert hub.calls == []
    lines_ = lines(caplog, "notification.rejected")
    assert [r.levelno for r in lines_] == [logging.WARNING] * 2
    said = [r.fields for r in lines_]  # type: ignore[attr-defined]
    assert [(f["source"], f["account"], f["reason"]) for f in said] == [
        ("ccv", "default", "bad_signature"),
        ("ccnow", "default", "bad_token"),
    ]
    assert "previous_secret" in said[0]["hint"]
    text = caplog.text
    assert stale.rsplit("/", 1)[1] not in text and CCNOW_TOKEN not in text


async def test_junk_is_at_most_one_debug_line_per_interval(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler.server")
    for path in ("/wp-login.php", "/notify/ccv/nobody/order/O-1/x", "/.env", "/"):
        assert (await send(client, "POST", path))[0] == 404
    for _ in range(5):  # a body that does not decode, sent to a valid URL
        status, _, _ = await send(
            client,
            "POST",
            ccv_path(order_id="O-1"),
            data=b"\x1f\x8bnot gzip",
            headers={"Content-Encoding": "gzip", "Connection": "close"},
        )
        assert status == 400
    assert len(lines(caplog, "request.rejected")) == 1
    assert lines(caplog, "notification.rejected") == []


async def test_urls_signed_with_the_previous_secret_still_count(
    rotated: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    assert (await send(rotated, "POST", signed_path(OLD_SECRET, "O-old")))[0] == 202
    assert (await send(rotated, "POST", ccv_path(order_id="O-new")))[0] == 202
    assert (await send(rotated, "POST", signed_path("neither-of-them-0123456789", "O-x")))[0] == 404
    await hub.wait_calls(2)
    await settled(rotated)
    assert sorted(call[2] for call in hub.calls) == ["O-new", "O-old"]
    accepted = {
        r.fields["order_id"]: r.fields.get("signed_with")  # type: ignore[attr-defined]
        for r in lines(caplog, "notification.accepted")
    }
    # Which URLs are still the old ones, so that an operator knows when to drop the old secret.
    assert accepted == {"O-old": "previous_secret", "O-new": None}
    assert OLD_SECRET not in caplog.text


async def test_a_signed_url_of_an_account_no_longer_configured_is_a_warning(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    # A rename of the account breaks every URL CCV holds for it: not a silent debug line.
    caplog.set_level(logging.INFO, logger="reconciler.server")
    receiver = dataclasses.replace(RECEIVER)
    renamed = urlsplit(notification_url(receiver, "eu", order_id="O-9")).path
    assert (await send(client, "POST", renamed))[0] == 404
    assert (await send(client, "POST", renamed[:-2] + "xx"))[0] == 404  # forged: junk
    assert hub.calls == []
    (line,) = lines(caplog, "notification.rejected")
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["account"], fields["reason"]) == ("eu", "account_not_configured")


async def test_a_ccnow_url_with_a_configured_token_under_an_old_account_name_is_a_warning(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    assert (await send(client, "POST", f"/notify/ccnow/eu/{CCNOW_TOKEN}"))[0] == 404
    assert (await send(client, "POST", f"/notify/ccnow/eu/{CCNOW_TOKEN}x"))[0] == 404  # junk
    assert hub.calls == []
    (line,) = lines(caplog, "notification.rejected")
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["source"], fields["account"], fields["reason"]) == (
        "ccnow",
        "eu",
        "account_not_configured",
    )
    assert CCNOW_TOKEN not in caplog.text


async def test_a_ccnow_url_of_a_configured_account_without_a_token_says_so(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    # Not "no longer configured": the account is there, CCNow was given a token it was not.
    caplog.set_level(logging.INFO, logger="reconciler.server")
    tokens: dict[str, Secret | None] = {"default": Secret(CCNOW_TOKEN), "plain": None}
    app = build_app(RECEIVER, hub, ccv_accounts=["default"], ccnow_tokens=tokens, metrics=metrics)
    async with TestClient(served(app)) as client:
        assert (await send(client, "POST", f"/notify/ccnow/plain/{CCNOW_TOKEN}"))[0] == 404
        assert (await send(client, "POST", "/notify/ccnow/plain/other-token"))[0] == 404
    assert hub.calls == []
    (line,) = lines(caplog, "notification.rejected")
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["account"], fields["reason"]) == ("plain", "no_notification_token")
    assert "notification_token" in fields["hint"] and CCNOW_TOKEN not in caplog.text
