"""A write transaction's COMMIT, whose outcome is the transaction's once it is sent."""

from __future__ import annotations

import asyncio

import aiosqlite


class CancelledAfterCommit(asyncio.CancelledError):
    """A cancellation that came while the transaction's COMMIT ran, which committed it: what
    the transaction wrote is in the store (a caller must not write it again), and the caller
    stops all the same. Raised by `Store.transaction` once its commit is told."""


async def commit(conn: aiosqlite.Connection) -> CancelledAfterCommit | None:
    """COMMIT the open transaction; return the cancellation that came meanwhile, if any. Once
    sent, the COMMIT decides the transaction's outcome, whatever cancels the caller (a slow
    fsync outlasting a caller's bound): it is waited for, and a committed transaction is one
    (its events told, nothing undone); the caller raises the cancellation after that, as a
    CancelledAfterCommit, which says it committed."""
    sent = asyncio.ensure_future(conn.execute("COMMIT"))
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(sent)
        except asyncio.CancelledError as exc:
            if sent.cancelled():  # the COMMIT's own task was cancelled (the loop closing)
                raise
            # Cancelled while the COMMIT ran, or in the turns after it ended: its outcome is
            # read on the next round all the same.
            cancelled = exc
            continue
        except BaseException as error:
            if cancelled is not None:
                raise cancelled from error  # rolled back; the caller was cancelled meanwhile
            raise
        if cancelled is None:
            return None
        return CancelledAfterCommit(*cancelled.args)
