"""An order held before `pending` whose ship is being sent takes no doubted pending list line
when its query cannot decide: the ship's close's line does. The ship is posted before the list
is asked; CCNow answers it, and a poll (or a catch-up) asks the list, which still names the
order `pending`, and its query, which gets an error line, before the close commits. Taken, the
lagging line would have made the ship's answer older news, and the close warn that the ship did
not take. Against a fake CCNow on 127.0.0.1: the daemon's coordinator and an action sender over
one real store, on one clock the test moves."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.writes.ccnow_actions import build
from tests.conftest import Clock, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.poller.test_ccnow_unconfirmed_blame import ReadFirst
from tests.writes.test_stale_answers import queries

ORDER = "600-00-0002"
KEY = OrderKey("ccnow", "default", ORDER)


@contextlib.asynccontextmanager
async def parts(
    tmp_path: Path, fake: FakeCCNow
) -> AsyncIterator[tuple[CCNowCoordinator, ReadFirst, Clock]]:
    """The account's coordinator and a sender whose close waits for a read (`ReadFirst`), over
    one store and one clock; ORDER found on the list, then queried `processing`."""
    config = load_config(write_config(tmp_path, ccnow=fake, retry_backoff="0s"))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            gates = Gates()
            coordinator = Coordinators.build(config, writer, session, gates).ccnow["default"]
            sender = ReadFirst(store, session, writer, config.ccnow, gates=gates, clock=clock)
            fake.orders = {ORDER: "pending"}
            await coordinator.tick_pending_list()
            fake.orders[ORDER] = "processing"
            clock.now += 60
            assert (await coordinator.check([ORDER], via="poll")).failed == 0
            yield coordinator, sender, clock
    finally:
        await store.close()


async def order_events(store: Store) -> list[tuple[str, str | None, str | None, str | None]]:
    out = []
    for e in await store.events.history():
        data = json.loads(e.body)["data"]
        if e.type.startswith("order.") and e.type != "order.discovered":
            out.append((e.type, data["previous_status"], data["status"], data.get("via")))
    return out


@pytest.mark.parametrize("via", ["poll", "catch-up"])
async def test_a_ship_being_sent_keeps_a_doubted_line_from_applying(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with parts(tmp_path, fake_ccnow) as (coordinator, sender, clock):
        fake_ccnow.orders[ORDER] = "pending"  # CCNow made it pending: a ship takes
        read: list[tuple[list[str], bool]] = []

        async def poll() -> None:
            # CCNow ran the ship; its list names the order `pending` still, and its query gets
            # an error line. Asked after the answer came, this pass commits first.
            start = len(fake_ccnow.requests)
            fake_ccnow.list_lags = {ORDER: "pending"}
            fake_ccnow.order_errors = {ORDER}
            clock.now += coordinator.config.schedule.min_interval_s  # the doubt is due
            if via == "poll":
                [done] = await coordinator.tick_pending_list()
                report = done.report
            else:
                report = await coordinator.full_pass(via="catch-up")
            asked = any(queries(ORDER, r) for r in fake_ccnow.requests[start:])
            read.append((list(report.doubted), asked))

        sender.read = poll
        [row] = (await sender.take(build(sender.accounts["default"], "ship", [ORDER]))).rows
        sender.read = None
        [(doubted, asked)] = read
        assert (doubted, asked) == ([ORDER], True)  # doubted, and its query asked
        assert row.state == "succeeded"
        state = (await coordinator.store.orders.load([KEY]))[KEY]
        assert state.status == "mark_shipped"
        # Before: `processing -> pending` by the pass, the ship's answer then older news
        # (`order.action_succeeded` pending -> pending) and `order.action_unconfirmed`.
        assert await order_events(coordinator.store) == [
            ("order.status_changed", "pending", "processing", "poll"),
            ("order.status_changed", "processing", "mark_shipped", "action"),
            ("order.action_succeeded", "processing", "mark_shipped", "action"),
        ]
