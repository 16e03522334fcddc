"""Review of abfb5a6 and of the CCNow query probe (brief n1): a first-pass outage of a batch
of 3-5 orders, halved down to orders alone, was taken for those orders' own trouble (the
pending list answering the probe): the account never failed; the breaker counted a probe
that posted nothing; the probe's order answering about the whole account (maintenance) was
counted as the batch's 5xx; a CCNow cutting every answer in its first order id never failed
the account."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from reconciler.model import OrderKey, normalize_ccnow_id
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.poller.test_ccnow_lone_order import POLL_S, run, source_events

IDS = [f"100-00-{n:04d}" for n in range(1, 151)]
ERROR = Reply(500, "Internal Server Error")


class CutEveryAnswer(FakeCCNow):
    """A CCNow whose CGI dies in the first order id of every query's answer (`cut`): the id's
    first 7 characters (`100-00-`), chunked; the pending list as usual."""

    cut = False

    def _text(self, lines: list[str]) -> Reply:
        if not self.cut or not lines or lines[0].startswith("message"):
            return super()._text(lines)
        return Reply(200, lines[0][:7], chunked=True)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCNow]:
    async with CutEveryAnswer() as made:
        made.orders = dict.fromkeys(IDS, "processing")
        yield made


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake, POLL_S) as made:
        yield made


async def track(coordinator: CCNowCoordinator, ids: list[str]) -> None:
    await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in ids], 0)


@pytest.mark.parametrize("orders", [3, 4, 5, 8])
async def test_a_first_pass_outage_of_a_few_orders_fails_the_account(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow, orders: int
) -> None:
    coordinator, _ = ccnow
    await track(coordinator, IDS[:orders])
    fake.queries = ERROR  # every query; the pending list answers
    report = await coordinator.full_pass(via="catch-up")
    # No other order to ask: the batch's parts told an outage, none read. Was (3-5, since
    # abfb5a6): halved down to orders alone, which the pending list answering took for their
    # own trouble: each failed alone, the account never.
    assert (report.failed, await source_events(coordinator)) == (orders, ["source.failed"])


async def test_two_odd_orders_of_a_first_pass_of_a_few_fail_alone(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, _ = ccnow
    await track(coordinator, IDS[:4])
    fake.replies_for = {IDS[0]: ERROR, IDS[3]: ERROR}
    report = await coordinator.full_pass(via="catch-up")
    assert (report.failed, await source_events(coordinator)) == (2, [])


async def test_a_probe_that_posts_nothing_is_no_batch_of_the_breaker_s_run(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, _ = ccnow
    await track(coordinator, IDS)
    await coordinator.full_pass(via="catch-up")
    fake.queries = ERROR
    await coordinator.full_pass(via="catch-up")
    assert await source_events(coordinator) == ["source.failed"]
    fake.requests.clear()
    fake.batch_sizes.clear()
    # Another catch-up while the account fails: the first batch halved, its halves failing;
    # the probe asks nothing (the account fails), so the breaker's run (4 batches: 2 x
    # concurrency) is the first batch and three whole ones. Was two: the probe that posted
    # nothing counted as a failed batch.
    await coordinator.full_pass(via="catch-up")
    assert fake.batch_sizes == [0, 25, 25, 12, 12, 13, 13, *[25] * 6]


async def test_the_probe_s_order_answering_for_the_account_fails_it_so(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, _ = ccnow
    await track(coordinator, IDS[:30])
    await coordinator.full_pass(via="catch-up")
    # Two odd orders, one in each half, asked together; the probe's order (another) is
    # answered that CCNow is down.
    bad = [IDS[25], IDS[29]]
    probe_order = IDS[0]
    fake.replies_for = {
        **dict.fromkeys(bad, ERROR),
        probe_order: Reply(200, "error_message system down for maintenance\n"),
    }
    fake.requests.clear()
    await coordinator.check(IDS[25:30], via="poll")
    state = await coordinator.store.sources.state("ccnow", "default")
    assert sum(probe_order in r.form.values() for r in fake.requests) == 1
    # Was `http 500`: that answer taken for the probe's post failing, the batch's 5xx the
    # account's reason.
    assert await source_events(coordinator) == ["source.failed"]
    assert state.last_error is not None and "maintenance" in state.last_error


async def test_an_answer_cut_in_its_first_id_every_post_fails_the_account_once(
    ccnow: tuple[CCNowCoordinator, Clock], fake: CutEveryAnswer
) -> None:
    coordinator, clock = ccnow
    ids = IDS[:16]
    await track(coordinator, ids)
    await coordinator.full_pass(via="catch-up")
    fake.cut = True
    # The account fails 121 s into the outage; 300 s, not 600 s: the probe's backoff, which
    # grows through the outage, then finds it answering 10 s after it ends (287 s after 600
    # s of outage), and 600 s of recovery, not 1800 s, still see no second failure.
    await run(coordinator, clock, 300.0)
    # A malformed answer is a source error: no answer of the orders. Was: every check
    # failed `missing`, CCNow's answer about them, and the account never failed.
    assert await source_events(coordinator) == ["source.failed"]
    fake.cut = False
    fake.orders[ids[3]] = "completed"
    await run(coordinator, clock, 600.0)
    assert await source_events(coordinator) == ["source.failed", "source.recovered"]
    states = await coordinator.store.orders.load([OrderKey("ccnow", "default", ids[3])])
    assert [s.status for s in states.values()] == ["completed"]


class BadFirst(FakeCCNow):
    """A CCNow that answers a post's orders in its own order, where a `bad` id comes first,
    and stops silently at it: no line at all for a post naming it; the pending list as
    usual."""

    def __init__(self, bad: set[str]) -> None:
        super().__init__()
        self.bad = bad

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        if not ids:
            return super()._lines(ids, form)
        named = [normalize_ccnow_id(i) for i in ids]
        own = sorted(named, key=lambda i: i not in self.bad)
        stop = next((n for n, i in enumerate(own) if i in self.bad), len(own))
        return super()._lines(own[:stop], form)


@pytest.mark.parametrize("at", [0, 5, 15])
async def test_a_bad_id_first_in_ccnow_s_own_order_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    ids = IDS[:16]
    async with BadFirst({ids[at]}) as fake:
        fake.orders = dict.fromkeys(ids, "processing")
        async with ccnow_coordinator(tmp_path, fake, POLL_S) as (coordinator, clock):
            await track(coordinator, ids)
            report = await coordinator.full_pass(via="catch-up")
            fake.orders[ids[10]] = "completed"
            await run(coordinator, clock, 600.0)
            events = await source_events(coordinator)
            keys = [OrderKey("ccnow", "default", i) for i in ids]
            states = await coordinator.store.orders.load(keys)
    # No part holding the bad id answers a line. Was (but the first asked): the others asked
    # once more read none either, and the batch failed whole, the account with it (the only
    # batch), then recovered by a probe of one order, pass after pass.
    assert (report.failed, events) == (1, [])
    assert {k.order_id for k, s in states.items() if s.status is None} == {ids[at]}
    assert states[keys[10]].status == "completed"
