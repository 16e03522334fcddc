"""A CCV notification that arrives while a submit of its reference still waits for CCV's answer
settles the submit once its answer is lost: CCV calls once and never again, so the notification
remembered meanwhile is the one README promises settles it. A real daemon, its API and its
receiver over HTTP, against a fake CCV that holds the submit until the daemon gives up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import ReceiverConfig, Secret
from reconciler.notify import notification_url
from tests.conftest import daemon_here, free_port, poll_until, read_events, write_config
from tests.fake_ccv_writes import DROP, FakeCCVWrites, submit_body
from tests.fake_providers import Reply
from tests.server.test_api import PUBLIC_URL, RECEIVER_SECRET, Api, api_toml, serve_api
from tests.writes.test_submit_crash import listening, query, submission_state, submit

UNCERTAIN, RESOLVED = "order.submit_uncertain", "order.submit_resolved"


async def notify(receiver_port: int, reference: str) -> None:
    """Call the signed notification URL of a reference, as CCV does: once."""
    receiver = ReceiverConfig("127.0.0.1", receiver_port, PUBLIC_URL, Secret(RECEIVER_SECRET))
    url = notification_url(receiver, "default", reference=reference)
    local = url.replace(PUBLIC_URL, f"http://127.0.0.1:{receiver_port}/reconciler")
    async with aiohttp.ClientSession() as http, http.post(local) as resp:
        assert resp.status == 202


async def test_a_notification_while_the_submit_waits_settles_it_when_the_answer_is_lost(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    port, receiver_port = free_port(), free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port, receiver_port=receiver_port))
    fake.submit_hold = asyncio.Event()  # CCV makes the order and never answers in time
    async with daemon_here(cfg):
        await listening(port)
        await listening(receiver_port)
        pending = asyncio.ensure_future(submit(port, submit_body(externalReference="E-1")))
        await fake.wait_until(lambda: len(fake.submits) == 1, 10)
        await notify(receiver_port, "E-1")  # while the daemon waits for CCV's answer
        await poll_until(
            lambda: query(tmp_path, "SELECT count(*) FROM pending_references") == [(1,)],
            10,
            "the notification remembered",
        )
        assert submission_state(tmp_path, "E-1") == "sending"
        status, document = await pending  # the daemon's CCV timeout (2 s)
        # Said as it is stored: settled (probe 35 found `uncertain` said, and `--not-sent` advised).
        assert (status, document["state"]) == (504, "resolved")
        assert submission_state(tmp_path, "E-1") == "resolved"
        await poll_until(
            lambda: [e for e in read_events(tmp_path) if e["type"] == RESOLVED], 10, "delivered"
        )
        fake.submit_hold.set()
    events = [e for e in read_events(tmp_path) if e["type"] in (UNCERTAIN, RESOLVED)]
    assert [(e["type"], e["data"]["external_reference"]) for e in events] == [
        (UNCERTAIN, "E-1"),
        (RESOLVED, "E-1"),
    ]
    assert events[1]["data"]["how"] == "notification"
    assert events[1]["data"]["reason"] == "timeout"
    assert len(fake.submits) == 1


@pytest.fixture
async def api(tmp_path: Path, fake: FakeCCVWrites) -> AsyncIterator[Api]:
    async with serve_api(tmp_path, fake) as api:
        yield api


async def test_it_is_settled_once_however_often_ccv_notifies(api: Api, fake: FakeCCVWrites) -> None:
    fake.submit_hold = asyncio.Event()
    fake.submit_replies = [Reply(DROP)]
    body = submit_body(externalReference="E-3")
    pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=body))
    await fake.wait_until(lambda: len(fake.submits) == 1, 10)
    await api.daemon.hub.check_ccv_reference("default", "E-3", 0.0)
    fake.submit_hold.set()
    status, document, _ = await pending
    assert status == 502 and api.submission("E-3") == ("resolved", None)
    assert document["state"] == "resolved"
    await api.daemon.hub.check_ccv_reference("default", "E-3", 0.0)  # once more: nothing more
    types = api.rows("SELECT type FROM events ORDER BY seq")
    assert types == [(UNCERTAIN,), (RESOLVED,)]


async def test_a_notification_before_the_submit_was_recorded_settles_nothing(
    api: Api, fake: FakeCCVWrites
) -> None:
    # A reference named before anything was submitted with it is not about this submit.
    await api.daemon.hub.check_ccv_reference("default", "E-2", 0.0)
    fake.submit_replies = [Reply(DROP)]
    body = submit_body(externalReference="E-2")
    status, document, _ = await api.call("POST", "/api/v1/ccv/orders", body=body)
    assert (status, document["state"]) == (502, "uncertain")
    assert api.submission("E-2") == ("uncertain", None)
    assert api.rows("SELECT type FROM events") == [(UNCERTAIN,)]
