"""A burst of notifications for a healthy account records its health once a second, not once per
hint (each write is a transaction a catch-up's batches and other hints wait for); a failure is
still recorded at once, and so is the recovery after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import Config, load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.ccv import CCVClient
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.fake_providers import CCV_KEY, FakeCCV, Reply


def config_for(tmp_path: Path, base_url: str) -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
    )
    return load_config(path)


def account(
    config: Config, store: Store, session: aiohttp.ClientSession, clock: Callable[[], float]
) -> CCVCoordinator:
    return Coordinators.build(config, Reconciler(config, store, clock=clock), session, Gates()).ccv[
        "default"
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


async def test_hints_within_a_second_record_a_healthy_account_once(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "New", "N-2": "New"}
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        ccv = account(config, store, session, lambda: now[0])
        await ccv.check(["N-1"], via="notification")
        now[0] += 0.5
        await ccv.check(["N-2"], via="notification")
        assert (await store.sources.state("ccv", "default")).last_success == 1000.0
        now[0] += 1.0
        await ccv.check(["N-1"], via="notification")
        assert (await store.sources.state("ccv", "default")).last_success == 1001.5


async def test_how_often_good_health_is_recorded_is_the_coordinator_s_to_choose(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "New"}
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        [cfg] = config.ccv
        reconciler = Reconciler(config, store, clock=lambda: now[0])
        ccv = CCVCoordinator(
            cfg, CCVClient(cfg, session, secrets=()), reconciler, healthy_recorded_s=10.0
        )
        for _ in range(3):
            await ccv.check(["N-1"], via="notification")
            now[0] += 4.0
        assert (await store.sources.state("ccv", "default")).last_success == 1000.0
        await ccv.check(["N-1"], via="notification")
        assert (await store.sources.state("ccv", "default")).last_success == 1012.0


async def test_a_failure_and_the_recovery_after_it_are_recorded_at_once(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {"N-1": "New"}
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        ccv = account(config, store, session, lambda: now[0])
        await ccv.check(["N-1"], via="notification")
        fake_ccv.script = [Reply(401, "Unauthorized")]
        now[0] += 0.1
        await ccv.check(["N-1"], via="notification")
        assert (await store.sources.state("ccv", "default")).failing
        now[0] += 0.1
        await ccv.check(["N-1"], via="notification")
        state = await store.sources.state("ccv", "default")
    assert not state.failing
    assert state.last_success == 1000.2
    types = [e.type for e in await store.events.history()]
    assert types[-2:] == ["source.failed", "source.recovered"]
