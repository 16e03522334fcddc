"""A CCNow action withdrawn (untrack, `ccnow resolve --not-sent --action A`) while its post is
out is withdrawn all the same once that post ends without CCNow's definite answer (a line
saying CCNow is down, a lost answer, a stop): put back in the queue, it went out once CCNow was
back and its answer followed the untracked order again. One a killed process left `sending` is
settled first by an untrack holding the store, then withdrawn: nothing is being sent."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from reconciler.daemon import Ticks
from tests.conftest import call_cli, free_port, poll_until, read_events, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import A, B, daemon_with_api, make_due, query

DOWN = Reply(200, "error_message system down for maintenance\n")
SENDING_HEADER = "Reconciler-Sending"


def states(tmp_path: Path) -> list[tuple[int, str, str]]:
    rows = query(tmp_path, "SELECT id, state, answer FROM commands ORDER BY id")
    return [(int(i), str(s), str(w)) for i, s, w in rows]


def refused(tmp_path: Path) -> dict[int, dict[str, Any]]:
    """The delivered `order.action_refused` events' data by command id."""
    events = read_events(tmp_path)
    return {
        e["data"]["command_id"]: e["data"] for e in events if e["type"] == "order.action_refused"
    }


async def test_untrack_during_a_post_answered_down_withdraws_it(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    api = f"http://127.0.0.1:{port}/api/v1"
    # The outbox read often: the withdrawn command's event is delivered at the daemon's next
    # tick of it (5 s), which is not what is tested.
    async with daemon_with_api(cfg, port, ticks=Ticks(outbox_s=0.2)) as http:

        async def post(url: str, doc: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(url, json=doc) as r:
                return r.status, await r.json()

        for order in (A, B):
            tracked = await post(f"{api}/orders", {"source": "ccnow", "order_id": order})
            assert tracked[0] in (200, 201), tracked
        fake_ccnow.hold = asyncio.Event()
        shipping = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "ship"})
        )
        await poll_until(
            lambda: ("sending",) in query(tmp_path, "SELECT state FROM commands WHERE id = 1"),
            30,
            "the ship of B claimed for its post",
        )
        async with http.delete(f"{api}/orders/ccnow/{B}") as r:
            assert r.status == 204
            assert r.headers[SENDING_HEADER] == "1"
        # Its post answered: CCNow is down. Queued again, it went out once CCNow was back.
        fake_ccnow.always = DOWN
        fake_ccnow.hold.set()
        fake_ccnow.hold = None
        status, body = await shipping
        assert body["state"] == "refused", (status, body)
        [(_, state, answer)] = states(tmp_path)
        assert state == "refused"
        assert answer.startswith("withdrawn by untrack while it was being sent"), answer
        assert "may have reached CCNow" not in answer, answer
        await poll_until(lambda: 1 in refused(tmp_path), 30, "its order.action_refused")
        data = refused(tmp_path)[1]
        assert (data["withdrawn"], data["maybe_reached"]) == (True, False), data

        fake_ccnow.always = None
        await make_due(tmp_path)
        status, body = await post(f"{api}/ccnow/actions", {"order_id": A, "action": "ship"})
        assert (status, body["state"]) == (202, "done"), body
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "ship")]
    assert query(tmp_path, "SELECT order_id FROM orders") == [(A,)]


async def test_untrack_settles_what_a_killed_process_left_sending(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    fake_ccnow.always = DOWN
    assert (await call_cli("--config", cfg, "ccnow", "ship", A)).code == 75
    # As a `ccnow ship` killed while its post was out leaves it.
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE commands SET state = 'sending'")
    untracked = await call_cli("--config", cfg, "untrack", "ccnow", A)
    assert untracked.code == 0, untracked.stdout + untracked.stderr
    assert "being sent" not in untracked.stdout, untracked.stdout
    assert untracked.stdout.startswith(
        f"{A} ship (command 1): withdrawn by untrack before it was sent; an earlier post of it "
        "may have reached CCNow"
    ), untracked.stdout
    assert [s[1] for s in states(tmp_path)] == ["refused"]
    assert '"withdrawn":[1]' in untracked.stderr, untracked.stderr

    fake_ccnow.always = None
    await make_due(tmp_path)
    other = await call_cli("--config", cfg, "ccnow", "ship", B)
    assert other.code == 0, other.stdout + other.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "ship")]
    data = refused(tmp_path)[1]
    assert (data["withdrawn"], data["maybe_reached"]) == (True, True), data


async def test_resolve_names_and_withdraws_the_one_being_sent(
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

        await post(f"{api}/orders", {"source": "ccnow", "order_id": B})
        fake_ccnow.hold = asyncio.Event()
        ship = {"order_id": B, "action": "ship"}
        first = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {**ship, "idempotency_key": "k1"})
        )
        await poll_until(
            lambda: ("sending",) in query(tmp_path, "SELECT state FROM commands WHERE id = 1"),
            30,
            "the first ship claimed for its post",
        )
        # A second ship queued behind it (one order's commands go one after another).
        second = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {**ship, "idempotency_key": "k2"})
        )
        await poll_until(
            lambda: len(query(tmp_path, "SELECT id FROM commands")) == 2, 30, "the second ship"
        )
        word = await call_cli(
            "--config", cfg, "ccnow", "resolve", B, "--not-sent", "--action", "ship"
        )
        assert word.code == 0, word.stdout + word.stderr
        assert word.stdout == (
            f"{B} ship (command 2): withdrawn by hand before it was sent\n"
            f"{B} ship (command 1): being sent to CCNow now: withdrawn unless CCNow's answer "
            "to its post says it was taken or refused\n"
        ), word.stdout
        # The same word again: nothing queued to withdraw, the one being sent said again.
        again = {"order_id": B, "sent": False, "action": "ship"}
        status, body = await post(f"{api}/ccnow/actions/resolve", again)
        assert (status, body["commands"]) == (200, []), body
        assert body["sending"] == [{"id": 1, "action": "ship"}], body
        # Its post's answer lost: not posted again.
        fake_ccnow.always = DOWN
        fake_ccnow.hold.set()
        fake_ccnow.hold = None
        assert (await first)[1]["state"] == "refused"
        assert (await second)[1]["state"] == "queued"  # answered before the word
        assert [s[1] for s in states(tmp_path)] == ["refused", "refused"]
        fake_ccnow.always = None
        await make_due(tmp_path)
        status, body = await post(f"{api}/ccnow/actions", {**ship, "idempotency_key": "k3"})
        assert (status, body["state"]) == (202, "done"), body
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "ship")]
    assert [
        c for c, _ in query(tmp_path, "SELECT id, state FROM commands WHERE state = 'succeeded'")
    ] == [3]
