"""A signed CCV notification is kept in the store before it is answered 202: CCV calls once,
with no body, and never again. It was kept only when its check started, after the 202 and, for
a call within the debounce window of the order's last check, after that wait: a stop or a
crash meanwhile had answered CCV and lost the call. A store that cannot keep it (locked, slow)
still answers 202, in time, with one line naming the failure, and the check still runs."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from reconciler.config import load_config
from reconciler.delivery import Delivery
from reconciler.logs import log_handler
from reconciler.metrics import Metrics
from reconciler.model import OrderKey
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.server import DEBOUNCER, build_app
from reconciler.server.hub import Hub
from reconciler.sinks import build_sinks, sink_names
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import submissions as subs
from tests.conftest import poll_until, write_config
from tests.fake_providers import CCV_KEY, FakeCCV
from tests.server.conftest import RECEIVER, Client, ccv_path, send, served

# The order's next check waits this long after its last one ended: only the record can be in
# the store after a call within it.
SLOW_DEBOUNCE = replace(RECEIVER, debounce_s=600.0)
RECORD_TIMEOUT_S = 0.5


@dataclass
class World:
    store: Store
    client: Client
    db: Path


@pytest.fixture
async def world(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(write_config(tmp_path, ccv=fake_ccv))
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:
        async with aiohttp.ClientSession() as session:
            delivery = Delivery(store, build_sinks(config, session, log_handler()))
            coordinators = Coordinators.build(config, Reconciler(config, store), session, Gates())
            hub = Hub(config, coordinators, store, delivery, Metrics())
            app = build_app(
                SLOW_DEBOUNCE,
                hub,
                ccv_accounts=["default"],
                ccnow_tokens={},
                metrics=Metrics(),
                record_timeout_s=RECORD_TIMEOUT_S,
            )
            async with TestClient(served(app)) as client:
                yield World(store, client, config.store_path)
            await delivery.close()
    finally:
        await store.close()


def on_disk(db: Path) -> list[str]:
    """The notified orders as another process reads them from the file: committed ones."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in conn.execute("SELECT order_id FROM notified_orders")]
    finally:
        conn.close()


async def status(store: Store, order_id: str) -> str | None:
    key = OrderKey("ccv", "default", order_id)
    return (await store.orders.load([key]))[key].status


async def checked_once(world: World, fake_ccv: FakeCCV, order_id: str) -> None:
    """A first notification of the order, checked at once and answered: nothing stands."""
    code, _, _ = await send(world.client, "POST", ccv_path(order_id=order_id))
    assert code == 202
    await world.client.app[DEBOUNCER].join()
    assert await status(world.store, order_id) == fake_ccv.orders[order_id]
    assert on_disk(world.db) == []


async def test_the_202_comes_after_the_notification_is_in_the_store_file(
    world: World, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "Completed", "N-2": "New"}
    await world.store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    await checked_once(world, fake_ccv, "N-1")
    fake_ccv.orders["N-1"] = "Canceled"  # refunded: CCV calls once more, within the debounce
    asked = len(fake_ccv.requests)
    code, _, _ = await send(world.client, "POST", ccv_path(order_id="N-1"))
    assert code == 202
    assert on_disk(world.db) == ["N-1"]  # before its check, which waits the debounce
    assert len(fake_ccv.requests) == asked
    # An order nobody follows is not kept (`notification.not_followed` at its check).
    code, _, _ = await send(world.client, "POST", ccv_path(order_id="N-9"))
    assert code == 202
    assert on_disk(world.db) == ["N-1"]


async def test_a_notification_by_reference_keeps_its_orders_before_the_202(
    world: World, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-3": "Completed"}
    fake_ccv.refs = {"N-3": "INV-3"}
    await world.store.orders.track("ccv", "default", [("N-3", "INV-3")], 1.0)
    code, _, _ = await send(world.client, "POST", ccv_path(reference="INV-3"))
    assert code == 202
    await world.client.app[DEBOUNCER].join()
    assert await status(world.store, "N-3") == "Completed"
    assert on_disk(world.db) == []  # answered
    code, _, _ = await send(world.client, "POST", ccv_path(reference="INV-3"))
    assert code == 202
    assert on_disk(world.db) == ["N-3"]
    # A reference no order carries yet is remembered before the 202 as well.
    code, _, _ = await send(world.client, "POST", ccv_path(reference="INV-4"))
    assert code == 202
    conn = sqlite3.connect(f"file:{world.db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT external_reference FROM pending_references").fetchall()
    finally:
        conn.close()
    assert ("INV-4",) in rows


def not_recorded(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        r.__dict__["fields"]
        for r in caplog.records
        if r.getMessage() == "notification.not_recorded"
    ]


async def test_a_locked_store_answers_202_with_one_line_and_the_check_still_runs(
    world: World, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    fake_ccv.orders = {"N-5": "New"}
    await world.store.orders.track("ccv", "default", [("N-5", None)], 1.0)
    await world.store.conn.execute("PRAGMA busy_timeout = 100")  # fails within the bound
    fake_ccv.hold = asyncio.Event()
    locker = sqlite3.connect(world.db, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another process holds the writer
        code, body, _ = await send(world.client, "POST", ccv_path(order_id="N-5"))
        assert (code, body) == (202, {"accepted": True})  # as before: never a 5xx
        (line, *_) = not_recorded(caplog)
        assert line["at"] == "receipt" and line["order_id"] == "N-5"
        assert "locked" in str(line["error"])
        await fake_ccv.wait_until(lambda: fake_ccv.in_flight == 1)  # the check went on
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    fake_ccv.hold.set()
    await world.client.app[DEBOUNCER].join()
    assert await status(world.store, "N-5") == "New"
    # Its check tried the record again, the store still locked then: its own line.
    assert [line["at"] for line in not_recorded(caplog)] == ["receipt", "check"]


async def test_a_slow_store_cannot_hold_the_answer_past_the_bound(
    world: World, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    fake_ccv.orders = {"N-6": "New"}
    await world.store.orders.track("ccv", "default", [("N-6", None)], 1.0)
    await world.store.conn.execute("PRAGMA busy_timeout = 60000")  # a store this slow
    locker = sqlite3.connect(world.db, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # the store waits for the writer
        began = time.monotonic()
        code, _, _ = await send(world.client, "POST", ccv_path(order_id="N-6"))
        took = time.monotonic() - began
        assert code == 202
        assert took < 5.0, took  # the bound (0.5 s), not the store's wait (60 s)
        assert on_disk(world.db) == []
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await world.client.app[DEBOUNCER].join()
    assert await status(world.store, "N-6") == "New"  # checked all the same
    # The write went on once the store could take it, and was not lost: no line.
    assert on_disk(world.db) == [] and not_recorded(caplog) == []


async def test_a_record_whose_commit_outlasts_the_bound_is_kept_and_not_told_as_lost(
    world: World,
    fake_ccv: FakeCCV,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A slow fsync: the record's COMMIT is under way when the bound ends. The 202 goes in time;
    # the COMMIT decides the record (it was cancelled, counted as rolled back and told lost).
    caplog.set_level(logging.INFO, logger="reconciler")
    fake_ccv.orders = {"N-7": "New"}
    fake_ccv.hold = asyncio.Event()
    await world.store.orders.track("ccv", "default", [("N-7", None)], 1.0)
    real = world.store.conn.execute
    noted, release = [False], asyncio.Event()

    def execute(sql: str, *args: Any, **kwargs: Any) -> Any:
        if "INTO notified_orders" in sql:
            noted[0] = True
        if sql != "COMMIT" or not noted[0] or release.is_set():
            return real(sql, *args, **kwargs)

        async def slow() -> Any:
            await release.wait()
            return await real(sql, *args, **kwargs)

        return slow()

    monkeypatch.setattr(world.store.conn, "execute", execute)
    code, _, _ = await send(world.client, "POST", ccv_path(order_id="N-7"))
    assert code == 202
    assert on_disk(world.db) == []  # answered before its COMMIT ended
    release.set()
    await poll_until(lambda: on_disk(world.db) == ["N-7"], 30.0, "the record committed")
    fake_ccv.hold.set()
    await world.client.app[DEBOUNCER].join()
    assert await status(world.store, "N-7") == "New"
    assert on_disk(world.db) == []  # its check answered: settled
    assert not_recorded(caplog) == []


async def test_a_reference_whose_record_commits_past_the_bound_still_settles_its_submit(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As above, for a call by reference settling an uncertain submit: what follows its commit
    # (the events' delivery woken, `ccv.submit_resolved`) was skipped, the record cancelled.
    caplog.set_level(logging.INFO, logger="reconciler")
    now = time.time()
    sub_id = await subs.record(world.store, "default", "INV-8", now)
    await subs.make_uncertain(world.store, "default", [sub_id], [], reason="timeout", now=now)
    real = world.store.conn.execute
    settling, release = [False], asyncio.Event()

    def execute(sql: str, *args: Any, **kwargs: Any) -> Any:
        if "submissions" in sql:
            settling[0] = True
        if sql != "COMMIT" or not settling[0] or release.is_set():
            return real(sql, *args, **kwargs)

        async def slow() -> Any:
            await release.wait()
            return await real(sql, *args, **kwargs)

        return slow()

    monkeypatch.setattr(world.store.conn, "execute", execute)
    code, _, _ = await send(world.client, "POST", ccv_path(reference="INV-8"))
    assert code == 202
    assert not [r for r in caplog.records if r.getMessage() == "ccv.submit_resolved"]
    release.set()
    await poll_until(
        lambda: [r for r in caplog.records if r.getMessage() == "ccv.submit_resolved"],
        30.0,
        "the submit settled",
    )
    await world.client.app[DEBOUNCER].join()
    submission = await subs.find(world.store, "default", "INV-8")
    assert submission is not None and submission.state == "resolved"
    assert not_recorded(caplog) == []
