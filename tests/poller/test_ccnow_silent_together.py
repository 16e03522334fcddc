"""Review r2 of the CCNow polling round (62afd3a..8a0dbcc): two orders CCNow answers nothing
for (it leaves them out, or stops silently at them), failed in the same pass, come due together
at their failures' backoff, and their post of two read no line, nor its others, nor its
halves. That batch failed whole (`empty answer`), and since it was no post of one order alone
the probe was never asked: the account failed, the next due tick's probe recovered it, and so
on at every backoff of those two orders (hundreds of `source.failed` / `source.recovered` in
half an hour). A real outage answering nothing to every query still fails the account."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey, Outcome
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.poller.test_ccnow_lone_order import POLL_S, StopsAtBad, run, source_events
from tests.sources.test_ccnow_batch_lines import query, said
from tests.sources.test_ccnow_missing_lines import StopsSilently

IDS = [f"100-00-{n:04d}" for n in range(1, 17)]  # one batch of 16


class Lockstep(random.Random):
    """The schedule's jitter, the same for every order: orders failed in one pass come due
    together at their backoff (with jitter they do so often enough, not always)."""

    def random(self) -> float:
        return 0.0


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeCCNow]:
    """`omit`: CCNow leaves `bad` out of its answers (an empty one for a post of only them);
    `stop`: it stops silently at them."""
    kind, bad = request.param
    made = StopsAtBad({IDS[i] for i in bad}) if kind == "stop" else FakeCCNow()
    if kind == "omit":
        made.omit = {IDS[i] for i in bad}
    async with made:
        made.orders = dict.fromkeys(IDS, "processing")
        yield made


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake, POLL_S) as made:
        coordinator = made[0]
        coordinator.writer.rng = Lockstep()
        await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in IDS], 0)
        yield made


@pytest.mark.parametrize(
    "fake",
    [("omit", (3, 9)), ("stop", (3, 9)), ("omit", (0, 15)), ("stop", (0, 1, 2))],
    indirect=True,
)
async def test_orders_ccnow_answers_nothing_for_due_together_fail_alone(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await coordinator.full_pass(via="catch-up")
    fake.orders[IDS[7]] = "completed"
    # Ten minutes, not the review's half hour: the flap came at every poll (3 s) once the
    # silent orders first came due together; a third of the ticks.
    await run(coordinator, clock, 600.0)
    # Was: source.failed / source.recovered at every backoff of the silent orders.
    assert await source_events(coordinator) == []
    keys = [OrderKey("ccnow", "default", i) for i in IDS]
    states = await coordinator.store.orders.load(keys)
    bad = fake.bad if isinstance(fake, StopsAtBad) else fake.omit
    assert {k.order_id for k, s in states.items() if s.status is None} == bad
    assert states[keys[7]].status == "completed"


@pytest.mark.parametrize("fake", [("omit", (3, 9))], indirect=True)
async def test_empty_answers_to_every_query_still_fail_the_account(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    await coordinator.full_pass(via="catch-up")
    await run(coordinator, clock, 600.0)
    assert await source_events(coordinator) == []
    fake.queries = Reply(200, "\n")  # every query; the pending list answers
    # It fails 120 s into the outage. 300 s of it, not 600 s: the probe's backoff grows
    # through the outage (the account answering was found 285 s after 600 s of it, 10 s
    # after 300 s), and then 600 s, not 1200 s, for no second failure.
    await run(coordinator, clock, 300.0)
    assert await source_events(coordinator) == ["source.failed"]
    fake.queries = None
    await run(coordinator, clock, 600.0)
    assert await source_events(coordinator) == ["source.failed", "source.recovered"]


# A batch a 5xx follows (an order CCNow's CGI dies at), whose other half CCNow answers nothing
# to (it stops silently at that half's first order, or its CGI dies in that order's id): the
# half's empty answer was no part read, so the batch was taken for an outage, its 5xx half
# failed whole, and the account failed with it when it was the pass's only batch. Now that
# half's orders are asked again as orders left out (`stopped`), whose reads halve the other.


class StopsOr500(StopsSilently):
    """StopsSilently (CCNow stops silently at `bad`) that answers 500 to any post naming
    `error`."""

    def __init__(self, bad: set[str], error: str) -> None:
        super().__init__(bad)
        self.replies_for = {error: Reply(500, "Internal Server Error")}


@pytest.mark.parametrize(("error", "bad"), [(2, 8), (12, 0), (0, 8), (9, 0)])
async def test_a_5xx_batch_whose_other_half_answers_nothing_fails_only_its_odd_orders(
    error: int, bad: int
) -> None:
    async with StopsOr500({IDS[bad]}, IDS[error]) as fake:
        fake.orders = dict.fromkeys(IDS, "processing")
        seen = said(await query(fake, IDS, batch_size=16, concurrency=1))
    # Was: SourceUnavailable... rather the batch's `empty answer` raised for the account.
    assert {i for i, s in seen.items() if s[0] is Outcome.FAILED} == {IDS[error], IDS[bad]}
    assert seen[IDS[error]] == (Outcome.FAILED, "http_500")


# More odd orders in one batch than its shares find alone (4 answering 500, one CCNow stops
# at, two it leaves out: 7 of 16, due together): the parts past its posts failed whole, as
# several orders, so no probe was asked, the account failed ("http 500"), the next tick's probe
# recovered it and forgot their failures: source.failed / source.recovered every few seconds.


class Mixed(StopsAtBad):
    """CCNow answering 500 to posts naming IDS 1, 3, 5 or 7, stopping silently at IDS 9 and
    leaving IDS 11 and 13 out."""

    def __init__(self) -> None:
        super().__init__({IDS[9]})
        self.replies_for = {IDS[i]: Reply(500, "Internal Server Error") for i in (1, 3, 5, 7)}
        self.omit = {IDS[11], IDS[13]}


async def test_more_odd_orders_than_a_batch_finds_alone_fail_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with Mixed() as fake:
        fake.orders = dict.fromkeys(IDS, "processing")
        async with ccnow_coordinator(tmp_path, fake, POLL_S) as (coordinator, clock):
            coordinator.writer.rng = Lockstep()
            await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in IDS], 0)
            await coordinator.full_pass(via="catch-up")
            await run(coordinator, clock, 600.0)
            assert await source_events(coordinator) == []  # was 2 every few seconds from 240 s
            fake.queries = Reply(500, "Internal Server Error")  # an outage: every query
            await run(coordinator, clock, 300.0)  # it fails 120 s into it
            assert await source_events(coordinator) == ["source.failed"]
            fake.queries = None
            await run(coordinator, clock, 300.0)  # it recovers 9 s after; no second failure
            assert await source_events(coordinator) == ["source.failed", "source.recovered"]
