"""Passes of one account run together (a due tick, notifications' checks, the probe, a catch-up),
and each settles the account's health when it ends, not when its requests were sent: a pass whose
evidence is older than the evidence of the account's last flip does not flip it back. Else one
outage gave several `source.failed` / `source.recovered` pairs: a pass asked before the outage
(answered) ending after a newer pass failed the account recovered it, and a pass whose requests
hung from inside the outage, ending after a newer pass recovered it, failed it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.passes.report import PassReport
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.account_ticks import account_events
from tests.conftest import Clock
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

IDS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 5)]
HTTP_500 = Reply(500, "oops")
ONE_OUTAGE = ["source.failed", "source.recovered"]


@pytest.fixture
async def ccv(tmp_path: Path, fake_ccv: FakeCCV) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """A CCV account of four open orders, never asked, over the real client and the fake."""
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{fake_ccv.base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
        'concurrency = 8\ntimeout = "120s"\n'  # a held answer is no timeout
    )
    config = load_config(path)
    store = await Store.open(config.store_path, sinks=("log",))
    clock = Clock()
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in IDS], clock.now)
            yield coordinator, clock
    finally:
        await store.close()


async def held_pass(
    fake_ccv: FakeCCV, asking: Awaitable[PassReport], requests: int
) -> asyncio.Future[PassReport]:
    """Start a pass of that many requests, their answers chosen now (as CCV stands) and held
    until `fake_ccv.release` is set, but the first of several (the client's slow start sends it
    alone and waits for its answer); return it once CCV has every request of it."""
    before = len(fake_ccv.requests)
    first = before + 1 if requests > 1 else before
    fake_ccv.answer_late = lambda seen: len(fake_ccv.requests) > first
    held = asyncio.ensure_future(asking)
    await fake_ccv.wait_until(lambda: len(fake_ccv.requests) == before + requests)
    fake_ccv.answer_late = None  # the passes after it are answered at once
    return held


async def _answered_then_outdone(
    coordinator: CCVCoordinator, clock: Clock, fake_ccv: FakeCCV
) -> asyncio.Future[PassReport]:
    """Start a pass that CCV answers, its answer held; then, the outage begun, fail the account
    with a newer pass; return the older one, to be released."""
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    older = await held_pass(fake_ccv, coordinator.check(IDS[:1], via="notification"), 1)
    clock.now += 1
    fake_ccv.always = HTTP_500  # the outage begins; a newer pass fails the account
    await coordinator.check(IDS[1:3], via="notification")
    assert await account_events(coordinator) == ["source.failed"]
    return older


async def test_a_pass_answered_before_the_outage_does_not_recover_the_account_after_it_failed(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    older = await _answered_then_outdone(coordinator, clock, fake_ccv)

    clock.now += 1
    fake_ccv.release.set()  # the older pass ends: its answer predates the failure
    await older
    assert await account_events(coordinator) == ["source.failed"]
    assert (await coordinator.store.sources.state("ccv", "default")).failing

    clock.now += 1
    fake_ccv.always = None  # the outage ends: a pass begun now recovers the account
    await coordinator.check(IDS[1:3], via="notification")
    assert await account_events(coordinator) == ONE_OUTAGE


async def test_a_pass_hung_in_the_outage_does_not_fail_the_account_after_it_recovered(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    fake_ccv.always = HTTP_500  # the outage fails the account
    await coordinator.check(IDS[:2], via="notification")
    assert await account_events(coordinator) == ["source.failed"]

    clock.now += 1
    # A catch-up (no witness to ask: every open order is its) hangs from inside the outage.
    older = await held_pass(fake_ccv, coordinator.full_pass(via="catch-up"), len(IDS))

    clock.now += 1
    fake_ccv.always = None  # the outage ends: a newer pass recovers the account
    await coordinator.check(IDS[:1], via="notification")
    assert await account_events(coordinator) == ONE_OUTAGE

    clock.now += 1
    fake_ccv.release.set()  # the older pass ends with the outage's answers
    await older
    assert await account_events(coordinator) == ONE_OUTAGE
    assert not (await coordinator.store.sources.state("ccv", "default")).failing


async def test_a_rest_met_by_a_pass_begun_before_the_recovery_fails_the_account(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    fake_ccv.always = HTTP_500  # the outage fails the account
    await coordinator.check(IDS[:2], via="notification")

    clock.now += 1
    fake_ccv.always = Reply(429, "slow down", headers={"Retry-After": "600"})
    older = await held_pass(fake_ccv, coordinator.check(IDS[2:3], via="notification"), 1)

    clock.now += 1
    fake_ccv.always = None  # a newer pass recovers the account
    await coordinator.check(IDS[:1], via="notification")
    assert await account_events(coordinator) == ONE_OUTAGE

    clock.now += 1
    fake_ccv.release.set()  # the older pass ends with CCV's 429: a rest is news however old
    await older
    assert await account_events(coordinator) == [*ONE_OUTAGE, "source.failed"]
    state = await coordinator.store.sources.state("ccv", "default")
    assert state.failing and state.rest_until is not None


async def test_a_pass_begun_after_a_long_pass_began_but_before_it_failed_the_account_is_old(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    fake_ccv.always, fake_ccv.hold = HTTP_500, asyncio.Event()
    # A catch-up begins; its requests wait (the outage will answer them).
    catch_up = asyncio.ensure_future(coordinator.full_pass(via="catch-up"))
    await fake_ccv.wait_until(lambda: len(fake_ccv.requests) == 1)

    clock.now += 1
    # A notification's check begins after it, and CCV answers it before the outage.
    fake_ccv.always, fake_ccv.answer_late = None, lambda seen: len(fake_ccv.requests) == 2
    notified = asyncio.ensure_future(coordinator.check(IDS[:1], via="notification"))
    await fake_ccv.wait_until(lambda: len(fake_ccv.requests) == 2)

    clock.now += 1
    fake_ccv.always, fake_ccv.answer_late = HTTP_500, None
    fake_ccv.hold.set()  # the outage answers the catch-up, which fails the account at its end
    await catch_up
    assert await account_events(coordinator) == ["source.failed"]

    fake_ccv.release.set()  # the notification's answer, older than that failure, comes last
    await notified
    assert await account_events(coordinator) == ["source.failed"]

    clock.now += 1
    fake_ccv.always = None  # the outage ends: a pass begun now recovers the account
    await coordinator.check(IDS[1:3], via="notification")
    assert await account_events(coordinator) == ONE_OUTAGE


async def test_an_old_pass_settling_first_after_another_met_a_rest_recovers_nothing(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    older = await _answered_then_outdone(coordinator, clock, fake_ccv)

    # Another pass's request is answered 429 (the client notes the account's rest), and the
    # old pass settles before that one: the rest is the account's, not the old pass's news.
    assert coordinator.rest.asked(600, 429, cap_s=1.0) is not None
    fake_ccv.release.set()
    await older
    assert await account_events(coordinator) == ["source.failed"]
    state = await coordinator.store.sources.state("ccv", "default")
    assert state.failing and state.rest_until is not None


async def test_a_rest_another_pass_met_fails_the_account_through_the_pass_that_records_it(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, _ = ccv
    fake_ccv.orders = dict.fromkeys(IDS, "New")
    older = await held_pass(fake_ccv, coordinator.check(IDS[:1], via="notification"), 1)
    # Another pass's request is answered 429; this one, all answered, settles first and
    # records the rest: the account rests, so it fails, whichever pass says so.
    assert coordinator.rest.asked(600, 429, cap_s=1.0) is not None
    fake_ccv.release.set()
    await older
    assert await account_events(coordinator) == ["source.failed"]
    state = await coordinator.store.sources.state("ccv", "default")
    assert state.failing and state.rest_until is not None
    assert state.last_error is not None and state.last_error.startswith("http 429")
