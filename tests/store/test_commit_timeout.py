"""A caller's time limit that runs out while its transaction's COMMIT runs is a TimeoutError to
the caller, as any other time limit: the cancellation that says the COMMIT landed is marked,
not of its own type, since asyncio's time limits (`asyncio.timeout`, and `wait_for` from Python
3.12) take only a CancelledError of exactly that type for their own. Else a debounced
notification check whose bound ran out in its COMMIT ended its key's loop unlogged, and a
scheduler job so timed out was logged as a crash."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.store import Store, after_commit

KEY = OrderKey("ccv", "default", "N-1")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


async def write_with_slow_commit(store: Store, committing: asyncio.Event) -> None:
    real = store.conn.execute

    async def slow(sql: str, *args: object) -> object:
        if sql == "COMMIT":
            committing.set()
            await asyncio.sleep(0.3)  # the fsync outlasting the caller's bound
        return await real(sql, *args)

    store.conn.execute = slow  # type: ignore[assignment,method-assign]
    try:
        await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    finally:
        store.conn.execute = real  # type: ignore[method-assign]


if sys.version_info >= (3, 11):  # asyncio.timeout is new in 3.11

    async def test_a_time_limit_out_during_the_commit_is_a_timeout_and_the_write_kept(
        store: Store,
    ) -> None:
        committing = asyncio.Event()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await write_with_slow_commit(store, committing)
        assert committing.is_set()
        assert KEY in await store.orders.load([KEY])


async def test_a_cancellation_during_the_commit_says_it_committed(store: Store) -> None:
    committing = asyncio.Event()
    task = asyncio.ensure_future(write_with_slow_commit(store, committing))
    await committing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as raised:
        await task
    assert after_commit(raised.value)
    assert type(raised.value) is asyncio.CancelledError
