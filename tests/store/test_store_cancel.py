"""A write transaction cancelled while its BEGIN is on the way (a pass cancelled at shutdown)
leaves the connection clean: the next transaction starts, and the process can close it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconciler.store import Store


async def test_a_transaction_cancelled_during_begin_leaves_none_open(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "r.db")
    try:
        entered = asyncio.Event()

        async def write() -> None:
            async with store.transaction():
                entered.set()

        task = asyncio.ensure_future(write())
        await asyncio.sleep(0)  # the task has sent BEGIN and waits for it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not entered.is_set()
        # the BEGIN ran on the connection's thread all the same; it must have been undone
        async with store.transaction():
            await store.conn.execute("SELECT 1")
        assert not store.conn.in_transaction
    finally:
        await store.close()
