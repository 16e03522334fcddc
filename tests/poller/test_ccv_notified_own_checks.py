"""Each check of notified CCV orders holds its own answers until its batches are written: they
were held in one list per account, so a check whose write failed (the store locked) left its
answer there, and the next check of another order settled the first order's notification on an
answer that was never written (CCV calls once: the change it told of was lost for good)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import OrderKey
from reconciler.store import Store, StoreError
from tests.fake_providers import FakeCCV
from tests.poller.test_notification_health import account, config_for


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


async def pending(store: Store) -> list[str]:
    rows = await store.conn.execute_fetchall("SELECT order_id FROM notified_orders")
    return sorted(str(r[0]) for r in rows)


async def test_a_check_whose_write_failed_keeps_its_notification_from_other_checks(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "New", "N-2": "New"}
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        await ccv.check(["N-1", "N-2"], via="poll")
        fake_ccv.orders = {"N-1": "Completed", "N-2": "Completed"}
        await ccv.note_notified("N-1")
        await ccv.note_notified("N-2")
        now[0] += 1.0
        await store.conn.execute("PRAGMA busy_timeout = 100")
        locker = sqlite3.connect(tmp_path / "reconciler.db", isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")  # another process holds the writer
            with pytest.raises(StoreError):
                await ccv.check(["N-1"], via="notification")  # answered, not written
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await ccv.check(["N-2"], via="notification")
    key = OrderKey("ccv", "default", "N-1")
    assert (await store.orders.load([key]))[key].status == "New"
    assert await pending(store) == ["N-1"]  # its change still to be asked about
