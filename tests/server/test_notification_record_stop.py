"""A CCV notification's record that the stop cancels while its COMMIT runs is what the COMMIT
made it: written, and the stop's line says so (it said "stopped before it was written" of a
record on disk, which the next start's catch-up asks first)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from reconciler.config import load_config
from reconciler.delivery import Delivery
from reconciler.logs import log_handler
from reconciler.metrics import Metrics
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.server import build_app
from reconciler.server.hub import Hub
from reconciler.server.receiver import CLOSE_CHECKS
from reconciler.sinks import build_sinks, sink_names
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import write_config
from tests.fake_providers import CCV_KEY, FakeCCV
from tests.server.conftest import RECEIVER, ccv_path, send, served


def on_disk(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in conn.execute("SELECT order_id FROM notified_orders")]
    finally:
        conn.close()


async def test_a_record_whose_commit_lands_as_the_stop_cancels_it_is_told_written(
    tmp_path: Path,
    fake_ccv: FakeCCV,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server")
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    fake_ccv.orders = {"N-1": "New"}
    config = load_config(write_config(tmp_path, ccv=fake_ccv))
    store = await Store.open(config.store_path, sinks=sink_names(config))
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    committing, release = asyncio.Event(), asyncio.Event()
    writer: list[asyncio.Task[Any]] = []  # the record's task, whose COMMIT (the first) is slow
    real = store.conn.execute

    def execute(sql: str, *args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        if sql != "COMMIT" or task is None or writer:
            return real(sql, *args, **kwargs)
        writer.append(task)

        async def slow() -> Any:  # a slow fsync
            committing.set()
            await release.wait()
            return await real(sql, *args, **kwargs)

        return slow()

    try:
        async with aiohttp.ClientSession() as session:
            delivery = Delivery(store, build_sinks(config, session, log_handler()))
            coordinators = Coordinators.build(config, Reconciler(config, store), session, Gates())
            hub = Hub(config, coordinators, store, delivery, Metrics())
            app = build_app(
                replace(RECEIVER, debounce_s=600.0),
                hub,
                ccv_accounts=["default"],
                ccnow_tokens={},
                metrics=Metrics(),
                record_timeout_s=0.1,
            )
            async with TestClient(served(app)) as client:
                monkeypatch.setattr(store.conn, "execute", execute)
                code, _, _ = await send(client, "POST", ccv_path(order_id="N-1"))
                assert code == 202  # past the bound: the record goes on
                await committing.wait()
                writer[0].cancel()  # as the stop ends the records still under way
                release.set()
                await asyncio.wait({writer[0]})
                await app[CLOSE_CHECKS]()
                monkeypatch.setattr(store.conn, "execute", real)
            await delivery.close()
    finally:
        await store.close()
    assert on_disk(config.store_path) == ["N-1"]
    lines = [r for r in caplog.records if r.getMessage().startswith("notification.")]
    said = [(r.getMessage(), r.__dict__["fields"].get("order_id")) for r in lines]
    assert ("notification.not_recorded", "N-1") not in said
    (line,) = [r for r in lines if r.getMessage() == "notification.recorded"]
    assert line.__dict__["fields"]["order_id"] == "N-1"
