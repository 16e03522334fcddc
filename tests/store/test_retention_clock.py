"""A clock far ahead (a VM's clock, a date set wrong) does not prune the history: retention is
skipped, with one warning line, when its cutoff is later than the newest event the store held
before this process began, or at its last prune unless the clock was put forward since (and
the time it has run since). One `catch-up` under +800 days pruned every event and every
settled order."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reconciler.events import Event
from reconciler.model import EventType
from reconciler.store import Store
from reconciler.store.prune_clock import History
from reconciler.store.retention import PruneReport, newest_event_at, prune
from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCV
from tests.store.test_retention import IDS, _age, _count

DAY = 86400.0
NOW = 1_800_000_000.0
KEEP_S = 400 * DAY
WATCHED = {("ccv", "default"): 180 * DAY}


def _event(n: int, at: float) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": f"o{n}", "status": "New"}
    return Event(f"e-{n}", EventType.STATUS_CHANGED, at, "ccv", "default", f"o{n}", "info", data)


async def _stored(tmp_path: Path) -> Store:
    store = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    async with store.transaction():
        await store.events.add([_event(n, NOW - 10 * DAY + n * DAY) for n in range(5)])
        await store.conn.execute("UPDATE deliveries SET state = 'delivered'")
    return store


async def _events(store: Store) -> int:
    [(count,)] = await store.conn.execute_fetchall("SELECT count(*) FROM events")
    return int(count)


async def test_a_clock_past_the_history_by_more_than_the_window_prunes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await _stored(tmp_path)
    try:
        newest = await newest_event_at(store)
        assert newest == NOW - 6 * DAY
        # The run's own events, dated by the clock far ahead, vouch for nothing: a process
        # whose clock was put ahead keeps the bound it read before (prune_clock.History).
        async with store.transaction():
            await store.events.add([_event(9, NOW + 800 * DAY)])
        with caplog.at_level(logging.INFO, logger="reconciler.retention"):
            report = await prune(
                store,
                sinks=("log",),
                keep_s=KEEP_S,
                now=NOW + 800 * DAY,
                watched=WATCHED,
                newest_s=newest,
            )
        assert await _events(store) == 6
    finally:
        await store.close()
    assert report.events == 0
    [line] = caplog.records
    assert line.getMessage() == "store.prune_skipped"
    assert line.levelno == logging.WARNING


async def test_a_history_within_the_window_of_the_cutoff_is_pruned(tmp_path: Path) -> None:
    store = await _stored(tmp_path)
    try:
        newest = await newest_event_at(store)
        assert newest is not None
        # The newest event 400 days and half an hour old, but the process has run for an
        # hour since it was the newest: all but the newest go, as before.
        report = await prune(
            store,
            sinks=("log",),
            keep_s=KEEP_S,
            now=newest + KEEP_S + 1800,
            watched=WATCHED,
            newest_s=newest + 3600,
        )
        assert await _events(store) == 1
    finally:
        await store.close()
    assert report.events == 4


async def test_an_empty_store_has_no_newest_event(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    try:
        assert await newest_event_at(store) is None
    finally:
        await store.close()


async def test_a_catch_up_past_the_whole_history_prunes_nothing(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The history 401 days behind the clock, as under a clock 401 days ahead: the catch-up
    # writes its own events at that clock, which vouch for nothing.
    fake_ccv.orders = {IDS[0]: "Completed", IDS[1]: "New"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    assert (await call_cli("--config", cfg, "track", "ccv", *IDS[:2])).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    _age(db, 401, where="1")
    fake_ccv.orders[IDS[1]] = "AwaitingPayment"

    result = await call_cli("--config", cfg, "catch-up")

    assert result.code == 0, result.stderr
    said = [x for x in result.log_lines() if x.get("message", "").startswith("store.prune")]
    assert [x["message"] for x in said] == ["store.prune_skipped"]
    assert said[0]["level"] == "warning"
    assert _count(db, "SELECT count(*) FROM events") == 3
    assert _count(db, "SELECT count(*) FROM orders") == 2


async def _daily(history: History, store: Store, now: float) -> PruneReport:
    """The daemon's prune (Runtime.prune), at `now`."""
    return await history.prune(store, sinks=("log",), keep_s=KEEP_S, now=now, watched=WATCHED)


class Clocks:
    """The wall clock and the one never stepped (CLOCK_BOOTTIME), as a test moves them: the
    wall clock reads `start` when the steady one reads 0, and `ahead` later once put forward."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.now = 0.0
        self.ahead = 0.0

    def steady(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.start + self.now + self.ahead

    def history(self) -> History:
        return History(wall=self.wall, steady=self.steady)


async def test_a_store_left_unused_is_pruned_by_a_later_daily_prune_of_the_same_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The history ends 500 days before the daemon's start, the clock right: the start's prune
    # cannot tell it from a clock far ahead and deletes nothing. The events the daemon wrote
    # before it (its start's catch-up) vouch for its clock at the next day's prune, as they
    # would for a later start's.
    store = await _stored(tmp_path)
    started = NOW + 500 * DAY
    clocks = Clocks(started)
    try:
        history = clocks.history()
        await history.read(store)  # the store opened
        async with store.transaction():
            await store.events.add([_event(9, started + 60.0)])  # an order moved
            await store.conn.execute("UPDATE deliveries SET state = 'delivered'")
        clocks.now = 120.0
        with caplog.at_level(logging.INFO, logger="reconciler.retention"):
            skipped = await _daily(history, store, clocks.wall())
            clocks.now += DAY
            pruned = await _daily(history, store, clocks.wall())
        assert await _events(store) == 1
    finally:
        await store.close()
    assert (skipped.events, pruned.events) == (0, 5)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["store.prune_skipped", "store.pruned"]


async def _moved(store: Store, n: int, at: float) -> None:
    """An order moved at `at` (the event written, delivered)."""
    async with store.transaction():
        await store.events.add([_event(n, at)])
        await store.conn.execute("UPDATE deliveries SET state = 'delivered'")


async def test_a_clock_put_far_ahead_while_the_daemon_runs_prunes_by_the_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Daily prunes under a right clock, then the clock is put 800 days ahead an hour before the
    # second one, and orders go on moving: the events written under it would vouch for it at
    # the next prune, which would delete the whole history. The process keeps the bound it had.
    store = await _stored(tmp_path)  # five events, the newest six days old
    clocks = Clocks(NOW)
    keep_s = 30 * DAY
    reports: list[PruneReport] = []
    try:
        history = clocks.history()
        await history.read(store)
        with caplog.at_level(logging.INFO, logger="reconciler.retention"):
            for day in (1, 2, 3, 4):
                clocks.now = day * DAY - 3600.0
                if day == 2:
                    clocks.ahead = 800 * DAY
                await _moved(store, 10 + day, clocks.wall())
                clocks.now = day * DAY
                reports.append(
                    await history.prune(
                        store, sinks=("log",), keep_s=keep_s, now=clocks.wall(), watched=WATCHED
                    )
                )
        [(real,)] = await store.conn.execute_fetchall(
            "SELECT count(*) FROM events WHERE time < ?", (NOW + 100 * DAY,)
        )
    finally:
        await store.close()
    assert real == 6  # the five and day 1's
    assert [r.events for r in reports] == [0, 0, 0, 0]
    said = [r.getMessage() for r in caplog.records]
    assert said == ["store.pruned"] + ["store.prune_clock_ahead", "store.pruned"] * 3


async def test_a_quiet_store_under_a_right_clock_is_pruned_every_day(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The last event half a day after the start, none since: what the history vouches for
    # grows with the time run, not from the last event since the last prune (a day), which
    # fell behind a week's window on the ninth day and skipped every prune after it.
    store = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    clocks = Clocks(NOW)
    keep_s = 7 * DAY
    deleted: list[int] = []
    try:
        for n in range(5):
            await _moved(store, n, NOW - 3 * DAY + n * 3600.0)
        history = clocks.history()
        await history.read(store)
        clocks.now = DAY / 2
        await _moved(store, 9, clocks.wall())
        with caplog.at_level(logging.INFO, logger="reconciler.retention"):
            for day in range(1, 12):
                clocks.now = day * DAY
                report = await history.prune(
                    store, sinks=("log",), keep_s=keep_s, now=clocks.wall(), watched=WATCHED
                )
                deleted.append(report.events)
        left = await _events(store)
    finally:
        await store.close()
    assert [r.getMessage() for r in caplog.records] == ["store.pruned"] * 11
    assert sum(deleted) == 5  # the five older than the window, on the fifth day
    assert left == 1


async def test_a_clock_put_ahead_by_less_than_the_window_deletes_what_a_right_clock_keeps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A month's window, one event a day for 29 days, the clock put 20 days ahead: the jump was
    # seen, but the prune still cut at the clock's word, 20 days of history deleted too early
    # at each daily prune. It cuts where a right clock would while the jump is seen.
    store = await Store.open(tmp_path / "reconciler.db", sinks=("log",))
    clocks = Clocks(NOW)
    keep_s = 30 * DAY
    deleted: list[int] = []
    try:
        for n, days in enumerate(range(29, 0, -1)):
            await _moved(store, n, NOW - days * DAY)
        history = clocks.history()
        await history.read(store)
        with caplog.at_level(logging.INFO, logger="reconciler.retention"):
            for day in (1, 2, 3, 4):
                clocks.now = day * DAY - 60.0
                clocks.ahead = 0.0 if day == 1 else 20 * DAY
                await _moved(store, 100 + day, clocks.wall())
                clocks.now = day * DAY
                report = await history.prune(
                    store, sinks=("log",), keep_s=keep_s, now=clocks.wall(), watched=WATCHED
                )
                deleted.append(report.events)
    finally:
        await store.close()
    assert deleted == [0, 1, 1, 1]  # a right clock's: one day's event a day
    said = [r.getMessage() for r in caplog.records]
    assert said == ["store.pruned"] + ["store.prune_clock_ahead", "store.pruned"] * 3
