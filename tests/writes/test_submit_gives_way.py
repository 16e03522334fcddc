"""A submit through the API while the daemon checks many orders: the pass sends no new request
until the submit is answered, so that the caller's wait does not share the event loop and the
writer with a pass (the first checks of just-submitted orders come in such passes). Before,
a submit's added latency at p99 was several times its median whenever a pass ran beside it
(bench/api.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.daemon import Ticks
from reconciler.store import Store
from tests.conftest import daemon_here, free_port, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import TOKEN, api_toml

ORDERS = 1000  # with each answer taking 20 ms and 8 at once: a pass of about 2.5 s
# How long the submit is watched while CCV holds it: a pass would send about 200 requests
# meanwhile. The daemon's passes give way for up to HINT_S at a time, not the usual 0.1 s
# (hint_gate.MAX_WAIT_S, whose bound tests/passes/test_hint_gate.py checks): a window beside
# 0.1 s ran past it whenever this loop ran late on a loaded machine, and the pass went on.
WINDOW_S = 0.5
HINT_S = 60.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCVWrites]:
    async with FakeCCVWrites() as fake:
        yield fake


async def track_many(db: Path, fake: FakeCCVWrites) -> None:
    """Follow ORDERS orders that CCV knows, all due now."""
    ids = [str(uuid.uuid4()) for _ in range(ORDERS)]
    fake.orders.update(dict.fromkeys(ids, "Processing"))
    store = await Store.open(db)
    try:
        await store.orders.track("ccv", "default", [(i, None) for i in ids], time.time())
    finally:
        await store.close()


async def test_a_pass_sends_nothing_new_while_a_submit_waits_for_its_answer(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    await track_many(tmp_path / "reconciler.db", fake)
    fake.delay_s = 0.02
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    async with daemon_here(cfg, ticks=Ticks(hint_s=HINT_S)), aiohttp.ClientSession() as http:
        # The start-up pass is under way.
        await fake.wait_until(lambda: len(fake.requests) >= 16, 10)
        fake.submit_hold = asyncio.Event()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        url = f"http://127.0.0.1:{port}/api/v1/ccv/orders"
        body = submit_body(externalReference="shop-1")
        answer = asyncio.ensure_future(http.post(url, json=body, headers=headers))
        await fake.wait_until(lambda: len(fake.submits) == 1, 10)
        before = len(fake.requests)
        # What the pass sends while the submit waits on CCV (watched, not waited for).
        await asyncio.sleep(WINDOW_S)
        during = len(fake.requests) - before
        fake.submit_hold.set()
        resp = await answer
        assert resp.status == 201
        resp.release()
        # Only requests already on their way when the submit began (one per worker at most).
        assert during <= 8, during
        # And the pass goes on once the submit is answered (not at the end of its wait).
        await fake.wait_until(lambda: len(fake.requests) >= before + 16, 10)
