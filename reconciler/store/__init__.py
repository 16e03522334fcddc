"""The SQLite store: the only SQL of reconciler.

`db` opens, migrates and locks the database and runs transactions; `orders`, `events` (with the
outbox), `sources`, `commands`, `submissions`, `passes`, `counts` and `retention` each own a
group of tables.
"""

from __future__ import annotations

from .commit import after_commit
from .db import Store
from .errors import StoreError, StoreFull, StoreLocked, WriterLockHeld, named_unusable
from .files import WriterLock

__all__ = (
    "Store",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "WriterLock",
    "WriterLockHeld",
    "after_commit",
    "named_unusable",
)
