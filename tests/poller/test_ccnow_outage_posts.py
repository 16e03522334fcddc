"""Review 30e (brief n79) of the CCNow isolation (brief n72): an outage answering 500 to every
post halved every batch (two posts more each, each with its retries: `source.failed` three
times later); a gateway's 504 was halved as one order's 500; two orders that each answer 500,
due together, failed the account (`source.failed` / `source.recovered`, pass after pass); a
catch-up of one such order read the pending list twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.poller.test_ccnow_lone_order import POLL_S, run, source_events

# Six batches of 25 (`batch_size`); the breaker opens at the fourth failing in a row
# (`2 x concurrency`, CCNow's default concurrency 2); each post is tried twice (`retries = 1`).
IDS = [f"100-00-{n:04d}" for n in range(1, 151)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeCCNow]:
    async with FakeCCNow() as made:
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


@pytest.mark.parametrize("status", [500, 502])
async def test_an_outage_answering_5xx_halves_only_its_first_batch(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow, status: int
) -> None:
    coordinator, _ = ccnow
    await track(coordinator, IDS)
    fake.queries = Reply(status, "Internal Server Error")
    report = await coordinator.full_pass(via="catch-up")
    assert await source_events(coordinator) == ["source.failed"]
    assert report.failed == len(IDS)
    # The list, then the first batch halved within its budget (no other order to ask on a
    # first pass: its own parts tell, and none is read), then two batches whole, each post
    # tried twice. Was 25: every batch halved, three posts a batch; 13 when the batch's first
    # order alone was asked (review 30k: it may be one of the odd ones).
    assert len(fake.requests) == 29
    assert fake.batch_sizes[-4:] == [25, 25, 25, 25]


async def test_a_gateway_timeout_is_not_one_orders_trouble(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, _ = ccnow
    ids = IDS[:16]
    await track(coordinator, ids)
    fake.queries = Reply(504, "Gateway Timeout")
    report = await coordinator.full_pass(via="catch-up")
    assert await source_events(coordinator) == ["source.failed"]
    assert report.failed == len(ids)
    # Was: halved as a CGI's 500 (a 504 is its gateway's timeout, as a timeout of ours).
    assert fake.batch_sizes[1:] == [16, 16]


async def test_two_orders_answering_500_due_together_fail_alone(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, clock = ccnow
    ids = IDS[:16]
    bad = [ids[3], ids[5]]  # in one half: the other answers (else an outage)
    await track(coordinator, ids)
    fake.replies_for = dict.fromkeys(bad, Reply(500, "Internal Server Error"))
    await coordinator.full_pass(via="catch-up")
    # Both due in one tick (as their same backoff has them in the daemon): their post of two,
    # halved, both halves failing. Was: the account failed (no probe: not one order alone),
    # and the next check of another recovered it, pass after pass.
    report = await coordinator.check(bad, via="poll")
    assert (report.failed, await source_events(coordinator)) == (2, [])
    fake.orders[ids[2]] = "completed"
    await run(coordinator, clock, 600.0)
    assert await source_events(coordinator) == []
    states = await coordinator.store.orders.load([OrderKey("ccnow", "default", i) for i in ids])
    assert {k.order_id: s.status for k, s in states.items()} == {
        **dict.fromkeys(ids, "processing"),
        ids[2]: "completed",
        **dict.fromkeys(bad, None),
    }
    assert sum(1 for r in fake.requests if bad[0] in r.form.values()) > 4


async def test_a_catch_up_of_one_order_answering_500_reads_the_list_once(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow
) -> None:
    coordinator, _ = ccnow
    await track(coordinator, IDS[:1])
    fake.replies_for = {IDS[0]: Reply(500, "Internal Server Error")}
    report = await coordinator.full_pass(via="catch-up")
    assert (report.failed, await source_events(coordinator)) == (1, [])
    # The pass read the list: the probe's answer, no post of its own. Was: the list read
    # again, four posts.
    assert fake.batch_sizes == [0, 1, 1]


# --- review 30i (brief n82) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("orders", "bad"), [(16, (3, 12)), (16, (0, 12)), (16, (0, 8)), (150, (3, 20, 30))]
)
async def test_two_orders_answering_500_one_in_each_half_fail_alone(
    ccnow: tuple[CCNowCoordinator, Clock], fake: FakeCCNow, orders: int, bad: tuple[int, ...]
) -> None:
    coordinator, clock = ccnow
    ids = IDS[:orders]
    await track(coordinator, ids)
    fake.replies_for = {ids[b]: Reply(500, "Internal Server Error") for b in bad}
    # Both halves of their batch fail, nothing read: a post of one order alone answers, so
    # the halves are halved in turn. Was: an outage; (16) the account failed, every pass,
    # the daemon flapping and 14 orders never read; (150) the batch failed whole, and so did
    # the next, one odd order in it: 50 orders failed.
    report = await coordinator.full_pass(via="catch-up")
    assert (report.failed, await source_events(coordinator)) == (len(bad), [])
    await run(coordinator, clock, 600.0)
    assert await source_events(coordinator) == []
    states = await coordinator.store.orders.load([OrderKey("ccnow", "default", i) for i in ids])
    assert {k.order_id for k, s in states.items() if s.status is None} == {ids[b] for b in bad}
