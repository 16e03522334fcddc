"""A pass gives way to notification checks (hint_gate.py): while a hint is checked, a catch-up
sends no new request; a hint that never ends cannot stop it; after waiting, the pass runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import nullcontext
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import Config, LogSinkConfig, load_config
from reconciler.delivery import Delivery
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.passes.batcher import Batcher
from reconciler.passes.hint_gate import WRITE_PART_S, WRITE_RECENT_S, HintGate
from reconciler.passes.report import PassReport
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sinks.base import Cutoff, Delivered, DeliveryResult, OutboxEvent, RetryLater
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.fake_providers import CCV_KEY, FakeCCV

ORDERS = [f"C-{n:04d}" for n in range(300)]


def ok(order_id: str) -> Observation:
    return Observation(OrderKey("ccv", "default", order_id), Outcome.OK, "New", None)


def config_for(tmp_path: Path, base_url: str) -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\nconcurrency = 8\n'
    )
    return load_config(path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("counting",))
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_catch_up_sends_no_new_request_while_a_notification_is_checked(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {oid: "New" for oid in ORDERS} | {"N-1": "Processing"}
    await store.orders.track("ccv", "default", [(oid, None) for oid in [*ORDERS, "N-1"]], 1.0)
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        reconciler = Reconciler(config, store)
        reconciler.hints = HintGate(max_wait_s=60.0)
        coordinators = Coordinators.build(config, reconciler, session, Gates())
        with reconciler.hints.running():
            catch_up = asyncio.ensure_future(coordinators.catch_up())
            await fake_ccv.wait_until(lambda: len(fake_ccv.requests) >= 1)
            report = await coordinators.ccv["default"].check(["N-1"], via="notification")
            # The hint made its round trip and its transaction; the pass sent nothing meanwhile
            # but the one request its first worker had already made.
            assert report.checked == 1
            assert [s.order_id for s in fake_ccv.requests[1:]] == ["N-1"]
            assert not catch_up.done()
        done = await asyncio.wait_for(catch_up, 30)
    assert done.checked == len(ORDERS) + 1


async def test_a_notification_that_never_ends_does_not_stop_a_catch_up(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {oid: "New" for oid in ORDERS}
    await store.orders.track("ccv", "default", [(oid, None) for oid in ORDERS], 1.0)
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        reconciler = Reconciler(config, store)
        reconciler.hints = HintGate(max_wait_s=0.01)
        coordinators = Coordinators.build(config, reconciler, session, Gates())
        with reconciler.hints.running():
            report = await asyncio.wait_for(coordinators.catch_up(), 30)
    assert report.checked == len(ORDERS)


async def test_without_a_notification_a_pass_does_not_wait() -> None:
    gate = HintGate(max_wait_s=60.0)
    await asyncio.wait_for(gate.give_way(), 1)
    with gate.running():
        pass
    await asyncio.wait_for(gate.give_way(), 1)


async def test_a_pass_waits_until_the_notification_ends_then_runs_as_long_as_it_waited() -> None:
    now = [100.0]
    gate = HintGate(max_wait_s=60.0, clock=lambda: now[0])
    ended = asyncio.Event()

    async def hint() -> None:
        with gate.running():
            await ended.wait()
            now[0] += 2.0  # the hint took two seconds

    task = asyncio.ensure_future(hint())
    await asyncio.sleep(0)  # one turn: the hint has entered the gate
    assert gate.in_flight == 1
    waiter = asyncio.ensure_future(gate.give_way())
    await asyncio.sleep(0)  # one turn: the worker has asked the gate
    assert not waiter.done()
    ended.set()
    await asyncio.wait_for(waiter, 1)
    await task
    # Another hint within the two seconds after: the pass does not give way again yet.
    with gate.running():
        await asyncio.wait_for(gate.give_way(), 1)
        now[0] += 2.5
        second = asyncio.ensure_future(gate.give_way())
        await asyncio.sleep(0)  # one turn: it has asked, and waits
        assert not second.done()  # past them, it gives way again
    await asyncio.wait_for(second, 1)


async def commits_of_a_catch_up(
    tmp_path: Path,
    store: Store,
    fake_ccv: FakeCCV,
    *,
    notification: str | None,
    hint_rows: int = 120,
    part_s: float = 0.0,
) -> list[int]:
    """Return the observations of each transaction of a catch-up over ORDERS, with a
    notification `"in flight"` throughout, one checked a moment before (`"recent"`) or none."""
    fake_ccv.orders = {oid: "New" for oid in ORDERS}
    await store.orders.track("ccv", "default", [(oid, None) for oid in ORDERS], 1.0)
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        reconciler = Reconciler(config, store, batch_rows=1000, hint_rows=hint_rows, part_s=part_s)
        reconciler.hints = HintGate(max_wait_s=0.0)  # the workers go on; only the writes count
        committed: list[int] = []
        reconciler.on_checked = committed.append
        if notification == "recent":
            with reconciler.hints.running():
                pass
        with reconciler.hints.running() if notification == "in flight" else nullcontext():
            await Coordinators.build(config, reconciler, session, Gates()).catch_up()
    return committed


async def test_while_a_notification_is_checked_a_pass_commits_in_short_transactions(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    committed = await commits_of_a_catch_up(tmp_path, store, fake_ccv, notification="in flight")
    assert committed == [120, 120, len(ORDERS) - 240]  # every transaction a short one


async def test_while_notifications_arrive_a_pass_s_transactions_are_bounded_in_duration(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    # No notification is checked while the pass writes, but one was a moment ago: the next may
    # come at any time, and must not wait for a whole batch's transaction (0.3-1.3 s loaded).
    # No transaction fits in the duration (part_s=0): each writes the fewest observations.
    committed = await commits_of_a_catch_up(tmp_path, store, fake_ccv, notification="recent")
    assert committed == [120, 120, len(ORDERS) - 240]


async def test_a_pass_s_transactions_grow_to_the_batch_as_the_duration_allows(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    committed = await commits_of_a_catch_up(
        tmp_path, store, fake_ccv, notification="recent", hint_rows=20, part_s=60.0
    )
    # The first, at an unknown pace, is short; the rest of the batch fits in the duration.
    assert committed == [20, len(ORDERS) - 20]


async def test_without_notifications_a_pass_commits_whole_batches(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    committed = await commits_of_a_catch_up(tmp_path, store, fake_ccv, notification=None)
    assert committed == [len(ORDERS)]


class CountingSink:
    """A sink that keeps the size of every batch it gets."""

    name = "counting"

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        self.batches.append(len(events))
        return [Delivered()] * len(events)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("notification", ["in flight", "recent"])
async def test_while_notifications_come_a_sink_takes_short_batches(
    tmp_path: Path, store: Store, notification: str
) -> None:
    # Notifications come in streams: one that arrives while a sink reads a backlog's long batch
    # would wait for all of it, so batches stay short while one is checked and just after.
    sink = CountingSink()
    delivery = Delivery(store, [(sink, LogSinkConfig(name=sink.name))], hint_batch=30)
    await store.orders.track("ccv", "default", [(oid, None) for oid in ORDERS], 1.0)
    reconciler = Reconciler(config_for(tmp_path, "http://127.0.0.1:9"), store)
    await reconciler.apply([ok(oid) for oid in ORDERS], via="catch-up")
    delivery.hints = HintGate()
    if notification == "recent":
        with delivery.hints.running():
            pass  # checked and done: recent, no longer in flight
    with delivery.hints.running() if notification == "in flight" else nullcontext():
        assert await delivery.drain(30.0)
    assert sum(sink.batches) == len(ORDERS)
    assert max(sink.batches) == 30


class HeldSink:
    """A sink that keeps the batch holding the notified order's event until `release` is set,
    then answers `result` for it."""

    name = "counting"

    def __init__(self, result: DeliveryResult) -> None:
        self.result = result
        self.handed = asyncio.Event()
        self.release = asyncio.Event()

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        if any(e.order_id == "N-1" for e in events):
            self.handed.set()
            await self.release.wait()
            return [self.result] * len(events)
        return [Delivered()] * len(events)

    async def close(self) -> None:
        pass


async def gives_way(gate: HintGate) -> bool:
    """Return whether a pass's worker asking `gate` now waits (looked at after a few turns)."""
    waiter = asyncio.ensure_future(gate.give_way())
    for _ in range(5):
        await asyncio.sleep(0)
    waiting = not waiter.done()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    return waiting


async def notify_with_outbox(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV, sink: HeldSink
) -> tuple[HintGate, asyncio.Future[None]]:
    """With an outbox delivering to `sink`, check N-1 as the hub checks a notification; return
    the gate and the delivery task once the sink holds N-1's event."""
    fake_ccv.orders = {"N-1": "Processing"}
    await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
    config = config_for(tmp_path, fake_ccv.base_url)
    delivery = Delivery(store, [(sink, LogSinkConfig(name=sink.name))])
    reconciler = Reconciler(config, store, on_commit=delivery.committed)
    gate = reconciler.hints = delivery.hints = HintGate(max_wait_s=60.0)
    delivering = asyncio.ensure_future(delivery.run())
    async with aiohttp.ClientSession() as session:
        ccv = Coordinators.build(config, reconciler, session, Gates()).ccv["default"]
        with gate.running():
            report = await ccv.check(["N-1"], via="notification")
    assert report.events == 1
    await asyncio.wait_for(sink.handed.wait(), 10)
    return gate, delivering


async def stop(outbox_task: asyncio.Future[None], sink: HeldSink) -> None:
    sink.release.set()
    outbox_task.cancel()
    await asyncio.gather(outbox_task, return_exceptions=True)


async def test_a_pass_gives_way_until_the_notified_event_is_in_the_sink(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    sink = HeldSink(Delivered())
    gate, delivering = await notify_with_outbox(tmp_path, store, fake_ccv, sink)
    try:
        # The check is over, its event is in the sink's hands but not yet delivered: passes
        # still leave the event loop and the writer to that delivery.
        assert await gives_way(gate)
        sink.release.set()
        await asyncio.wait_for(gate.give_way(), 10)
        assert not await gives_way(gate)
    finally:
        await stop(delivering, sink)


async def test_a_sink_that_fails_the_notified_event_does_not_hold_passes_back(
    tmp_path: Path, store: Store, fake_ccv: FakeCCV
) -> None:
    sink = HeldSink(RetryLater("http 503"))
    gate, delivering = await notify_with_outbox(tmp_path, store, fake_ccv, sink)
    try:
        sink.release.set()
        # The lane waits for its retry; passes no longer wait for it.
        await asyncio.wait_for(gate.give_way(), 10)
        assert not await gives_way(gate)
    finally:
        await stop(delivering, sink)


async def test_a_pass_s_queued_batch_waits_while_a_notification_is_checked(
    tmp_path: Path, store: Store
) -> None:
    await store.orders.track("ccv", "default", [(oid, None) for oid in [*ORDERS, "N-1"]], 1.0)
    reconciler = Reconciler(config_for(tmp_path, "http://127.0.0.1:9"), store)
    reconciler.hints = HintGate(max_wait_s=60.0)
    batcher = Batcher(reconciler, "catch-up", PassReport(), "ccv", "default")
    for oid in ORDERS[:10]:
        await batcher.add(ok(oid))
    with reconciler.hints.running():
        flushing = asyncio.ensure_future(batcher.flush())  # the pass's batch, ready first
        await asyncio.sleep(0)  # the pass's flush starts first, and waits for the hint
        await reconciler.apply([ok("N-1")], via="notification")
    await asyncio.wait_for(flushing, 10)
    rows = (await store.outbox.due("counting", 2.0e9, 100)).rows
    seqs = {r.order_id: r.seq for r in rows}
    assert len(seqs) == 11
    # The notification's transaction did not queue behind the batch that was ready before it.
    assert seqs["N-1"] == min(seqs.values())


def test_a_submit_keeps_passes_short_while_it_runs_however_long_ago_it_began() -> None:
    # CCV may take longer to answer than WRITE_RECENT_S: the submit's close still follows.
    now = [100.0]
    gate = HintGate(clock=lambda: now[0])
    assert gate.part_s(0.025) == 0.025
    with gate.writing():
        now[0] += WRITE_RECENT_S * 10
        assert gate.part_s(0.025) == WRITE_PART_S
    assert gate.part_s(0.025) == 0.025
