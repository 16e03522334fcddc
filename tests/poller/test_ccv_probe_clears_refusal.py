"""A CCV account whose checks failed of the key refused (a 401) recovers at the probe that CCV
answers with its own JSON 404: the probe asks with the same key, so its answer proves the key is
taken again. Such an account stayed failing after CCV answered again, its `last_success` moving
on at each heartbeat probe while `status` said `failing` (/healthz 503), until an order's check
answered, up to `max_interval` later. Checks failing of an outage (a 5xx of each) are not ended
by the probe, which may answer through it: then the probe is no success either."""

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


async def fail_then_probe(tmp_path: Path, store: Store, fake_ccv: FakeCCV, failure: Reply) -> float:
    """Fail both orders' check with `failure`, probe past the backoff; return the probe's time."""
    fake_ccv.orders = {"N-1": "New", "N-2": "New"}
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    now = [1000.0]
    async with aiohttp.ClientSession() as session:
        ccv = account(config_for(tmp_path, fake_ccv.base_url), store, session, lambda: now[0])
        await ccv.check(["N-1", "N-2"], via="notification")
        fake_ccv.script = [failure, failure]
        now[0] += 1.0
        await ccv.check(["N-1", "N-2"], via="notification")
        failed = await store.sources.state("ccv", "default")
        assert "checks" in failed.failing_parts
        now[0] += 3600.0  # past the backoff: the heartbeat probes
        await ccv.heartbeat()
    assert [s.order_id for s in fake_ccv.requests[-1:]] == ["reconciler-probe"]
    return now[0]


async def test_the_probe_s_json_404_ends_a_failure_of_the_key_refused(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    probed_at = await fail_then_probe(tmp_path, store, fake_ccv, Reply(401, "Unauthorized"))
    state = await store.sources.state("ccv", "default")
    assert not state.failing
    assert state.last_success == probed_at
    types = [e.type for e in await store.events.history()]
    assert types[-2:] == ["source.failed", "source.recovered"]


async def test_a_probe_answering_through_an_outage_of_the_checks_is_no_success(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    await fail_then_probe(tmp_path, store, fake_ccv, Reply(503, "down"))
    state = await store.sources.state("ccv", "default")
    assert state.failing
    assert state.last_success == 1000.0  # the orders' last answers, not the probe's
