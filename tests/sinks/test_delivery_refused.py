"""A receiver that refuses one order's event for good (a payload it rejects) while it takes the
others: over hours of that order's retries, no other order's event waits for it. The real
store and dispatcher, a sink that refuses one order, and a clock the test moves."""

from __future__ import annotations

import itertools
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


class RefusingSink:
    """Refuses every event of the orders in `refused`, takes the others; records attempts."""

    name = "hooks"

    def __init__(self, refused: set[str], clock: list[float]) -> None:
        self.refused = refused
        self.clock = clock
        self.attempts: list[tuple[float, str | None, bool]] = []

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        async def one(event: OutboxEvent) -> DeliveryResult:
            taken = event.order_id not in self.refused
            self.attempts.append((self.clock[0], event.order_id, taken))
            return Delivered() if taken else RetryLater("http 400")

        return await deliver_in_order(events, one, cutoff)

    async def close(self) -> None:
        pass


def order_event(n: int, order_id: str, at: float) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": order_id, "status": "New"}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, at, "ccv", "default", order_id, "info", data)


@pytest.mark.parametrize("refused", [{"P"}, {"P", "Q"}])
async def test_refused_orders_delay_no_other_over_hours_of_their_retries(
    tmp_path: Path, refused: set[str]
) -> None:
    # Two such orders lead every batch after a restart (their retries are the oldest rows):
    # read as "two orders refused in a row", they stopped every other order until max_age.
    clock = [1_000_000.0]
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    sink = RefusingSink(refused, clock)

    def dispatcher() -> Delivery:
        return Delivery(store, [(sink, LogSinkConfig(name="hooks"))], clock=lambda: clock[0])

    delivery = dispatcher()
    added: dict[str, float] = {}

    async def add(n: int, order_id: str) -> None:
        async with store.transaction():
            await store.events.add([order_event(n, order_id, clock[0])])
        added[order_id] = clock[0]

    async def run_lane() -> float | None:
        # As the lane's loop does: again at once while it asks to (0), else it waits.
        lane = delivery.lanes[0]
        wait = await delivery._lane_once(lane, delivery._cutoffs[lane.config.name])
        while wait == 0:
            wait = await delivery._lane_once(lane, delivery._cutoffs[lane.config.name])
        return wait

    try:
        for n, order_id in enumerate(sorted(refused)):
            await add(-1 - n, order_id)
        wait = await run_lane()
        restart, end = clock[0] + 60, clock[0] + 3 * 3600
        arrival, n = clock[0] + 30, 1
        while clock[0] < end:  # another order's event every 30 s
            if wait is not None and clock[0] + wait < arrival:
                clock[0] += wait
            else:
                clock[0] = arrival
                arrival += 30
                await add(n, f"O{n}")
                n += 1
            if clock[0] >= restart:  # a restart forgets what the lane knew
                delivery, restart = dispatcher(), end + 1
            wait = await run_lane()
    finally:
        await store.close()
    taken = [(at, order) for at, order, ok in sink.attempts if ok]
    assert len(taken) == n - 1  # every other order's event
    # At once, or after a short pause: two new events of the refused orders refused in a row
    # (at the start, after the restart) read as a receiver down until an event is taken.
    # Before, other orders waited for hours.
    assert max(at - added[order] for at, order in taken if order) <= 3 * 5.0
    for order_id in refused:  # each refused one is retried alone, on its doubling schedule
        assert 5 <= len([1 for _, order, _ in sink.attempts if order == order_id]) <= 16


async def test_a_delivery_between_two_refusals_keeps_the_sink_going(tmp_path: Path) -> None:
    # P refused, O1 taken, Q refused: not "two orders refused in a row" (the lane forgot O1).
    clock = [1_000_000.0]
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    sink = RefusingSink({"P", "Q"}, clock)
    delivery = Delivery(store, [(sink, LogSinkConfig(name="hooks"))], clock=lambda: clock[0])
    lane = delivery.lanes[0]
    try:
        for n, order_id in enumerate(["P", "O1", "Q", "O2"]):
            async with store.transaction():
                await store.events.add([order_event(n, order_id, clock[0])])
            while await delivery._lane_once(lane, delivery._cutoffs[lane.config.name]) == 0:
                pass
            clock[0] += 1
    finally:
        await store.close()
    assert [(order, ok) for _, order, ok in sink.attempts] == [
        ("P", False),
        ("O1", True),
        ("Q", False),
        ("O2", True),
    ]
    assert lane.paused_until == 0.0


async def test_a_receiver_down_across_batches_gets_two_attempts(tmp_path: Path) -> None:
    # A refused alone; then B and C come: B's refusal makes two orders in a row, C waits.
    clock = [1_000_000.0]
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    sink = RefusingSink({"A", "B", "C"}, clock)
    delivery = Delivery(store, [(sink, LogSinkConfig(name="hooks"))], clock=lambda: clock[0])
    lane = delivery.lanes[0]
    try:
        async with store.transaction():
            await store.events.add([order_event(0, "A", clock[0])])
        while await delivery._lane_once(lane, delivery._cutoffs[lane.config.name]) == 0:
            pass
        async with store.transaction():
            await store.events.add([order_event(1, "B", clock[0]), order_event(2, "C", clock[0])])
        while await delivery._lane_once(lane, delivery._cutoffs[lane.config.name]) == 0:
            pass
    finally:
        await store.close()
    assert [order for _, order, _ in sink.attempts] == ["A", "B"]
    assert lane.paused_until > clock[0]


async def test_a_receiver_down_for_hours_gets_one_attempt_per_growing_pause(
    tmp_path: Path,
) -> None:
    # Not every event and each one's retries (1,885 requests to a dead endpoint in two hours,
    # growing with the outage): one event per pause; a new event's refusal doubles the pause,
    # a retry's keeps it (it may be a payload the receiver rejects for good).
    clock = [1_000_000.0]
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    sink = RefusingSink({f"O{n}" for n in range(3000)}, clock)
    delivery = Delivery(store, [(sink, LogSinkConfig(name="hooks"))], clock=lambda: clock[0])
    lane = delivery.lanes[0]

    async def run_lane() -> float | None:
        wait = await delivery._lane_once(lane, delivery._cutoffs[lane.config.name])
        while wait == 0:
            wait = await delivery._lane_once(lane, delivery._cutoffs[lane.config.name])
        return wait

    try:
        end, arrival, n = clock[0] + 24 * 3600, clock[0], 0
        wait: float | None = None
        while clock[0] < end:  # a new order's event every 36 s: 2,400 in a day
            if wait is not None and clock[0] + wait < arrival:
                clock[0] += wait
            else:
                clock[0] = arrival
                arrival += 36
                async with store.transaction():
                    await store.events.add([order_event(n, f"O{n}", clock[0])])
                n += 1
            wait = await run_lane()
    finally:
        await store.close()
    per_hour = [0] * 24
    for at, *_ in sink.attempts:
        per_hour[min(int((at - (end - 24 * 3600)) // 3600), 23)] += 1
    assert max(per_hour[6:]) <= 10, per_hour  # a few an hour, not growing with the outage
    assert len(sink.attempts) <= 250, per_hour
    assert not any(ok for *_, ok in sink.attempts)


async def test_a_long_retry_after_never_pauses_past_max_age(tmp_path: Path) -> None:
    # A Retry-After of 30 days held every order for 30 days, past max_age (3 days), and
    # nothing was dead-lettered.
    clock = [1_000_000.0]
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))

    class AskingSink(RefusingSink):
        async def deliver(
            self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
        ) -> list[DeliveryResult]:
            async def one(event: OutboxEvent) -> DeliveryResult:
                return RetryLater("http 429", retry_after_s=30 * 86400.0)

            return await deliver_in_order(events, one, cutoff)

    delivery = Delivery(
        store, [(AskingSink(set(), clock), LogSinkConfig(name="hooks"))], clock=lambda: clock[0]
    )
    lane = delivery.lanes[0]
    try:
        async with store.transaction():
            await store.events.add([order_event(0, "A", clock[0])])
        while await delivery._lane_once(lane, delivery._cutoffs[lane.config.name]) == 0:
            pass
    finally:
        await store.close()
    assert 0 < lane.paused_until - clock[0] <= LogSinkConfig(name="hooks").max_age_s + 1


async def test_a_receiver_down_gets_one_request_per_pause_whatever_the_events_own_retries(
    tmp_path: Path,
) -> None:
    # The events refused before the receiver was taken as down keep their own retry times (at
    # most retry_max, 4 s here), and the lane tries one of them per pause: 2 s here (two new
    # events refused in a row; a retry refused keeps it). The events take turns, each at its
    # own 4 s, and the receiver hears one request per pause, not one per event's retry.
    clock = [1_000_000.0]
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    sink = RefusingSink({"A", "B", "C"}, clock)
    config = LogSinkConfig(name="hooks", retry_min_s=1.0, retry_max_s=4.0)
    delivery = Delivery(store, [(sink, config)], clock=lambda: clock[0])
    lane = delivery.lanes[0]
    start = clock[0]
    pauses: set[float] = set()
    try:
        async with store.transaction():
            await store.events.add([order_event(0, "A", start), order_event(1, "B", start)])
        added = False
        while clock[0] < start + 120:
            wait = await delivery._lane_once(lane, delivery._cutoffs[lane.config.name])
            if not added and clock[0] >= start + 0.5:
                async with store.transaction():
                    await store.events.add([order_event(2, "C", clock[0])])
                added = True
            if lane.paused_until > clock[0]:
                pauses.add(round(lane.paused_until - lane.paused_at, 3))
            clock[0] += 0.5 if wait in (None, 0) else wait
    finally:
        await store.close()
    times = [at - start for at, _, _ in sink.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    first_c = [order for _, order, _ in sink.attempts].index("C")
    assert lane.down_streak == 2 and pauses == {1.0, 2.0}
    # A and B in one batch (B's refusal takes the receiver as down); one after the first pause
    # (1 s), C's refusal doubles it; then one every pause (2 s) for the rest, no sooner.
    assert all(gap >= 1.0 for gap in gaps[1:first_c]), gaps
    assert all(gap >= 2.0 for gap in gaps[first_c:]), gaps
    assert 60 <= len(times) <= 64, times  # 120 s: about 60 pauses of 2 s
