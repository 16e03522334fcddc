"""A CCV submit that never reached CCV, while a notification for its reference came: CCV has an
order of it (an earlier submit's), so the reference stays taken (review 30l)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.writes import submit as submit_module
from reconciler.writes.ccv_http import NotSent
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import serve_api


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def test_a_submit_not_reached_while_notified_keeps_its_reference(
    tmp_path: Path, fake: FakeCCVWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, go = asyncio.Event(), asyncio.Event()

    async def connect_timed_out(*args: Any, **kwargs: Any) -> None:
        # The connect to CCV stalls, then fails: nothing was sent.
        started.set()
        await go.wait()
        raise NotSent("connect timeout")

    monkeypatch.setattr(submit_module, "send_once", connect_timed_out)
    document = submit_body(externalReference="nr-1")
    async with serve_api(tmp_path, fake) as api:
        first = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
        await asyncio.wait_for(started.wait(), 10)
        await api.daemon.hub.check_ccv_reference("default", "nr-1", 0.0)
        go.set()
        status, body, headers = await first
        assert status == 502 and "not sent again" in body["error"], body
        assert headers["Reconciler-Submission-State"] == "resolved"
        monkeypatch.undo()
        again, _, _ = await api.call("POST", "/api/v1/ccv/orders", body=document)
        assert again == 409
    assert fake.submits == []
