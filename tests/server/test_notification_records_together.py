"""CCV notifications that come while the store's writer is busy (a catch-up's batches) are kept
in one transaction, and each is answered 202 once it is on disk. Each record was a transaction
of its own: a burst queued one behind the other, each answered only after every record before
it had held the writer in turn, and behind the catch-up's next batch once a few had gone
first (store/priority.py lets a batch through after a run of urgent writes)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from reconciler.config import load_config
from reconciler.delivery import Delivery
from reconciler.logs import log_handler
from reconciler.metrics import Metrics
from reconciler.poller.ccv_notified import known
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.server import DEBOUNCER, build_app
from reconciler.server.hub import Hub
from reconciler.sinks import build_sinks, sink_names
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store.priority import URGENT_IN_A_ROW
from tests.conftest import poll_until, write_config
from tests.fake_providers import CCV_KEY, FakeCCV
from tests.server.conftest import RECEIVER, Client, ccv_path, send, served

# Far beyond the test's own bound: a 202 must come from the record, not from giving up on it.
RECORD_TIMEOUT_S = 60.0
ANSWERED_WITHIN_S = 10.0


class CountingHub(Hub):
    """The daemon's hub, counting the records begun."""

    begun = 0

    async def record_ccv_order(self, account: str, order_id: str) -> bool:
        self.begun += 1
        return await super().record_ccv_order(account, order_id)


@dataclass
class World:
    store: Store
    client: Client
    hub: CountingHub
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
            hub = CountingHub(config, coordinators, store, delivery, Metrics())
            app = build_app(
                RECEIVER,
                hub,
                ccv_accounts=["default"],
                ccnow_tokens={},
                metrics=Metrics(),
                record_timeout_s=RECORD_TIMEOUT_S,
            )
            async with TestClient(served(app)) as client:
                yield World(store, client, hub, config.store_path)
            await delivery.close()
    finally:
        await store.close()


def on_disk(db: Path) -> list[str]:
    """The notified orders as another process reads them from the file: committed ones."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return sorted(str(r[0]) for r in conn.execute("SELECT order_id FROM notified_orders"))
    finally:
        conn.close()


async def test_a_burst_during_a_busy_writer_is_answered_before_the_next_batch(
    world: World, fake_ccv: FakeCCV
) -> None:
    ids = [f"N-{n:02}" for n in range(URGENT_IN_A_ROW + 2)]
    fake_ccv.orders = dict.fromkeys(ids, "Processing")
    await world.store.orders.track("ccv", "default", [(i, None) for i in ids], 1.0)
    coordinator = world.hub.coordinators.ccv["default"]
    await known(coordinator)  # read once per process: not part of what is measured
    store = world.store
    batch_held, release_batch, release_next = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def batch(began: asyncio.Event | None, release: asyncio.Event) -> None:
        """A catch-up's batch: a transaction that holds the writer until released."""
        async with store.transaction():
            if began is not None:
                began.set()
            await release.wait()

    holding = asyncio.ensure_future(batch(batch_held, release_batch))
    await batch_held.wait()
    waiting = asyncio.ensure_future(batch(None, release_next))  # the pass's next batch
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the next batch queued")
    posts = [asyncio.ensure_future(send(world.client, "POST", ccv_path(order_id=i))) for i in ids]
    try:
        await poll_until(lambda: world.hub.begun == len(ids), 5, "every record begun")
        assert on_disk(world.db) == []
        release_batch.set()  # the batch in flight ends: the records go before the next one
        answered, _ = await asyncio.wait(posts, timeout=ANSWERED_WITHIN_S)
        assert len(answered) == len(ids), "answered while the next batch held the writer"
        assert [p.result()[0] for p in posts] == [202] * len(ids)
        # Every one on disk before its 202, while the next batch still holds the writer.
        assert on_disk(world.db) == ids
        assert not waiting.done()
    finally:
        release_batch.set()
        release_next.set()
        await asyncio.gather(holding, waiting, *posts, return_exceptions=True)
    await world.client.app[DEBOUNCER].join()
    states = await store.orders.snapshot("ccv")
    assert sorted((s.key.order_id, s.status) for s in states) == [(i, "Processing") for i in ids]
    assert on_disk(world.db) == []  # each check answered: none stands, none twice
    assert sorted(r.order_id or "" for r in fake_ccv.requests) == ids  # each asked once
