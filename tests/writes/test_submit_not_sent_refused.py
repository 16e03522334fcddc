"""`ccv resolve --not-sent` is refused where CCV said it has the order of an uncertain submit:
its 2xx pointed at the order (a `Location`) or said it created one (`201 Created`, though
naming no usable id), its `303 See Other` pointed at it, or a notification for the reference
came since the submit. Closed anyway, the reference was free again and its next submit made a
second order at CCV. Real HTTP against a fake CCV, through the command line and the daemon's
API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import call_cli, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import Api, api_toml
from tests.writes.test_submit_answered_not_settled_by_notification import notify
from tests.writes.test_submit_crash import query

MADE = "5d0e7c1a-2b3f-4a6d-9e8c-7f1a2b3c4d5e"
PAGE = "<html><body>Please log in</body></html>"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (Reply(200, PAGE, "text/html", headers={"Location": f"/order/{MADE}"}), "HTTP 200 and"),
        (json_reply(201, {"result": "ok"}), "HTTP 201 Created: it made the order"),
        (
            Reply(201, "", headers={"Location": f"/order/{MADE}"}),
            "HTTP 201 and Location",
        ),
        # a POST's "made, see there"
        (
            Reply(303, "", headers={"Location": f"/order/{MADE}"}),
            "HTTP 303 See Other and Location",
        ),
    ],
    ids=["200-location", "201", "201-location", "303-location"],
)
async def test_a_2xx_saying_ccv_made_the_order_is_not_closed_as_not_sent(
    tmp_path: Path, fake: FakeCCVWrites, answer: Reply, said: str
) -> None:
    fake.submit_replies = [answer]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="made-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    # Its advice is to find the order and track it, not the word that would free the reference.
    assert "track ccv ID --ref made-1" in submitted.stderr
    assert "--not-sent" not in submitted.stderr, submitted.stderr
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "made-1", "--not-sent")
    assert result.code == 65 and said in result.stderr, result.stderr
    if "Location" in answer.headers:
        assert f"Location {fake.base_url}/order/{MADE}" in result.stderr, result.stderr
        # The order it points at is kept, and named in what settles it.
        assert f"track ccv {MADE} --ref made-1" in result.stderr, result.stderr
    else:
        assert "track ccv ID --ref made-1" in result.stderr
    assert query(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]
    again = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert again.code == 65 and "submitted already" in again.stderr, again.stderr
    assert len(fake.submits) == 1


@pytest.mark.parametrize("when", ["after", "while-waiting"])
async def test_a_submit_ccv_notified_since_is_not_closed_as_not_sent(
    tmp_path: Path, api: Api, fake: FakeCCVWrites, when: str
) -> None:
    # A 200 naming no order proves nothing by itself (JSON: the test's client reads it), but
    # CCV's notification for the reference, since the submit, says it has an order of it.
    fake.submit_replies = [json_reply(200, {"error": "invalid order"})]
    fake.submit_hold = asyncio.Event()
    body = submit_body(externalReference="told-1")
    pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=body))
    await fake.wait_until(lambda: len(fake.submits) == 1, 10)
    if when == "while-waiting":
        await notify(api, "told-1")
    fake.submit_hold.set()
    assert (await pending)[0] == 200
    if when == "after":
        await notify(api, "told-1")
    assert api.submission("told-1") == ("uncertain", None)
    cfg = tmp_path / "reconciler.toml"
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "told-1", "--not-sent")
    assert result.code == 65, result.stderr
    assert "CCV sent a notification for external reference told-1" in result.stderr
    word = {"external_reference": "told-1", "sent": False}
    status, document, _ = await api.call("POST", "/api/v1/ccv/submissions/resolve", body=word)
    assert status == 409 and "notification" in document["error"], document
    assert api.submission("told-1") == ("uncertain", None)
    # Not sent again: a second order at CCV.
    assert (await api.call("POST", "/api/v1/ccv/orders", body=body))[0] == 409
    assert len(fake.submits) == 1


@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_to_a_login_page_is_closed_by_a_persons_word(
    tmp_path: Path, fake: FakeCCVWrites, status: int
) -> None:
    # A gateway's redirect to its login page says nothing of an order: closable, unlike a 303.
    fake.submit_replies = [Reply(status, "", headers={"Location": "/login"})]
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
    stdin = json.dumps(submit_body(externalReference="login-1")).encode()
    submitted = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert submitted.code == 75, submitted.stderr
    assert "ccv resolve --ref login-1 --not-sent" in submitted.stderr, submitted.stderr
    result = await call_cli("--config", cfg, "ccv", "resolve", "--ref", "login-1", "--not-sent")
    assert result.code == 0, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [("failed", "not_sent")]
