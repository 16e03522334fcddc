"""A write transaction's COMMIT, whose outcome is the transaction's once it is sent."""

from __future__ import annotations

import asyncio

import aiosqlite


async def commit(conn: aiosqlite.Connection) -> asyncio.CancelledError | None:
    """COMMIT the open transaction; return the cancellation that came meanwhile, if any. Once
    sent, the COMMIT decides the transaction's outcome, whatever cancels the caller (a slow
    fsync outlasting a caller's bound): it is waited for, and a committed transaction is one
    (its events told, nothing undone); the caller raises the cancellation after that."""
    sent = asyncio.ensure_future(conn.execute("COMMIT"))
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(sent)
        except asyncio.CancelledError as exc:
            if sent.done():  # the COMMIT's own task was cancelled (the loop closing)
                raise
            cancelled = exc
            continue
        except BaseException as error:
            if cancelled is not None:
                raise cancelled from error  # rolled back; the caller was cancelled meanwhile
            raise
        return cancelled
