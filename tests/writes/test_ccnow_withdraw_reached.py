"""A CCNow action withdrawn while its post is out, closed withdrawn when that post ends without
CCNow's definite answer, says whether the post may have reached CCNow whatever its action
(`maybe_reached`): an untracked order's status is never read again to tell whether a ship or
cancel behind a proxy's 503 was run (a refund). Only a post that surely never left (no
connection made) says it did not, and its words say it was withdrawn before it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from reconciler.config import load_config
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.withdraw import BY_UNTRACK, untrack
from reconciler.writes.ccnow_actions import ActionSender, Tally, build
from tests.conftest import free_port, poll_until, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import B, daemon_with_api, query
from tests.writes.test_ccnow_withdraw_sending import DOWN, SENDING_HEADER, refused, states

PROXY_503 = Reply(503, "Service Unavailable")


def posts_of(fake_ccnow: FakeCCNow, action: str, since: int) -> int:
    """How many posts since request `since` carried `action`."""
    return sum(r.form.get("x_action_1") == action for r in fake_ccnow.requests[since:])


async def test_a_cancel_ccnow_ran_behind_a_proxys_503_may_have_reached_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # CCNow refunds the order, and a proxy answers 503 (it was slow): the untrack made while
    # the post was out closes the cancel withdrawn, saying it may have reached CCNow.
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
        fake_ccnow.hold = asyncio.Event()
        fake_ccnow.after_applying = [PROXY_503]
        canceling = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "cancel"})
        )
        await poll_until(lambda: posts_of(fake_ccnow, "cancel", n0) == 1, 30, "the cancel")
        async with http.delete(f"{api}/orders/ccnow/{B}") as r:
            assert (r.status, r.headers[SENDING_HEADER]) == (204, "1")
        fake_ccnow.hold.set()
        fake_ccnow.hold = None
        status, body = await canceling
        assert body["state"] == "refused", (status, body)
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "cancel")]  # CCNow ran it
    assert posts_of(fake_ccnow, "cancel", n0) == 1
    [(_, state, answer)] = states(tmp_path)
    assert state == "refused"
    assert answer.startswith("withdrawn by untrack while it was being sent"), answer
    assert "may have reached CCNow" in answer, answer
    data = refused(tmp_path)[1]
    assert (data["withdrawn"], data["maybe_reached"]) == (True, True), data
    assert query(tmp_path, "SELECT order_id FROM orders") == []


async def test_a_ship_refused_as_down_after_a_proxys_503_may_have_reached_ccnow(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The first attempt's 503 may hide that CCNow ran the ship; its retry is answered that
    # CCNow is down, which settles nothing (nor is the order's status read: it is untracked):
    # closed withdrawn, it may have reached CCNow.
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
        # CCNow ships it and a proxy answers 503; CCNow answers the retry that it is down. Only
        # the actions' posts are answered so: the daemon's queries are answered as usual.
        fake_ccnow.after_applying = [PROXY_503, DOWN]
        # The retry is answered once the untrack is made.
        fake_ccnow.answer_late = lambda seen: (
            seen.form.get("x_action_1") == "ship" and posts_of(fake_ccnow, "ship", n0) == 2
        )
        shipping = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "ship"})
        )
        await poll_until(lambda: posts_of(fake_ccnow, "ship", n0) == 2, 30, "the retry")
        async with http.delete(f"{api}/orders/ccnow/{B}") as r:
            assert (r.status, r.headers[SENDING_HEADER]) == (204, "1")
        fake_ccnow.release.set()
        status, body = await shipping
        assert body["state"] == "refused", (status, body)
        fake_ccnow.answer_late = None
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "ship")]  # CCNow ran it
    [(_, state, answer)] = states(tmp_path)
    assert state == "refused"
    assert answer.startswith("withdrawn by untrack while it was being sent"), answer
    assert "may have reached CCNow" in answer, answer
    data = refused(tmp_path)[1]
    assert (data["withdrawn"], data["maybe_reached"]) == (True, True), data


class HeldRefused(AbstractResolver):
    """Resolves CCNow's host, once `go` is set, to a loopback port bound but not listening:
    the connection is refused, nothing left. `asked` is set when the first attempt resolves."""

    def __init__(self, dead: int) -> None:
        self.dead = dead
        self.asked = asyncio.Event()
        self.go = asyncio.Event()
        self.times = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.times += 1
        self.asked.set()
        await self.go.wait()
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self.dead,
                family=socket.AF_INET,
                proto=0,
                flags=0,
            )
        ]

    async def close(self) -> None:
        pass


async def test_one_whose_connection_was_never_made_is_withdrawn_before_it_was_sent(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    account = dataclasses.replace(
        config.ccnow[0], url=str(URL(fake_ccnow.url).with_host("ccnow.test"))
    )
    store = await Store.open(tmp_path / "reconciler.db")
    with contextlib.closing(socket.socket()) as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: a connection to it is refused
        resolver = HeldRefused(dead.getsockname()[1])
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
        try:
            await store.orders.track("ccnow", account.name, [(B, None)], 1.0)
            async with aiohttp.ClientSession(connector=connector) as session:
                sender = ActionSender(
                    store, session, Reconciler(config, store), [account], gates=Gates()
                )
                [(row, _)] = await cmds.record(store, build(account, "ship", [B]), 1.0)
                sending = asyncio.ensure_future(sender.send([row], Tally()))
                await resolver.asked.wait()
                _, out = await untrack(store, account.name, [B], by=BY_UNTRACK, now=2.0)
                assert [c.id for c in out.sending] == [row.id]
                resolver.go.set()
                await sending
            [closed] = await cmds.get(store, [row.id])
            events = await store.conn.execute_fetchall(
                "SELECT body FROM events WHERE type = 'order.action_refused'"
            )
        finally:
            await store.close()
    assert resolver.times == 1  # not tried again once withdrawn
    assert fake_ccnow.requests == []
    assert (closed.state, closed.answer) == ("refused", "withdrawn by untrack before it was sent")
    assert closed.maybe_reached_at is None
    [data] = [json.loads(bytes(body))["data"] for (body,) in events]
    assert (data["withdrawn"], data["maybe_reached"]) == (True, False), data
