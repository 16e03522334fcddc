"""The `sources` table (each provider account's health) and the external references that a
notification named before their order was tracked (`pending_references`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..model import HEALTH_PARTS, HealthPart, Source, SourceState
from .errors import StoreError, guarded
from .sql import CHUNK, marks

if TYPE_CHECKING:
    from .db import Store

_STATE_COLUMNS = (
    "failing, failure_streak, episode, last_success, last_failure, last_error, "
    "failed_on_own_word, backoff_from, failed_on_key, rest_until"
)


@guarded
class Sources:
    """Account health records and remembered references."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store.conn

    def unusable(self, exc: sqlite3.Error) -> StoreError:
        """Record a failed statement in the store's health; return the error to raise."""
        return self._store.unusable(exc)

    async def state(self, source: Source, account: str) -> SourceState:
        """Return the health record of a provider account."""
        sql = f"SELECT {_STATE_COLUMNS} FROM sources WHERE source = ? AND account = ?"
        async with self._conn.execute(sql, (source, account)) as cur:
            row = await cur.fetchone()
        if row is None:
            return SourceState(source, account)
        return _state(source, account, row)

    async def save(self, s: SourceState) -> None:
        """Upsert the health record (inside a transaction)."""
        await self._conn.execute(
            f"INSERT OR REPLACE INTO sources (source, account, {_STATE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.source,
                s.account,
                parts_mask(s.failing_parts),  # 0: answering; else the failing parts, as bits
                s.failure_streak,
                s.episode,
                s.last_success,
                s.last_failure,
                s.last_error,
                int(s.failed_on_own_word),
                s.backoff_from,
                int(s.failed_on_key),
                s.rest_until,
            ),
        )

    async def states(self) -> list[SourceState]:
        """Return every recorded source health."""
        sql = f"SELECT source, account, {_STATE_COLUMNS} FROM sources"
        async with self._conn.execute(sql) as cur:
            return [_state(r[0], r[1], r[2:]) for r in await cur.fetchall()]

    async def remember_within(self, account: str, reference: str, now: float) -> None:
        """Keep an external reference that a notification named before it was tracked,
        inside the caller's transaction."""
        await self._conn.execute(
            "INSERT OR REPLACE INTO pending_references (account, external_reference, "
            "received_at) VALUES (?, ?, ?)",
            (account, reference, now),
        )

    async def take_references(
        self, account: str, references: Sequence[str], not_before: float
    ) -> set[str]:
        """Return and forget remembered references (not older than `not_before`)."""
        if not references:
            return set()
        found: set[str] = set()
        async with self._store.transaction():
            await self._conn.execute(
                "DELETE FROM pending_references WHERE received_at < ?", (not_before,)
            )
            for i in range(0, len(references), CHUNK):
                chunk = list(references[i : i + CHUNK])
                async with self._conn.execute(
                    "SELECT external_reference FROM pending_references WHERE account = ? "
                    f"AND received_at >= ? AND external_reference IN ({marks(len(chunk))})",
                    (account, not_before, *chunk),
                ) as cur:
                    found.update(r[0] for r in await cur.fetchall())
                await self._conn.execute(
                    "DELETE FROM pending_references WHERE account = ? "
                    f"AND external_reference IN ({marks(len(chunk))})",
                    (account, *chunk),
                )
        return found


def _state(source: Source, account: str, row: Sequence[Any]) -> SourceState:
    mask, streak, episode, success, failure, error, own_word, backoff_from, on_key, rest = row
    return SourceState(
        source,
        account,
        mask_parts(mask),
        streak,
        episode,
        success,
        failure,
        error,
        bool(own_word),
        backoff_from,
        bool(on_key),
        rest,
    )


def parts_mask(parts: frozenset[HealthPart]) -> int:
    """Return failing parts as the bits the store keeps in `sources.failing`."""
    return sum(1 << i for i, part in enumerate(HEALTH_PARTS) if part in parts)


def mask_parts(mask: int) -> frozenset[HealthPart]:
    """Return the failing parts of a stored mask (a store of older versions wrote 1: checks)."""
    return frozenset(part for i, part in enumerate(HEALTH_PARTS) if mask & (1 << i))
