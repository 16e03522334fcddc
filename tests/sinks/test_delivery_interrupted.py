"""A notification's event does not wait for the batch a slow sink has in hand: the batch ends
after the attempt under way, and the lane's next read hands the event first (delivery.py,
sinks/base.py). The real dispatcher and webhook sink, a real slow receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from reconciler.config import Secret, WebhookSinkConfig
from reconciler.delivery import BATCH, Delivery
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.passes.hint_gate import HintGate
from reconciler.reconcile import Reconciler
from reconciler.sinks.base import (
    NOT_ATTEMPTED,
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    deliver_in_order,
)
from reconciler.sinks.webhook import WebhookSink
from reconciler.store import Store
from tests.conftest import WEBHOOK_SECRET, WebhookEndpoint, serving
from tests.store.test_priority import config_for

OTHERS = [f"B-{n:03d}" for n in range(60)]  # a catch-up's events, one batch (< BATCH)
DELAY_S = 0.05  # the receiver's answer to each POST


class SlowReceiver(WebhookEndpoint):
    """Answers each POST after `delay_s`; keeps each event's (subject, status) as it arrives."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.got: list[tuple[str, str]] = []
        self._arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        self.got.append((event["subject"], event["data"]["status"]))
        self._arrived.set()
        await asyncio.sleep(self.delay_s)  # the receiver's own slowness, not a wait for state
        return web.Response(text="ok")

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait until `done()` is true, looked at after each arrival."""
        while not done():
            self._arrived.clear()
            await self._arrived.wait()


def ok(order_id: str, status: str) -> Observation:
    return Observation(OrderKey("ccv", "default", order_id), Outcome.OK, status, None)


@pytest.fixture
async def receiver() -> AsyncIterator[SlowReceiver]:
    async with serving(SlowReceiver(DELAY_S)) as endpoint:
        yield endpoint


@pytest.mark.parametrize("notified", ["N-1", OTHERS[-2]])
async def test_a_notified_event_waits_for_one_attempt_of_a_slow_sink_s_batch_not_all_of_it(
    tmp_path: Path, receiver: SlowReceiver, notified: str
) -> None:
    # The probe's case: a start-up catch-up's batch in the webhook's hands, each POST answered
    # slowly, then a notification. Its event waited for the whole batch (500 events at 0.2 s:
    # 73 s); it now waits for the POST under way and a read. `OTHERS[-2]` has an earlier event
    # near the end of the batch, not yet sent: it goes first, together with it.
    assert len(OTHERS) < BATCH
    store = await Store.open(tmp_path / "r.db", sinks=("webhook",))
    config = WebhookSinkConfig(
        name="webhook", url=receiver.url, secret=Secret(WEBHOOK_SECRET), timeout_s=10.0
    )
    sink = WebhookSink(config)
    delivery = Delivery(store, [(sink, config)])
    at_commit: list[int] = []

    def committed() -> None:
        at_commit.append(len(receiver.got))  # what the receiver had when the event committed
        delivery.committed()

    reconciler = Reconciler(config_for(tmp_path), store, on_commit=committed)
    reconciler.hints = delivery.hints = HintGate()
    try:
        await store.orders.track("ccv", "default", [(o, None) for o in [*OTHERS, "N-1"]], 1.0)
        await reconciler.apply([ok(o, "New") for o in OTHERS], via="catch-up")
        running = asyncio.ensure_future(delivery.run())
        try:
            await asyncio.wait_for(receiver.until(lambda: len(receiver.got) >= 3), 30)
            at_commit.clear()
            with reconciler.hints.running():  # as the hub checks a notification
                await reconciler.apply([ok(notified, "Processing")], via="notification")
            mine = (notified, "Processing")
            await asyncio.wait_for(receiver.until(lambda: mine in receiver.got), 30)
            receiver.delay_s = 0.0  # the rest of the backlog: no need to wait for it
            where = receiver.got.index(mine)
            (before,) = at_commit
            if notified == "N-1":
                # At most the POST already under way when the event committed went first.
                assert where - before <= 1
            else:
                # Its order's earlier event, still pending in the batch in hand, right before.
                assert where - before <= 2
                assert receiver.got[where - 1] == (notified, "New")
            total = len(OTHERS) + 1
            await asyncio.wait_for(receiver.until(lambda: len(receiver.got) >= total), 30)
        finally:
            delivery.stop()
            await asyncio.wait_for(running, 30)
        assert not any((await store.outbox.pending_counts()).values())
    finally:
        await delivery.close()
        await store.close()
    # Each event once (nothing marked that was not delivered, nothing sent again), and the
    # other orders' events in the order they were committed.
    assert sorted(receiver.got) == sorted([(o, "New") for o in OTHERS] + [mine])
    assert [s for s, _ in receiver.got if s != notified] == [o for o in OTHERS if o != notified]


def event(n: int) -> OutboxEvent:
    return OutboxEvent(n, f"e-{n}", "order.status_changed", f"o-{n}", b"{}")


@pytest.mark.parametrize(("interrupt_after", "attempted"), [(0, 1), (2, 3), (None, 5)])
async def test_an_interrupted_batch_ends_after_the_attempt_under_way_its_first_at_least(
    interrupt_after: int | None, attempted: int
) -> None:
    # Interrupted before its first event, a batch still delivers it: notifications each
    # interrupting the batch read before them must not stop a lane from delivering anything.
    cutoff = Cutoff(sink="webhook")
    sent: list[int] = []

    async def attempt(e: OutboxEvent) -> DeliveryResult:
        sent.append(e.seq)
        if len(sent) - 1 == interrupt_after:
            cutoff.interrupt()
        return Delivered()

    if interrupt_after == 0:
        cutoff.interrupt()
    results = await deliver_in_order([event(n) for n in range(5)], attempt, cutoff)
    assert sent == list(range(attempted))
    assert results == [Delivered()] * attempted + [NOT_ATTEMPTED] * (5 - attempted)
    cutoff.resume()
    sent.clear()
    assert await deliver_in_order([event(5)], attempt, cutoff) == [Delivered()]
