"""Retention of the writes: CCV submissions and CCNow commands closed before the window, and the
references CCV notifications named that no order took (`retention.prune` runs them)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

from .db import Store
from .sql import marks

# The states in which a write is still someone's business: being sent, waiting to be sent, or
# waiting for a person's word. Such rows are never pruned, whatever their age.
_OPEN_WRITES: Final[Mapping[str, tuple[str, ...]]] = {
    "submissions": ("sending", "uncertain"),
    "commands": ("queued", "sending", "uncertain"),
}


async def prune_closed_writes(store: Store, cutoff: float, chunk: int) -> int:
    """Delete CCV submissions and CCNow commands closed before `cutoff`. Their references and
    idempotency keys are refused as repeats only within the window, as their events are kept."""
    deleted = 0
    for table, open_states in _OPEN_WRITES.items():
        in_open = marks(len(open_states))
        while True:
            async with store.transaction():
                cur = await store.conn.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE closed_at < ? "
                    f"AND state NOT IN ({in_open}) LIMIT ?)",
                    (cutoff, *open_states, chunk),
                )
                count = cur.rowcount
            deleted += count
            await asyncio.sleep(0)
            if count < chunk:
                break
    return deleted


async def prune_references(store: Store, cutoff: float) -> int:
    """Delete the remembered references received before `cutoff`: their orders were never
    tracked within `remember_ref`, and a notification no longer tells them anything. One
    statement: a day's notifications are few rows."""
    async with store.transaction():
        cur = await store.conn.execute(
            "DELETE FROM pending_references WHERE received_at < ?", (cutoff,)
        )
        return int(cur.rowcount)
