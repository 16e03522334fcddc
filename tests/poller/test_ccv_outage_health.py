"""One rule for a CCV account whose checks fail, in the daemon's due checks and in a catch-up:
when most of them failed of an outage's reason (a 5xx, a timeout, a gateway's 404), the account
fails without a probe (CCV's probe may answer through them); when most are the orders' own (a
403 each), the probe says whether the account answers. And a gateway answering
`{"orderStatus": null}` on every path is no CCV answering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.ccv import PROBE_ORDER_ID
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.account_ticks import account_events
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

IDS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 5)]
HTTP_500 = Reply(500, "oops")
FORBIDDEN = Reply(403, '{"message": "Forbidden"}', "application/json")
NULL_STATUS = Reply(200, '{"orderStatus": null}', "application/json")


@pytest.fixture
async def ccv(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """A CCV account of four open orders over the real client and the loopback fake."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(write_config(tmp_path, ccv=fake_ccv))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in IDS], clock.now)
            yield coordinator, clock
    finally:
        await store.close()


async def run_daemon(coordinator: CCVCoordinator, clock: Clock, hours: int = 20) -> None:
    """The scheduler's jobs, an hour apart: every open order due at each."""
    for _ in range(hours):
        clock.now += 3600
        await coordinator.tick_due()
        await coordinator.heartbeat()


async def reach(coordinator: CCVCoordinator, clock: Clock, path: str) -> None:
    if path == "catch-up":
        await coordinator.full_pass(via="catch-up")
    await run_daemon(coordinator, clock)


@pytest.mark.parametrize("path", ["daemon", "catch-up"])
async def test_every_order_failing_of_an_outage_fails_the_account_unprobed(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV, path: str
) -> None:
    # Four orders, fewer than the breaker's run: each 500, while CCV's probe answers (its JSON
    # 404). The daemon asked the probe at every due check and never failed the account.
    coordinator, clock = ccv
    for order_id in IDS:
        fake_ccv.replies[order_id] = HTTP_500
    if path == "catch-up":
        await coordinator.full_pass(via="catch-up")
    else:
        clock.now += 3600
        await coordinator.tick_due()
    assert await account_events(coordinator) == ["source.failed"]
    assert fake_ccv.requests_for(PROBE_ORDER_ID) == []
    # Failing, one order a backoff period (its one 500 asks the probe, which answers): it
    # stays failing for what its checks failed of.
    await run_daemon(coordinator, clock)
    assert await account_events(coordinator) == ["source.failed"]
    state = await coordinator.store.sources.state("ccv", "default")
    assert state.failing and state.last_error == "every check failed (http_500)"


@pytest.mark.parametrize("path", ["daemon", "catch-up"])
async def test_an_only_open_order_failing_of_an_outage_asks_the_probe_on_both_paths(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV, path: str
) -> None:
    # Whether the account was red depended on whether a catch-up had run. One check cannot
    # tell one order's 500 from CCV's: the probe says, on both paths.
    coordinator, clock = ccv
    await coordinator.store.orders.untrack("ccv", "default", IDS[1:])
    fake_ccv.replies[IDS[0]] = HTTP_500
    await reach(coordinator, clock, path)
    assert await account_events(coordinator) == []
    assert fake_ccv.requests_for(PROBE_ORDER_ID) != []


async def test_one_order_failing_of_an_outage_due_alone_does_not_flap_the_account(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    # One order of four answering 500 for ever (a broken order at CCV): checked alone at its
    # failure's backoff, its one 500 failed the account, the next check of the others
    # recovered it: source.failed / source.recovered pages, pass after pass.
    coordinator, clock = ccv
    fake_ccv.replies[IDS[0]] = HTTP_500
    for _ in range(240):
        clock.now += 60
        await coordinator.tick_due()
    assert await account_events(coordinator) == []
    assert len(fake_ccv.requests_for(IDS[0])) > len(fake_ccv.requests_for(IDS[1]))


@pytest.mark.parametrize("path", ["daemon", "catch-up"])
async def test_a_tie_of_outage_and_own_failures_fails_the_account_whatever_came_first(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV, path: str
) -> None:
    # 2 x 500 and 2 x 403: the commonest reason decided, so the order the answers arrived in.
    coordinator, clock = ccv
    for order_id, reply in zip(IDS, [FORBIDDEN, FORBIDDEN, HTTP_500, HTTP_500], strict=True):
        fake_ccv.replies[order_id] = reply
    if path == "catch-up":
        await coordinator.full_pass(via="catch-up")
    else:
        clock.now += 3600
        await coordinator.tick_due()
    assert await account_events(coordinator) == ["source.failed"]
    assert fake_ccv.requests_for(PROBE_ORDER_ID) == []
    # Then, failing, one order a backoff period, and the probe when it is a 403.
    await run_daemon(coordinator, clock)
    assert await account_events(coordinator) == ["source.failed"]


@pytest.mark.parametrize("path", ["daemon", "catch-up"])
async def test_orders_failing_mostly_of_their_own_ask_the_probe_and_fail_alone(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV, path: str
) -> None:
    coordinator, clock = ccv
    for order_id, reply in zip(IDS, [FORBIDDEN, FORBIDDEN, FORBIDDEN, HTTP_500], strict=True):
        fake_ccv.replies[order_id] = reply
    await reach(coordinator, clock, path)
    assert await account_events(coordinator) == []
    assert fake_ccv.requests_for(PROBE_ORDER_ID) != []


async def test_a_gateway_answering_a_null_status_everywhere_fails_the_account(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    # `{"orderStatus": null}` (or a number) is no status word: `protocol` for each check, and
    # no proof at the probe, which got the same answer.
    coordinator, clock = ccv
    fake_ccv.always = NULL_STATUS
    report = await coordinator.full_pass(via="catch-up")
    assert report.failed_sources == {"ccv/default": "every check failed (protocol)"}
    await run_daemon(coordinator, clock)
    assert await account_events(coordinator) == ["source.failed"]
    state = await coordinator.store.sources.state("ccv", "default")
    assert state.failing


async def test_a_daemon_facing_a_null_status_everywhere_fails_the_account(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    fake_ccv.always = NULL_STATUS
    await run_daemon(coordinator, clock)
    assert await account_events(coordinator) == ["source.failed"]
    state = await coordinator.store.sources.state("ccv", "default")
    assert state.failing and state.last_error is not None and "protocol" in state.last_error
