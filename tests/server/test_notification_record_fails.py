"""A CCV notification whose record fails in a way the store does not name (a bug, an error of
some other part) is answered 202 like one the store could not keep, with one line, and its
check still runs: it was answered 500 and never checked, and CCV does not call again."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient

from reconciler.metrics import Metrics
from reconciler.server import build_app
from reconciler.server.receiver import CLOSE_CHECKS
from tests.server.conftest import RECEIVER, Client, FakeHub, ccv_path, send, served


@pytest.mark.parametrize(("kind", "value"), [("order", "N-1"), ("ref", "INV-1")])
async def test_a_record_failing_unexpectedly_answers_202_and_the_check_runs(
    client: Client, hub: FakeHub, caplog: pytest.LogCaptureFixture, kind: str, value: str
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    hub.record_fails_with = RuntimeError("boom")
    path = ccv_path(order_id=value) if kind == "order" else ccv_path(reference=value)
    code, body, _ = await send(client, "POST", path)
    assert (code, body) == (202, {"accepted": True})
    await hub.wait_calls(1)
    assert hub.calls[0][:3] == (kind, "default", value)
    (line,) = [r for r in caplog.records if r.getMessage() == "notification.not_recorded"]
    assert line.levelno == logging.ERROR and line.exc_info is not None  # a bug: its traceback
    said = line.__dict__["fields"]
    assert said["at"] == "receipt" and "boom" in said["error"]


async def test_a_record_still_under_way_at_the_stop_is_ended_with_one_line(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    # Past the bound the record goes on after the 202 (its COMMIT may land); the stop ends it
    # (the store closes after the receiver), and says it was not kept.
    caplog.set_level(logging.INFO, logger="reconciler.server")
    hub.record_gate = asyncio.Event()  # a store that never answers
    app = build_app(
        RECEIVER,
        hub,
        ccv_accounts=["default"],
        ccnow_tokens={},
        metrics=metrics,
        record_timeout_s=0.1,
    )
    async with TestClient(served(app)) as client:
        code, _, _ = await send(client, "POST", ccv_path(order_id="N-2"))
        assert code == 202
        assert lines(caplog) == []  # not told lost: it may still be written
        await app[CLOSE_CHECKS]()
        (line,) = lines(caplog)
        said = line.__dict__["fields"]
        assert (said["order_id"], said["error"]) == ("N-2", "stopped before it was written")


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "notification.not_recorded"]
