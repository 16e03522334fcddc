"""A notification the receiver hands to the daemon is checked as a hint: while its check runs,
every pass gives way to it (hint_gate.py), and once it is over they no longer do."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.delivery import Delivery
from reconciler.logs import log_handler
from reconciler.metrics import Metrics
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.server.hub import Hub
from reconciler.sinks import build_sinks, sink_names
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import write_config
from tests.fake_providers import CCV_KEY, FakeCCV


@pytest.fixture
async def hub(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hub]:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(write_config(tmp_path, ccv=fake_ccv))
    store = await Store.open(config.store_path, sinks=sink_names(config))
    try:
        async with aiohttp.ClientSession() as session:
            delivery = Delivery(store, build_sinks(config, session, log_handler()))
            coordinators = Coordinators.build(config, Reconciler(config, store), session, Gates())
            yield Hub(config, coordinators, store, delivery, Metrics())
            await delivery.close()
    finally:
        await store.close()


async def test_passes_give_way_while_a_ccv_notification_is_checked(
    hub: Hub, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "Processing"}
    await hub.store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    hints = hub.coordinators.writer.hints
    fake_ccv.hold = asyncio.Event()
    check = asyncio.ensure_future(hub.check_ccv_order("default", "N-1", time.monotonic()))
    await fake_ccv.wait_until(lambda: fake_ccv.in_flight == 1)
    assert hints.in_flight == 1  # the check is under way: passes give way to it
    fake_ccv.hold.set()
    await asyncio.wait_for(check, 10)
    assert hints.in_flight == 0
    assert [s.status for s in await hub.store.orders.snapshot("ccv")] == ["Processing"]


async def test_a_notification_for_an_order_nobody_follows_asks_ccv_nothing(
    hub: Hub, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    # Its answer would be dropped (an untracked order stays untracked): a request for nothing.
    fake_ccv.orders = {"N-2": "Processing"}
    caplog.set_level(logging.INFO, logger="reconciler.server")
    await hub.check_ccv_order("default", "N-2", time.monotonic())
    assert fake_ccv.requests == []
    assert await hub.store.orders.snapshot("ccv") == []
    (line,) = [r for r in caplog.records if r.getMessage() == "notification.not_followed"]
    assert line.__dict__["fields"]["order_id"] == "N-2"


async def test_every_notification_check_is_timed_also_when_nothing_changed(
    hub: Hub, fake_ccv: FakeCCV
) -> None:
    # The latency histogram's p99 must not leave out the checks that found nothing new.
    fake_ccv.orders = {"N-3": "Processing"}
    await hub.store.orders.track("ccv", "default", [("N-3", None)], 1.0)
    for _ in range(3):  # first sight, then the same status twice
        await hub.check_ccv_order("default", "N-3", time.monotonic())
    count = hub.metrics.registry.get_sample_value(
        "reconciler_notification_latency_seconds_count", {"source": "ccv"}
    )
    assert count == 3
