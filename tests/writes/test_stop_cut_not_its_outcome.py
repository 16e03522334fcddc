"""A CCV submit the daemon's stop cuts off is answered "stopped as it recorded the outcome"
(submit_advice.recorded_when_cut) only where the row found is its own submission and it was
recording CCV's answer (or its loss) when cut. A second submit of the same reference, cut while
it waits for the first, was told the first one's outcome and order as its own (`Reconciler-Order-
Id` too), where without the stop it gets `409` "submitted already; not sent again"; a submit
that never went out, which a notification for its reference settled while the stop cut it, was
told its outcome was recorded; one whose reference was free again (the first refused by CCV,
or its own row withdrawn, never sent, beside an older refused one) was told that `409`, not
that nothing was recorded or sent. A real API over a real SQLite file, a fake CCV on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconciler.store import Store
from tests.fake_ccv_writes import FakeCCVWrites, json_reply, submit_body
from tests.server.test_api import serve_api
from tests.writes.test_stop_cut_after_answer import _Said, handed_off, held, write_lock_held
from tests.writes.test_stop_cut_answered import stop_cutting
from tests.writes.test_stop_refuses_late_writes import CountedGates

__all__ = ("held",)  # the fixture, shared


@contextlib.contextmanager
def said(logger: str, message: str, event: asyncio.Event) -> Iterator[None]:
    """Set `event` when `logger` logs `message` (at any level)."""
    log = logging.getLogger(logger)
    handler, level = _Said(message, event), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


@contextlib.contextmanager
def commit_held(
    store: Store, armed: asyncio.Event, queued: asyncio.Event
) -> Iterator[threading.Event]:
    """Hold the first COMMIT queued on the store's thread once `armed` is set, as a slow fsync
    would, until the event yielded is set; `queued` is set when it is held."""
    conn: Any = store.conn
    real, go = conn._execute, threading.Event()

    def slow(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            go.wait(10)
            return fn(*args)

        return run

    def queue(fn: Any, *args: Any) -> Any:
        if armed.is_set() and not queued.is_set() and "COMMIT" in args:
            queued.set()
            return real(slow(fn), *args)
        return real(fn, *args)

    conn._execute = queue
    try:
        yield go
    finally:
        go.set()
        conn._execute = real


async def test_a_second_submit_cut_while_it_waits_for_the_first_is_not_given_its_order(
    tmp_path: Path, held: FakeCCVWrites
) -> None:
    document = submit_body(externalReference="cut-2nd")
    recording, cut, waits = asyncio.Event(), asyncio.Event(), asyncio.Event()
    with (
        said("reconciler.daemon", "daemon.writes_cut", cut),
        said("reconciler.writes.submit", "ccv.submit_waits_for_earlier", waits),
    ):
        async with serve_api(tmp_path, held, ccv_timeout="60s") as api:
            first = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
            await held.wait_until(lambda: len(held.submits) == 1, 10)
            second = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
            await asyncio.wait_for(waits.wait(), 10)
            with handed_off(api.rt.store, "_succeed", recording):
                async with write_lock_held(api.db):
                    assert held.submit_hold is not None
                    held.submit_hold.set()  # CCV answers the first with its order
                    await asyncio.wait_for(recording.wait(), 10)
                    stopping = asyncio.ensure_future(stop_cutting(api))
                    await asyncio.wait_for(cut.wait(), 10)
                await asyncio.wait_for(stopping, 10)
            status, body, headers = await asyncio.wait_for(first, 10)
            again, body2, headers2 = await asyncio.wait_for(second, 10)
            [(order_id, _)] = held.refs.items()
            assert api.submission("cut-2nd") == ("succeeded", order_id)
    assert (status, body["state"], body["order_id"]) == (503, "succeeded", order_id), body
    assert headers["Reconciler-Order-Id"] == order_id
    # The second made no order: it is told the reference was submitted already, as without
    # the stop, and not given the first one's order as its own.
    assert again == 409, body2
    assert body2["error"] == "this externalReference was submitted already; not sent again"
    assert (body2["state"], body2["order_id"]) == ("succeeded", order_id)
    assert "Reconciler-Order-Id" not in headers2
    assert "recorded the outcome" not in str(body2)
    assert len(held.submits) == 1


async def test_a_submit_never_sent_that_a_notification_settled_as_it_was_cut_says_so(
    tmp_path: Path,
) -> None:
    gates = CountedGates()
    document = submit_body(externalReference="cut-nr")
    cut, contradicted, queued = asyncio.Event(), asyncio.Event(), asyncio.Event()
    with (
        said("reconciler.daemon", "daemon.writes_cut", cut),
        said("reconciler.writes.submit", "ccv.submit_failed_contradicted", contradicted),
    ):
        async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as api:
            account = api.daemon.config.ccv[0]
            gate = gates.of(account)
            for _ in range(account.concurrency):
                await gate.acquire()  # every turn taken: the submit, recorded, waits for one
            pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
            await gate.until_waiting(1)
            await api.daemon.hub.check_ccv_reference("default", "cut-nr", 0.0)
            with commit_held(api.rt.store, contradicted, queued) as go:
                # The stop: the submit never goes out; its notification keeps it taken, and the
                # COMMIT settling it is slow past the stop's bound.
                stopping = asyncio.ensure_future(stop_cutting(api))
                await asyncio.wait_for(queued.wait(), 10)
                await asyncio.wait_for(cut.wait(), 10)
                go.set()
                await asyncio.wait_for(stopping, 10)
            status, body, headers = await asyncio.wait_for(pending, 10)
            for _ in range(account.concurrency):
                gate.release()
            assert api.submission("cut-nr") == ("resolved", None)
    assert ccv.submits == []
    assert (status, body["error"], body["state"]) == (503, "stopping", "resolved"), body
    assert "recorded the outcome" not in body["detail"]
    assert "nothing was sent" in body["detail"]
    assert "notification" in body["detail"]
    assert headers["Reconciler-Submission-State"] == "resolved"
    assert "Retry-After" not in headers


async def test_a_second_submit_cut_while_the_first_is_refused_is_told_nothing_was_sent(
    tmp_path: Path, held: FakeCCVWrites
) -> None:
    # CCV refuses the first (400): `failed`, the reference free again, committed as the stop
    # cuts both. The second made nothing and sent nothing: not the `409` of a reference taken.
    document = submit_body(externalReference="cut-f")
    held.submit_replies = [json_reply(400, {"message": "bad amount"})]
    recording, cut, waits = asyncio.Event(), asyncio.Event(), asyncio.Event()
    with (
        said("reconciler.daemon", "daemon.writes_cut", cut),
        said("reconciler.writes.submit", "ccv.submit_waits_for_earlier", waits),
    ):
        async with serve_api(tmp_path, held, ccv_timeout="60s") as api:
            first = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
            await held.wait_until(lambda: len(held.submits) == 1, 10)
            second = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
            await asyncio.wait_for(waits.wait(), 10)
            with handed_off(api.rt.store, "_statements", recording):
                async with write_lock_held(api.db):
                    assert held.submit_hold is not None
                    held.submit_hold.set()  # CCV refuses the first
                    await asyncio.wait_for(recording.wait(), 10)
                    stopping = asyncio.ensure_future(stop_cutting(api))
                    await asyncio.wait_for(cut.wait(), 10)
                await asyncio.wait_for(stopping, 10)
            status, body, _ = await asyncio.wait_for(first, 10)
            again, body2, headers2 = await asyncio.wait_for(second, 10)
            assert api.submission("cut-f") == ("failed", None)
    assert (status, body["state"]) == (503, "failed"), body
    assert again == 503, body2
    assert body2["error"] == "reconciler is stopping; nothing was recorded or sent: submit it again"
    assert "Reconciler-Submission-State" not in headers2
    assert len(held.submits) == 1


async def test_a_submit_withdrawn_as_the_stop_cuts_it_is_not_told_an_old_failed_one_holds_it(
    tmp_path: Path,
) -> None:
    # A first submit of the reference was refused (`failed`). A second waits for its account's
    # turn when the stop begins: it never goes out, and its row is withdrawn by a transaction
    # the stop's bound cuts (a lock another process holds). Nothing was recorded or sent.
    gates = CountedGates()
    document = submit_body(externalReference="cut-w")
    withdrawing, cut = asyncio.Event(), asyncio.Event()
    with said("reconciler.daemon", "daemon.writes_cut", cut):
        async with FakeCCVWrites() as ccv, serve_api(tmp_path, ccv, gates=gates) as api:
            ccv.submit_replies = [json_reply(400, {"message": "bad amount"})]
            refused, _, _ = await api.call("POST", "/api/v1/ccv/orders", body=document)
            assert refused == 400 and api.submission("cut-w") == ("failed", None)
            account = api.daemon.config.ccv[0]
            gate = gates.of(account)
            for _ in range(account.concurrency):
                await gate.acquire()  # every turn taken: the submit, recorded, waits for one
            pending = asyncio.ensure_future(api.call("POST", "/api/v1/ccv/orders", body=document))
            await gate.until_waiting(1)
            with handed_off(api.rt.store, "_statements", withdrawing):
                async with write_lock_held(api.db):
                    stopping = asyncio.ensure_future(stop_cutting(api))
                    await asyncio.wait_for(withdrawing.wait(), 10)
                    await asyncio.wait_for(cut.wait(), 10)
                await asyncio.wait_for(stopping, 10)
            status, body, headers = await asyncio.wait_for(pending, 10)
            for _ in range(account.concurrency):
                gate.release()
            assert api.submission("cut-w") == ("failed", None)
    assert len(ccv.submits) == 1
    assert status == 503, body
    assert body["error"] == "reconciler is stopping; nothing was recorded or sent: submit it again"
    assert "Reconciler-Submission-State" not in headers
