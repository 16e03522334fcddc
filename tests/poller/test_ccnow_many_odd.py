"""A batch with many odd orders (CCNow answers each one's line and, after it, a line no order's
can be read from, `total 4`): the account's only batch, 13 odd orders first of 25, used up its
posts finding them one by one before any part of it read, and with no other order to ask, its
failure became the account's (`source.failed` at a catch-up), while every answer was a 200 in
CCNow's words naming the orders asked. The odd orders fail their own checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from tests.conftest import Clock, ccnow_coordinator
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow
from tests.poller.test_ccnow_lone_order import POLL_S, source_events

IDS = [f"100-00-{n:04d}" for n in range(1, 31)]


class OddLines(FakeCCNow):
    """A CCNow answering, after the line of each of the `odd` orders, a line `total 4`."""

    odd: frozenset[str] = frozenset()

    def _lines(self, ids: list[str], form: Mapping[str, str] | None = None) -> list[str]:
        lines = []
        for line in super()._lines(ids, form):
            lines.append(line)
            if line.split(" ", 1)[0] in self.odd:
                lines.append("total 4")
        return lines


@pytest.fixture
async def fake() -> AsyncIterator[OddLines]:
    async with OddLines() as made:
        made.orders = dict.fromkeys(IDS, "processing")
        yield made


@pytest.fixture
async def ccnow(
    tmp_path: Path, fake: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Clock]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    async with ccnow_coordinator(tmp_path, fake, POLL_S) as made:
        yield made


@pytest.mark.parametrize(("orders", "odd"), [(25, 13), (30, 13), (10, 7), (25, 4)])
async def test_many_odd_orders_of_an_only_batch_fail_alone(
    ccnow: tuple[CCNowCoordinator, Clock], fake: OddLines, orders: int, odd: int
) -> None:
    coordinator, _ = ccnow
    ids = IDS[:orders]
    await coordinator.store.orders.track("ccnow", "default", [(i, None) for i in ids], 0)
    fake.odd = frozenset(ids[:odd])
    report = await coordinator.full_pass(via="catch-up")
    state = await coordinator.store.sources.state("ccnow", "default")
    # Was (25 and 13, 10 and 7): source.failed, no order read (30: a second batch read).
    assert (await source_events(coordinator), state.failing) == ([], False)
    keys = {OrderKey("ccnow", "default", i): i for i in ids}
    states = await coordinator.store.orders.load(list(keys))
    failed = {keys[k] for k, s in states.items() if s.failure_streak}
    read = {keys[k] for k, s in states.items() if s.status == "processing"}
    assert fake.odd <= failed and failed | read == set(ids) and not failed & read
    assert report.failed == len(failed) and report.reasons.keys() == {"protocol"}
    # Within the batches' bound: the pending list, each batch, 3 x 2 x ceil(log2 n) parts.
    assert len(fake.requests) <= 1 + 2 + 30
