"""Orders a CCNow query's posts did not reach (a batch asked level by level past its posts,
its answers of several orders each holding a line no order's can be read from): carried to the
next poll, they were carried for ever when every poll asked them alike (the same batches, the
same parts past the posts), never checked, nothing an operator saw. An order carried at
CARRY_POLLS polls in a row now fails its check at the last (`protocol`, one warning); a
catch-up asks the orders it carried again within itself, so that it decides every order it was
due to ask (its `catch-up.done` counted fewer, silently)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_batches import FOUND_ORDERS, Split
from reconciler.sources.ccnow_carry import CARRY_POLLS
from tests.conftest import ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, ccnow_config
from tests.sources.test_ccnow_batch_lines import LinesFake

IDS = [f"100-00-{n:04d}" for n in range(1, 26)]  # one batch of 25


@pytest.fixture
async def fake() -> AsyncIterator[LinesFake]:
    async with LinesFake() as made:
        made.orders = dict.fromkeys(IDS, "processing")
        # A line in every answer of several orders: the parts of one order alone read, and
        # the batch's posts end before its last level (its parts of two orders carried).
        made.stray_in_several = "total 4"
        yield made


def carried_failed(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.msg == "ccnow.carried_failed"
    ]


async def test_an_order_carried_at_every_poll_fails_at_the_bound(
    fake: LinesFake, caplog: pytest.LogCaptureFixture
) -> None:
    polls: list[dict[str, Observation]] = []
    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake.url), session)
        with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
            for _ in range(CARRY_POLLS + 1):
                seen: dict[str, Observation] = {}

                async def emit(
                    observation: Observation, seen: dict[str, Observation] = seen
                ) -> None:
                    seen[observation.key.order_id] = observation

                first = len(fake.requests)
                await client.query(IDS, emit)
                # Within the bound of a batch asked in parts, at every poll.
                assert len(fake.requests) - first <= 1 + FOUND_ORDERS * Split.posts(len(IDS))
                polls.append(seen)
    read = {i for i, o in polls[0].items() if o.outcome is Outcome.OK}
    carried = set(IDS) - set(polls[0])
    assert read and carried and not set(polls[0]) - read
    # The same orders carried at each poll before the bound, no check of theirs made.
    for seen in polls[1 : CARRY_POLLS - 1]:
        assert set(seen) == read
    # At the bound's poll each fails its check, its own (was: carried again, for ever).
    last = polls[CARRY_POLLS - 1]
    assert set(last) == set(IDS)
    assert {i: (last[i].outcome, last[i].reason) for i in carried} == dict.fromkeys(
        carried, (Outcome.FAILED, "protocol")
    )
    assert all(last[i].outcome is Outcome.OK for i in read)
    # One warning, that poll's, naming them.
    lines = carried_failed(caplog)
    assert len(lines) == 1
    assert lines[0]["account"] == "default"
    assert lines[0]["count"] == len(carried)
    assert lines[0]["polls"] == CARRY_POLLS
    named = lines[0]["order_ids"]
    assert isinstance(named, list) and set(named) <= carried
    # Failed, they start over: carried again at the next poll, not failed at once.
    assert set(polls[CARRY_POLLS]) == read


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake: LinesFake, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CCNowCoordinator]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake, 3.0) as (coordinator, _):
        await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in IDS], 0)
        yield coordinator


async def test_a_catch_up_asks_the_orders_it_carried_again(
    ccnow: CCNowCoordinator, fake: LinesFake, caplog: pytest.LogCaptureFixture
) -> None:
    first = len(fake.requests)
    with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
        report = await ccnow.full_pass(via="catch-up")
    # Every order it was due to ask is a check of it (was: 7 of 25, the 18 carried uncounted,
    # and a one-shot catch-up carries them to no poll at all).
    assert (report.checked, report.failed) == (len(IDS), 0)
    keys = [OrderKey("ccnow", "default", i) for i in IDS]
    states = await ccnow.store.orders.load(keys)
    assert {k.order_id: s.status for k, s in states.items()} == dict.fromkeys(IDS, "processing")
    assert carried_failed(caplog) == []
    # The list, then at most CARRY_POLLS rounds, each within the bound of a batch in parts.
    posts = len(fake.requests) - first
    assert posts <= 1 + CARRY_POLLS * (1 + FOUND_ORDERS * Split.posts(len(IDS)))


async def test_a_catch_up_decides_every_order_it_asks(
    fake: LinesFake, caplog: pytest.LogCaptureFixture
) -> None:
    # Two batches of 25: their orders carried are asked again in the catch-up's rounds, in
    # batches of their own, and those still carried at its last round fail their checks there
    # (each batch counts in the breaker's run, a line in every answer of several orders: its
    # run is 8 batches with a concurrency of 4).
    ids = [f"200-00-{n:04d}" for n in range(1, 51)]
    fake.orders.update(dict.fromkeys(ids, "processing"))
    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        assert observation.key.order_id not in seen  # each order decided once
        seen[observation.key.order_id] = observation

    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake.url, concurrency=4), session)
        with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
            await client.query(ids, emit, catch_up=True)
    assert set(seen) == set(ids)
    failed = {i for i, o in seen.items() if o.outcome is Outcome.FAILED}
    assert failed and all(seen[i].reason == "protocol" for i in failed)
    assert sum(line["count"] for line in carried_failed(caplog)) == len(failed)  # type: ignore[misc]
    # The posts: at most CARRY_POLLS rounds, each batch of one within its bound.
    bound = 1 + FOUND_ORDERS * Split.posts(25)
    assert len(fake.requests) <= CARRY_POLLS * len(ids) // 25 * bound
