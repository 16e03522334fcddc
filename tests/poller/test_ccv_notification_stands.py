"""A CCV notification stands until a check of its order answers: CCV calls a notification URL
once and never again. A notification whose check failed (a 5xx after retries) was never asked
again, the failure even pushing the order's next check later (up to max_interval); one for an
order in an end state whose check a stop cut was lost, the catch-up skipping end states."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import Config, load_config
from reconciler.model import OrderKey
from reconciler.store import Store
from tests.fake_providers import CCV_KEY, FakeCCV, Reply
from tests.poller.test_notification_health import account, config_for

KEY = OrderKey("ccv", "default", "N-1")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


def slow_config(tmp_path: Path, base_url: str) -> Config:
    """An account whose orders are asked hourly at most, its poll interval 20 s."""
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
        'poll_interval = "20s"\nmin_interval = "1h"\nmax_interval = "6h"\n'
    )
    return load_config(path)


async def status(store: Store) -> str | None:
    return (await store.orders.load([KEY]))[KEY].status


async def test_a_notification_whose_check_failed_is_asked_again_at_the_next_pass(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "New", "N-2": "New"}
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        config = slow_config(tmp_path, fake_ccv.base_url)
        ccv = account(config, store, session, lambda: now[0])
        await ccv.check(["N-1", "N-2"], via="poll")
        fake_ccv.orders["N-1"] = "Completed"
        fake_ccv.script_for["N-1"] = [Reply(503, "down")]
        await ccv.note_notified("N-1")
        await ccv.check(["N-1"], via="notification")
        assert await status(store) == "New"
        assert not (await store.sources.state("ccv", "default")).failing
        now[0] += config.ccv[0].poll_interval_s + 1.0
        await ccv.tick_due()
        assert await status(store) == "Completed"
        asked = len(fake_ccv.requests_for("N-1"))
        now[0] += config.ccv[0].poll_interval_s + 1.0
        await ccv.tick_due()  # answered: the notification no longer stands
    assert len(fake_ccv.requests_for("N-1")) == asked


async def test_a_stop_cutting_the_check_of_an_ended_order_leaves_it_to_the_next_catch_up(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "Completed"}
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        ccv = account(config, store, session, lambda: now[0])
        await ccv.check(["N-1"], via="poll")
        assert (await store.orders.load([KEY]))[KEY].end_state
        fake_ccv.orders["N-1"] = "Canceled"  # CCV refunded it, and calls once
        fake_ccv.hold = asyncio.Event()
        await ccv.note_notified("N-1")
        cut = asyncio.create_task(ccv.check(["N-1"], via="notification"))
        deadline = time.monotonic() + 30.0
        while len(fake_ccv.requests_for("N-1")) < 2:
            assert time.monotonic() < deadline, "the notification's check never reached CCV"
            await asyncio.sleep(0.01)
        cut.cancel()  # the stop
        with pytest.raises(asyncio.CancelledError):
            await cut
        fake_ccv.hold.set()
        assert await status(store) == "Completed"
        now[0] += 60.0
        restarted = account(config, store, session, lambda: now[0])  # the next start
        await restarted.full_pass(via="catch-up")
    assert await status(store) == "Canceled"


@pytest.mark.parametrize("reply", [Reply(403, "Forbidden"), Reply(500, "boom")])
async def test_a_notified_order_ccv_keeps_failing_is_asked_less_often_as_it_ages(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV, reply: Reply
) -> None:
    # Asked again every poll interval for ever, it cost 182 requests an hour for one order
    # (an ordinary order: 2), its own answers never changing.
    fake_ccv.orders = {"N-1": "New", "N-2": "New", "N-3": "New"}
    await store.orders.track("ccv", "default", [(i, None) for i in fake_ccv.orders], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        config = slow_config(tmp_path, fake_ccv.base_url)  # poll 20 s, min 1 h, max 6 h
        ccv = account(config, store, session, lambda: now[0])
        await ccv.check(list(fake_ccv.orders), via="poll")
        fake_ccv.replies["N-1"] = reply
        await ccv.note_notified("N-1")
        await ccv.check(["N-1"], via="notification")
        for _ in range(180):  # an hour, a tick a poll interval (and a second)
            now[0] += 21.0
            await ccv.tick_due()
        asked = len(fake_ccv.requests_for("N-1"))
        # Still standing (CCV never answered about it), asked at growing gaps: 21, 42, 84 s...
        assert await ccv_pending(store) == ["N-1"]
    assert 3 <= asked <= 12, asked


async def ccv_pending(store: Store) -> list[str]:
    rows = await store.conn.execute_fetchall("SELECT order_id FROM notified_orders")
    return [str(r[0]) for r in rows]
