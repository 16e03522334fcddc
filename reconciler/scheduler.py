"""APScheduler wiring for the daemon: it only ticks the accounts' coordinators (the CCNow pending
list, CCV's heartbeat, a short tick per account for the orders that are due) and logs every job
failure, and each busy period of a job (ticks finding its previous run still going) once, at its
start and at its end. What a tick does is the coordinator's (poller/)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .logs import fields
from .poller.coordinator import MAX_TICK_S, NamedReport
from .poller.coordinators import Coordinators
from .store import StoreError
from .store.health import is_unusable

__all__ = ("Overruns", "Scheduler")

log = logging.getLogger("reconciler.scheduler")

JOB_TIMEOUT_S = 300.0  # no job may run longer than this
# Run after run over its interval for this long, a job is always behind: worth a person's look,
# one warning `job.behind` per such streak of late runs. Not one per busy period: that may last
# days (a job straddling its interval is never quiet for long), and an outage in it would go
# unsaid but for the first.
JOB_BEHIND_S = 300.0
# A busy period ends only once the job has kept up for a while: QUIET_RUNS runs in a row that no
# tick found running, and QUIET_S since the last one a tick did. A job whose runs straddle its
# interval (one over it, the next under) would otherwise log a skipped/caught_up pair every
# other run. Both bounds, because intervals range from a 0.5 s due tick (seconds count) to
# minutes (runs count).
QUIET_RUNS = 3
QUIET_S = 60.0
PRUNE_INTERVAL_S = 86400.0  # retention runs daily (and once after the start-up catch-up)

Line = tuple[int, str, dict[str, Any]]  # level, message, fields of a log line to say


@dataclass
class _Busy:
    """A job's busy period: from the first tick that found it still running until it has kept
    up for a quiet period (a due pass longer than its tick is no fault: the next run takes what
    came due meanwhile)."""

    began: float  # the first skipped tick
    streak_began: float | None  # first skipped tick of the runs over their interval in a row
    streak_skipped: int  # ticks that found those runs running
    late_ended: float  # end of the last run a tick found running
    skipped: int = 1  # ticks that found it running
    in_run: bool = True  # a tick found the current run still going
    on_time: int = 0  # runs in a row since `late_ended` that no tick found running
    behind: bool = False  # `job.behind` said of the current streak


class Overruns:
    """The jobs' busy periods and the lines that say so: `job.skipped` when one starts,
    `job.caught_up` when it is over, `job.behind` when the job stays behind. Pure: the caller
    passes the time (time.monotonic()), so the rules are testable without waiting."""

    def __init__(
        self,
        *,
        behind_s: float = JOB_BEHIND_S,
        quiet_runs: int = QUIET_RUNS,
        quiet_s: float = QUIET_S,
    ) -> None:
        self.behind_s = behind_s
        self.quiet_runs = quiet_runs
        self.quiet_s = quiet_s
        self._busy: dict[str, _Busy] = {}

    def skipped(self, job_id: str, now: float) -> Line | None:
        """Count a tick that found the job's previous run still going."""
        busy = self._busy.get(job_id)
        if busy is None:
            self._busy[job_id] = _Busy(
                began=now, streak_began=now, streak_skipped=1, late_ended=now
            )
            return (
                logging.INFO,
                "job.skipped",
                {"job": job_id, "reason": "previous run still going"},
            )
        busy.skipped += 1
        busy.in_run = True
        if busy.streak_began is None:
            busy.streak_began, busy.streak_skipped = now, 0
        busy.streak_skipped += 1
        # Behind run after run, not merely busy: a job late every other run keeps up on average.
        seconds = now - busy.streak_began
        if busy.behind or seconds < self.behind_s:
            return None
        busy.behind = True
        values = {"job": job_id, "skipped": busy.streak_skipped, "seconds": round(seconds, 3)}
        return logging.WARNING, "job.behind", values

    def ran(self, job_id: str, now: float) -> Line | None:
        """Count the end of a run; end the busy period once the job has kept up long enough."""
        busy = self._busy.get(job_id)
        if busy is None:
            return None
        if busy.in_run:
            busy.in_run = False  # the next tick tells whether the next run is over time too
            busy.late_ended, busy.on_time = now, 0
            return None
        busy.streak_began, busy.behind = None, False  # a run on time ends a streak of late ones
        busy.on_time += 1
        if busy.on_time < self.quiet_runs or now - busy.late_ended < self.quiet_s:
            return None
        del self._busy[job_id]
        # The busy period itself, not the quiet period that told it was over
        seconds = round(busy.late_ended - busy.began, 3)
        return (
            logging.INFO,
            "job.caught_up",
            {"job": job_id, "skipped": busy.skipped, "seconds": seconds},
        )


class Scheduler:
    """Owns the AsyncIOScheduler and the tasks of running jobs (so shutdown can bound them)."""

    def __init__(
        self,
        coordinators: Coordinators,
        *,
        on_pass: Callable[[NamedReport], None] = lambda named: None,
        prune: Callable[[], Awaitable[None]] | None = None,
        send_actions: Callable[[], Awaitable[object]] | None = None,
        actions_every_s: float = MAX_TICK_S,
        behind_s: float = JOB_BEHIND_S,
        quiet_runs: int = QUIET_RUNS,
        quiet_s: float = QUIET_S,
        store_failed: Callable[[sqlite3.Error], object] | None = None,
    ) -> None:
        self.coordinators = coordinators
        # The store's record of a statement that found it unusable (Store.unusable): for a
        # job's read outside the store's guards (a module's own, as the CCNow actions' queue)
        self.store_failed = store_failed
        self.send_actions = send_actions
        self.actions_every_s = actions_every_s
        self.on_pass = on_pass
        self.prune = prune
        # Created here, inside the running loop, so APScheduler binds to it.
        self.scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(),
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
        )
        self.scheduler.add_listener(
            self._job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        self._running: set[asyncio.Task[Any]] = set()
        # Jobs overrunning their interval: one line when that starts, one when it is over,
        # not one a run (a due pass over its 0.5 s tick skips a tick each run).
        self.overruns = Overruns(behind_s=behind_s, quiet_runs=quiet_runs, quiet_s=quiet_s)
        self._stopping = False

    def start(self) -> None:
        """Add one pending-list job per CCNow account and one due tick per account; start."""
        for ccnow in self.coordinators.ccnow.values():
            self._add(
                f"ccnow-pending-list:{ccnow.account}",
                ccnow.config.poll_interval_s,
                self._passes,
                ccnow.tick_pending_list,
            )
        for ccv in self.coordinators.ccv.values():
            self._add(f"ccv-heartbeat:{ccv.account}", ccv.config.poll_interval_s, ccv.heartbeat)
        for coordinator in self.coordinators:
            job_id = f"due:{coordinator.source}:{coordinator.account}"
            self._add(job_id, coordinator.tick_s, self._passes, coordinator.tick_due)
        if self.prune is not None:
            self._add("prune", PRUNE_INTERVAL_S, self.prune)
        if self.send_actions is not None:
            # CCNow actions left queued (a failed post, or one a crashed command recorded)
            self._add("ccnow-actions", self.actions_every_s, self._actions_job)
        self.scheduler.start()

    def _add(
        self, job_id: str, seconds: float, func: Callable[..., Awaitable[object]], *args: Any
    ) -> None:
        self.scheduler.add_job(
            self._guarded,
            "interval",
            seconds=seconds,
            id=job_id,
            name=job_id,
            args=[job_id, func, *args],
            jitter=min(seconds / 10, 5.0),
        )

    async def _guarded(
        self, job_id: str, func: Callable[..., Awaitable[object]], *args: Any
    ) -> None:
        """Run a job under a timeout, tracked so shutdown can cancel it; never raise."""
        if self._stopping:
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await asyncio.wait_for(func(*args), JOB_TIMEOUT_S)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Our own shutdown cancelled it, an expected stop that `daemon.stopped` counts:
            # raising on would have APScheduler log it as a crash, traceback and all.
        except asyncio.TimeoutError:
            log.error("job.timeout", extra=fields(job=job_id, timeout_s=JOB_TIMEOUT_S))
        except StoreError:
            pass  # logged once when the store started failing; the next run tries again
        except sqlite3.Error as exc:
            if self.store_failed is None or not is_unusable(exc):
                log.error("job.failed", exc_info=True, extra=fields(job=job_id))
            else:
                # The store failing all the same: one store.failing, and a damaged file stops
                # the daemon (74), not a traceback every run for ever
                self.store_failed(exc)
        except Exception:
            log.error("job.failed", exc_info=True, extra=fields(job=job_id))
        finally:
            self._running.discard(task)
            self._ran(job_id)

    async def _actions_job(self) -> None:
        assert self.send_actions is not None
        await self.send_actions()

    async def _passes(self, tick: Callable[[], Awaitable[list[NamedReport]]]) -> None:
        for named in await tick():
            self.on_pass(named)

    def _ran(self, job_id: str) -> None:
        if not self._stopping:  # a run the stop cut off kept up with nothing
            self._say(self.overruns.ran(job_id, time.monotonic()))

    @staticmethod
    def _say(line: Line | None) -> None:
        if line is not None:
            level, message, values = line
            log.log(level, message, extra=fields(**values))

    def _job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            self._say(self.overruns.skipped(event.job_id, time.monotonic()))
        elif event.code == EVENT_JOB_MISSED:
            log.warning("job.missed", extra=fields(job=event.job_id))
        elif event.exception is not None and not isinstance(
            event.exception, asyncio.CancelledError
        ):  # cancelled: our own shutdown
            log.error("job.error", extra=fields(job=event.job_id, error=repr(event.exception)))

    def stop_starting(self) -> None:
        """Start no job from now on (the running ones go on)."""
        self._stopping = True
        # Paused, APScheduler starts no job; one it started but that has not run yet returns
        # at once (see `_guarded`) when the loop next turns. Its shutdown would cancel such a
        # job instead, and log that as an error with a traceback.
        self.scheduler.pause()

    async def shutdown(self, timeout_s: float) -> int:
        """Stop starting jobs, cancel the running ones and wait for them at most `timeout_s`;
        return how many had to be cancelled."""
        self.stop_starting()
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        await asyncio.sleep(0)
        self.scheduler.shutdown(wait=False)
        return len(running)
