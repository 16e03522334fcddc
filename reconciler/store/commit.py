"""A write transaction's COMMIT, whose outcome is the transaction's once it is sent."""

from __future__ import annotations

import asyncio

import aiosqlite

# Marks a cancellation that came while a transaction's COMMIT ran, which committed it. A mark
# on the cancellation itself, not a subclass of it: asyncio's time limits (`asyncio.timeout`,
# and `wait_for` from Python 3.12) turn into TimeoutError only a CancelledError of exactly that
# type, so a subclass would let a caller's time limit out as a cancellation.
_COMMITTED = "reconciler_after_commit"


def after_commit(exc: BaseException) -> bool:
    """Whether `exc` is a cancellation that came while its transaction's COMMIT ran, which
    committed it: what the transaction wrote is in the store (a caller must not write it
    again), and the caller stops all the same."""
    return isinstance(exc, asyncio.CancelledError) and getattr(exc, _COMMITTED, False) is True


def mark_after_commit(cancelled: asyncio.CancelledError) -> asyncio.CancelledError:
    """Return `cancelled`, marked as one that came while its COMMIT ran and committed it."""
    setattr(cancelled, _COMMITTED, True)
    return cancelled


async def commit(conn: aiosqlite.Connection) -> asyncio.CancelledError | None:
    """COMMIT the open transaction; return the cancellation that came meanwhile, if any. Once
    sent, the COMMIT decides the transaction's outcome, whatever cancels the caller (a slow
    fsync outlasting a caller's bound): it is waited for, and a committed transaction is one
    (its events told, nothing undone); the caller raises the cancellation after that, marked
    (`after_commit`) to say it committed."""
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
        return mark_after_commit(cancelled)
