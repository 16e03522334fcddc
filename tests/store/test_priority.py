"""A notification's event reaches the sinks before a catch-up's backlog of other orders' events,
and never before an earlier pending event of its own order (store/priority.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import JsonlSinkConfig, load_config
from reconciler.config.schema import Config
from reconciler.delivery import BATCH, Delivery
from reconciler.events import order_event
from reconciler.model import EventType, Observation, OrderKey, Outcome
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sinks.jsonl import JsonlSink
from reconciler.sources.http import Gates
from reconciler.store import Store
from reconciler.store.priority import URGENT_IN_A_ROW, WINDOW, Urgent, WriteLock
from tests.conftest import poll_until
from tests.fake_providers import CCV_KEY, FakeCCV

BACKLOG = BATCH + 200  # other orders' events pending before the notification's: past a batch


def config_for(tmp_path: Path, base_url: str = "http://127.0.0.1:9") -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "{base_url}"\napi_key = "{CCV_KEY}"\nretries = 0\n'
    )
    return load_config(path)


def ok(order_id: str, status: str) -> Observation:
    return Observation(OrderKey("ccv", "default", order_id), Outcome.OK, status, None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


async def backlog(reconciler: Reconciler, store: Store, ids: list[str]) -> None:
    """Track `ids` and commit a catch-up's discovery of each: events no sink has yet."""
    await store.orders.track("ccv", "default", [(i, None) for i in ids], 1.0)
    for n in range(0, len(ids), 1000):
        await reconciler.apply([ok(i, "New") for i in ids[n : n + 1000]], via="catch-up")


@pytest.fixture
async def filed(tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose one sink is a jsonl file."""
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("file",))
    try:
        yield opened
    finally:
        await opened.close()


async def delivered_lines(store: Store, path: Path, count: int) -> list[tuple[str, str, str]]:
    """Run an outbox with a jsonl sink at `path` until `count` lines are in it; return each
    line's (subject, status, via) in the file's order."""
    config = JsonlSinkConfig(name="file", path=path)
    out = Delivery(store, [(JsonlSink(config), config)])
    assert await out.drain(30.0)
    got = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(got) == count
    return [(e["subject"], e["data"]["status"], e["data"]["via"]) for e in got]


async def test_a_notified_event_reaches_the_jsonl_sink_before_a_catch_up_s_backlog(
    tmp_path: Path, filed: Store, fake_ccv: FakeCCV
) -> None:
    store = filed
    others = [f"B-{n:05d}" for n in range(BACKLOG)]
    fake_ccv.orders = {"N-1": "Processing"}
    async with aiohttp.ClientSession() as session:
        config = config_for(tmp_path, fake_ccv.base_url)
        reconciler = Reconciler(config, store)
        ccv = Coordinators.build(config, reconciler, session, Gates()).ccv["default"]
        await store.orders.track("ccv", "default", [("N-1", None)], 1.0)
        await reconciler.apply([ok("N-1", "New")], via="poll")
        await store.outbox.delivered("file", [1], 1.0)  # delivered long ago
        await backlog(reconciler, store, others)
        report = await ccv.check(["N-1"], via="notification")
        assert report.events == 1
    path = tmp_path / "events.jsonl"
    got = await delivered_lines(store, path, BACKLOG + 1)
    where = got.index(("N-1", "Processing", "notification"))
    # In the sink's first batch, not behind the catch-up's events.
    assert where < BATCH
    # The catch-up's own events still arrive in the order they were committed.
    assert [s for s, _, _ in got if s != "N-1"] == others


async def test_a_notified_event_never_passes_an_earlier_pending_event_of_its_order(
    tmp_path: Path, filed: Store
) -> None:
    store = filed
    others = [f"B-{n:05d}" for n in range(BACKLOG)]
    late = others[-2]  # discovered by the catch-up, its event deep in the backlog
    reconciler = Reconciler(config_for(tmp_path), store)
    await backlog(reconciler, store, others)
    await reconciler.apply([ok(late, "Processing")], via="notification")
    path = tmp_path / "events.jsonl"
    got = await delivered_lines(store, path, BACKLOG + 1)
    first = got.index((late, "New", "catch-up"))
    second = got.index((late, "Processing", "notification"))
    # Both ahead of the backlog, the order's earlier event first.
    assert first < second < BATCH


async def test_a_notified_event_waits_while_an_earlier_event_of_its_order_waits_to_be_retried(
    tmp_path: Path, store: Store
) -> None:
    # A backlog within a batch: the notified event read too soon is then in the rows read
    # (past a batch of backlog, it would be out of them whatever the rule); the two going first
    # still passes the rest of it.
    backlog_size = 20
    others = [f"B-{n:05d}" for n in range(backlog_size)]
    late = others[-2]
    reconciler = Reconciler(config_for(tmp_path), store)
    await backlog(reconciler, store, others)
    seq = backlog_size - 1  # the catch-up's event of `late`
    await store.outbox.failed("log", [(seq, "http 500", 2000.0)])
    await reconciler.apply([ok(late, "Processing")], via="notification")

    async def due(now: float) -> list[int]:
        rows = (await store.outbox.due("log", now, BATCH)).rows
        return [r.seq for r in rows]

    assert backlog_size + 1 not in await due(1000.0)
    # Once the retry is due, the two go first, in their order.
    assert (await due(2000.0))[:2] == [seq, backlog_size + 1]


async def test_an_event_of_a_rolled_back_notification_is_not_urgent(
    tmp_path: Path, store: Store
) -> None:
    # A backlog of 20 is enough: an urgent mark the rollback left on its seq puts the
    # catch-up's event that takes it first among the ten read ([2, 21, 1, ...]; 6,000 before).
    others = [f"B-{n:05d}" for n in range(20)]
    reconciler = Reconciler(config_for(tmp_path), store)
    await backlog(reconciler, store, others)
    event = order_event(
        EventType.STATUS_CHANGED,
        OrderKey("ccv", "default", others[0]),
        id="rolled-back",
        time=2.0,
        severity="info",
        external_reference=None,
        previous_status="New",
        status="Processing",
        end_state=False,
        via="notification",
    )
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await store.events.add([event], urgent=True)
            raise RuntimeError("the batch fails after its events")
    # The seq the rolled back event had goes to the next event: a catch-up's.
    await reconciler.apply([ok(others[1], "Processing")], via="catch-up")
    rows = (await store.outbox.due("log", 1000.0, 10)).rows
    assert [r.seq for r in rows] == list(range(1, 11))


async def test_the_jsonl_sink_still_gets_everything_when_many_notifications_queue(
    tmp_path: Path, filed: Store
) -> None:
    store = filed
    store.priority = Urgent(max_urgent=5)  # fewer remembered than the notifications queued
    others = [f"B-{n:05d}" for n in range(BACKLOG)]
    reconciler = Reconciler(config_for(tmp_path), store)
    await backlog(reconciler, store, others)
    for oid in others[:20]:
        await reconciler.apply([ok(oid, "Processing")], via="notification")
    path = tmp_path / "events.jsonl"
    got = await delivered_lines(store, path, BACKLOG + 20)
    for oid in others[:20]:
        assert got.index((oid, "New", "catch-up")) < got.index((oid, "Processing", "notification"))


async def test_past_the_window_a_notified_event_goes_in_commit_order_after_its_order_s_events(
    tmp_path: Path, filed: Store
) -> None:
    # More pending events than the window remembers: which earlier events of the notified
    # order are pending is no longer known, so nothing passes the backlog.
    store = filed
    store.priority = Urgent(window=4)
    others = [f"B-{n:05d}" for n in range(12)]
    late = others[1]  # its catch-up event fell out of the window
    reconciler = Reconciler(config_for(tmp_path), store)
    await backlog(reconciler, store, others)
    await reconciler.apply([ok(late, "Processing")], via="notification")
    await reconciler.apply([ok(others[-1], "Processing")], via="notification")
    path = tmp_path / "events.jsonl"
    got = await delivered_lines(store, path, len(others) + 2)
    assert got == [(oid, "New", "catch-up") for oid in others] + [
        (late, "Processing", "notification"),
        (others[-1], "Processing", "notification"),
    ]


async def test_a_notification_s_transaction_goes_before_the_batches_waiting_for_the_writer(
    store: Store,
) -> None:
    entered: list[str] = []
    release = asyncio.Event()

    async def write(name: str, *, urgent: bool = False) -> None:
        async with store.transaction(urgent=urgent):
            entered.append(name)
            if name == "batch-0":
                await release.wait()  # a catch-up's batch in progress

    tasks = [asyncio.ensure_future(write("batch-0"))]
    await poll_until(lambda: entered == ["batch-0"], 5, "the first batch holds the writer")
    for n in (1, 2, 3):
        tasks.append(asyncio.ensure_future(write(f"batch-{n}")))
        await poll_until(lambda: store._write_lock.waiting == len(tasks) - 1, 5, "queued")
    tasks.append(asyncio.ensure_future(write("hint", urgent=True)))
    await poll_until(lambda: store._write_lock.waiting == 4, 5, "the hint queued")
    release.set()
    await asyncio.gather(*tasks)
    # Only the batch that held the writer goes before the hint.
    assert entered == ["batch-0", "hint", "batch-1", "batch-2", "batch-3"]


async def test_a_cancelled_waiter_does_not_keep_the_writer(store: Store) -> None:
    release = asyncio.Event()
    done: list[str] = []

    async def write(name: str, *, urgent: bool = False) -> None:
        async with store.transaction(urgent=urgent):
            if name == "holder":
                await release.wait()
            done.append(name)

    holder = asyncio.ensure_future(write("holder"))
    await poll_until(lambda: store._write_lock.waiting == 0 and not holder.done(), 5, "held")
    cancelled = asyncio.ensure_future(write("cancelled", urgent=True))
    later = asyncio.ensure_future(write("later"))
    await poll_until(lambda: store._write_lock.waiting == 2, 5, "both queued")
    cancelled.cancel()
    release.set()
    await asyncio.gather(holder, later)
    assert cancelled.cancelled()
    assert done == ["holder", "later"]
    assert store._write_lock.waiting == 0
    await asyncio.wait_for(store.outbox.delivered("log", [], 1.0), 5)  # the writer is free


async def test_a_waiter_cancelled_as_the_writer_is_released_raises_only_its_cancel() -> None:
    # The release passes over the cancelled waiter before its task runs again: the task must
    # end cancelled (not with an error of the lock), and the lock must be free.
    lock = WriteLock()

    async def wait_for_the_writer() -> None:
        async with lock.hold():
            pass

    async with lock.hold():
        waiter = asyncio.ensure_future(wait_for_the_writer())
        await asyncio.sleep(0)  # it queues
        waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not lock.locked()
    await asyncio.wait_for(wait_for_the_writer(), 1)  # and the next writer gets it at once


async def test_a_stream_of_notifications_does_not_stop_a_pass_s_batch(store: Store) -> None:
    entered: list[str] = []
    release = asyncio.Event()

    async def write(name: str, *, urgent: bool = False) -> None:
        async with store.transaction(urgent=urgent):
            entered.append(name)
            if name == "holder":
                await release.wait()

    tasks = [asyncio.ensure_future(write("holder"))]
    await poll_until(lambda: entered == ["holder"], 5, "held")
    tasks.append(asyncio.ensure_future(write("batch")))
    await poll_until(lambda: store._write_lock.waiting == 1, 5, "the batch queued")
    hints = 3 * URGENT_IN_A_ROW
    tasks += [asyncio.ensure_future(write(f"hint-{n}", urgent=True)) for n in range(hints)]
    await poll_until(lambda: store._write_lock.waiting == 1 + hints, 5, "the hints queued")
    release.set()
    await asyncio.gather(*tasks)
    assert entered.index("batch") == 1 + URGENT_IN_A_ROW


async def test_after_a_restart_the_backlog_of_the_last_run_goes_first_in_commit_order(
    tmp_path: Path, store: Store
) -> None:
    others = [f"B-{n:05d}" for n in range(BACKLOG)]
    await backlog(Reconciler(config_for(tmp_path), store), store, others)
    # What an earlier run left pending is outside what this one knows of: nothing passes it.
    again = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        reconciler = Reconciler(config_for(tmp_path), again)
        await reconciler.apply([ok(others[-1], "Processing")], via="notification")
        rows = (await again.outbox.due("log", 1000.0, BATCH)).rows
        assert [r.seq for r in rows] == list(range(1, BATCH + 1))
    finally:
        await again.close()


def test_past_the_window_each_committed_event_costs_what_it_cost_before() -> None:
    # A long catch-up or a daemon's days commit far more events than the window holds: the
    # oldest then leaves the window with every event committed, and that must stay cheap (it
    # once cost 30 times as much per event as filling the window did, 30 us an event).
    urgent = Urgent(window=WINDOW)

    def commit(first: int, last: int) -> float:
        started = time.process_time()
        for batch in range(first, last, 500):
            seqs = range(batch + 1, batch + 501)
            urgent.stage(((s, ("ccv", "default", f"o-{s}")) for s in seqs), urgent=False)
            urgent.committed(("log",))
        return time.process_time() - started

    filling = commit(0, WINDOW)
    commit(WINDOW, 2 * WINDOW)
    assert commit(2 * WINDOW, 3 * WINDOW) < 4 * filling
    assert urgent.horizon == 2 * WINDOW  # the window holds the last WINDOW events
