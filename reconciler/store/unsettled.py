"""Reads of the submissions still open (uncertain, or left sending) and the CCNow actions not
settled, for `status`, the accounts the config no longer names and a writer's start, and of
when queued CCNow actions are posted next: no writer needed. Apart from commands.py, so that a
writer's start reads them without loading the actions' records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .db import Store
from .submissions import OPEN

if TYPE_CHECKING:
    from .commands import Unsettled

# SQLite reads the partial index commands_open only for a query whose WHERE repeats its term:
# told `state = 'queued'` alone, it reads every command of the retention window (commands.py's
# queries too).
COMMANDS_OPEN = "state IN ('queued', 'sending', 'uncertain')"


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


async def action_counts(store: Store) -> dict[tuple[str, Unsettled], int]:
    """Per (account, state), the CCNow actions nothing has settled yet: queued, sending,
    uncertain."""
    rows = await store.conn.execute_fetchall(
        f"SELECT account, state, count(*) FROM commands WHERE {COMMANDS_OPEN} "
        "GROUP BY account, state"
    )
    return {(str(a), s): int(n) for a, s, n in rows}


async def left_sending(store: Store) -> bool:
    """Whether a CCV submit or a CCNow action is `sending`: at a writer's start, one a stopped
    process left (no other process sends them)."""
    rows = await store.conn.execute_fetchall(
        f"SELECT 1 FROM submissions WHERE {OPEN} AND state = 'sending' "
        f"UNION ALL SELECT 1 FROM commands WHERE {COMMANDS_OPEN} AND state = 'sending' LIMIT 1"
    )
    return bool(list(rows))


async def queued_next(store: Store, now: float) -> dict[str, float]:
    """Per account, when its first queued CCNow action not yet due is posted next (a Retry-After
    may put it an hour off); an account with one due at `now` is left out."""
    rows = await store.conn.execute_fetchall(
        "SELECT account, min(next_attempt_at) FROM commands WHERE state = 'queued' "
        "GROUP BY account HAVING min(next_attempt_at) > ?",
        (now,),
    )
    return {str(a): float(at) for a, at in rows}
