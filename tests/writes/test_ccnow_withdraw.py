"""A queued CCNow action can be withdrawn before it is sent: by a person's word (`ccnow
resolve ID --not-sent`, the API's resolve with `"sent": false`) and by `untrack`, which stops
following its order. Left queued through a CCNow outage, a ship a customer's cancellation made
wrong went out once CCNow was back, and its answer followed the untracked order again. One
being sent is ended by CCNow's definite answer to its post (tests/writes/
test_ccnow_withdraw_sending.py: withdrawn when the post ends without one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import call_cli, free_port, poll_until, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import A, B, daemon_with_api, make_due, query
from tests.writes.test_ccnow_resolve_action import NO_LINE, resolve, ship
from tests.writes.test_ccnow_unsettled import days_ago
from tests.writes.test_resolved_events import of_type

DOWN = Reply(200, "error_message system down for maintenance\n")
REFUSED = "order.action_refused"
WITHDRAWN_HEADER, SENDING_HEADER = "Reconciler-Withdrawn", "Reconciler-Sending"


def states(tmp_path: Path) -> list[tuple[int, str, str, str | None]]:
    rows = query(tmp_path, "SELECT id, action, state, answer FROM commands ORDER BY id")
    return [(int(i), str(a), str(s), None if w is None else str(w)) for i, a, s, w in rows]


def withdrawn(tmp_path: Path) -> list[tuple[int, str]]:
    """The (command id, action) of the `order.action_refused` events saying withdrawn."""
    return [
        (e["data"]["command_id"], e["data"]["action"])
        for e in of_type(tmp_path, REFUSED)
        if str(e["data"]["answer"]).startswith("withdrawn")
    ]


async def test_queued_actions_are_withdrawn_by_hand_and_by_untrack(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "track", "ccnow", A)).code == 0
    fake_ccnow.always = DOWN
    for action in ("ship", "cancel", "add-tracking"):
        extra = ["--carrier", "DHL", "--number", "JD01"] if action == "add-tracking" else []
        made = await call_cli("--config", cfg, "ccnow", action, A, *extra)
        assert made.code == 75, made.stdout + made.stderr
    assert [s[:3] for s in states(tmp_path)] == [
        (1, "ship", "queued"),
        (2, "cancel", "queued"),
        (3, "track", "queued"),
    ]

    # A withdrawal names its action: `--not-sent` alone settles only an uncertain one.
    unnamed = await call_cli("--config", cfg, "ccnow", "resolve", A, "--not-sent")
    assert unnamed.code == 65, unnamed.stdout + unnamed.stderr
    assert "no uncertain action" in unnamed.stderr, unnamed.stderr
    assert "ship (#1), cancel (#2) and add-tracking (#3)" in unnamed.stderr, unnamed.stderr
    assert "--action ship" in unnamed.stderr, unnamed.stderr
    assert all(s[2] == "queued" for s in states(tmp_path))

    done = await call_cli("--config", cfg, "ccnow", "resolve", A, "--not-sent", "--action", "ship")
    assert done.code == 0, done.stdout + done.stderr
    assert done.stdout == f"{A} ship (command 1): withdrawn by hand before it was sent\n"
    assert states(tmp_path)[0] == (1, "ship", "refused", "withdrawn by hand before it was sent")
    assert withdrawn(tmp_path) == [(1, "ship")]
    # `--sent` settles only an uncertain one: a queued command is no answer to it.
    sent = await call_cli("--config", cfg, "ccnow", "resolve", A, "--sent", "--action", "cancel")
    assert sent.code == 65, sent.stdout + sent.stderr

    untracked = await call_cli("--config", cfg, "untrack", "ccnow", A)
    assert untracked.code == 0, untracked.stdout + untracked.stderr
    assert untracked.stdout == (
        f"{A} cancel (command 2): withdrawn by untrack before it was sent\n"
        f"{A} track (command 3): withdrawn by untrack before it was sent\n"
    )
    assert "orders.untracked" in untracked.stderr and '"withdrawn":[2,3]' in untracked.stderr, (
        untracked.stderr
    )
    assert [s[2] for s in states(tmp_path)] == ["refused"] * 3
    assert query(tmp_path, "SELECT order_id FROM orders") == []

    # CCNow back: what is due is sent, and none of them is.
    fake_ccnow.always = None
    await make_due(tmp_path)
    other = await call_cli("--config", cfg, "ccnow", "ship", B)
    assert other.code == 0, other.stdout + other.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "ship")]
    # Its events delivered by the next command that delivers.
    assert withdrawn(tmp_path) == [(1, "ship"), (2, "cancel"), (3, "track")]
    nothing = await call_cli("--config", cfg, "ccnow", "resolve", A, "--not-sent")
    assert nothing.code == 65
    assert "no uncertain action (nor a queued one to withdraw)" in nothing.stderr, nothing.stderr


async def test_the_api_withdraws_and_refuses_one_being_sent(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    api = f"http://127.0.0.1:{port}/api/v1"
    resolve = f"{api}/ccnow/actions/resolve"
    async with daemon_with_api(cfg, port) as http:

        async def post(url: str, doc: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(url, json=doc) as r:
                return r.status, await r.json()

        for order in (A, B):
            tracked = await post(f"{api}/orders", {"source": "ccnow", "order_id": order})
            assert tracked[0] in (200, 201), tracked  # the pending list may have found it
        fake_ccnow.always = DOWN
        for action in ("ship", "cancel"):
            status, body = await post(f"{api}/ccnow/actions", {"order_id": A, "action": action})
            assert (status, body["state"]) == (202, "queued"), body

        # Without "action", nothing is withdrawn: a client retrying after a lost answer must
        # not withdraw the action queued next.
        status, body = await post(resolve, {"order_id": A, "sent": False})
        assert status == 404, body
        assert body["queued"] == [{"id": 1, "action": "ship"}, {"id": 2, "action": "cancel"}]
        assert '"action": "ship"' in body["error"], body
        status, body = await post(resolve, {"order_id": A, "sent": False, "action": "ship"})
        assert status == 200, body
        [ship] = body["commands"]
        assert (ship["id"], ship["state"], ship["outcome"]) == (1, "refused", "refused")
        assert ship["answer"] == "withdrawn by hand before it was sent"
        for doc in (
            {"order_id": A, "sent": False},
            {"order_id": A, "sent": False, "action": "ship"},
        ):
            status, body = await post(resolve, doc)  # the retry
            assert status == 404, body
        assert [s[2] for s in states(tmp_path)] == ["refused", "queued"]

        # The contract's 204; what was withdrawn or is being sent, in headers.
        async with http.delete(f"{api}/orders/ccnow/{A}") as r:
            assert r.status == 204
            assert await r.read() == b""
            assert r.headers[WITHDRAWN_HEADER] == "2"
            assert SENDING_HEADER not in r.headers
        async with http.get(f"{api}/ccnow/actions/2") as r:
            assert (await r.json())["answer"] == "withdrawn by untrack before it was sent"
        await poll_until(lambda: len(withdrawn(tmp_path)) == 2, 30, "both events delivered")

        # A post on its way: not withdrawn, by the word or by untrack.
        fake_ccnow.always = None
        fake_ccnow.hold = asyncio.Event()
        shipping = asyncio.ensure_future(
            post(f"{api}/ccnow/actions", {"order_id": B, "action": "ship"})
        )
        await poll_until(
            lambda: ("sending",) in query(tmp_path, "SELECT state FROM commands WHERE id = 3"),
            30,
            "the ship of B claimed for its post",
        )
        # Its withdrawal recorded: CCNow's definite answer to the post still ends it.
        status, body = await post(resolve, {"order_id": B, "sent": False, "action": "ship"})
        assert (status, body["commands"]) == (200, []), body
        assert body["sending"] == [{"id": 3, "action": "ship"}]
        asked = await call_cli(
            "--config", cfg, "ccnow", "resolve", B, "--not-sent", "--action", "ship"
        )
        assert asked.code == 0, asked.stdout + asked.stderr
        assert asked.stdout == (
            f"{B} ship (command 3): being sent to CCNow now: withdrawn unless CCNow's answer "
            "to its post says it was taken or refused\n"
        )
        async with http.delete(f"{api}/orders/ccnow/{B}") as r:
            assert r.status == 204
            assert WITHDRAWN_HEADER not in r.headers
            assert r.headers[SENDING_HEADER] == "3"
        fake_ccnow.hold.set()
        status, body = await shipping
        assert (status, body["state"]) == (202, "done"), body
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(B, "ship")]
    log = (tmp_path / "daemon.log").read_text()
    assert '"withdrawn":[2]' in log and '"sending":[3]' in log, log[-3000:]


async def test_a_repeated_not_sent_withdraws_nothing_it_did_not_name(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Order A: ship #1 uncertain, cancel #2 queued. The first word settles the ship; the same
    # command again (a person unsure it ran) once withdrew the cancel with exit 0.
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [DOWN]
    assert (await ship(cfg)).code == 75
    await days_ago(tmp_path, "created_at")
    fake_ccnow.replies_for[A] = NO_LINE
    assert (await ship(cfg)).code == 75
    await days_ago(tmp_path, "unsettled_since")
    assert (await ship(cfg)).code == 75
    fake_ccnow.script = [DOWN, DOWN, DOWN]
    assert (await call_cli("--config", cfg, "ccnow", "cancel", A)).code == 75
    assert [s[:3] for s in states(tmp_path)] == [(1, "ship", "uncertain"), (2, "cancel", "queued")]

    first = await resolve(cfg, "--not-sent")
    assert first.code == 0, first.stdout + first.stderr
    assert f"{A} ship not sent (command 1)" in first.stdout, first.stdout
    again = await resolve(cfg, "--not-sent")
    assert again.code == 65, again.stdout + again.stderr
    assert again.stdout == ""
    assert "no uncertain action" in again.stderr, again.stderr
    assert "cancel (#2)" in again.stderr and "--action cancel" in again.stderr, again.stderr
    assert [s[2] for s in states(tmp_path)] == ["not_sent", "queued"]
    assert withdrawn(tmp_path) == []

    named = await resolve(cfg, "--not-sent", "--action", "cancel")
    assert named.code == 0, named.stdout + named.stderr
    assert named.stdout == f"{A} cancel (command 2): withdrawn by hand before it was sent\n"
    assert (await resolve(cfg, "--not-sent", "--action", "cancel")).code == 65
