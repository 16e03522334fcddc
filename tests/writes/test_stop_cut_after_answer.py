"""A CCV submit the daemon's stop cuts off while the COMMIT that records CCV's answer runs (a
slow fsync, a lock another process holds) is answered with where it stands as stored: that
transaction is finished whole (store/oneshot.py; store.after_commit where a COMMIT of
`Store.transaction` is cut), so CCV did answer and its answer is recorded. It was answered
`503` "stopped before CCV answered", advising to track an order the store already follows. A
real API over a real SQLite file and a fake CCV on loopback; the lock held by the test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import Store
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import serve_api
from tests.writes.test_stop_cut_answered import stop_cutting


class _Said(logging.Handler):
    """Sets `event` when a record with `message` is logged."""

    def __init__(self, message: str, event: asyncio.Event) -> None:
        super().__init__()
        self.message, self.event = message, event

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.event.set()


@contextlib.asynccontextmanager
async def write_lock_held(db: Path) -> AsyncIterator[None]:
    """Hold the database's write lock from another connection for the block, as another
    process's write would: the daemon's next transaction waits for it on its thread. Taken
    off the event loop: a transaction of the daemon's open then ends first."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@contextlib.contextmanager
def handed_off(store: Store, work: str, event: asyncio.Event) -> Iterator[None]:
    """Set `event` when a one-hand-off transaction running `work` (by name) is queued on the
    store's thread (store/oneshot.py), where it runs whole whatever becomes of its caller."""
    conn: Any = store.conn
    real = conn._execute

    def queue(fn: Any, *args: Any) -> Any:
        if any(getattr(a, "__name__", None) == work for a in args):
            event.set()
        return real(fn, *args)

    conn._execute = queue
    try:
        yield
    finally:
        conn._execute = real


@pytest.fixture
async def held(fake: FakeCCVWrites) -> AsyncIterator[FakeCCVWrites]:
    fake.submit_hold = asyncio.Event()
    try:
        yield fake
    finally:
        fake.submit_hold.set()


async def test_a_submit_cut_while_its_answer_commits_says_where_it_stands(
    tmp_path: Path, held: FakeCCVWrites
) -> None:
    recording, cut = asyncio.Event(), asyncio.Event()
    said = _Said("daemon.writes_cut", cut)
    logger = logging.getLogger("reconciler.daemon")
    logger.addHandler(said)
    try:
        async with serve_api(tmp_path, held, ccv_timeout="60s") as api:
            pending = asyncio.ensure_future(
                api.call("POST", "/api/v1/ccv/orders", body=submit_body())
            )
            await held.wait_until(lambda: len(held.submits) == 1, 10)
            ref = held.submits[0]["externalReference"]
            with handed_off(api.rt.store, "_succeed", recording):
                async with write_lock_held(api.db):
                    assert held.submit_hold is not None
                    held.submit_hold.set()  # CCV answers 201 with the order's id
                    # Its recording waits on the database's thread for the lock (a slow
                    # COMMIT's fsync alike), and the stop's bound runs out: the write is cut.
                    await asyncio.wait_for(recording.wait(), 10)
                    stopping = asyncio.ensure_future(stop_cutting(api))
                    await asyncio.wait_for(cut.wait(), 10)
                await asyncio.wait_for(stopping, 10)
            status, document, headers = await asyncio.wait_for(pending, 10)
            [(order_id, _)] = held.refs.items()
            assert api.submission(ref) == ("succeeded", order_id)
    finally:
        logger.removeHandler(said)
    assert status == 503, document
    assert (document["error"], document["external_reference"]) == ("stopping", ref)
    assert (document["state"], document["order_id"]) == ("succeeded", order_id)
    assert "before CCV answered" not in document["detail"]
    assert order_id in document["detail"]
    assert headers["Reconciler-Submission-State"] == "succeeded"
    assert headers["Reconciler-Order-Id"] == order_id
    assert "Retry-After" not in headers
