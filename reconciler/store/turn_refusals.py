"""Commands closed at their turn without a post (their order past pending in the snapshot, a
discount held behind an uncertain one): claimed and closed, with their events, in one commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..events import Event
from .commands import Command, State
from .db import Store


async def close_unposted(
    store: Store,
    closes: Sequence[tuple[Command, State, str]],
    events: Callable[[Sequence[Command]], Awaitable[Sequence[Event]]],
    now: float,
) -> list[int]:
    """Close queued commands (command, state, answer) that no post carries, each with its
    event (`events` of those closed, built in the transaction), in one transaction; return
    the ids closed. Only one still queued with the attempts it was loaded with closes: a
    command another sender of this process claimed, or posted and queued again, since it was
    loaded is left to that one. One commit: a process that dies at any point leaves each
    either queued as it was, or closed."""
    closed: list[int] = []
    async with store.transaction():
        for c, state, answer in closes:
            before = store.conn.total_changes
            await store.conn.execute(
                "UPDATE commands SET state = ?, answer = ?, closed_at = ? "
                "WHERE id = ? AND state = 'queued' AND attempts = ?",
                (state, answer, now, c.id, c.attempts),
            )
            if store.conn.total_changes > before:
                closed.append(c.id)
        await store.events.add(await events([c for c, _, _ in closes if c.id in closed]))
    return closed
