"""Putting CCNow commands whose post ended without CCNow's answer about them back in the queue
(`queued` again, from `sending`), or, of those whose withdrawal was asked while their post was
out (store/withdraw.py), closing them withdrawn instead: queued again, one would go out later
all the same, and its answer would follow an order nobody follows."""

from __future__ import annotations

from collections.abc import Sequence

from .commands import Command
from .db import Store
from .withdraw import close_asked_within


async def unclaim(store: Store, ids: Sequence[int], *, now: float) -> list[Command]:
    """Give back commands claimed for a post that never left (the stop began first): queued as
    they were, due when they were, the attempt not counted; return those closed withdrawn."""
    async with store.transaction():
        closed = await close_asked_within(store, ids, now=now, sent=False)
        await store.conn.executemany(
            "UPDATE commands SET state = 'queued', attempts = attempts - 1 "
            "WHERE id = ? AND state = 'sending'",
            [(i,) for i in ids],
        )
    return closed


async def requeue(
    store: Store,
    ids: Sequence[int],
    *,
    next_attempt_at: float,
    why: str,
    now: float,
    reached_at: float | None = None,
) -> list[Command]:
    """Put commands whose post failed with no answer of CCNow's about them back in the queue
    for a later attempt; `reached_at`: the post may have reached CCNow (None: it surely did
    not). Such a failure (a lost answer, a post turned away, a stop) starts their day again.
    Return those closed withdrawn."""
    async with store.transaction():
        return await requeue_within(
            store,
            [(i, why, None, None) for i in ids],
            next_attempt_at=next_attempt_at,
            now=now,
            reached_at=reached_at,
        )


async def requeue_within(
    store: Store,
    rows: Sequence[tuple[int, str, float | None, float | None]],
    *,
    next_attempt_at: float,
    now: float,
    reached_at: float | None = None,
    hidden_at: float | None = None,
    sent: bool = True,
    turned: str | None = None,
) -> list[Command]:
    """Queue commands again inside the caller's transaction, each (id, answer kept, the start
    of its day of answers that did not settle it, and of those with the lines saying CCNow is
    down; None: none); `reached_at`: the post may have reached CCNow with them (the first such
    post is kept). One whose withdrawal was asked while it was out is closed withdrawn
    instead (returned), keeping `reached_at` or `hidden_at`: an answer of the post may hide
    that CCNow ran it (a proxy's 503), which a ship or cancel queued again keeps not (its
    order's status tells), but one withdrawn does, whatever its action (nothing reads its
    order again), and one queued again keeps it apart (`Command.hidden_at`) for a later
    withdrawal; not `sent`: no connection was made, the post never left; `turned`: the status
    that turned the post away (`Command.turned_away`, kept after a post that never left, and
    let go of after one that may have reached CCNow: an earlier 429 no longer says CCNow did
    not act on it)."""
    ids, reached = [r[0] for r in rows], reached_at or hidden_at
    clear = reached is not None  # the post may have reached CCNow: turned away no longer
    closed = await close_asked_within(
        store, ids, now=now, reached_at=reached, sent=sent, turned=turned
    )
    await store.conn.executemany(
        "UPDATE commands SET state = 'queued', next_attempt_at = ?, answer = ?, "
        "unsettled_since = ?, held_since = ?, maybe_reached_at = coalesce(maybe_reached_at, ?), "
        "hidden_at = coalesce(hidden_at, ?), "
        "turned_away = CASE WHEN ? THEN NULL ELSE coalesce(?, turned_away) END "
        "WHERE id = ? AND state IN ('queued', 'sending')",
        [
            (next_attempt_at, why, since, held, reached_at, hidden_at, clear, turned, i)
            for i, why, since, held in rows
        ],
    )
    return closed
