"""A CCV notification whose record fails in a way the store does not name (a bug, an error of
some other part) is answered 202 like one the store could not keep, with one line, and its
check still runs: it was answered 500 and never checked, and CCV does not call again."""

from __future__ import annotations

import logging

import pytest

from tests.server.conftest import Client, FakeHub, ccv_path, send


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
