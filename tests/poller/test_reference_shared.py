"""A CCV read-back that replaces an order's external reference with one another followed order
of the account carries: both keep what CCV answered (the provider's word, each order's own), but
not in silence. The one `order.external_reference_differs` warning names the other orders that
carry the reference (`also_carried_by`): the reference no longer names one order, in events nor
in a notification URL, which checks them all. Empty when none does, also when CCV renamed the
other one in the same pass. Real SQLite, a fake CCV on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV

O1, O2, O3 = (f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 4))


@pytest.fixture
async def ccv(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CCVCoordinator]:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(write_config(tmp_path, ccv=fake_ccv))
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        refs = [(O1, "INV-1"), (O2, "INV-2"), (O3, "INV-3")]
        await store.orders.track("ccv", "default", refs, 1.0)
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=Clock())
            yield Coordinators.build(config, writer, session, Gates()).ccv["default"]
    finally:
        await store.close()


def differs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    found = [r for r in caplog.records if r.getMessage() == "order.external_reference_differs"]
    assert all(r.levelno == logging.WARNING for r in found)
    return [r.__dict__["fields"] for r in found]


async def references(ccv: CCVCoordinator) -> dict[str, str | None]:
    return {s.key.order_id: s.external_reference for s in await ccv.store.orders.snapshot()}


async def test_a_reference_ccv_moves_onto_another_followed_order_names_both(
    ccv: CCVCoordinator, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ccv.orders = dict.fromkeys((O1, O2, O3), "New")
    fake_ccv.refs = {O1: "INV-1", O2: "INV-1", O3: "INV-3"}
    caplog.set_level(logging.INFO, logger="reconciler")
    assert (await ccv.full_pass(via="catch-up")).ok
    [line] = differs(caplog)
    assert (line["order_id"], line["tracked"], line["answered"]) == (O2, "INV-2", "INV-1")
    assert line["also_carried_by"] == [O1]
    # Each keeps what CCV answered for it; O2's old reference stays its alias.
    assert await references(ccv) == {O1: "INV-1", O2: "INV-1", O3: "INV-3"}
    assert {s.key.order_id for s in await ccv.store.orders.by_reference("INV-2")} == {O2}
    assert {s.key.order_id for s in await ccv.store.orders.by_reference("INV-1")} == {O1, O2}


async def test_a_reference_ccv_moved_from_the_other_order_in_the_same_pass_names_none(
    ccv: CCVCoordinator, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    # References swapped at CCV (a typo put right): each order carries one again.
    fake_ccv.orders = dict.fromkeys((O1, O2, O3), "New")
    fake_ccv.refs = {O1: "INV-2", O2: "INV-1", O3: "INV-3"}
    caplog.set_level(logging.INFO, logger="reconciler")
    assert (await ccv.full_pass(via="catch-up")).ok
    lines = sorted(differs(caplog), key=lambda f: f["order_id"])
    assert [(f["order_id"], f["answered"], f["also_carried_by"]) for f in lines] == [
        (O1, "INV-2", []),
        (O2, "INV-1", []),
    ]
    assert await references(ccv) == {O1: "INV-2", O2: "INV-1", O3: "INV-3"}
