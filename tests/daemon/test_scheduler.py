"""Scheduler hygiene with the real APScheduler: busy jobs are reported once, failing jobs are
logged and keep their schedule, shutdown cancels running jobs within its bound."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent

from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.scheduler import Scheduler


async def test_busy_job_is_reported_once_per_busy_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    scheduler = Scheduler(Coordinators(cast(Reconciler, None), {}, {}))
    release = asyncio.Event()
    first, second = asyncio.Event(), asyncio.Event()
    skips, sixth_skip = 0, asyncio.Event()

    def on_skip(event: JobEvent) -> None:
        nonlocal skips
        skips += 1
        if skips == 6:
            sixth_skip.set()

    async def slow() -> None:
        (second if first.is_set() else first).set()
        await release.wait()

    # Listeners run in the order added: the scheduler's own has counted each skip before this.
    scheduler.scheduler.add_listener(on_skip, EVENT_JOB_MAX_INSTANCES)
    scheduler._add("slow", 0.05, slow)
    scheduler.scheduler.start()
    try:
        await asyncio.wait_for(first.wait(), 5)
        await asyncio.wait_for(sixth_skip.wait(), 5)  # six ticks found the job running
        skipped = [r for r in caplog.records if r.getMessage() == "job.skipped"]
        assert len(skipped) == 1
        release.set()
        await asyncio.wait_for(second.wait(), 5)  # the schedule goes on after the busy run
    finally:
        await scheduler.shutdown(1.0)


async def test_a_job_over_its_interval_run_after_run_is_reported_once_until_it_keeps_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A due pass longer than its 0.5 s tick, run after run (a trickling answer, 500s with
    # their retries): each run's end reset the report, so each run warned `job.skipped` again
    # (23 in 3 min, probe p2). Now one info line when the overrun starts, one when it ends.
    caplog.set_level(logging.INFO, logger="reconciler")
    # Quiet for three quick runs and 0.2 s ends the overrun (the daemon waits a minute)
    scheduler = Scheduler(Coordinators(cast(Reconciler, None), {}, {}), quiet_s=0.2)
    runs = 0
    slow_runs, caught_up = asyncio.Event(), asyncio.Event()

    async def overrunning() -> None:
        nonlocal runs
        runs += 1
        if runs <= 5:
            await asyncio.sleep(0.15)  # the job's own work: three of its ticks
            if runs == 5:
                slow_runs.set()

    class CaughtUp(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "job.caught_up":
                caught_up.set()

    handler = CaughtUp()
    logging.getLogger("reconciler.scheduler").addHandler(handler)
    scheduler._add("overrunning", 0.05, overrunning)
    scheduler.scheduler.start()
    try:
        await asyncio.wait_for(slow_runs.wait(), 10)
        await asyncio.wait_for(caught_up.wait(), 10)  # the quick runs that follow
    finally:
        await scheduler.shutdown(1.0)
        logging.getLogger("reconciler.scheduler").removeHandler(handler)
    lines = [r for r in caplog.records if r.getMessage().startswith("job.")]
    assert [(r.getMessage(), r.levelno) for r in lines] == [
        ("job.skipped", logging.INFO),
        ("job.caught_up", logging.INFO),
    ]
    assert cast(dict[str, int], lines[1].__dict__["fields"])["skipped"] >= 2  # counted across runs


async def test_a_job_straddling_its_interval_logs_one_busy_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One run over its interval, the next under it: a job.skipped / job.caught_up pair every
    # two runs it logged, for ever. Now one busy period, from the first skip until the job has
    # kept up for a quiet period.
    caplog.set_level(logging.INFO, logger="reconciler")
    scheduler = Scheduler(Coordinators(cast(Reconciler, None), {}, {}), quiet_s=0.2)
    runs, skipped_ticks = 0, asyncio.Event()
    straddled, caught_up = asyncio.Event(), asyncio.Event()

    async def straddling() -> None:
        nonlocal runs
        runs += 1
        if runs <= 20 and runs % 2:  # over its interval: until a tick has found it running
            skipped_ticks.clear()
            await skipped_ticks.wait()
        if runs == 20:  # then under it, run after run
            straddled.set()

    class CaughtUp(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "job.caught_up":
                caught_up.set()

    handler = CaughtUp()
    logging.getLogger("reconciler.scheduler").addHandler(handler)
    scheduler.scheduler.add_listener(lambda event: skipped_ticks.set(), EVENT_JOB_MAX_INSTANCES)
    scheduler._add("straddling", 0.05, straddling)
    scheduler.scheduler.start()
    try:
        await asyncio.wait_for(straddled.wait(), 10)
        said = [r.getMessage() for r in caplog.records if r.name == "reconciler.scheduler"]
        assert said == ["job.skipped"]
        await asyncio.wait_for(caught_up.wait(), 10)
    finally:
        await scheduler.shutdown(1.0)
        logging.getLogger("reconciler.scheduler").removeHandler(handler)
    lines = [r for r in caplog.records if r.name == "reconciler.scheduler"]
    assert [(r.getMessage(), r.levelno) for r in lines] == [
        ("job.skipped", logging.INFO),
        ("job.caught_up", logging.INFO),
    ]
    assert cast(dict[str, int], lines[1].__dict__["fields"])["skipped"] >= 10  # every slow run's


async def test_failing_job_is_logged_and_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    scheduler = Scheduler(Coordinators(cast(Reconciler, None), {}, {}))
    calls = 0
    third = asyncio.Event()

    async def broken() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third.set()
        raise RuntimeError("boom")

    scheduler._add("broken", 0.05, broken)
    scheduler.scheduler.start()
    try:
        await asyncio.wait_for(third.wait(), 5)
    finally:
        await scheduler.shutdown(1.0)
    failed = [r for r in caplog.records if r.getMessage() == "job.failed"]
    assert len(failed) >= 3


async def test_shutdown_cancels_running_jobs_within_its_bound() -> None:
    scheduler = Scheduler(Coordinators(cast(Reconciler, None), {}, {}))
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    scheduler._add("forever", 0.05, forever)
    scheduler.scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    # A bound far above a cancelled job's end: the job was cancelled, not waited out.
    assert await scheduler.shutdown(30.0) == 1
    assert cancelled.is_set() and loop.time() - t0 < 15.0


async def test_a_job_always_behind_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    # Its overrun never ends (every run over its interval): one info line job.skipped was all
    # an operator saw. Once the overrun lasts `behind_s`, one warning job.behind, not more.
    caplog.set_level(logging.INFO, logger="reconciler")
    scheduler = Scheduler(Coordinators(cast(Reconciler, None), {}, {}), behind_s=0.3)
    behind, later = asyncio.Event(), asyncio.Event()
    runs_after = 0

    async def always_behind() -> None:
        nonlocal runs_after
        if behind.is_set():
            runs_after += 1
            if runs_after == 4:
                later.set()
        await asyncio.sleep(0.15)  # the job's own work: three of its ticks, every run

    class Behind(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "job.behind":
                behind.set()

    handler, handler_of = Behind(), "reconciler.scheduler"
    logging.getLogger("reconciler.scheduler").addHandler(handler)
    scheduler._add("always_behind", 0.05, always_behind)
    scheduler.scheduler.start()
    try:
        await asyncio.wait_for(behind.wait(), 10)
        await asyncio.wait_for(later.wait(), 10)  # runs (and skipped ticks) after it
    finally:
        await scheduler.shutdown(1.0)
        logging.getLogger("reconciler.scheduler").removeHandler(handler)
    # The stop cut the run going: no job.caught_up either (its end caught up nothing).
    said = [(r.getMessage(), r.levelno) for r in caplog.records if r.name == handler_of]
    assert said == [("job.skipped", logging.INFO), ("job.behind", logging.WARNING)]
