"""The wall clock stepped back (NTP stepping a host back, a VM whose clock ran ahead): an event
whose retry time was set before the step is retried once it is due by its sink's bound, not
the size of the step later. The real store and dispatcher, and a clock the test moves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.config.schema import LogSinkConfig
from reconciler.delivery import Delivery
from reconciler.events import Event
from reconciler.model import EventType
from reconciler.sinks.base import (
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    RetryLater,
    deliver_in_order,
)
from reconciler.store import Store

STEP_S = 3600.0
CONFIG = LogSinkConfig(name="hooks", retry_min_s=5.0, retry_max_s=60.0)


class OnceRefusing:
    """Refuses the first attempt (a 429 asking `retry_after_s` when given), takes the rest;
    records when each attempt came and of which event."""

    name = "hooks"

    def __init__(self, clock: list[float], retry_after_s: float | None) -> None:
        self.clock = clock
        self.retry_after_s = retry_after_s
        self.attempts: list[tuple[float, str]] = []

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        async def one(event: OutboxEvent) -> DeliveryResult:
            self.attempts.append((self.clock[0], event.id))
            if len(self.attempts) == 1:
                return RetryLater("http 429", self.retry_after_s)
            return Delivered()

        return await deliver_in_order(events, one, cutoff)

    async def close(self) -> None:
        pass


def order_event(n: int, at: float) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": "A", "status": "New"}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, at, "ccv", "default", "A", "info", data)


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("retry_after_s", [None, 30.0])
async def test_a_step_back_delays_a_retry_by_no_more_than_retry_max(
    tmp_path: Path, restart: bool, retry_after_s: float | None
) -> None:
    # After a 1 h step back, the event refused once waited ~3558 s for its retry, and the
    # later events of its order behind it; a restart did not change that.
    clock = [1_000_000.0]
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    sink = OnceRefusing(clock, retry_after_s)

    def dispatcher() -> Delivery:
        return Delivery(store, [(sink, CONFIG)], clock=lambda: clock[0])

    delivery = dispatcher()
    try:
        async with store.transaction():
            await store.events.add([order_event(0, clock[0]), order_event(1, clock[0])])
        lane = delivery.lanes[0]
        wait = await delivery._lane_once(lane, delivery._cutoffs["hooks"])
        assert [event for _, event in sink.attempts] == ["e-0"]
        clock[0] -= STEP_S
        stepped = clock[0]
        if restart:
            delivery = dispatcher()
            lane = delivery.lanes[0]
        while len(sink.attempts) < 3 and clock[0] < stepped + 2 * STEP_S:
            wait = await delivery._lane_once(lane, delivery._cutoffs["hooks"])
            clock[0] += 1.0 if wait in (None, 0) else wait
    finally:
        await store.close()

    assert [event for _, event in sink.attempts] == ["e-0", "e-0", "e-1"]
    assert sink.attempts[1][0] - stepped <= CONFIG.retry_max_s
