"""Polls of CCNow over the real client and a fake on 127.0.0.1: a capital word after a
documented status word (`completed FRAUD`) is no data column, so the status is kept whole and
flagged, not stored as the bare word; an undocumented status CCNow writes in another case on a
later poll (`Pending_Review`, then `pending_review`) is no change, and two such lines for one
order in one answer are one answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow

X = "803-00-0001"
HOUR = 3600.0


@pytest.fixture
async def coordinator(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow, ccnow_extra=""))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            yield Coordinators.build(config, writer, session, Gates()).ccnow["default"], clock
    finally:
        await store.close()


async def events(coordinator: CCNowCoordinator) -> list[dict[str, Any]]:
    history = await coordinator.store.events.history()
    return [json.loads(e.body)["data"] for e in history if e.order_id == X]


async def poll(coordinator: CCNowCoordinator, clock: Clock) -> None:
    await coordinator.store.orders.track("ccnow", "default", [(X, None)], clock.now)
    clock.now += HOUR
    await coordinator.check([X], via="poll")


async def test_a_capital_word_after_a_status_word_is_kept_whole_and_flagged(
    coordinator: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    ccnow, clock = coordinator
    fake_ccnow.orders = {X: "completed FRAUD"}
    await poll(ccnow, clock)
    data = await events(ccnow)
    assert [(d["status"], d["unknown_status"]) for d in data] == [("completed FRAUD", True)]
    key = OrderKey("ccnow", "default", X)
    state = (await ccnow.store.orders.load([key]))[key]
    assert state.status == "completed FRAUD" and not state.end_state


async def test_an_undocumented_word_in_another_case_is_no_change(
    coordinator: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    ccnow, clock = coordinator
    fake_ccnow.orders = {X: "Pending_Review"}
    await poll(ccnow, clock)
    fake_ccnow.orders = {X: "pending_review"}
    await poll(ccnow, clock)
    # Two lines for it in one answer, differing by case alone: one answer, not a failed order.
    fake_ccnow.orders = {X: "PENDING_REVIEW"}
    fake_ccnow.extra_lines = [f"{X} Pending_review"]
    await poll(ccnow, clock)
    data = await events(ccnow)
    assert [(d["status"], d["unknown_status"]) for d in data] == [("Pending_Review", True)]
    key = OrderKey("ccnow", "default", X)
    state = (await ccnow.store.orders.load([key]))[key]
    assert state.status == "Pending_Review" and state.failure_streak == 0
    # A real change still is one.
    fake_ccnow.extra_lines = []
    fake_ccnow.orders = {X: "pending"}
    await poll(ccnow, clock)
    assert [d["status"] for d in await events(ccnow)] == ["Pending_Review", "pending"]


async def test_an_undocumented_status_is_kept_with_its_inner_blanks(
    coordinator: tuple[CCNowCoordinator, Clock], fake_ccnow: FakeCCNow
) -> None:
    ccnow, clock = coordinator
    fake_ccnow.orders = {X: "On  Hold"}
    await poll(ccnow, clock)
    key = OrderKey("ccnow", "default", X)
    assert (await ccnow.store.orders.load([key]))[key].status == "On  Hold"
    # The same words with other blanks (or case) later: no change, kept as first seen.
    fake_ccnow.orders = {X: "on\thold"}
    await poll(ccnow, clock)
    data = await events(ccnow)
    assert [(d["status"], d["unknown_status"]) for d in data] == [("On  Hold", True)]
    assert (await ccnow.store.orders.load([key]))[key].status == "On  Hold"
    fake_ccnow.orders = {X: "on hold\tnow"}  # another word: a change, kept as written
    await poll(ccnow, clock)
    assert [d["status"] for d in await events(ccnow)] == ["On  Hold", "on hold\tnow"]
