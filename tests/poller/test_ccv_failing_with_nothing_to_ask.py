"""A CCV account failing on its checks, whose open orders are then all untracked (what an
operator does when CCV answers its own 404 for every order of a test environment that was
reset), has nothing left to ask: only the probe can say whether the account answers. It stayed
failing for good: every catch-up asked nothing and exited 0 with no failing source while
`status` said failing, and the daemon's heartbeat probe answered without ending the failure
(/healthz 503, `reconciler_source_ok` 0, no `source.recovered` ever)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.store import Store
from tests.fake_providers import FakeCCV, Reply
from tests.poller.test_notification_health import account, config_for


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


async def fail_then_untrack(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV, now: list[float], failure: Reply
) -> None:
    fake_ccv.orders = {"N-1": "New", "N-2": "New"}
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        await ccv.check(["N-1", "N-2"], via="notification")
        fake_ccv.script = [failure, failure]
        now[0] += 1.0
        await ccv.check(["N-1", "N-2"], via="notification")
    assert "checks" in (await store.sources.state("ccv", "default")).failing_parts
    assert await store.orders.untrack("ccv", "default", ["N-1", "N-2"]) == 2


async def test_a_catch_up_with_no_order_left_asks_the_probe_and_recovers(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    now = [1000.0]
    await fail_then_untrack(tmp_path, store, fake_ccv, now, Reply(503, "down"))
    now[0] += 3600.0  # past the backoff
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        report = await ccv.full_pass(via="catch-up")
    assert [s.order_id for s in fake_ccv.requests[-1:]] == ["reconciler-probe"]
    assert report.failed_sources == {}
    assert not (await store.sources.state("ccv", "default")).failing
    types = [e.type for e in await store.events.history()]
    assert types[-2:] == ["source.failed", "source.recovered"]


async def test_a_catch_up_whose_probe_fails_too_names_the_failing_account(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    # Its exit and `failing_sources` agree with `status`.
    now = [1000.0]
    await fail_then_untrack(tmp_path, store, fake_ccv, now, Reply(503, "down"))
    fake_ccv.script = [Reply(503, "down")]
    now[0] += 3600.0  # past the backoff
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        report = await ccv.full_pass(via="catch-up")
    assert list(report.failed_sources) == ["ccv/default"]
    assert (await store.sources.state("ccv", "default")).failing


async def test_the_daemon_s_heartbeat_with_no_order_left_ends_the_failure(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    now = [1000.0]
    await fail_then_untrack(tmp_path, store, fake_ccv, now, Reply(503, "down"))
    now[0] += 3600.0  # past the backoff: the heartbeat probes
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        await ccv.heartbeat()
    assert [s.order_id for s in fake_ccv.requests[-1:]] == ["reconciler-probe"]
    state = await store.sources.state("ccv", "default")
    assert not state.failing
    assert state.last_success == now[0]


async def test_notified_orders_in_an_end_state_keep_the_heartbeat_from_ending_the_failure(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    # The due checks ask them (end states too): their 500s fail the account, and a heartbeat
    # that took the account for one with nothing to ask recovered it between two such checks.
    now = [1000.0]
    fake_ccv.orders = {"N-1": "Completed", "N-2": "Completed"}
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        await ccv.check(["N-1", "N-2"], via="poll")
        fake_ccv.replies = {"N-1": Reply(500, "boom"), "N-2": Reply(500, "boom")}
        for order_id in ("N-1", "N-2"):
            assert await ccv.note_notified(order_id)
        for _ in range(4):
            now[0] += 400.0
            await ccv.heartbeat()
            now[0] += 1.0
            await ccv.tick_due()
    types = [e.type for e in await store.events.history() if e.type.startswith("source.")]
    assert types == ["source.failed"]


async def test_a_probe_refused_the_key_keeps_the_failure_of_the_key(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    # The key refused at the checks: a probe CCV answers ends that failure (README "probe"),
    # so a probe refused at a catch-up must not turn it into a failure only a status ends.
    now = [1000.0]
    await fail_then_untrack(tmp_path, store, fake_ccv, now, Reply(401, "Unauthorized"))
    assert (await store.sources.state("ccv", "default")).failed_on_key
    fake_ccv.script = [Reply(401, "Unauthorized")]
    now[0] += 3600.0
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        await ccv.full_pass(via="catch-up")
        assert [s.order_id for s in fake_ccv.requests[-1:]] == ["reconciler-probe"]
        assert (await store.sources.state("ccv", "default")).failed_on_key
        await store.orders.track("ccv", "default", [("N-3", None)], now[0])
        fake_ccv.orders["N-3"] = "New"
        now[0] += 7200.0
        await ccv.heartbeat()
    assert not (await store.sources.state("ccv", "default")).failing


async def test_a_catch_up_within_the_backoff_asks_nothing_and_names_the_failing_account(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    now = [1000.0]
    await fail_then_untrack(tmp_path, store, fake_ccv, now, Reply(503, "down"))
    asked = len(fake_ccv.requests)
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        report = await ccv.full_pass(via="catch-up")
    assert len(fake_ccv.requests) == asked  # the backoff holds the probe back
    assert list(report.failed_sources) == ["ccv/default"]  # its exit agrees with `status`


async def test_a_failure_of_the_probe_alone_is_asked_again_at_a_catch_up(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    # No order followed: the heartbeat's probe failed (CCV down), then only catch-ups run.
    now = [1000.0]
    fake_ccv.script = [Reply(503, "down")]
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        await ccv.heartbeat()
        assert (await store.sources.state("ccv", "default")).failing_parts == {"probe"}
        now[0] += 3600.0
        report = await ccv.full_pass(via="catch-up")
    assert report.failed_sources == {}
    assert not (await store.sources.state("ccv", "default")).failing
