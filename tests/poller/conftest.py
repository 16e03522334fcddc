"""Coordinators for the pass rules' tests, over a real SQLite store: `world` with fake clients
in-process (tests/poller/fakes.py), `ccv` / `ccnow` with the real clients asking the loopback
fakes (tests/conftest.py), for rules that depend on how a client reads an answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import Config, load_config
from reconciler.model import OrderKey, OrderState, Source
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import BATCH_ROWS, Reconciler
from reconciler.redact import config_secrets
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import write_config
from tests.fake_providers import CCNOW_CLIENT_ID, CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV
from tests.poller.fakes import FakeCCNowClient, FakeCCVClient


@pytest.fixture
def batch_rows() -> int:
    """The reconciler's observations per transaction (a test parametrizes it to change it)."""
    return BATCH_ROWS


@pytest.fixture
async def coordinators(
    tmp_path: Path,
    fake_ccv: FakeCCV,
    fake_ccnow: FakeCCNow,
    monkeypatch: pytest.MonkeyPatch,
    batch_rows: int,
) -> AsyncIterator[Coordinators]:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow))
    store = await Store.open(config.store_path)
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, batch_rows=batch_rows)
            yield Coordinators.build(config, writer, session, Gates())
    finally:
        await store.close()


@pytest.fixture
def ccv(coordinators: Coordinators) -> CCVCoordinator:
    """The CCV account, asking the loopback fake."""
    return coordinators.ccv["default"]


@pytest.fixture
def ccnow(coordinators: Coordinators) -> CCNowCoordinator:
    """The CCNow account, asking the loopback fake."""
    return coordinators.ccnow["default"]


async def history(
    coordinator: CCNowCoordinator | CCVCoordinator,
) -> list[tuple[str, str | None, str | None, str]]:
    """(type, previous status, status, via) of every event of the coordinator's store, in
    order."""
    out = []
    for e in await coordinator.store.events.history():
        data = json.loads(e.body)["data"]
        out.append((e.type, data["previous_status"], data["status"], data["via"]))
    return out


CCV_IDS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 4)]
POLL_INTERVAL_S = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """One CCV and one CCNow account over fake clients, with the store they write to."""

    store: Store
    clock: Clock
    ccv_client: FakeCCVClient
    ccnow_client: FakeCCNowClient
    ccv: CCVCoordinator
    ccnow: CCNowCoordinator

    async def events(self) -> list[tuple[str, str | None]]:
        return [(e.type, e.order_id) for e in await self.store.events.history()]

    async def data(self) -> list[dict[str, Any]]:
        """Return each event's `data`, as a sink receives it."""
        return [json.loads(e.body)["data"] for e in await self.store.events.history()]

    async def order(self, source: Source, order_id: str) -> OrderState:
        key = OrderKey(source, "default", order_id)
        return (await self.store.orders.load([key]))[key]

    async def failing(self, source: Source) -> bool:
        return (await self.store.sources.state(source, "default")).failing


def config_for(tmp_path: Path) -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n'
        f'[ccv]\nbase_url = "http://127.0.0.1:9"\npoll_interval = {POLL_INTERVAL_S:.0f}\n'
        f'[ccnow]\nurl = "http://127.0.0.1:9/cgi-local/oapi_receive.cgi"\n'
        f'client_id = "{CCNOW_CLIENT_ID}"\npoll_interval = {POLL_INTERVAL_S:.0f}\n'
    )
    return load_config(path)


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = config_for(tmp_path)
    store = await Store.open(config.store_path)
    clock = Clock()
    writer = Reconciler(config, store, clock=clock)
    secrets = tuple(config_secrets(config))
    ccv_client, ccnow_client = FakeCCVClient(), FakeCCNowClient()
    try:
        yield World(
            store,
            clock,
            ccv_client,
            ccnow_client,
            CCVCoordinator(config.ccv[0], ccv_client, writer, remember_ref_s=3600, secrets=secrets),
            CCNowCoordinator(config.ccnow[0], ccnow_client, writer, secrets=secrets),
        )
    finally:
        await store.close()


async def track(world: World, source: Source, *ids: str, ref: str | None = None) -> None:
    await world.store.orders.track(source, "default", [(i, ref) for i in ids], world.clock.now)
