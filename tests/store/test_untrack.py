"""`untrack` while a pass is checking the orders: the untrack wins, nothing comes back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

from reconciler.store import Store
from tests.conftest import call_cli, read_events, write_config
from tests.fake_providers import FakeCCV

IDS = [f"0b5e0000-0000-4000-8000-{n:012d}" for n in range(10)]


async def test_untrack_during_a_pass_is_not_undone(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = dict.fromkeys(IDS, "Processing")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0

    # A second pass asks about every order; the answers wait until the untrack is done.
    fake_ccv.hold = asyncio.Event()
    asked = len(fake_ccv.requests)
    catch_up = asyncio.ensure_future(call_cli("--config", cfg, "catch-up"))
    await fake_ccv.wait_until(lambda: len(fake_ccv.requests) > asked, 20)
    # What `reconciler untrack` does, on a connection of its own: quick enough to end while the
    # answers wait (they time out after 2 s).
    other = await Store.open(tmp_path / "reconciler.db")
    try:
        assert await other.orders.untrack("ccv", None, IDS) == len(IDS)
    finally:
        await other.close()
    fake_ccv.hold.set()
    result = await asyncio.wait_for(catch_up, 30)
    assert result.code == 0, result.stderr

    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    discovered = Counter(e["subject"] for e in read_events(tmp_path) if "discovered" in e["type"])
    assert discovered == dict.fromkeys(IDS, 1)  # no second `order.discovered`
    orders = await call_cli("--config", cfg, "orders", "--json")
    assert orders.code == 0 and orders.stdout.strip() == "[]"
