"""Reads of the submissions still open (uncertain, or left sending) for `status` and the
accounts the config no longer names, and of when queued CCNow actions are posted next: no
writer needed."""

from __future__ import annotations

from .db import Store
from .submissions import OPEN


async def uncertain_references(store: Store) -> dict[str, set[str]]:
    """Return the references of the uncertain submissions, per account (a read, no writer)."""
    rows = await store.conn.execute_fetchall(
        f"SELECT account, external_reference FROM submissions WHERE {OPEN} AND state = 'uncertain'"
    )
    found: dict[str, set[str]] = {}
    for account, ref in rows:
        found.setdefault(str(account), set()).add(str(ref))
    return found


async def unsettled_counts(store: Store) -> dict[str, int]:
    """Per account, the submissions whose answer is not known: uncertain, or left sending (a
    writer's start makes those uncertain)."""
    rows = await store.conn.execute_fetchall(
        f"SELECT account, count(*) FROM submissions WHERE {OPEN} GROUP BY account"
    )
    return {str(a): int(n) for a, n in rows}


async def queued_next(store: Store, now: float) -> dict[str, float]:
    """Per account, when its first queued CCNow action not yet due is posted next (a Retry-After
    may put it an hour off); an account with one due at `now` is left out."""
    rows = await store.conn.execute_fetchall(
        "SELECT account, min(next_attempt_at) FROM commands WHERE state = 'queued' "
        "GROUP BY account HAVING min(next_attempt_at) > ?",
        (now,),
    )
    return {str(a): float(at) for a, at in rows}
