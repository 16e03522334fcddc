"""`reconciler run`: the long-running service and its lifecycle under systemd.

Start: config is valid, take the writer lock, open the store (and check every page of it when
it is small: a damaged store exits 74 before READY=1), start the receiver and the scheduler, a
catch-up pass in the background, READY=1.

A store that fails while running (a full disk, an I/O error) is logged once when it starts and
once when a write succeeds again; jobs keep trying, /healthz says 503. A store found corrupt
while running stops the daemon with exit 74: a damaged file does not heal, and a failed unit is
what an operator is shown (the unit does not restart on 74).

Stop (SIGTERM/SIGINT): STOPPING=1, stop new work, cancel running jobs (a batch is committed or
rolled back, never half), flush the outbox within a bound, close everything in reverse order,
exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

from .accounts import find_account
from .config import CCNowConfig, CCVConfig, Config
from .logs import fields
from .metrics import Metrics
from .model import OrderKey, Source
from .reconcile import PassReport
from .runtime import Runtime
from .scheduler import Scheduler
from .server import Health, Receiver, SourceHealth, build_app
from .server.api import ApiDeps, ApiListener, build_api
from .server.connections import ConnectionLimits
from .store import Store, StoreError
from .store import submissions as subs
from .store.health import file_size
from .systemd import Notifier
from .writes.ccnow_actions import ActionSender
from .writes.submit import Submitter

log = logging.getLogger("reconciler.daemon")


class StartupError(Exception):
    """The daemon cannot start for a reason worth trying again later (exit 75)."""


STARTUP_READY_WAIT_S = 10.0  # READY waits for the start-up pass at most this long
# Shutdown bounds; together well under the 10 s the service promises (TimeoutStopSec=20s).
RECEIVER_STOP_TIMEOUT_S = 1.0
JOBS_STOP_TIMEOUT_S = 3.0
OUTBOX_FLUSH_TIMEOUT_S = 2.0
# quick_check reads every page: about a second per 100 MiB on a modest disk. Up to this size it
# runs before READY=1; a larger store starts unchecked (its commands must stay fast at 10^6
# orders, so only the pages a statement reads are checked, by SQLite itself).
INTEGRITY_CHECK_MAX_BYTES = 64 << 20


async def check_store(store: Store) -> None:
    """Refuse a damaged store at start (StoreError), when the check is cheap."""
    if file_size(store.path) > INTEGRITY_CHECK_MAX_BYTES:
        return
    problems = await store.quick_check()
    if problems:
        raise StoreError(
            f"database {store.path} is damaged ({problems[0]}): restore it from a backup, or "
            f"recover what is readable with `sqlite3 {store.path} .recover`"
        )


class Daemon:
    """The running service; also the hub the notification receiver calls."""

    def __init__(self, config: Config, runtime: Runtime, notifier: Notifier) -> None:
        self.config = config
        self.rt = runtime
        self.notifier = notifier
        self.scheduler: Scheduler | None = None
        self.actions: ActionSender | None = None
        self.receiver: Receiver | None = None
        self.api: ApiListener | None = None
        self.api_reader: Store | None = None
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
            await self.start_api()
            await self._start_receiver()
            self.scheduler = Scheduler(
                self.config,
                rt.reconciler,
                on_pass=self._on_pass,
                prune=rt.prune,
                send_actions=None if self.actions is None else self.actions.send_due,
            )
            startup = self._spawn(self._startup_pass())
            self.scheduler.start()
            await asyncio.wait(
                [startup, asyncio.ensure_future(stop.wait())],
                timeout=STARTUP_READY_WAIT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stop.is_set():
                return  # stopped (or the store found corrupt) before it was ready
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
        if self.api is not None:
            await self.api.close()
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
            with contextlib.suppress(StoreError):  # logged once by the store's health
                await self.rt.outbox.drain(OUTBOX_FLUSH_TIMEOUT_S)
        if self.api_reader is not None:
            await self.api_reader.close()
        try:
            backlog = await self.rt.store.outbox.pending_counts()
        except StoreError:
            backlog = {}
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
        except StoreError:
            return  # logged once by the store's health; the scheduled jobs keep trying
        except Exception:
            log.error("startup_pass.failed", exc_info=True)
            return
        self._on_pass("start-up catch-up", report)
        try:
            await self.rt.prune()  # then daily (scheduler.py)
        except StoreError:
            return
        except Exception:
            log.error("prune.failed", exc_info=True)

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
        self.receiver = Receiver(
            app,
            shutdown_timeout_s=RECEIVER_STOP_TIMEOUT_S,
            limits=ConnectionLimits.from_config(receiver),
        )
        try:
            await self.receiver.start(receiver.listen_host, receiver.listen_port)
        except OSError as exc:
            where = f"{receiver.listen_host}:{receiver.listen_port}"
            raise StartupError(f"receiver cannot listen on {where}: {exc.strerror}") from None

    async def start_api(self) -> None:
        """Settle submits a stopped process left open, then serve `[api]` when configured."""
        api = self.config.api
        submitter = Submitter(
            self.rt.store,
            self.rt.session,
            accounts=self.config.ccv,
            receiver=self.config.receiver,
            order_id_fields=api.ccv_order_id_fields if api is not None else ("orderId", "id"),
            on_commit=self.rt.outbox.committed,
        )
        # Before anything listens: a submit a stopped process left unanswered is never re-sent.
        await submitter.settle_interrupted()
        if self.config.ccnow:
            self.actions = ActionSender(
                self.rt.store,
                self.rt.session,
                self.rt.reconciler,
                self.config.ccnow,
                on_commit=self.rt.outbox.committed,
            )
            await self.actions.settle_interrupted()
        if api is None:
            return
        self.api_reader = await Store.open(self.config.store_path, readonly=True)
        deps = ApiDeps(
            store=self.rt.store,
            reader=self.api_reader,
            submitter=submitter,
            actions=self.actions,
            refresh=self.refresh_order,
            accounts={
                "ccv": [c.name for c in self.config.ccv],
                "ccnow": [c.name for c in self.config.ccnow],
            },
        )
        self.api = ApiListener(build_api(api, deps), shutdown_timeout_s=RECEIVER_STOP_TIMEOUT_S)
        try:
            await self.api.start(api.listen_host, api.listen_port)
        except OSError as exc:
            where = f"{api.listen_host}:{api.listen_port}"
            raise StartupError(f"api cannot listen on {where}: {exc.strerror}") from None

    async def refresh_order(self, key: OrderKey) -> bool:
        """Check one followed order now (the API's `?refresh=1`); return whether it answered."""
        report = await self.rt.reconciler.check_orders(
            key.source, key.account, [key.order_id], via="poll"
        )
        self._on_pass(f"{key.source}/{key.account} refresh", report)
        return report.checked > report.failed

    # The hub turns failures into state: a failing store is in /healthz and was logged once by
    # the store's health, so a notification that meets it adds nothing more.
    async def check_ccv_order(self, account: str, order_id: str, received_at: float) -> None:
        """A CCV notification for a followed order: check it now."""
        with contextlib.suppress(StoreError):
            await self._notified("ccv", account, [order_id], received_at)

    async def check_ccv_reference(self, account: str, reference: str, received_at: float) -> None:
        """A CCV notification by external reference: check its orders, or remember it."""
        with contextlib.suppress(StoreError):
            await self._check_reference(account, reference, received_at)

    async def _check_reference(self, account: str, reference: str, received_at: float) -> None:
        orders = [
            s
            for s in await self.rt.store.orders.by_reference(reference)
            if s.key.source == "ccv" and s.key.account == account
        ]
        # CCV knows the reference: an uncertain submit of it did reach CCV.
        order_id = orders[0].key.order_id if orders else None
        if await subs.resolve(self.rt.store, account, reference, order_id, time.time()):
            log.info(
                "ccv.submit_resolved",
                extra=fields(account=account, external_reference=reference, order_id=order_id),
            )
        if not orders:
            await self.rt.store.sources.remember_reference(account, reference, time.time())
            log.info(
                "notification.remembered",
                extra=fields(account=account, external_reference=reference),
            )
            return
        await self._notified("ccv", account, [s.key.order_id for s in orders], received_at)

    async def poll_ccnow(self, account: str, order_ids: Sequence[str], received_at: float) -> None:
        """A CCNow server notification: poll the pending list and query the hinted ids."""
        cfg = find_account(self.config.ccnow, account)
        if cfg is None:
            return
        with contextlib.suppress(StoreError):
            await self._poll_ccnow(cfg, order_ids, received_at)

    async def _poll_ccnow(
        self, cfg: CCNowConfig, order_ids: Sequence[str], received_at: float
    ) -> None:
        account = cfg.name
        report = await self.rt.reconciler.ccnow_pass(cfg, via="notification")
        if order_ids:
            # The notification came with the account's token, so its ids are the account's own
            # orders: each is queried, followed or not, and one CCNow knows is followed from now
            # on. The receiver bounds the ids per notification and per account.
            report.add(
                await self.rt.reconciler.check_orders(
                    "ccnow", account, order_ids, via="notification", discover=True
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
        """Return per-source health, the store's and the outbox backlog for /healthz."""
        store = self.rt.store
        try:
            states = {(s.source, s.account): s for s in await store.sources.states()}
            backlog = await store.outbox.pending_counts()
        except StoreError:
            states, backlog = {}, {}
        episode = store.health.current
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
        return Health(
            sources=tuple(entries),
            outbox={
                lane.config.name: backlog.get(lane.config.name, 0) for lane in self.rt.outbox.lanes
            },
            store_failing_since=None if episode is None else episode.since,
            store_error=None if episode is None else episode.error,
        )

    async def refresh_metrics(self) -> None:
        """Update the gauges that are read from the store."""
        store = self.rt.store
        self.metrics.set_followed(await store.orders.counts())
        # Every configured account, recorded or not: an account that never answered exports
        # last success 0, and one no longer configured does not linger.
        states = {(s.source, s.account): s for s in await store.sources.states()}
        stuck = await store.orders.stuck_counts()
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
        backlog = await store.outbox.pending_counts()
        self.metrics.set_outbox_backlog({sink: backlog.get(sink, 0) for sink in sinks})
        dead = await store.outbox.dead_counts()
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
            await check_store(rt.store)
            rt.store.health.watch(on_corrupt=stop.set)
            await Daemon(config, rt, notifier).serve(stop)
            episode = rt.store.health.current
            if episode is not None and episode.kind == "corrupt":
                raise StoreError(f"cannot use database {rt.store.path}: {episode.error}")
    finally:
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        notifier.close()
    return 0
