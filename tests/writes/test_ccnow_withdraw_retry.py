"""A CCNow action withdrawn while its post is out is never posted again by a retry within that
post (a 429 or 503 answered, then tried again after a wait): it was, and ended `done`, its
answer following an untracked order again. Nor does a post's answer (or the status read it
asks) follow again an order untracked while the post was out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, poll_until, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import B, daemon_with_api, query
from tests.writes.test_ccnow_withdraw_sending import SENDING_HEADER, refused, states


def ships(fake_ccnow: FakeCCNow, since: int) -> int:
    """How many posts since request `since` carried a ship."""
    return sum(r.form.get("x_action_1") == "ship" for r in fake_ccnow.requests[since:])


async def test_resolve_during_a_429_wait_is_not_posted_again(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {B: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    api = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port) as http:

        async def post(url: str, doc: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(url, json=doc) as r:
                return r.status, await r.json()

        assert (await post(f"{api}/orders", {"source": "ccnow", "order_id": B}))[0] in (200, 201)
        n0 = len(fake_ccnow.requests)
        # Turned away, to be tried again within the post after 2 s (waited out: the post asks
        # whether it was withdrawn after its wait; the resolve below comes in milliseconds).
        # Every post naming B is (not a scripted answer, which the daemon's query of B may take
        # first).
        fake_ccnow.replies_for[B] = Reply(429, "Too Many Requests", headers={"Retry-After": "2"})
        shipping = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "ship"})
        )
        await poll_until(lambda: ships(fake_ccnow, n0) == 1, 30, "the first attempt")
        asked = {"order_id": B, "sent": False, "action": "ship"}
        status, body = await post(f"{api}/ccnow/actions/resolve", asked)
        assert (status, body["sending"]) == (200, [{"id": 1, "action": "ship"}]), body
        status, body = await shipping
        assert body["state"] == "refused", (status, body)
    assert ships(fake_ccnow, n0) == 1
    assert fake_ccnow.actions == []
    [(_, state, answer)] = states(tmp_path)
    assert state == "refused"
    assert answer.startswith("withdrawn by hand while it was being sent"), answer
    assert "may have reached CCNow" not in answer, answer
    assert (refused(tmp_path)[1]["withdrawn"], refused(tmp_path)[1]["maybe_reached"]) == (
        True,
        False,
    )


async def test_untrack_during_a_503_is_not_posted_again(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {B: "pending"}
    # A pending-list poll naming B after the untrack would follow it again (as it should), and
    # the end's check that nothing follows it would then depend on the poll's timing.
    fake_ccnow.pending_statuses = set()
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    api = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port) as http:

        async def post(url: str, doc: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(url, json=doc) as r:
                return r.status, await r.json()

        assert (await post(f"{api}/orders", {"source": "ccnow", "order_id": B}))[0] in (200, 201)
        n0 = len(fake_ccnow.requests)
        fake_ccnow.hold = asyncio.Event()
        # A proxy's 503: CCNow may have run it, a ship is tried again within the post.
        fake_ccnow.replies_for[B] = Reply(503, "Service Unavailable")
        shipping = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "ship"})
        )
        await poll_until(lambda: ships(fake_ccnow, n0) == 1, 30, "the first attempt")
        async with http.delete(f"{api}/orders/ccnow/{B}") as r:
            assert (r.status, r.headers[SENDING_HEADER]) == (204, "1")
        fake_ccnow.hold.set()
        fake_ccnow.hold = None
        status, body = await shipping
        assert body["state"] == "refused", (status, body)
    assert ships(fake_ccnow, n0) == 1
    assert fake_ccnow.actions == []
    [(_, state, answer)] = states(tmp_path)
    assert answer.startswith("withdrawn by untrack while it was being sent"), answer
    assert state == "refused"
    # A proxy's 503 may come after CCNow ran the post: nothing reads the untracked order's
    # status again to tell, so its refusal says where to look.
    assert "may have reached CCNow" in answer, answer
    assert (refused(tmp_path)[1]["withdrawn"], refused(tmp_path)[1]["maybe_reached"]) == (
        True,
        True,
    )
    assert query(tmp_path, "SELECT order_id FROM orders") == []


async def test_an_untrack_after_a_resolve_by_hand_holds_the_answer_back(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The first word asked is the resolve's: the untrack after it holds the order back all
    # the same.
    fake_ccnow.orders = {B: "pending"}
    # A pending list naming B would follow it again after the untrack (as it should): keep
    # the list empty, so that only the ship's answer could bring it back.
    fake_ccnow.pending_statuses = set()
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    api = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port) as http:

        async def post(url: str, doc: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(url, json=doc) as r:
                return r.status, await r.json()

        assert (await post(f"{api}/orders", {"source": "ccnow", "order_id": B}))[0] in (200, 201)
        n0 = len(fake_ccnow.requests)
        fake_ccnow.hold = asyncio.Event()
        shipping = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "ship"})
        )
        await poll_until(lambda: ships(fake_ccnow, n0) == 1, 30, "the ship posted")
        asked = {"order_id": B, "sent": False, "action": "ship"}
        status, body = await post(f"{api}/ccnow/actions/resolve", asked)
        assert (status, body["sending"]) == (200, [{"id": 1, "action": "ship"}]), body
        async with http.delete(f"{api}/orders/ccnow/{B}") as r:
            assert (r.status, r.headers[SENDING_HEADER]) == (204, "1")
        fake_ccnow.hold.set()
        fake_ccnow.hold = None
        status, body = await shipping
        # CCNow's definite answer ends it as it says; the order stays untracked.
        assert (body["state"], body["answer"]) == ("done", "mark_shipped"), (status, body)
    assert query(tmp_path, "SELECT order_id FROM orders") == []


@pytest.mark.parametrize(
    "said", ["message no_pending_orders\n", f"{B} mark_canceled\n"], ids=["no line", "a line"]
)
async def test_an_answer_does_not_follow_an_order_untracked_meanwhile(
    tmp_path: Path, fake_ccnow: FakeCCNow, said: str
) -> None:
    fake_ccnow.orders = {B: "pending"}
    # Only the action's answer could follow B again: a pending-list poll naming it would too.
    fake_ccnow.pending_statuses = set()
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    api = f"http://127.0.0.1:{port}/api/v1"
    async with daemon_with_api(cfg, port) as http:

        async def post(url: str, doc: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(url, json=doc) as r:
                return r.status, await r.json()

        assert (await post(f"{api}/orders", {"source": "ccnow", "order_id": B}))[0] in (200, 201)
        n0 = len(fake_ccnow.requests)
        fake_ccnow.hold = asyncio.Event()
        fake_ccnow.replies_for[B] = Reply(200, said)
        shipping = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "ship"})
        )
        await poll_until(lambda: ships(fake_ccnow, n0) == 1, 30, "the ship posted")
        del fake_ccnow.replies_for[B]
        fake_ccnow.orders[B] = "mark_canceled"  # canceled: why it is no longer followed
        async with http.delete(f"{api}/orders/ccnow/{B}") as r:
            assert (r.status, r.headers[SENDING_HEADER]) == (204, "1")
        fake_ccnow.hold.set()
        fake_ccnow.hold = None
        status, body = await shipping
        assert body["state"] == "refused", (status, body)
    assert query(tmp_path, "SELECT order_id FROM orders") == []
