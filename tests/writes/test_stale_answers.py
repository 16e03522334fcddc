"""A CCNow answer asked before an action's post and answered after it changes nothing
(diff.stale), and an answer is as of the attempt that brought it, not of a first attempt a retry
followed: through the daemon's API, against a fake CCNow on 127.0.0.1 that holds a query's
answer made when the query arrived (or a post's 503)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import call_cli, free_port, write_config
from tests.fake_providers import FakeCCNow, Reply, Seen
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import daemon_with_api

ORDER = "600-00-0001"


def queries(order_id: str, seen: Seen) -> bool:
    """Whether a CCNow post only asks the status of `order_id`."""
    return seen.form.get("x_orderid_1") == order_id and seen.form.get("x_action_1") == "query"


async def test_a_query_sent_before_a_ship_and_answered_after_it_does_not_undo_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The API's refresh asks CCNow; 0.5 s later the application ships; CCNow answers the query
    # as the order was when it arrived, after the ship's answer. Applied, it recorded a false
    # `mark_shipped -> pending` (via poll), and the next poll raised the ship a second time.
    fake_ccnow.orders = {ORDER: "pending"}
    port = free_port()
    api = api_toml(port).replace('refresh_timeout = "1s"', 'refresh_timeout = "30s"')
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api)
    assert (await call_cli("--config", cfg, "track", "ccnow", ORDER)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    base = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port, after_start_up=True) as http:

        async def get(path: str) -> Any:
            async with http.get(base + path) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        fake_ccnow.answer_late = lambda seen: queries(ORDER, seen)
        refresh = asyncio.ensure_future(get(f"/orders/ccnow/{ORDER}?refresh=1"))
        await fake_ccnow.wait_until(lambda: any(queries(ORDER, s) for s in fake_ccnow.requests))

        ship = {"order_id": ORDER, "action": "ship"}
        async with http.post(f"{base}/ccnow/actions", json=ship) as r:
            done = await r.json()
            assert (r.status, done["state"], done["outcome"]) == (202, "done", "succeeded")
        assert (await get(f"/orders/ccnow/{ORDER}"))["status"] == "mark_shipped"

        fake_ccnow.release.set()  # the query's answer: "pending", as when it arrived
        fresh = await refresh
        # Older news: the snapshot keeps the ship, and the refresh still counts as answered.
        assert (fresh["status"], fresh["refreshed"]) == ("mark_shipped", True)

        fake_ccnow.answer_late = None
        again = await get(f"/orders/ccnow/{ORDER}?refresh=1")
        assert (again["status"], again["refreshed"]) == ("mark_shipped", True)
        feed = await get("/events?limit=100")
    changes = [
        (e["data"]["previous_status"], e["data"]["status"], e["data"]["via"])
        for e in feed["events"]
        if e["type"] == "order.status_changed"
    ]
    assert changes == [("pending", "mark_shipped", "action")]
    assert [a for _, a, _ in fake_ccnow.actions] == ["ship"]


def ships(order_id: str, seen: Seen) -> bool:
    """Whether a CCNow post ships `order_id`."""
    return seen.form.get("x_orderid_1") == order_id and seen.form.get("x_action_1") == "ship"


async def test_a_ship_answered_by_its_retry_is_dated_by_the_retry(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The ship's first post is turned away (503); a refresh sent meanwhile reads "pending"
    # (true then); the retry ships. Dated by the first post, the ship's answer looked older than
    # the refresh's: the action succeeded, the order stayed `pending`, and the next refresh
    # reported `pending -> mark_shipped` via poll, where README promises "action".
    fake_ccnow.orders = {ORDER: "pending"}
    port = free_port()
    api = api_toml(port).replace('refresh_timeout = "1s"', 'refresh_timeout = "30s"')
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api)
    assert (await call_cli("--config", cfg, "track", "ccnow", ORDER)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    base = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port, after_start_up=True) as http:

        async def get(path: str) -> Any:
            async with http.get(base + path) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        async def ship() -> Any:
            async with http.post(f"{base}/ccnow/actions", json=body) as r:
                assert r.status == 202, await r.text()
                return await r.json()

        # The 503 is held until the refresh is answered, then retried at once: the window
        # between the two posts is the test's, not a Retry-After a slow machine could outlast.
        fake_ccnow.replies_for[ORDER] = Reply(503, headers={"Retry-After": "0"})
        fake_ccnow.answer_late = lambda seen: ships(ORDER, seen)
        body = {"order_id": ORDER, "action": "ship"}
        shipping = asyncio.ensure_future(ship())
        await fake_ccnow.wait_until(lambda: any(ships(ORDER, s) for s in fake_ccnow.requests))
        del fake_ccnow.replies_for[ORDER]  # the retry is answered
        fake_ccnow.answer_late = None
        fresh = await get(f"/orders/ccnow/{ORDER}?refresh=1")
        assert (fresh["status"], fresh["refreshed"]) == ("pending", True)
        fake_ccnow.release.set()  # the 503; the retry follows it
        done = await shipping
        assert (done["state"], done["outcome"]) == ("done", "succeeded")
        # The ship's answer is as of its retry, after the refresh: it is the order's status.
        assert (await get(f"/orders/ccnow/{ORDER}"))["status"] == "mark_shipped"
        again = await get(f"/orders/ccnow/{ORDER}?refresh=1")
        assert (again["status"], again["refreshed"]) == ("mark_shipped", True)
        feed = await get("/events?limit=100")
    # As the review saw it: the refresh's query went between the ship's two posts.
    posts = [
        s.form.get("x_action_1")
        for s in fake_ccnow.requests
        if ships(ORDER, s) or queries(ORDER, s)
    ]
    assert posts[:3] == ["ship", "query", "ship"]
    changes = [
        (e["data"]["previous_status"], e["data"]["status"], e["data"]["via"])
        for e in feed["events"]
        if e["type"] == "order.status_changed"
    ]
    assert changes == [("pending", "mark_shipped", "action")]


async def test_a_status_read_after_an_unsettled_answer_is_dated_by_its_own_query(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The ship's post is answered late, without a line for its order; a refresh sent meanwhile
    # reads "pending"; then the order is shipped, and the status read after the answer says
    # so: the ship is done. Dated by the post, that read looked older than the refresh: the
    # snapshot kept `pending` until the next poll reported the ship via poll.
    fake_ccnow.orders = {ORDER: "pending"}
    port = free_port()
    api = api_toml(port).replace('refresh_timeout = "1s"', 'refresh_timeout = "30s"')
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api)
    assert (await call_cli("--config", cfg, "track", "ccnow", ORDER)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    base = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port, after_start_up=True) as http:

        async def get(path: str) -> Any:
            async with http.get(base + path) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        async def ship() -> Any:
            async with http.post(f"{base}/ccnow/actions", json=body) as r:
                assert r.status == 202, await r.text()
                return await r.json()

        fake_ccnow.replies_for[ORDER] = Reply(200, "message no_pending_orders\n")
        fake_ccnow.answer_late = lambda seen: ships(ORDER, seen)
        body = {"order_id": ORDER, "action": "ship"}
        shipping = asyncio.ensure_future(ship())
        await fake_ccnow.wait_until(lambda: any(ships(ORDER, s) for s in fake_ccnow.requests))
        del fake_ccnow.replies_for[ORDER]  # queries are answered as usual
        fresh = await get(f"/orders/ccnow/{ORDER}?refresh=1")
        assert (fresh["status"], fresh["refreshed"]) == ("pending", True)
        fake_ccnow.orders[ORDER] = "mark_shipped"
        fake_ccnow.release.set()  # the post's answer, then the status read after it
        done = await shipping
        assert (done["state"], done["outcome"]) == ("done", "succeeded")
        assert (await get(f"/orders/ccnow/{ORDER}"))["status"] == "mark_shipped"
        feed = await get("/events?limit=100")
    changes = [
        (e["data"]["previous_status"], e["data"]["status"], e["data"]["via"])
        for e in feed["events"]
        if e["type"] == "order.status_changed"
    ]
    assert changes == [("pending", "mark_shipped", "action")]
