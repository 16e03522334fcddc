"""APScheduler wiring for the daemon: the CCNow pending list per account, a short tick per account
that checks the orders that are due, and logging of every job failure or skip."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .accounts import configured_account, source_account
from .config import Config
from .logs import fields
from .model import HealthPart, Source
from .reconcile import PassReport, Reconciler
from .schedule import resting, source_backoff_s
from .store import StoreError

__all__ = ["Scheduler", "source_backoff_s"]

log = logging.getLogger("reconciler.scheduler")

MAX_TICK_S = 5.0  # how often due orders are looked for, at most
JOB_TIMEOUT_S = 300.0  # no job may run longer than this
DUE_LIMIT_PER_CONCURRENCY = 200  # orders per tick per unit of concurrency
PRUNE_INTERVAL_S = 86400.0  # retention runs daily (and once after the start-up catch-up)


class Scheduler:
    """Owns the AsyncIOScheduler and the tasks of running jobs (so shutdown can bound them)."""

    def __init__(
        self,
        config: Config,
        reconciler: Reconciler,
        *,
        on_pass: Callable[[str, PassReport], None] = lambda name, report: None,
        prune: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        send_actions: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.config = config
        self.send_actions = send_actions
        self.reconciler = reconciler
        self.on_pass = on_pass
        self.prune = prune
        self.clock = clock
        # Created here, inside the running loop, so APScheduler binds to it.
        self.scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(),
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
        )
        self.scheduler.add_listener(
            self._job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        self._running: set[asyncio.Task[Any]] = set()
        # Jobs skipped since their last run ended: a busy job is reported once, not every tick.
        self._skipped: set[str] = set()
        self._stopping = False

    def start(self) -> None:
        """Add one pending-list job per CCNow account and one due tick per account; start."""
        for ccnow in self.config.ccnow:
            self._add(
                f"ccnow-pending-list:{ccnow.name}",
                ccnow.poll_interval_s,
                self._pending_list_job,
                ccnow.name,
            )
        for ccv in self.config.ccv:
            self._add(
                f"ccv-heartbeat:{ccv.name}", ccv.poll_interval_s, self._heartbeat_job, ccv.name
            )
        for source, accounts in (("ccv", self.config.ccv), ("ccnow", self.config.ccnow)):
            for acc in accounts:
                tick = min(MAX_TICK_S, max(acc.schedule.min_interval_s / 2, 0.5))
                self._add(f"due:{source}:{acc.name}", tick, self._due_job, source, acc.name)
        if self.prune is not None:
            self._add("prune", PRUNE_INTERVAL_S, self.prune)
        if self.send_actions is not None:
            # CCNow actions left queued (a failed post, or one a crashed command recorded)
            self._add("ccnow-actions", MAX_TICK_S, self._actions_job)
        self.scheduler.start()

    def _add(
        self, job_id: str, seconds: float, func: Callable[..., Awaitable[None]], *args: Any
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

    async def _guarded(self, job_id: str, func: Callable[..., Awaitable[None]], *args: Any) -> None:
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
            self._skipped.discard(job_id)

    async def _actions_job(self) -> None:
        assert self.send_actions is not None
        await self.send_actions()

    async def _pending_list_job(self, account: str) -> None:
        cfg = configured_account(self.config.ccnow, account)
        if await self._resting("ccnow", account, "pending_list", cfg.poll_interval_s) is None:
            return
        started = self.clock()
        report = await self.reconciler.ccnow_pass(cfg, via="poll")
        self.on_pass(f"ccnow/{account} pending list", report)
        await self.reconciler.remember_pass(f"ccnow/{account} pending list", report, started)

    async def _heartbeat_job(self, account: str) -> None:
        """CCV has no list to poll: when no status request succeeded for a poll interval, one
        probe proves the account still answers (so /healthz and source.failed stay true)."""
        cfg = configured_account(self.config.ccv, account)
        state = await self.reconciler.store.sources.state("ccv", account)
        if (
            state.last_success is not None
            and self.clock() - state.last_success < cfg.poll_interval_s
        ):
            return
        if await self._resting("ccv", account, "probe", cfg.poll_interval_s) is None:
            return
        await self.reconciler.probe_ccv(cfg, via="poll")

    async def _due_job(self, source: Source, account: str) -> None:
        cfg = source_account(self.config, source, account)
        failing = await self._resting(source, account, "checks", cfg.poll_interval_s)
        if failing is None:
            return
        # A failing source gets one probe per backoff period, not a storm of checks.
        limit = 1 if failing else cfg.concurrency * DUE_LIMIT_PER_CONCURRENCY
        store = self.reconciler.store
        due = await store.orders.due(source, account, self.clock(), limit)
        if not due:
            return
        # A notification that named an external reference before its order was tracked is
        # applied now: the order's first check counts as notified.
        refs = [s.external_reference for s in due if s.status is None and s.external_reference]
        notified: set[str] = set()
        if refs and source == "ccv" and self.config.receiver is not None:
            not_before = self.clock() - self.config.receiver.remember_ref_s
            notified = await store.sources.take_references(account, refs, not_before)
        if notified:
            hinted = [s.key.order_id for s in due if s.external_reference in notified]
            report = await self.reconciler.check_orders(source, account, hinted, via="notification")
            self.on_pass(f"{source}/{account} notification", report)
        rest = [s.key.order_id for s in due if s.external_reference not in notified]
        started = self.clock()
        report = await self.reconciler.check_orders(source, account, rest, via="poll")
        self.on_pass(f"{source}/{account} due", report)
        await self.reconciler.remember_pass(f"{source}/{account} due", report, started)

    async def _resting(
        self, source: Source, account: str, part: HealthPart, interval_s: float
    ) -> bool | None:
        """Return None while the failing part of an account that a job asks is left alone,
        else whether that part is failing (the other parts are asked as usual)."""
        state = await self.reconciler.store.sources.state(source, account)
        return resting(state, part, interval_s=interval_s, now=self.clock())

    def _job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            if event.job_id not in self._skipped:
                self._skipped.add(event.job_id)
                log.warning(
                    "job.skipped", extra=fields(job=event.job_id, reason="previous run still going")
                )
        elif event.code == EVENT_JOB_MISSED:
            log.warning("job.missed", extra=fields(job=event.job_id))
        elif event.exception is not None and not isinstance(
            event.exception, asyncio.CancelledError
        ):  # cancelled: our own shutdown
            log.error("job.error", extra=fields(job=event.job_id, error=repr(event.exception)))

    async def shutdown(self, timeout_s: float) -> int:
        """Stop starting jobs, cancel the running ones and wait for them at most `timeout_s`;
        return how many had to be cancelled."""
        self._stopping = True
        # Paused, APScheduler starts no job; one it started but that has not run yet returns
        # at once (see `_guarded`) when the loop next turns. Its shutdown would cancel such a
        # job instead, and log that as an error with a traceback.
        self.scheduler.pause()
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        await asyncio.sleep(0)
        self.scheduler.shutdown(wait=False)
        return len(running)
