"""APScheduler wiring for the daemon: it only ticks the accounts' coordinators (the CCNow pending
list, CCV's heartbeat, a short tick per account for the orders that are due) and logs every job
failure, and each overrun of a job's interval once. What a tick does is the coordinator's
(poller/)."""

from __future__ import annotations

import asyncio
import logging
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

__all__ = ["Scheduler"]

log = logging.getLogger("reconciler.scheduler")

JOB_TIMEOUT_S = 300.0  # no job may run longer than this
# An overrun this long (run after run over its interval: always behind) is worth a person's
# look: one warning `job.behind` per overrun.
JOB_BEHIND_S = 300.0
PRUNE_INTERVAL_S = 86400.0  # retention runs daily (and once after the start-up catch-up)


@dataclass
class _Overrun:
    """A job's overrun: from the first tick that found it still running to the end of the
    first run no tick found running (a due pass longer than its tick is no fault: the next
    run takes what came due meanwhile)."""

    began: float  # time.monotonic()
    skipped: int = 1  # ticks that found it running
    in_run: bool = True  # a tick found the current run still going
    behind: bool = False  # `job.behind` said


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
    ) -> None:
        self.coordinators = coordinators
        self.send_actions = send_actions
        self.actions_every_s = actions_every_s
        self.on_pass = on_pass
        self.behind_s = behind_s
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
        # Jobs overrunning their interval: one line when that starts, one when it ends, not
        # one a run (a due pass over its 0.5 s tick skips a tick each run).
        self._overrun: dict[str, _Overrun] = {}
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
        """End a job's overrun when no tick found this run still going."""
        overrun = self._overrun.get(job_id)
        if overrun is None or self._stopping:  # a run the stop cut off caught up nothing
            return
        if overrun.in_run:
            overrun.in_run = False  # the next run tells whether it goes on
            return
        del self._overrun[job_id]
        seconds = round(time.monotonic() - overrun.began, 3)
        log.info(
            "job.caught_up", extra=fields(job=job_id, skipped=overrun.skipped, seconds=seconds)
        )

    def _behind(self, job_id: str, overrun: _Overrun) -> None:
        """Warn once when an overrun has lasted `behind_s`: a job always behind (its due
        orders checked later than their schedule, pass after pass) says so once, not never."""
        seconds = time.monotonic() - overrun.began
        if overrun.behind or seconds < self.behind_s:
            return
        overrun.behind = True
        log.warning(
            "job.behind",
            extra=fields(job=job_id, skipped=overrun.skipped, seconds=round(seconds, 3)),
        )

    def _job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            overrun = self._overrun.get(event.job_id)
            if overrun is not None:
                overrun.skipped += 1
                overrun.in_run = True
                self._behind(event.job_id, overrun)
            else:
                self._overrun[event.job_id] = _Overrun(time.monotonic())
                log.info(
                    "job.skipped", extra=fields(job=event.job_id, reason="previous run still going")
                )
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
