"""A queued CCNow action whose next attempt was set before the wall clock was stepped back is
due by its bound (an hour, the longest wait a requeue sets), not the size of the step later.
A real store; the times are given, as the writer's clock gives them."""

from __future__ import annotations

from pathlib import Path

from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.requeue import requeue

NOW = 1_000_000.0


async def _queued(store: Store, retry_in_s: float) -> int:
    new = cmds.NewCommand("default", "396-10-1142", "adjust", "k", amount="2.00")
    [(command, _)] = await cmds.record(store, [new], NOW)
    at = NOW + retry_in_s
    await requeue(store, [command.id], next_attempt_at=at, why="http 503", now=NOW)
    return command.id


async def test_a_retry_set_before_a_step_back_is_due(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        command = await _queued(store, 30.0)
        assert await cmds.due(store, NOW) == []  # its 30 s are its own
        [due] = await cmds.due(store, NOW - 3600.0)  # before: due in an hour and 30 s
    finally:
        await store.close()
    assert due.id == command


async def test_the_longest_wait_a_requeue_sets_is_kept(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        await _queued(store, cmds.RETRY_MAX_S)
        assert await cmds.due(store, NOW) == []
        assert [c.next_attempt_at for c in await cmds.due(store, NOW + cmds.RETRY_MAX_S)] == [
            NOW + cmds.RETRY_MAX_S
        ]
    finally:
        await store.close()
