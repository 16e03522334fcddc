"""The CCNow actions a database that went back (history.py: a restore from a backup, a lost WAL)
left open: they may have been sent since, by the process whose history was lost.

The open that finds the rewind notes the highest command id then (`rewound_commands` in
`meta`, in its new epoch's transaction); the next writer settles the open commands up to it at
its start, before it sends anything (writes/interrupted.py), and deletes the note in the
transaction that marks the last of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .db import Store
from .history import REWOUND_KEY

if TYPE_CHECKING:
    from .commands import Command

# The answer kept by a discount made uncertain for it.
WHY = "the store went back (restored from a backup, or its WAL lost): it may have been sent since"


async def noted(store: Store) -> int | None:
    """Return the highest command id of a rewind no writer has settled yet; None: none."""
    rows = await store.conn.execute_fetchall("SELECT value FROM meta WHERE key = ?", (REWOUND_KEY,))
    return next((int(r[0]) for r in rows), None)


async def left_open(store: Store) -> tuple[int, list[Command]] | None:
    """Return the highest command id of a rewind no writer has settled yet, with the commands
    up to it still queued or sending; None: there is none."""
    # Here, not at the top: every writer's start asks `noted`, and finds nothing but after a
    # rewind; the commands' records load when there is one.
    from . import commands as cmds

    through = await noted(store)
    if through is None:
        return None
    return through, await cmds.open_through(store, through)


async def settled(store: Store, through: int, reached_at: float) -> None:
    """Delete the note of a rewind whose discounts are uncertain now; the other commands up to
    `through` still open may have reached CCNow at `reached_at` (CCNow then refusing one as not
    pending is no word that it did not take it: ccnow_outcome.settle)."""
    from . import commands as cmds

    async with store.transaction():
        await cmds.note_maybe_reached(store, through, reached_at)
        await store.conn.execute("DELETE FROM meta WHERE key = ?", (REWOUND_KEY,))
