"""A CCNow answer asked before an action's post and answered after it changes nothing
(diff.stale): through the daemon's API, against a fake CCNow on 127.0.0.1 that holds a query's
answer made when the query arrived."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import call_cli, free_port, write_config
from tests.fake_providers import FakeCCNow, Seen
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
    async with daemon_with_api(cfg, port) as http:

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
