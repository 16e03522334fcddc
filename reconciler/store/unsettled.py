"""Reads of the submissions still open (uncertain, or left sending) for `status` and the
accounts the config no longer names: no writer needed."""

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
