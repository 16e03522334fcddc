"""A notified order this process keeps in the store is in its in-memory set of them
(`notified_ids`), which alone lets a check's answer settle it: an order missing there stands in
the store for ever, its failed checks never asked again at their gaps (or asked every tick)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.store import Store
from tests.fake_providers import FakeCCV
from tests.poller.test_notification_health import account, config_for


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


async def pending(store: Store) -> list[str]:
    rows = await store.conn.execute_fetchall("SELECT order_id FROM notified_orders")
    return sorted(str(r[0]) for r in rows)


async def test_a_call_recorded_while_a_check_settles_is_settled_by_a_later_check(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The call's record waits for the writer while the check's settle writes; it commits after
    # the settle took the order out of its set and read what stands: the order was left out.
    fake_ccv.orders = {"N-1": "New"}
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        assert await ccv.note_notified("N-1", followed_only=True)
        now[0] += 1.0
        second: list[asyncio.Future[bool]] = []
        real = store.conn.executemany

        def executemany(*args: Any, **kwargs: Any) -> Any:
            if not second:  # the settle's first statement: CCV calls again now
                now[0] += 1.0
                second.append(asyncio.ensure_future(ccv.note_notified("N-1", followed_only=True)))
            return real(*args, **kwargs)

        monkeypatch.setattr(store.conn, "executemany", executemany)
        await ccv.check(["N-1"], via="notification")  # asked before the second call
        assert await second[0] is True
        monkeypatch.setattr(store.conn, "executemany", real)
        assert await pending(store) == ["N-1"]  # the second call stands
        now[0] += 100.0
        await ccv.check(["N-1"], via="notification")  # the second call's check answers
    assert await pending(store) == []


async def test_a_call_for_an_order_untracked_elsewhere_leaves_its_earlier_call_standing(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    # Another process untracked the order, which took its notification; a call for it now is
    # not kept, and tracked again the order has no call standing (the old one is not asked as
    # a new one), its check settling nothing.
    fake_ccv.orders = {"N-1": "New"}
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        assert await ccv.note_notified("N-1", followed_only=True)
        await store.orders.untrack("ccv", "default", ["N-1"])
        assert not await ccv.note_notified("N-1", followed_only=True)
        await store.orders.track("ccv", "default", [("N-1", None)], 2.0)
        assert await pending(store) == []
        now[0] += 100.0
        await ccv.check(["N-1"], via="notification")
    assert await pending(store) == []


async def test_a_call_kept_at_its_check_is_not_kept_for_an_order_untracked_meanwhile(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    # The check found the order followed, then an untrack came before it kept the call (not
    # kept when it came): kept all the same, it stood for ever, and a track of the order again
    # made it due as a new call.
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: 1000.0)
        await store.orders.untrack("ccv", "default", ["N-1"])
        assert not await ccv.note_notified("N-1")
    assert await pending(store) == []
