"""Orders a CCNow query's posts did not reach (a batch asked level by level past its posts,
its answers of several orders each holding a line no order's can be read from): carried to the
next poll, they were carried for ever when every poll asked them alike (the same batches, the
same parts past the posts), never checked, nothing an operator saw. An order carried at
CARRY_POLLS polls in a row now fails its check at the last (`protocol`, one warning); a
catch-up asks the orders it carried again within itself, so that it decides every order it was
due to ask (its `catch-up.done` counted fewer, silently)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_batches import FOUND_ORDERS, Split
from reconciler.sources.ccnow_carry import CARRY_POLLS
from tests.conftest import ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, Reply, ccnow_config
from tests.sources.test_ccnow_batch_lines import LinesFake

IDS = [f"100-00-{n:04d}" for n in range(1, 26)]  # one batch of 25


class OddLines(LinesFake):
    """A CCNow answering, after the line of each of the `odd` orders, a line `total 4`; with
    `noisy`, a line `total 25` first in every query's answer, whatever it asked."""

    odd: frozenset[str] = frozenset()
    noisy = False
    noise_lines = 1

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        lines = super()._lines(ids, form)
        if not ids:
            return lines
        odd = [x for line in lines for x in [line, "total 4"][: 1 + (line[:11] in self.odd)]]
        return ["total 25"] * self.noise_lines + odd if self.noisy else odd


@pytest.fixture
async def fake() -> AsyncIterator[OddLines]:
    async with OddLines() as made:
        made.orders = dict.fromkeys(IDS, "processing")
        # Every order odd: the parts of one order alone fail, each its own, and the batch's
        # posts end before its last level (its parts of two orders carried).
        made.odd = frozenset(IDS)
        yield made


def carried_failed(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.msg == "ccnow.carried_failed"
    ]


async def test_an_order_carried_at_every_poll_fails_at_the_bound(
    fake: OddLines, caplog: pytest.LogCaptureFixture
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
    found = set(polls[0])  # asked alone, each failing its own check
    carried = set(IDS) - found
    assert found and carried
    # The same orders carried at each poll before the bound, no check of theirs made.
    for seen in polls[1 : CARRY_POLLS - 1]:
        assert set(seen) == found
    # At the bound's poll each fails its check, its own (was: carried again, for ever).
    last = polls[CARRY_POLLS - 1]
    assert set(last) == set(IDS)
    assert {i: (o.outcome, o.reason) for i, o in last.items()} == dict.fromkeys(
        IDS, (Outcome.FAILED, "protocol")
    )
    # One warning, that poll's, naming them.
    lines = carried_failed(caplog)
    assert len(lines) == 1
    assert lines[0]["account"] == "default"
    assert lines[0]["count"] == len(carried)
    assert lines[0]["polls"] == CARRY_POLLS
    named = lines[0]["order_ids"]
    assert isinstance(named, list) and set(named) <= carried
    # Failed, they start over: carried again at the next poll, not failed at once.
    assert set(polls[CARRY_POLLS]) == found


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake: OddLines, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CCNowCoordinator]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake, 3.0) as (coordinator, _):
        await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in IDS], 0)
        yield coordinator


async def test_a_catch_up_asks_the_orders_it_carried_again(
    ccnow: CCNowCoordinator, fake: OddLines, caplog: pytest.LogCaptureFixture
) -> None:
    fake.odd = frozenset(IDS[:20])  # 20 odd orders first, 5 that read
    first = len(fake.requests)
    with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
        report = await ccnow.full_pass(via="catch-up")
    # Every order it was due to ask is a check of it (was: 13 of 25, the 12 carried
    # uncounted, and a one-shot catch-up carries them to no poll at all).
    assert (report.checked, report.failed) == (len(IDS), len(fake.odd))
    keys = [OrderKey("ccnow", "default", i) for i in IDS]
    states = {k.order_id: s for k, s in (await ccnow.store.orders.load(keys)).items()}
    assert {i for i, s in states.items() if s.failure_streak} == fake.odd
    assert {i: states[i].status for i in IDS[20:]} == dict.fromkeys(IDS[20:], "processing")
    assert carried_failed(caplog) == []
    # The list, then at most CARRY_POLLS rounds, each within the bound of a batch in parts.
    posts = len(fake.requests) - first
    assert posts <= 1 + CARRY_POLLS * (1 + FOUND_ORDERS * Split.posts(len(IDS)))


async def test_a_catch_up_decides_every_order_it_asks(
    fake: OddLines, caplog: pytest.LogCaptureFixture
) -> None:
    # Two batches of 25 odd orders: those carried are asked again in the catch-up's rounds,
    # in batches of their own, and those still carried at its last round fail there (each
    # batch counts in the breaker's run, reading no part of several: its run is 8 batches
    # with a concurrency of 4).
    ids = [f"200-00-{n:04d}" for n in range(1, 51)]
    fake.orders.update(dict.fromkeys(ids, "processing"))
    fake.odd = frozenset(ids)
    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        assert observation.key.order_id not in seen  # each order decided once
        seen[observation.key.order_id] = observation

    async with aiohttp.ClientSession() as session:
        client = CCNowClient(ccnow_config(fake.url, concurrency=4), session)
        with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
            await client.query(ids, emit, catch_up=True)
    assert {i: (o.outcome, o.reason) for i, o in seen.items()} == dict.fromkeys(
        ids, (Outcome.FAILED, "protocol")
    )
    lines = carried_failed(caplog)
    assert lines and sum(line["count"] for line in lines) <= len(ids)  # type: ignore[misc]
    # The posts: at most CARRY_POLLS rounds, each batch of one within its bound.
    bound = 1 + FOUND_ORDERS * Split.posts(25)
    assert len(fake.requests) <= CARRY_POLLS * len(ids) // 25 * bound


@pytest.mark.parametrize("odd", [0, 1])
async def test_a_stray_line_in_every_answer_is_noise_not_an_order_s(
    caplog: pytest.LogCaptureFixture, odd: int
) -> None:
    ids = [f"300-00-{n:04d}" for n in range(1, 51)]  # two batches of 25
    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        seen[observation.key.order_id] = observation

    async with OddLines() as fake, aiohttp.ClientSession() as session:
        fake.orders = dict.fromkeys(ids, "processing")
        fake.odd = frozenset(ids[3:4] if odd else ())
        fake.noisy = True
        client = CCNowClient(ccnow_config(fake.url), session)
        with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
            await client.query(ids, emit)
        posts = len(fake.requests)
    # Every order decided by its own line; an odd order of its own besides still fails alone.
    assert set(seen) == set(ids)
    failed = {i for i, o in seen.items() if o.outcome is Outcome.FAILED}
    assert failed == fake.odd and all(seen[i].reason == "protocol" for i in failed)
    assert all(seen[i].status == "processing" for i in set(ids) - failed)
    # One warning says so; the first batch's post, its halves and its first order alone find
    # it, the second batch's post is read at once (was: 30 posts a batch, each order asked
    # alone failing `protocol`, then the breaker).
    noise = [r.fields for r in caplog.records if r.msg == "ccnow.answer_noise"]  # type: ignore[attr-defined]
    assert len(noise) == 1 and noise[0]["lines"] == 1
    assert posts <= (1 + 2 + 1) + 1 + (2 * Split.posts(25) if odd else 0)


class CutOnce(OddLines):
    """OddLines whose answer to the first post of several orders naming `cut_in` ends in a
    word cut short: its last line `<id> proc`, without its line end (`processing` cut)."""

    cut_in = ""

    def _text(self, lines: list[str]) -> Reply:
        reply = super()._text(lines)
        body = str(reply.body)
        whole = body.rstrip("\n")
        if self.cut_in and len(lines) > 2 and whole.endswith(f"{self.cut_in} processing"):
            self.cut_in = ""
            return Reply(200, whole[: -len("essing")])
        return reply


async def test_a_word_cut_short_in_an_answer_of_the_noise_is_no_status() -> None:
    # The noise heard (the first batch), the second batch's answer ends in `<id> proc`, cut
    # short: that order's status is not `proc` (a change invented, `processing -> proc` and
    # back); it is asked again and read whole.
    ids = [f"300-00-{n:04d}" for n in range(1, 51)]
    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        seen[observation.key.order_id] = observation

    async with CutOnce() as fake, aiohttp.ClientSession() as session:
        fake.orders = dict.fromkeys(ids, "processing")
        fake.noisy = True
        fake.cut_in = ids[-1]
        client = CCNowClient(ccnow_config(fake.url, concurrency=1), session)
        await client.query(ids, emit)
        assert not fake.cut_in  # the cut answer was sent
    assert set(seen) == set(ids)
    assert seen[ids[-1]].status != "proc"
    assert all(o.outcome is Outcome.OK and o.status == "processing" for o in seen.values())


async def test_the_noise_heard_decides_the_account_s_later_queries_of_few_orders() -> None:
    # A poll after the catch-up asks the orders due, one or a few: they were each asked alone
    # and failed `protocol`, poll after poll (a query of one order hears no noise), their
    # changes never seen. The noise heard is the account's until an answer holds none.
    ids = [f"300-00-{n:04d}" for n in range(1, 26)]
    seen: dict[str, Observation] = {}

    async def emit(observation: Observation) -> None:
        seen[observation.key.order_id] = observation

    async with OddLines() as fake, aiohttp.ClientSession() as session:
        fake.orders = dict.fromkeys(ids, "processing")
        fake.noisy = True
        client = CCNowClient(ccnow_config(fake.url), session)
        await client.query(ids, emit)
        for few in (ids[:1], ids[:3]):
            seen.clear()
            first = len(fake.requests)
            await client.query(few, emit)
            assert set(seen) == set(few)
            assert all(o.outcome is Outcome.OK and o.status == "processing" for o in seen.values())
            assert len(fake.requests) == first + 1  # its own post only
        # Two such lines now: heard again (they were each order's, failing alone for ever).
        fake.noise_lines = 2
        seen.clear()
        await client.query(ids, emit)
        assert all(o.outcome is Outcome.OK and o.status == "processing" for o in seen.values())
        assert len(seen) == len(ids)
        # The noise gone (an answer holds no such line): orders' own odd lines, as many
        # together as the noise was, fail them.
        fake.noisy = False
        fake.odd = frozenset(ids[:2])
        await client.query(ids[2:3], emit)
        seen.clear()
        await client.query(ids[:2], emit)
    assert all(o.outcome is Outcome.FAILED and o.reason == "protocol" for o in seen.values())
    assert len(seen) == 2
