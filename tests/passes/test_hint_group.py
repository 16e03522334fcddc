"""Notifications that wait for the writer together are committed in one transaction
(hint_group.py), each still told its own events; an order's events stay in order."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import Config, load_config
from reconciler.events import Event
from reconciler.model import Observation, OrderKey, Outcome, SourceState
from reconciler.passes.report import PassReport
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from tests.fake_providers import CCV_KEY


def config_for(tmp_path: Path) -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        f'[ccv]\nbase_url = "http://127.0.0.1:9"\napi_key = "{CCV_KEY}"\n'
    )
    return load_config(path)


def seen(order_id: str, status: str) -> Observation:
    return Observation(OrderKey("ccv", "default", order_id), Outcome.OK, status, None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        yield opened
    finally:
        await opened.close()


async def statuses(store: Store) -> list[tuple[str, str]]:
    rows = (await store.outbox.due("log", 2.0e9, 100)).rows
    return [(r.order_id or "", r.type) for r in sorted(rows, key=lambda r: r.seq)]


async def test_notifications_waiting_for_the_writer_commit_in_one_transaction(
    tmp_path: Path, store: Store
) -> None:
    ids = ["N-1", "N-2", "N-3"]
    await store.orders.track("ccv", "default", [(i, None) for i in ids], 1.0)
    commits: list[None] = []
    reconciler = Reconciler(config_for(tmp_path), store, on_commit=lambda: commits.append(None))
    reports = [PassReport() for _ in ids]
    async with store.transaction():  # a pass's batch holds the writer meanwhile
        hints = [
            asyncio.ensure_future(
                reconciler.apply([seen(i, "Processing")], via="notification", report=report)
            )
            for i, report in zip(ids, reports, strict=True)
        ]
        await asyncio.sleep(0)  # one turn: each has started and waits for the writer
        assert not any(h.done() for h in hints)
    assert await asyncio.gather(*hints) == [1, 1, 1]  # each is told its own event
    assert len(commits) == 1  # one transaction for the three
    assert sorted(o for o, _ in await statuses(store)) == ids


async def test_an_order_named_twice_in_a_burst_keeps_its_events_in_order(
    tmp_path: Path, store: Store
) -> None:
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    reconciler = Reconciler(config_for(tmp_path), store)
    async with store.transaction():
        first = asyncio.ensure_future(reconciler.apply([seen("N-1", "New")], via="notification"))
        other = asyncio.ensure_future(reconciler.apply([seen("N-2", "New")], via="notification"))
        second = asyncio.ensure_future(
            reconciler.apply([seen("N-1", "Processing")], via="notification")
        )
        await asyncio.sleep(0)  # one turn: each has started and waits for the writer
    assert list(await asyncio.gather(first, other, second)) == [1, 1, 1]
    events = [(o, t) for o, t in await statuses(store) if o == "N-1"]
    assert events == [("N-1", "order.discovered"), ("N-1", "order.status_changed")]


async def test_a_lost_order_is_counted_in_its_own_notification_s_report(
    tmp_path: Path, store: Store
) -> None:
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    reconciler = Reconciler(config_for(tmp_path), store)
    await reconciler.apply([seen("N-1", "New"), seen("N-2", "New")], via="poll")
    gone = Observation(OrderKey("ccv", "default", "N-2"), Outcome.NOT_FOUND, None, None)
    found, lost = PassReport(), PassReport()
    async with store.transaction():
        hints = [
            asyncio.ensure_future(
                reconciler.apply([seen("N-1", "Processing")], via="notification", report=found)
            ),
            asyncio.ensure_future(reconciler.apply([gone], via="notification", report=lost)),
        ]
        await asyncio.sleep(0)  # one turn: each has started and waits for the writer
    await asyncio.gather(*hints)
    assert (found.lost, lost.lost) == (0, 1)


async def test_a_notification_whose_group_failed_counts_its_orders_once(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's transaction fails after it wrote a member's orders (rolled back); the member
    writes its own: its lost order counts one failure, its outage failure is held once."""
    await store.orders.track("ccv", "default", [(i, None) for i in ("N-1", "N-2", "N-3")], 1.0)
    reconciler = Reconciler(config_for(tmp_path), store)
    await reconciler.apply([seen(i, "New") for i in ("N-1", "N-2", "N-3")], via="poll")
    await store.sources.save(
        SourceState("ccv", "default", failing_parts=frozenset({"checks"}), failure_streak=1)
    )
    add = store.events.add
    refused: list[int] = []

    async def add_once_refused(events: Sequence[Event], *, urgent: bool = False) -> int:
        if not refused:
            refused.append(len(events))
            raise sqlite3.IntegrityError("UNIQUE constraint failed: events.id")
        return await add(events, urgent=urgent)

    monkeypatch.setattr(store.events, "add", add_once_refused)
    gone = Observation(OrderKey("ccv", "default", "N-2"), Outcome.NOT_FOUND, None, None)
    failed = Observation(OrderKey("ccv", "default", "N-3"), Outcome.FAILED, None, "timeout")
    report = PassReport()
    async with store.transaction():
        leader = asyncio.ensure_future(
            reconciler.apply([seen("N-1", "Processing")], via="notification")
        )
        member = asyncio.ensure_future(
            reconciler.apply([gone, failed], via="notification", report=report)
        )
        await asyncio.sleep(0)  # one turn: each has started and waits for the writer
    with pytest.raises(sqlite3.IntegrityError):
        await leader
    await member
    assert refused  # the group's transaction was the one refused
    assert (report.lost, report.failed) == (1, 1)
    assert report.outage_failures == [failed]


async def test_a_group_cancelled_while_its_commit_runs_is_not_written_again(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader is cancelled (a stop) while its group's COMMIT runs, and the COMMIT lands:
    the group is written, its members are told so; written again, a failed check's streak
    counted twice (its backoff doubled for one failure)."""
    await store.orders.track("ccv", "default", [("N-1", None), ("N-2", None)], 1.0)
    reconciler = Reconciler(config_for(tmp_path), store)
    await reconciler.apply([seen("N-1", "New"), seen("N-2", "New")], via="poll")
    committing, release = asyncio.Event(), asyncio.Event()
    real = store.conn.execute
    tasks: list[asyncio.Future[int]] = []

    def execute(sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql != "COMMIT" or asyncio.current_task() is not tasks[0]:
            return real(sql, *args, **kwargs)

        async def slow() -> Any:  # a slow fsync
            committing.set()
            await release.wait()
            return await real(sql, *args, **kwargs)

        return slow()

    failed = Observation(OrderKey("ccv", "default", "N-2"), Outcome.FAILED, None, "timeout")
    report = PassReport()
    async with store.transaction():
        tasks.append(
            asyncio.ensure_future(reconciler.apply([seen("N-1", "Processing")], via="notification"))
        )
        tasks.append(
            asyncio.ensure_future(reconciler.apply([failed], via="notification", report=report))
        )
        await asyncio.sleep(0)  # one turn: each has started and waits for the writer
        monkeypatch.setattr(store.conn, "execute", execute)
    leader, member = tasks
    await committing.wait()
    leader.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await member == 0
    monkeypatch.setattr(store.conn, "execute", real)
    key = OrderKey("ccv", "default", "N-2")
    assert (await store.orders.load([key]))[key].failure_streak == 1
    assert [o.key for o in report.started_failing] == [key]
