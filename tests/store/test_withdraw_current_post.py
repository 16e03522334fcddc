"""A withdrawal names what the post it ended got, not an earlier post's answer: a command an
earlier post of which was turned away (a 429, kept in `turned_away`), withdrawn while its next
post was out, and that post ended on CCNow's own refusal of the whole post (a line saying CCNow
is down for maintenance), says CCNow's answer settled nothing, not that its post was turned
away (HTTP 429). A real store; the times are given, as the writer's clock gives them."""

from __future__ import annotations

from pathlib import Path

from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.requeue import requeue_within
from reconciler.store.withdraw import BY_HAND, withdraw_within

NOW = 1_000_000.0
ORDER = "396-10-1142"
DOWN = "error_message CCNow is down for maintenance"


async def test_a_post_refused_as_a_whole_after_a_429_names_its_own_answer(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        new = cmds.NewCommand("default", ORDER, "ship", "k")
        [(command, _)] = await cmds.record(store, [new], NOW)
        rows = [(command.id, DOWN, None, None)]
        # Its first post turned away (a 429), queued again.
        assert await cmds.mark_sending(store, [command.id]) == [command.id]
        async with store.transaction():
            await requeue_within(store, rows, next_attempt_at=NOW, now=NOW, turned="HTTP 429")
        # Its next post out, withdrawn meanwhile, then refused as a whole in CCNow's words.
        assert await cmds.mark_sending(store, [command.id]) == [command.id]
        async with store.transaction():
            await withdraw_within(store, "default", [ORDER], by=BY_HAND, now=NOW)
        async with store.transaction():
            await requeue_within(store, rows, next_attempt_at=NOW, now=NOW)
        [ended] = await cmds.get(store, [command.id])
        assert (ended.state, ended.maybe_reached_at) == ("refused", None)
        assert ended.answer == (
            "withdrawn by hand while it was being sent (CCNow's answer settled nothing)"
        )
    finally:
        await store.close()
