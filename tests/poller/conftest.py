"""Coordinators over the real provider clients, asking the loopback fakes (tests/conftest.py),
with a real SQLite store: for pass rules that depend on how a client reads an answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from tests.conftest import write_config
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV


@pytest.fixture
async def coordinators(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Coordinators]:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow))
    store = await Store.open(config.store_path)
    try:
        async with aiohttp.ClientSession() as session:
            yield Coordinators.build(config, Reconciler(config, store), session)
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
