"""A CCV submit that never reached CCV, while a notification for its reference came: CCV has an
order of it (an earlier submit's), so the reference stays taken (review 30l)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from reconciler.store import Store
from reconciler.store import submissions as subs
from reconciler.store.notified import notified
from reconciler.writes.interrupted import settle_interrupted
from tests.conftest import call_cli
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import serve_api
from tests.writes.test_stop_refuses_late_writes import CountedGates


async def test_a_submit_not_reached_while_notified_keeps_its_reference(tmp_path: Path) -> None:
    gates = CountedGates()
    document = submit_body(externalReference="nr-1")
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as api:
        account = api.daemon.config.ccv[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()  # every turn taken: the submit, recorded, waits for one
        first = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
        await gate.until_waiting(1)
        await api.daemon.hub.check_ccv_reference("default", "nr-1", 0.0)
        await ccv.close()  # CCV unreachable: the connection is refused, nothing is sent
        for _ in range(account.concurrency):
            gate.release()
        status, body, headers = await first
        assert status == 502 and "not sent again" in body["error"], body
        assert headers["Reconciler-Submission-State"] == "resolved"
        again, _, _ = await api.call("POST", "/api/v1/ccv/orders", body=document)
        assert again == 409
    assert ccv.submits == []


async def test_a_submit_a_stop_withdraws_while_notified_keeps_its_reference(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The submit waits for its turn, its reference's notification comes (CCV has an order of
    # it: an earlier submit's), then the stop begins: it is not sent, and was withdrawn (its
    # row deleted, the notification with it): the reference free, submitted again after the
    # restart, a second order at CCV.
    caplog.set_level(logging.INFO, logger="reconciler")
    gates = CountedGates()
    document = submit_body(externalReference="nr-2")
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as api:
        account = api.daemon.config.ccv[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()
        first = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
        await gate.until_waiting(1)
        await api.daemon.hub.check_ccv_reference("default", "nr-2", 0.0)
        api.daemon.writes.stop(5.0)
        for _ in range(account.concurrency):
            gate.release()
        status, body, headers = await first
        assert status == 503, body
        assert "submit it again" not in body["error"] and "not sent again" in body["error"]
        assert (headers["Reconciler-Submission-State"], body["state"]) == ("resolved", "resolved")
        assert "track ccv ID --ref nr-2" in body["error"]
        # Kept taken: the next start refuses a new submit of it (409).
        assert api.rows("SELECT state, reason FROM submissions") == [("resolved", "stopping")]
    assert ccv.submits == []
    said = [r.getMessage() for r in caplog.records if r.name.startswith("reconciler")]
    assert said.count("ccv.submit_failed_contradicted") == 1, said


async def test_a_submit_not_reached_says_so_once_with_its_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    gates = CountedGates()
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as api:
        account = api.daemon.config.ccv[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()
        first = asyncio.ensure_future(
            api.call("POST", "/api/v1/ccv/orders", body=submit_body(externalReference="nr-3"))
        )
        await gate.until_waiting(1)
        await api.daemon.hub.check_ccv_reference("default", "nr-3", 0.0)
        await ccv.close()
        for _ in range(account.concurrency):
            gate.release()
        status, body, headers = await first
        assert (status, body["state"]) == (502, "resolved"), body
        assert "track ccv ID --ref nr-3" in body["error"]
        # `--not-sent` is not advised: CCV has an order of the reference.
        refused = headers["Reconciler-Submission-Not-Sent-Refused"]
        assert "resolved, not uncertain" in refused
        status, body, _ = await api.call(
            "POST",
            "/api/v1/ccv/submissions/resolve",
            body={"external_reference": "nr-3", "sent": False},
        )
        assert status == 404 and "resolved" in body["error"], body
    said = [r.getMessage() for r in caplog.records if r.name.startswith("reconciler")]
    assert said.count("ccv.submit_failed_contradicted") == 1, said
    assert "ccv.submit_not_sent" not in said


async def test_ccv_submit_through_the_daemon_says_what_settled_it_once(tmp_path: Path) -> None:
    gates = CountedGates()
    async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as api:
        account = api.daemon.config.ccv[0]
        gate = gates.of(account)
        for _ in range(account.concurrency):
            await gate.acquire()
        stdin = json.dumps(submit_body(externalReference="nr-4")).encode()
        cfg = tmp_path / "reconciler.toml"  # serve_api's: the daemon holds its store
        command = asyncio.ensure_future(
            call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        )
        await gate.until_waiting(1)
        await api.daemon.hub.check_ccv_reference("default", "nr-4", 0.0)
        await ccv.close()
        for _ in range(account.concurrency):
            gate.release()
        result = await command
    assert (result.code, result.stdout) == (75, ""), result.stderr
    said = result.stderr
    assert "CCV could not be reached (connection; nothing was sent)" in said, said
    assert "the submit is resolved" in said and "--not-sent" not in said, said
    assert said.count("track ccv ID --ref nr-4") == 1, said


async def test_a_submit_notified_then_cut_off_is_settled_after_its_reference_was_forgotten(
    tmp_path: Path,
) -> None:
    # The daemon is killed while the submit waits (its notification came); it starts again
    # after `remember_ref` (or an order's first check took the remembered reference): the
    # notification, kept on the row, still settles it (was: `uncertain`, for a person to find).
    store = await Store.open(tmp_path / "reconciler.db", sinks=["jsonl"])
    try:
        now = time.time()
        await subs.record(store, "default", "nr-5", now)
        await notified(store, "default", "nr-5", None, now + 1, remember=False)
        await store.sources.take_references("default", ["other"], not_before=now + 2)
        forgotten = await store.conn.execute_fetchall("SELECT * FROM pending_references")
        assert list(forgotten) == []
        await settle_interrupted(store)  # the next writer's start
        found = await subs.find(store, "default", "nr-5")
        assert found is not None and found.state == "resolved", found
    finally:
        await store.close()
