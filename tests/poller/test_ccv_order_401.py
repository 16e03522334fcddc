"""One CCV order whose status CCV answers 401 for ever, while the account's other orders answer:
the account failed at the first 401 and recovered at the next answer, a `source.failed` /
`source.recovered` pair about every poll (9 + 9 in 40 s). A 401 is that order's failure when the
account's other orders answer through the same key (in the same pass, or a witness: an order
whose last check answered a status); a 401 on every order (a bad key) still fails the account
at once, with one `source.failed`, and the pass stops at its first request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.model import OrderKey
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.account_ticks import account_events, run_daemon
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

A, B, C = (f"401a0000-0000-4000-8000-{n:012d}" for n in (1, 2, 3))
UNAUTHORIZED = Reply(401, '{"error":"Unauthorized"}', "application/json")


@pytest.fixture
async def ccv(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """A CCV account of three open orders, none checked yet."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    path = write_config(tmp_path, ccv=fake_ccv)
    path.write_text(path.read_text().replace('retry_backoff = "10ms"', 'retry_backoff = "1ms"'))
    config = load_config(path)
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in (A, B, C)], clock.now)
            fake_ccv.orders.update(dict.fromkeys((A, B, C), "New"))
            yield coordinator, clock
    finally:
        await store.close()


async def streak(coordinator: CCVCoordinator, order_id: str) -> int:
    key = OrderKey("ccv", "default", order_id)
    return (await coordinator.store.orders.load([key]))[key].failure_streak


async def test_one_order_answering_401_fails_alone_poll_after_poll(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    fake_ccv.replies[C] = UNAUTHORIZED
    report = await coordinator.full_pass(via="catch-up")
    assert not report.failed_sources
    assert await streak(coordinator, C) == 1
    await run_daemon(coordinator, clock, 600)  # C due alone at its failure's backoff, often
    assert await account_events(coordinator) == []
    assert not (await coordinator.store.sources.state("ccv", "default")).failing
    assert len(fake_ccv.requests_for(C)) >= 3
    assert await streak(coordinator, C) >= 3
    # CCV answers the order again: its failure ends, and the account never flipped.
    del fake_ccv.replies[C]
    await run_daemon(coordinator, clock, 300)
    assert await streak(coordinator, C) == 0
    assert await account_events(coordinator) == []


async def test_the_401_order_asked_first_asks_a_witness(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    # The order answering 401 comes first in the pass (the slow start's first request): an
    # order whose last check answered says whether the key works, and the pass goes on.
    coordinator, clock = ccv
    await coordinator.full_pass(via="catch-up")
    fake_ccv.replies[A] = UNAUTHORIZED
    clock.now += 60
    before = len(fake_ccv.requests)
    report = await coordinator.full_pass(via="catch-up")
    assert not report.failed_sources
    assert report.checked == 3
    assert len(fake_ccv.requests) - before == 3  # A, its witness, the last one: each once
    clock.now += 60
    report = await coordinator.check([A], via="poll")  # alone: a witness says
    assert not report.failed_sources
    assert await streak(coordinator, A) == 2
    assert await account_events(coordinator) == []


async def test_a_bad_key_fails_the_account_once_after_one_request(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    fake_ccv.always = UNAUTHORIZED
    report = await coordinator.full_pass(via="catch-up")
    assert report.failed_sources == {"ccv/default": "http 401"}
    assert len(fake_ccv.requests) == 1
    await run_daemon(coordinator, clock, 60)
    assert await account_events(coordinator) == ["source.failed"]


async def test_a_key_refused_for_every_order_later_fails_the_account_once(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    # Orders that answered are witnesses: the key refused for them too fails the account at
    # that pass, and it recovers once when the key is accepted again.
    coordinator, clock = ccv
    await coordinator.full_pass(via="catch-up")
    fake_ccv.always = UNAUTHORIZED
    clock.now += 60
    before = len(fake_ccv.requests)
    report = await coordinator.check([A], via="poll")
    assert report.failed_sources == {"ccv/default": "http 401"}
    assert len(fake_ccv.requests) - before == 2  # the check and one witness
    await run_daemon(coordinator, clock, 60)
    assert await account_events(coordinator) == ["source.failed"]
    fake_ccv.always = None
    await run_daemon(coordinator, clock, 300)
    assert await account_events(coordinator) == ["source.failed", "source.recovered"]
