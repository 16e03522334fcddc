"""`reconciler run`: the long-running service and its lifecycle under systemd.

Start: config is valid, take the writer lock, open the store, start the receiver and the
scheduler, a catch-up pass in the background, READY=1. Stop (SIGTERM/SIGINT): STOPPING=1, stop
new work, cancel running jobs (a batch is committed or rolled back, never half), flush the
outbox within a bound, close everything in reverse order, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

from .config import CCNowConfig, CCVConfig, Config
from .logs import fields
from .metrics import Metrics
from .model import OrderKey, Source
from .reconcile import PassReport
from .runtime import Runtime
from .scheduler import Scheduler
from .server import Health, Receiver, SourceHealth, build_app
from .systemd import Notifier

log = logging.getLogger("reconciler.daemon")


class StartupError(Exception):
    """The daemon cannot start for a reason worth trying again later (exit 75)."""


STARTUP_READY_WAIT_S = 10.0  # READY waits for the start-up pass at most this long
# Shutdown bounds; together well under the 10 s the service promises (TimeoutStopSec=20s).
RECEIVER_STOP_TIMEOUT_S = 1.0
JOBS_STOP_TIMEOUT_S = 3.0
OUTBOX_FLUSH_TIMEOUT_S = 2.0


class Daemon:
    """The running service; also the hub the notification receiver calls."""

    def __init__(self, config: Config, runtime: Runtime, notifier: Notifier) -> None:
        self.config = config
        self.rt = runtime
        self.notifier = notifier
        self.scheduler: Scheduler | None = None
        self.receiver: Receiver | None = None
        self.metrics = Metrics()
        runtime.reconciler.metrics = self.metrics
        self._tasks: set[asyncio.Task[Any]] = set()
        self.last_pass = "starting"

    # --- lifecycle ---------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set."""
        rt = self.rt
        watchdog = asyncio.ensure_future(self.notifier.run_watchdog())
        outbox = asyncio.ensure_future(rt.outbox.run())
        try:
            await self._start_receiver()
            self.scheduler = Scheduler(self.config, rt.reconciler, on_pass=self._on_pass)
            startup = self._spawn(self._startup_pass())
            self.scheduler.start()
            await asyncio.wait(
                [startup, asyncio.ensure_future(stop.wait())],
                timeout=STARTUP_READY_WAIT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            self.notifier.ready(status=self._status_line())
            log.info(
                "daemon.ready",
                extra=fields(
                    store=str(self.config.store_path),
                    receiver=self._listen_text(),
                    event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
                ),
            )
            await stop.wait()
        finally:
            self.notifier.stopping()
            log.info("daemon.stopping")
            await self._shutdown(outbox)
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def _shutdown(self, outbox: asyncio.Future[None]) -> None:
        cancelled = 0
        if self.receiver is not None:
            await self.receiver.close()
        if self.scheduler is not None:
            cancelled += await self.scheduler.shutdown(JOBS_STOP_TIMEOUT_S)
        for task in list(self._tasks):
            task.cancel()
            cancelled += 1
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=JOBS_STOP_TIMEOUT_S)
        self.rt.outbox.stop()
        try:
            await asyncio.wait_for(asyncio.shield(outbox), OUTBOX_FLUSH_TIMEOUT_S)
        except asyncio.TimeoutError:
            outbox.cancel()
            await asyncio.gather(outbox, return_exceptions=True)
        else:
            await self.rt.outbox.drain(OUTBOX_FLUSH_TIMEOUT_S)
        backlog = await self.rt.store.undelivered_count()
        log.info(
            "daemon.stopped",
            extra=fields(
                cancelled_jobs=cancelled, undelivered={k: v for k, v in backlog.items() if v}
            ),
        )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _startup_pass(self) -> None:
        try:
            report = await self.rt.reconciler.catch_up()
        except Exception:
            log.error("startup_pass.failed", exc_info=True)
            return
        self._on_pass("start-up catch-up", report)

    def _on_pass(self, name: str, report: PassReport) -> None:
        self.last_pass = f"{name}: {report.summary()}"
        self.notifier.status(self._status_line())

    def _status_line(self) -> str:
        return f"last pass {self.last_pass}"

    def _listen_text(self) -> str | None:
        r = self.config.receiver
        return None if r is None else f"{r.listen_host}:{r.listen_port}"

    # --- receiver, health, metrics ------------------------------------------------------------

    async def _start_receiver(self) -> None:
        receiver = self.config.receiver
        if receiver is None:
            return
        app = build_app(
            receiver,
            self,
            ccv_accounts=[c.name for c in self.config.ccv],
            ccnow_tokens={
                c.name: c.notification_token
                for c in self.config.ccnow
                if c.notification_token is not None
            },
            metrics=self.metrics,
        )
        self.receiver = Receiver(app, shutdown_timeout_s=RECEIVER_STOP_TIMEOUT_S)
        try:
            await self.receiver.start(receiver.listen_host, receiver.listen_port)
        except OSError as exc:
            where = f"{receiver.listen_host}:{receiver.listen_port}"
            raise StartupError(f"receiver cannot listen on {where}: {exc.strerror}") from None

    async def check_ccv_order(self, account: str, order_id: str, received_at: float) -> None:
        """A CCV notification for a followed order: check it now."""
        await self._notified("ccv", account, [order_id], received_at)

    async def check_ccv_reference(self, account: str, reference: str, received_at: float) -> None:
        """A CCV notification by external reference: check its orders, or remember it."""
        orders = [
            s
            for s in await self.rt.store.find_by_reference(reference)
            if s.key.source == "ccv" and s.key.account == account
        ]
        if not orders:
            await self.rt.store.remember_reference(account, reference, time.time())
            log.info(
                "notification.remembered",
                extra=fields(account=account, external_reference=reference),
            )
            return
        await self._notified("ccv", account, [s.key.order_id for s in orders], received_at)

    async def poll_ccnow(self, account: str, order_ids: Sequence[str], received_at: float) -> None:
        """A CCNow server notification: poll the pending list and query the hinted ids."""
        cfg = next((c for c in self.config.ccnow if c.name == account), None)
        if cfg is None:
            return
        report = await self.rt.reconciler.ccnow_pass(cfg, via="notification")
        known = await self.rt.store.load_orders(OrderKey("ccnow", account, o) for o in order_ids)
        if known:
            report.add(
                await self.rt.reconciler.check_orders(
                    "ccnow", account, [k.order_id for k in known], via="notification"
                )
            )
        self._latency("ccnow", report, received_at)
        self._on_pass(f"ccnow/{account} notification", report)

    async def _notified(
        self, source: Source, account: str, order_ids: list[str], received_at: float
    ) -> None:
        report = await self.rt.reconciler.check_orders(
            source, account, order_ids, via="notification"
        )
        self._latency(source, report, received_at)
        self._on_pass(f"{source}/{account} notification", report)

    def _latency(self, source: str, report: PassReport, received_at: float) -> None:
        if report.events:
            self.metrics.observe_notification_latency(source, time.monotonic() - received_at)

    async def health(self) -> Health:
        """Return per-source health and the outbox backlog for /healthz."""
        states = {(s.source, s.account): s for s in await self.rt.store.source_states()}
        entries: list[SourceHealth] = []
        accounts: list[tuple[Source, CCVConfig | CCNowConfig]] = [
            *(("ccv", c) for c in self.config.ccv),
            *(("ccnow", c) for c in self.config.ccnow),
        ]
        for source, acc in accounts:
            st = states.get((source, acc.name))
            entries.append(
                SourceHealth(
                    source=source,
                    account=acc.name,
                    last_success=st.last_success if st else None,
                    failure_streak=st.failure_streak if st else 0,
                    failing=st.failing if st else False,
                    interval_s=acc.poll_interval_s,
                )
            )
        backlog = await self.rt.store.undelivered_count()
        return Health(
            sources=tuple(entries),
            outbox={
                lane.config.name: backlog.get(lane.config.name, 0) for lane in self.rt.outbox.lanes
            },
        )

    async def refresh_metrics(self) -> None:
        """Update the gauges that are read from the store."""
        store = self.rt.store
        self.metrics.set_followed(await store.count_orders())
        # Every configured account, recorded or not: an account that never answered exports
        # last success 0, and one no longer configured does not linger.
        states = {(s.source, s.account): s for s in await store.source_states()}
        stuck = await store.stuck_count()
        accounts: list[tuple[Source, CCVConfig | CCNowConfig]] = [
            *(("ccv", c) for c in self.config.ccv),
            *(("ccnow", c) for c in self.config.ccnow),
        ]
        for source, acc in accounts:
            st = states.get((source, acc.name))
            self.metrics.set_last_success(source, acc.name, st.last_success if st else None)
            self.metrics.set_source(
                source,
                acc.name,
                failing=st.failing if st else False,
                poll_interval_s=acc.poll_interval_s,
            )
        self.metrics.set_stuck({(s, a.name): stuck.get((s, a.name), 0) for s, a in accounts})
        sinks = [lane.config.name for lane in self.rt.outbox.lanes]
        backlog = await store.undelivered_count()
        self.metrics.set_outbox_backlog({sink: backlog.get(sink, 0) for sink in sinks})
        dead = await store.dead_letter_count()
        self.metrics.set_dead_letters({sink: dead.get(sink, 0) for sink in sinks})


async def run_daemon(config: Config) -> int:
    """Run the service until SIGTERM or SIGINT; return the exit code."""
    notifier = Notifier.from_environ()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("daemon.force_exit", extra=fields(signal=signal.Signals(signum).name))
            raise SystemExit(1)
        log.info("daemon.signal", extra=fields(signal=signal.Signals(signum).name))
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with Runtime(config) as rt:
            await Daemon(config, rt, notifier).serve(stop)
    finally:
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        notifier.close()
    return 0
