"""A withdrawal asked while a command's post is out is recorded on it, committed: every way
that post can end without CCNow's definite answer (queued again after a failure or a lost
answer, given back at a stop) closes it withdrawn instead, once, with an `order.action_refused`
saying whether a post of it may have reached CCNow; CCNow's definite answer ends it as it says.
A real store; the times are given, as the writer's clock gives them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.requeue import requeue, requeue_within, unclaim
from reconciler.store.withdraw import BY_HAND, BY_UNTRACK, by_untrack, untrack, withdraw_within

NOW = 1_000_000.0
ORDER = "396-10-1142"


async def _sending(store: Store, key: str = "k") -> cmds.Command:
    new = cmds.NewCommand("default", ORDER, "ship", key)
    [(command, _)] = await cmds.record(store, [new], NOW)
    assert await cmds.mark_sending(store, [command.id]) == [command.id]
    return command


async def _refused(store: Store) -> list[dict[str, Any]]:
    rows = await store.conn.execute_fetchall(
        "SELECT body FROM events WHERE type = 'order.action_refused' ORDER BY seq"
    )
    return [json.loads(bytes(body))["data"] for (body,) in rows]


async def test_a_lost_answer_closes_it_withdrawn_saying_it_may_have_reached(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        command = await _sending(store)
        _, out = await untrack(store, "default", [ORDER], by=BY_UNTRACK, now=NOW)
        assert ([c.id for c in out.sending], out.withdrawn) == ([command.id], [])
        [asked] = await cmds.get(store, [command.id])
        assert (asked.state, asked.withdraw_asked) == ("sending", BY_UNTRACK)

        closed = await requeue(
            store, [command.id], next_attempt_at=NOW + 30, why="lost", now=NOW, reached_at=NOW
        )
        [ended] = await cmds.get(store, [command.id])
        assert [c.id for c in closed] == [command.id]
        assert ended.state == "refused"
        assert ended.answer is not None
        assert ended.answer.startswith("withdrawn by untrack while it was being sent"), ended
        assert "may have reached CCNow" in ended.answer
        assert await cmds.due(store, NOW + 3600) == []
        [data] = await _refused(store)
        assert (data["command_id"], data["withdrawn"], data["maybe_reached"]) == (
            command.id,
            True,
            True,
        )
        # Once: a second requeue of it (another path's) changes nothing.
        assert await requeue(store, [command.id], next_attempt_at=NOW, why="x", now=NOW) == []
        assert len(await _refused(store)) == 1
    finally:
        await store.close()


async def test_a_post_given_back_at_a_stop_is_withdrawn_not_queued(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        command = await _sending(store)
        async with store.transaction():
            await withdraw_within(store, "default", [ORDER], by=BY_HAND, now=NOW)
        await unclaim(store, [command.id], now=NOW)
        [ended] = await cmds.get(store, [command.id])
        assert (ended.state, ended.maybe_reached_at) == ("refused", None)
        # Its post never left: said so, not "while it was being sent".
        assert ended.answer == "withdrawn by hand before it was sent"
        [data] = await _refused(store)
        assert data["maybe_reached"] is False
    finally:
        await store.close()


async def test_a_definite_answer_ends_it_as_it_says(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        command = await _sending(store)
        other = await _sending(store, "k2")  # not asked: queued again as before
        async with store.transaction():
            await withdraw_within(store, "default", [ORDER], by=BY_HAND, now=NOW, ids=[command.id])
            await cmds.close_within(store, [(command.id, "succeeded", "mark_shipped")], NOW)
        await requeue(store, [command.id, other.id], next_attempt_at=NOW, why="x", now=NOW)
        ended = {c.id: c for c in await cmds.get(store, [command.id, other.id])}
        assert (ended[command.id].state, ended[command.id].answer) == ("succeeded", "mark_shipped")
        assert (ended[other.id].state, ended[other.id].withdraw_asked) == ("queued", None)
        assert await _refused(store) == []
    finally:
        await store.close()


async def test_an_untrack_after_a_word_by_hand_is_recorded_beside_it(tmp_path: Path) -> None:
    # The word by hand is the first, and named first; the untrack after it holds the post's
    # answer back from the order (store/withdraw.by_untrack), as an untrack alone does.
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        command = await _sending(store)
        async with store.transaction():
            await withdraw_within(store, "default", [ORDER], by=BY_HAND, now=NOW)
        _, out = await untrack(store, "default", [ORDER], by=BY_UNTRACK, now=NOW)
        both = "by hand, then by untrack"
        assert [c.withdraw_asked for c in out.sending] == [both]
        # Asked again, either way: recorded once.
        async with store.transaction():
            await withdraw_within(store, "default", [ORDER], by=BY_HAND, now=NOW)
        await untrack(store, "default", [ORDER], by=BY_UNTRACK, now=NOW)
        [asked] = await cmds.get(store, [command.id])
        assert (asked.withdraw_asked, by_untrack(asked.withdraw_asked)) == (both, True)

        await requeue(store, [command.id], next_attempt_at=NOW, why="x", now=NOW)
        [ended] = await cmds.get(store, [command.id])
        assert ended.state == "refused"
        assert ended.answer == (
            "withdrawn by hand, then by untrack while it was being sent "
            "(CCNow's answer settled nothing)"
        )
    finally:
        await store.close()


async def test_a_word_by_hand_after_an_untrack_keeps_the_untrack(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        command = await _sending(store)
        await untrack(store, "default", [ORDER], by=BY_UNTRACK, now=NOW)
        async with store.transaction():
            await withdraw_within(store, "default", [ORDER], by=BY_HAND, now=NOW)
        [asked] = await cmds.get(store, [command.id])
        assert (asked.withdraw_asked, by_untrack(asked.withdraw_asked)) == (BY_UNTRACK, True)
        assert not by_untrack(BY_HAND)
        assert not by_untrack(None)
    finally:
        await store.close()


async def test_a_post_turned_away_closes_it_withdrawn_saying_ccnow_did_not_act_on_it(
    tmp_path: Path,
) -> None:
    # Turned away (a 429), the post was sent: its words say so, and that CCNow did not act on
    # it, not "before it was sent" nor that CCNow's answer settled nothing.
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        command = await _sending(store)
        async with store.transaction():
            await withdraw_within(store, "default", [ORDER], by=BY_HAND, now=NOW)
        async with store.transaction():
            rows = [(command.id, "x", None, None)]
            await requeue_within(store, rows, next_attempt_at=NOW, now=NOW, turned="HTTP 429")
        [ended] = await cmds.get(store, [command.id])
        assert (ended.state, ended.maybe_reached_at) == ("refused", None)
        assert ended.answer == (
            "withdrawn by hand while it was being sent: its post was turned away (HTTP 429), "
            "not acted on by CCNow"
        )
        [data] = await _refused(store)
        assert (data["answer"], data["maybe_reached"]) == (ended.answer, False)
    finally:
        await store.close()
