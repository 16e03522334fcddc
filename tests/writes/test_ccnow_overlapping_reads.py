"""A status read sent while a CCNow action's post waits for its answer (the API's refresh, a
poll's pending list, a query batch) does not make the action's own answer older news when it says
the order as it was before CCNow ran the action (`pending`): the answer line is applied with its
`via: action` change. A read saying a status the answer cannot come before (`completed` after a
ship) still wins (diff.stale). Against a fake CCNow on 127.0.0.1 that holds the ship's answer
until the test releases it (an asyncio.Event)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import load_config
from reconciler.runtime import Runtime
from reconciler.writes.ccnow_actions import ActionSender, build
from tests.conftest import call_cli, free_port, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import daemon_with_api
from tests.writes.test_stale_answers import queries, ships

ORDER = "600-00-0002"


async def test_a_refresh_sent_during_a_ships_post_does_not_drop_the_ships_answer(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The ship's post waits for CCNow's answer; 0.3 s in, the API's refresh asks the order and
    # CCNow, which has not run the ship yet, answers `pending` at once. Then the ship's answer
    # `mark_shipped` came: dated by the post, sent before the refresh, it was taken for older
    # news. The action succeeded, the snapshot stayed `pending` (`pending -> pending` in
    # `order.action_succeeded`), and the next poll raised `pending -> mark_shipped via poll`.
    fake_ccnow.orders = {ORDER: "pending"}
    port = free_port()
    api = api_toml(port).replace('refresh_timeout = "1s"', 'refresh_timeout = "30s"')
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api)
    assert (await call_cli("--config", cfg, "track", "ccnow", ORDER)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    base = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port) as http:

        async def get(path: str) -> Any:
            async with http.get(base + path) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        async def ship() -> Any:
            async with http.post(f"{base}/ccnow/actions", json=body) as r:
                assert r.status == 202, await r.text()
                return await r.json()

        fake_ccnow.answer_late = lambda seen: ships(ORDER, seen)
        body = {"order_id": ORDER, "action": "ship"}
        shipping = asyncio.ensure_future(ship())
        await fake_ccnow.wait_until(lambda: any(ships(ORDER, s) for s in fake_ccnow.requests))
        # The fake made the ship's answer on arrival; the refresh is answered as CCNow had the
        # order before it ran the ship.
        fake_ccnow.orders[ORDER] = "pending"
        fresh = await get(f"/orders/ccnow/{ORDER}?refresh=1")
        assert (fresh["status"], fresh["refreshed"]) == ("pending", True)
        fake_ccnow.orders[ORDER] = "mark_shipped"
        fake_ccnow.release.set()  # the ship's answer: `mark_shipped`
        done = await shipping
        assert (done["state"], done["outcome"], done["answer"]) == (
            "done",
            "succeeded",
            "mark_shipped",
        )
        assert (await get(f"/orders/ccnow/{ORDER}"))["status"] == "mark_shipped"
        fake_ccnow.answer_late = None
        again = await get(f"/orders/ccnow/{ORDER}?refresh=1")
        assert (again["status"], again["refreshed"]) == ("mark_shipped", True)
        feed = await get("/events?limit=100")
    assert any(queries(ORDER, s) for s in fake_ccnow.requests)
    changes = [
        (e["data"]["previous_status"], e["data"]["status"], e["data"]["via"])
        for e in feed["events"]
        if e["type"] == "order.status_changed"
    ]
    assert changes == [("pending", "mark_shipped", "action")]
    [succeeded] = [e for e in feed["events"] if e["type"] == "order.action_succeeded"]
    data = succeeded["data"]
    assert (data["previous_status"], data["status"], data["answer"]) == (
        "pending",
        "mark_shipped",
        "mark_shipped",
    )


# --- in one process: the account's reads and the action sender over one store ---------------


@contextlib.asynccontextmanager
async def parts(
    tmp_path: Path,
    fake: FakeCCNow,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sender_type: type[ActionSender] = ActionSender,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[tuple[Runtime, ActionSender]]:
    """The daemon's runtime over the fake (its store, coordinator, bounds) and an action
    sender sharing them (`sender_type`, its commands' `clock`); ORDER followed and checked
    once (`pending`)."""
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake))
    async with Runtime(config) as rt:
        sender = sender_type(
            rt.store, rt.session, rt.reconciler, config.ccnow, gates=rt.gates, clock=clock
        )
        await rt.store.orders.track("ccnow", "default", [(ORDER, None)], time.time())
        assert (await rt.coordinators.ccnow["default"].full_pass(via="catch-up")).failed == 0
        yield rt, sender


async def history(rt: Runtime) -> list[tuple[str, str | None, str | None, str | None]]:
    """(type, previous status, status, via) of the order's events after its discovery."""
    out = []
    for e in await rt.store.events.history():
        data = json.loads(e.body)["data"]
        if e.type != "order.discovered":
            out.append((e.type, data["previous_status"], data["status"], data.get("via")))
    return out


async def ship_while(
    rt: Runtime, sender: ActionSender, fake: FakeCCNow, read: Any, *, ccnow_has: str
) -> tuple[str, str | None]:
    """Ship ORDER; while its post waits for its answer (made when it arrived: `mark_shipped`),
    CCNow has the order `ccnow_has` and `read()` asks it; then the answer comes. Return the
    command's state and answer."""
    fake.answer_late = lambda seen: ships(ORDER, seen)
    cfg = rt.config.ccnow[0]
    shipping = asyncio.ensure_future(sender.take(build(cfg, "ship", [ORDER])))
    await fake.wait_until(lambda: any(ships(ORDER, s) for s in fake.requests))
    fake.orders[ORDER] = ccnow_has
    await read()
    fake.release.set()
    [row] = (await shipping).rows
    fake.answer_late = None
    return row.state, row.answer


async def snapshot_status(rt: Runtime) -> str | None:
    [state] = [s for s in await rt.store.orders.snapshot("ccnow") if s.key.order_id == ORDER]
    return state.status


async def test_a_query_saying_completed_during_the_post_still_wins(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CCNow ran the ship, then the order was completed, and a query sent during the post said
    # so before the ship's answer came. `mark_shipped` cannot come after `completed`: the
    # ship's answer is older news, and raises no false `completed -> mark_shipped`.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        coordinator = rt.coordinators.ccnow["default"]

        async def refresh() -> None:
            assert (await coordinator.check([ORDER], via="poll")).events == 1

        state, answer = await ship_while(rt, sender, fake_ccnow, refresh, ccnow_has="completed")
        assert (state, answer) == ("succeeded", "mark_shipped")
        assert await snapshot_status(rt) == "completed"
        assert (await coordinator.check([ORDER], via="poll")).events == 0
        assert await history(rt) == [
            ("order.status_changed", "pending", "completed", "poll"),
            ("order.action_succeeded", "completed", "completed", "action"),
        ]


async def test_a_query_batch_saying_pending_during_the_post_is_before_the_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A catch-up's query batch (every open order asked) sent during the post reads `pending`:
    # the ship's answer is the newer news, applied with its `via: action` change.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        coordinator = rt.coordinators.ccnow["default"]
        fake_ccnow.pending_statuses = set()  # the order off the list: the pass queries it

        async def catch_up() -> None:
            assert (await coordinator.full_pass(via="catch-up")).failed == 0

        state, answer = await ship_while(rt, sender, fake_ccnow, catch_up, ccnow_has="pending")
        assert any(queries(ORDER, s) for s in fake_ccnow.requests[-3:])
        assert (state, answer) == ("succeeded", "mark_shipped")
        assert await snapshot_status(rt) == "mark_shipped"
        fake_ccnow.orders[ORDER] = "mark_shipped"
        assert (await coordinator.check([ORDER], via="poll")).events == 0
        assert await history(rt) == [
            ("order.status_changed", "pending", "mark_shipped", "action"),
            ("order.action_succeeded", "pending", "mark_shipped", "action"),
        ]


async def test_a_pending_list_read_during_the_post_is_before_the_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The poll's pending list, read during the post before CCNow ran the ship, names the order
    # `pending`: the ship's answer is applied with its `via: action` change, and the next poll
    # (the order off the list, then queried) raises nothing.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        coordinator = rt.coordinators.ccnow["default"]

        async def poll() -> None:
            [named] = await coordinator.tick_pending_list()
            assert named.report.failed == 0

        state, answer = await ship_while(rt, sender, fake_ccnow, poll, ccnow_has="pending")
        assert (state, answer) == ("succeeded", "mark_shipped")
        assert await snapshot_status(rt) == "mark_shipped"
        fake_ccnow.orders[ORDER] = "mark_shipped"
        for _ in range(2):
            await coordinator.tick_pending_list()
        assert await snapshot_status(rt) == "mark_shipped"
        assert await history(rt) == [
            ("order.status_changed", "pending", "mark_shipped", "action"),
            ("order.action_succeeded", "pending", "mark_shipped", "action"),
        ]


async def test_an_order_off_the_pending_list_during_the_post_is_raised_once(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CCNow ran the ship at once: the poll's list, read during the post, no longer names the
    # order, and the poll queries it (it left the list): `mark_shipped`, via poll, before the
    # ship's answer. That answer says the same: no second `pending -> mark_shipped`.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        coordinator = rt.coordinators.ccnow["default"]
        await coordinator.tick_pending_list()  # the list names it: the next poll sees it leave

        async def poll() -> None:
            await coordinator.tick_pending_list()

        state, answer = await ship_while(rt, sender, fake_ccnow, poll, ccnow_has="mark_shipped")
        assert (state, answer) == ("succeeded", "mark_shipped")
        assert await snapshot_status(rt) == "mark_shipped"
        assert await history(rt) == [
            ("order.status_changed", "pending", "mark_shipped", "poll"),
            ("order.action_succeeded", "mark_shipped", "mark_shipped", "action"),
        ]


async def test_a_query_sent_during_the_post_and_answered_after_the_ship_does_not_undo_it(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other way round: the query, sent during the post, read `pending` before CCNow ran the
    # ship, and its answer came after the ship's was applied. Dated by its request, after the
    # post's, it undid the ship (`mark_shipped -> pending`, via poll) and the next poll raised
    # the ship again. The ship's answer is as of when it came: the query's is older news.
    fake_ccnow.orders = {ORDER: "pending"}
    async with parts(tmp_path, fake_ccnow, monkeypatch) as (rt, sender):
        coordinator = rt.coordinators.ccnow["default"]
        ship_answer = fake_ccnow.release
        fake_ccnow.answer_late = lambda seen: ships(ORDER, seen) or queries(ORDER, seen)
        cfg = rt.config.ccnow[0]
        shipping = asyncio.ensure_future(sender.take(build(cfg, "ship", [ORDER])))
        await fake_ccnow.wait_until(lambda: any(ships(ORDER, s) for s in fake_ccnow.requests))
        # The query waits for an answer of its own (the fake waits on the event it finds).
        fake_ccnow.release = query_answer = asyncio.Event()
        fake_ccnow.orders[ORDER] = "pending"  # as CCNow had it when the query arrived
        query = asyncio.ensure_future(coordinator.check([ORDER], via="poll"))
        await fake_ccnow.wait_until(lambda: any(queries(ORDER, s) for s in fake_ccnow.requests))
        fake_ccnow.orders[ORDER] = "mark_shipped"
        ship_answer.set()
        [row] = (await shipping).rows
        assert (row.state, row.answer) == ("succeeded", "mark_shipped")
        assert await snapshot_status(rt) == "mark_shipped"
        query_answer.set()
        report = await query
        assert (report.checked, report.failed, report.events) == (1, 0, 0)
        fake_ccnow.answer_late = None
        assert await snapshot_status(rt) == "mark_shipped"
        assert (await coordinator.check([ORDER], via="poll")).events == 0
        assert await history(rt) == [
            ("order.status_changed", "pending", "mark_shipped", "action"),
            ("order.action_succeeded", "pending", "mark_shipped", "action"),
        ]
