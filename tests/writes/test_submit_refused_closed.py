"""CCV's 4xx to a submit whose submission is no longer `sending` when the answer comes (a
writer's recovery made it uncertain meanwhile): no notification came, and none is claimed.
A real SQLite store, the real closing code."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.writes.ccv_http import Answer
from reconciler.writes.submit_outcome import Closing, close


async def test_a_refusal_of_a_submission_closed_elsewhere_claims_no_notification(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(tmp_path / "reconciler.db", sinks=["jsonl"])
    try:
        now = time.time()
        sub_id = await subs.record(store, "default", "elsewhere-1", now)
        # Closed by another writer meanwhile, as its start closes what a stopped one left.
        await subs.make_uncertain(store, "default", [sub_id], [], reason="interrupted", now=now)
        caplog.set_level(logging.INFO, logger="reconciler")
        closing = Closing(store, ("orderId", "id"), now, lambda: None)
        answer = Answer(400, b'{"error": "orderLines: required"}', "application/json")
        result = await close(closing, sub_id, "default", "elsewhere-1", answer)
        said = [r.getMessage() for r in caplog.records]
        assert "ccv.submit_failed_contradicted" not in said, said
        assert "notification" not in (result.own or ""), result.own
        assert (result.status, result.state) == (400, "uncertain")
        found = await subs.find(store, "default", "elsewhere-1")
        assert found is not None and found.state == "uncertain"
    finally:
        await store.close()
