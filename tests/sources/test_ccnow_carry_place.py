"""The account's noise heard whatever place its batch's odd orders hold, and the carry bound
counted in the polls that asked the order (tests/sources/test_ccnow_carry.py tells the rules).

The noise was asked of the first order of a half holding just its lines: an order CCNow
answers no line for, first in that half (first in its batch), answered no line alone either,
the query's one post hearing it was spent, and the account failed. Orders carried were kept by
their client until they were carried again: those untracked or settled meanwhile, never asked
again, stayed for the process's life."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, Outcome
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_carry import CARRY_POLLS
from tests.conftest import ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, ccnow_config
from tests.sources.test_ccnow_carry import IDS, OddLines, carried_failed

NOISY = [f"300-00-{n:04d}" for n in range(1, 26)]


@pytest.mark.parametrize("place", [0, 5, 12])
async def test_the_noise_is_heard_whatever_place_a_silent_order_holds(
    caplog: pytest.LogCaptureFixture, place: int
) -> None:
    silent = NOISY[place]  # CCNow answers no line of its own for it, in any post
    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        seen[observation.key.order_id] = observation

    async with OddLines() as fake, aiohttp.ClientSession() as session:
        fake.orders = dict.fromkeys(NOISY, "processing")
        fake.noisy = True
        fake.line_for[silent] = ""  # a blank line: none of its own
        client = CCNowClient(ccnow_config(fake.url), session)
        with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
            await client.query(NOISY, emit)  # was: raised for the account at place 0
    noise = [r.fields for r in caplog.records if r.msg == "ccnow.answer_noise"]  # type: ignore[attr-defined]
    assert len(noise) == 1 and noise[0]["lines"] == 1
    assert set(seen) == set(NOISY)
    assert seen[silent].outcome is Outcome.FAILED
    healthy = {i: (o.outcome, o.status) for i, o in seen.items() if i != silent}
    assert healthy == dict.fromkeys(set(NOISY) - {silent}, (Outcome.OK, "processing"))


async def test_the_carry_counts_only_polls_that_asked_the_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Polls of other orders between the polls that carry an order count nothing of it.
    others = [f"700-00-{n:04d}" for n in range(1, 4)]
    async with OddLines() as fake, aiohttp.ClientSession() as session:
        fake.orders = dict.fromkeys([*IDS, *others], "processing")
        fake.odd = frozenset(IDS)
        client = CCNowClient(ccnow_config(fake.url), session)
        seen: dict[str, Observation] = {}

        async def emit(observation: Observation) -> None:
            seen[observation.key.order_id] = observation

        with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
            await client.query(IDS, emit)
            carried = set(IDS) - set(seen)
            assert carried and client.carried() == carried
            for _ in range(CARRY_POLLS + 1):
                await client.query(others, emit)  # not asked: no poll of theirs
            assert client.carried() == carried and carried_failed(caplog) == []
            for _ in range(CARRY_POLLS - 1):
                seen.clear()
                await client.query(IDS, emit)
    # The bound's poll is the third that asked them, however many came between.
    lines = carried_failed(caplog)
    assert len(lines) == 1 and lines[0]["count"] == len(carried)
    assert {i for i in carried if seen[i].reason == "protocol"} == carried


async def test_a_carried_order_untracked_is_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Never asked again, it was kept for the process's life (a leak over months).
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with OddLines() as fake, ccnow_coordinator(tmp_path, fake, 3.0) as (ccnow, _):
        fake.orders = dict.fromkeys(IDS, "processing")
        fake.odd = frozenset(IDS)
        await ccnow.store.orders.track("ccnow", "default", [(i, None) for i in IDS], 0)
        client = ccnow.client
        assert isinstance(client, CCNowClient)
        await ccnow.check(IDS, via="poll")
        carried = sorted(client.carried())
        assert len(carried) >= 2
        gone, kept = carried[:1], carried[1:]
        await ccnow.store.orders.untrack("ccnow", "default", gone)
        # A check of other orders: the carried ones still followed are kept, counts and all.
        others = sorted(set(IDS) - set(carried))[:1]
        await ccnow.check(others, via="notification")
        assert client.carried() == set(kept)
        await ccnow.check(kept, via="poll")
        assert not set(gone) & client.carried()
