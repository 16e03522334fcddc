"""A provider's 429 (or 503) whose Retry-After asks longer than a request's own retries wait:
the account rests until then (an hour at most), no scheduled read of it is sent before, one
`source.resting` line says so, and polling goes on afterwards; a `catch-up` meanwhile asks
nothing and exits 75 (README "Isolation", "Retry-After of a read")."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.exits import EX_TEMPFAIL
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.schedule import MAX_REST_S
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock, call_cli, cli_env, write_config
from tests.fake_providers import (
    CCNOW_PASSWORD,
    CCV_KEY,
    FakeCCNow,
    FakeCCV,
    Reply,
)

CCV_IDS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 4)]
CCNOW_ID = "912-00-0001"
POLL_S = 60.0


def too_many(retry_after: str) -> Reply:
    return Reply(429, "Too Many Requests", headers={"Retry-After": retry_after})


def config_path(
    tmp_path: Path, *, ccv: FakeCCV | None = None, ccnow: FakeCCNow | None = None
) -> Path:
    # No retry within a request: without a rest, each scheduled read is one request.
    path = write_config(
        tmp_path,
        ccv=ccv,
        ccnow=ccnow,
        ccv_extra=f'poll_interval = "{POLL_S:.0f}s"\nmin_interval = "{POLL_S:.0f}s"',
        ccnow_extra=f'poll_interval = "{POLL_S:.0f}s"\nmin_interval = "{POLL_S:.0f}s"',
        retry_backoff="0s",
    )
    path.write_text(path.read_text().replace("retries = 1", "retries = 0"))
    return path


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)


@contextlib.asynccontextmanager
async def accounts(path: Path, clock: Clock | None = None) -> AsyncIterator[Coordinators]:
    """The accounts of one process over the store at `path`'s config, on `clock`."""
    config = load_config(path)
    store = await Store.open(config.store_path)
    try:
        async with aiohttp.ClientSession() as session:
            writer = (
                Reconciler(config, store)
                if clock is None
                else Reconciler(config, store, clock=clock)
            )
            yield Coordinators.build(config, writer, session, Gates())
    finally:
        await store.close()


def resting_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "source.resting"]


async def test_ccnow_list_429_rests_the_account_until_its_retry_after(
    tmp_path: Path, fake_ccnow: FakeCCNow, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe's repro: every list request 429 with Retry-After 300, polled every 60 s (its
    backoff too): the list was asked again at each backoff's end; now once in 300 s, the
    queries of due orders not either, and it is asked again after the rest."""
    caplog.set_level(logging.INFO, logger="reconciler")
    fake_ccnow.orders[CCNOW_ID] = "processing"
    fake_ccnow.always = too_many("300")
    clock = Clock()
    t0 = clock.now
    async with accounts(config_path(tmp_path, ccnow=fake_ccnow), clock) as built:
        ccnow = built.ccnow["default"]
        await ccnow.store.orders.track("ccnow", "default", [(CCNOW_ID, None)], t0)
        await ccnow.tick_pending_list()
        assert len(fake_ccnow.requests) == 1
        for step in (61.0, 130.0, 250.0, 299.0):
            clock.now = t0 + step
            await ccnow.tick_pending_list()
            await ccnow.tick_due()
        assert len(fake_ccnow.requests) == 1  # neither the list nor a query during the rest
        state = await ccnow.store.sources.state("ccnow", "default")
        assert state.failing and state.rest_until == t0 + 300
        assert resting_lines(caplog) == [
            {
                "source": "ccnow",
                "account": "default",
                "until": "2027-01-15T08:05:00.000Z",
                "seconds": 300.0,
            }
        ]
        fake_ccnow.always = None
        clock.now = t0 + 301
        await ccnow.tick_pending_list()
        assert len(fake_ccnow.requests) >= 2  # asked again once the rest is over
        assert not (await ccnow.store.sources.state("ccnow", "default")).failing
    assert len(resting_lines(caplog)) == 1


@pytest.mark.parametrize("kind", ["seconds", "http-date"])
async def test_the_rest_is_what_retry_after_asks_within_an_hour(
    tmp_path: Path, fake_ccnow: FakeCCNow, kind: str
) -> None:
    """A Retry-After as an HTTP date asks as long as its seconds; one beyond an hour (a day)
    rests the account an hour, the README's bound."""
    asked = datetime.now(timezone.utc) + timedelta(seconds=600)
    fake_ccnow.script = [
        too_many("600" if kind == "seconds" else format_datetime(asked, usegmt=True)),
        too_many("86400"),
    ]
    clock = Clock()
    async with accounts(config_path(tmp_path, ccnow=fake_ccnow), clock) as built:
        ccnow = built.ccnow["default"]
        await ccnow.tick_pending_list()
        until = (await ccnow.store.sources.state("ccnow", "default")).rest_until
        assert until is not None and 590 <= until - clock.now <= 600
        clock.now = until + 1
        await ccnow.tick_pending_list()
        state = await ccnow.store.sources.state("ccnow", "default")
        assert len(fake_ccnow.requests) == 2
        assert state.rest_until == clock.now + MAX_REST_S == clock.now + 3600


async def test_ccv_checks_and_probe_rest_after_a_429(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    """A CCV check answered 429 with Retry-After 300: the pass asks no other order, and no
    due check nor heartbeat probe is sent before the 300 s are over; then checks resume."""
    for order_id in CCV_IDS:
        fake_ccv.orders[order_id] = "Processing"
    fake_ccv.always = too_many("300")
    clock = Clock()
    t0 = clock.now
    path = config_path(tmp_path, ccv=fake_ccv)
    path.write_text(path.read_text().replace("concurrency = 8", "concurrency = 1"))
    async with accounts(path, clock) as built:
        ccv = built.ccv["default"]
        await ccv.store.orders.track("ccv", "default", [(i, None) for i in CCV_IDS], t0)
        await ccv.tick_due()
        assert len(fake_ccv.requests) == 1
        state = await ccv.store.sources.state("ccv", "default")
        assert state.failing and state.rest_until == t0 + 300
        for step in (61.0, 125.0, 250.0, 299.0):
            clock.now = t0 + step
            await ccv.tick_due()
            await ccv.heartbeat()
        assert len(fake_ccv.requests) == 1
        fake_ccv.always = None
        clock.now = t0 + 301
        await ccv.tick_due()
        assert len(fake_ccv.requests) >= 2
        assert not (await ccv.store.sources.state("ccv", "default")).failing


async def test_a_catch_up_within_the_rest_asks_nothing_and_exits_75(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    """A daemon's list answered 429 with Retry-After 600, then a `catch-up` (another process,
    the store the same): it sends nothing and exits 75, as for a source that could not be
    read, at once rather than after the rest."""
    fake_ccnow.orders[CCNOW_ID] = "processing"
    fake_ccnow.always = too_many("600")
    path = config_path(tmp_path, ccnow=fake_ccnow)
    async with accounts(path) as built:
        ccnow = built.ccnow["default"]
        await ccnow.store.orders.track("ccnow", "default", [(CCNOW_ID, None)], clock_now())
        await ccnow.tick_pending_list()
    assert len(fake_ccnow.requests) == 1
    result = await call_cli("--config", path, "catch-up", env=cli_env())
    assert result.code == EX_TEMPFAIL, result.stderr
    assert len(fake_ccnow.requests) == 1
    assert "resting" in result.stderr


def clock_now() -> float:
    return datetime.now(timezone.utc).timestamp()


async def test_checks_the_rest_holds_back_do_not_lengthen_the_backoff(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    """A 429 asking 600 s, then a notification every 50 s within the rest: none is sent, and
    none counts as a failed probe (the rest failed the account once): each did, its backoff
    doubling past the rest's end. The account is failing all along."""
    for order_id in CCV_IDS:
        fake_ccv.orders[order_id] = "Processing"
    fake_ccv.always = too_many("600")
    clock = Clock()
    t0 = clock.now
    async with accounts(config_path(tmp_path, ccv=fake_ccv), clock) as built:
        ccv = built.ccv["default"]
        await ccv.store.orders.track("ccv", "default", [(i, None) for i in CCV_IDS], t0)
        await ccv.tick_due()
        sent = len(fake_ccv.requests)
        for step in range(50, 600, 50):
            clock.now = t0 + step
            report = await ccv.check([CCV_IDS[2]], via="notification")
            assert report.failed_sources  # the notification's check was not made
        assert len(fake_ccv.requests) == sent
        state = await ccv.store.sources.state("ccv", "default")
        assert state.failing
        assert (state.failure_streak, state.backoff_from) == (1, t0)
        fake_ccv.always = None
        clock.now = t0 + 601
        await ccv.tick_due()
        assert len(fake_ccv.requests) > sent  # read as soon as the rest is over
        assert not (await ccv.store.sources.state("ccv", "default")).failing


async def test_a_rest_recorded_while_the_clock_was_ahead_does_not_void_new_ones(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    """A rest recorded while the clock was two hours ahead, then the clock put right: a new
    429 asking 300 s rests the account for them (it was ignored: the old end was later)."""
    fake_ccnow.always = too_many("300")
    clock = Clock()
    t0 = clock.now
    async with accounts(config_path(tmp_path, ccnow=fake_ccnow), clock) as built:
        ccnow = built.ccnow["default"]
        clock.now = t0 + 7200
        await ccnow.tick_pending_list()
        state = await ccnow.store.sources.state("ccnow", "default")
        assert state.rest_until == t0 + 7500
        # The account's backoff, dated by the clock ahead too, is not what this is about.
        healthy = replace(state, failing_parts=frozenset(), failure_streak=0, backoff_from=None)
        await ccnow.store.sources.save(healthy)
        clock.now = t0
        await ccnow.tick_pending_list()
        assert len(fake_ccnow.requests) == 2
        state = await ccnow.store.sources.state("ccnow", "default")
        assert state.rest_until == t0 + 300
        clock.now = t0 + 200
        await ccnow.tick_pending_list()
        assert len(fake_ccnow.requests) == 2  # resting
    # Another process (a restart) takes the rest from the store alike.
    async with accounts(config_path(tmp_path, ccnow=fake_ccnow), clock) as built:
        await built.ccnow["default"].tick_pending_list()
        assert len(fake_ccnow.requests) == 2


async def test_an_ended_rest_is_cleared_at_the_first_success(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    """The list answers after its rest: the rest's record is cleared, so that the clock put
    back within it afterwards does not rest the account again."""
    fake_ccnow.always = too_many("300")
    clock = Clock()
    t0 = clock.now
    async with accounts(config_path(tmp_path, ccnow=fake_ccnow), clock) as built:
        ccnow = built.ccnow["default"]
        await ccnow.tick_pending_list()
        fake_ccnow.always = None
        clock.now = t0 + 301
        await ccnow.tick_pending_list()
        assert len(fake_ccnow.requests) == 2
        assert (await ccnow.store.sources.state("ccnow", "default")).rest_until is None
    clock.now = t0 + 100  # put back; a new process reads the store's record
    async with accounts(config_path(tmp_path, ccnow=fake_ccnow), clock) as built:
        await built.ccnow["default"].tick_pending_list()
        assert len(fake_ccnow.requests) == 3
