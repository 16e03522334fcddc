"""`reconciler run`: the long-running service and its lifecycle under systemd.

Start: config is valid, take the writer lock, open the store (and check every page of it when
it is small: a damaged store exits 74 before READY=1), start the receiver and the scheduler, a
catch-up pass in the background (and a probe of each CCV account it asked nothing), READY=1.

A store that fails while running (a full disk, an I/O error) is logged once when it starts and
once when a write succeeds again; jobs keep trying, /healthz says 503. A store found corrupt
while running stops the daemon with exit 74: a damaged file does not heal, and a failed unit is
what an operator is shown (the unit does not restart on 74).

Stop (SIGTERM/SIGINT/SIGHUP): STOPPING=1, stop new work (no job starts, no write is sent, both
listeners stop accepting at once; notification checks under way get a second to end, writes
sent to a provider their timeout: writes/in_flight.py), cancel running jobs (a batch is
committed or rolled back, never half), flush the outbox within a bound, close both listeners'
connections (answering 503 `stopping` until then) and everything else in reverse order, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from . import eventloop
from .config import Config
from .delivery import TICK_S
from .exits import EX_IOERR
from .logs import fields
from .metrics import Metrics
from .passes.hint_gate import MAX_WAIT_S
from .poller.coordinator import MAX_TICK_S, NamedReport
from .poller.unconfigured import warn_not_configured
from .redact import config_secrets
from .runtime import INTEGRITY_CHECK_MAX_BYTES, Runtime, check_store
from .scheduler import Scheduler
from .server import Receiver, build_app
from .server.api import API_LIMITS, ApiDeps, ApiListener, build_api
from .server.connections import ConnectionLimits
from .server.hub import Hub
from .store import Store, StoreError
from .systemd import Notifier
from .writes.ccnow_actions import ActionSender
from .writes.in_flight import InFlight, writes_stop_s
from .writes.submit import Submitter

log = logging.getLogger("reconciler.daemon")


@dataclass(frozen=True)
class Ticks:
    """How often the daemon reads its store for work another process left there (events a
    `replay` queued, CCNow commands a command line queued), how long a pass gives way to a hint.
    Not config: a test's daemon takes other ones, where the usual ones prove nothing."""

    outbox_s: float = TICK_S
    actions_s: float = MAX_TICK_S
    hint_s: float = MAX_WAIT_S  # the longest a pass gives way at a time (passes/hint_gate.py)
    ready_s: float = 10.0  # READY waits for the start-up pass at most this long


TICKS = Ticks()

# Shutdown bounds. At the worst: the writes sent to a provider their longest timeout + 2 s, at
# most 30 s, and 1 s for those cut then to end (in_flight.py), counted from the stop's start
# (the receiver's checks' 1 s and the jobs' 3 s meanwhile), tasks 3 s, the outbox 4 s, both
# listeners' last answers 1 s: 39 s, under the unit's TimeoutStopSec=60s.
RECEIVER_STOP_TIMEOUT_S = 1.0
NOTIFICATION_CHECKS_STOP_TIMEOUT_S = 1.0  # checks under way may end; CCV does not call again
JOBS_STOP_TIMEOUT_S = 3.0
OUTBOX_FLUSH_TIMEOUT_S = 4.0
# Of the outbox's time, what is kept for an abandoned command sink's program to go (its kill
# waits up to 1 s) and for recording what the sinks confirmed: attempts still under way before
# it are abandoned. Less, and the drain's own bound would cancel it holding confirmations.
OUTBOX_RECORD_S = 1.5


class Daemon:
    """The running service: builds its parts, starts them and stops them in order."""

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        notifier: Notifier,
        *,
        api_limits: ConnectionLimits = API_LIMITS,
        ticks: Ticks = TICKS,
        submitter: Submitter | None = None,
    ) -> None:
        self.config = config
        # The API's CCV submits go through it (the runtime's own unless given: a test's).
        self.submitter = submitter
        self.api_limits = api_limits
        self.ticks = ticks
        self.rt = runtime
        self.notifier = notifier
        self.scheduler: Scheduler | None = None
        self.actions: ActionSender | None = None
        self.receiver: Receiver | None = None
        self.api: ApiListener | None = None
        self.api_reader: Store | None = None
        self.metrics = Metrics()
        runtime.reconciler.metrics = self.metrics
        runtime.reconciler.on_health = lambda: self._spawn(self._send_status())
        runtime.store.health.on_change = runtime.reconciler.on_health  # failing or recovered
        runtime.store.events_committed = self.metrics.observe_events
        self.hub = Hub(
            config,
            runtime.coordinators,
            runtime.store,
            runtime.delivery,
            self.metrics,
            on_pass=self._on_pass,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.writes = InFlight()
        self.last_pass = "starting"
        self.failing: list[str] = []  # "ccv/default", as of the last status sent
        self.stopped = False  # asked to stop and daemon.stopped logged (not when serve fails)

    # --- lifecycle ---------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set."""
        rt = self.rt
        watchdog = asyncio.ensure_future(self.notifier.run_watchdog())
        delivering = asyncio.ensure_future(rt.delivery.run())
        ended = False  # served until stop: a failed start's unwind is no stop (its 75, 74 stay)
        try:
            await self.start_api()
            await self._start_receiver()
            self.scheduler = Scheduler(
                rt.coordinators,
                on_pass=self._on_pass,
                prune=rt.prune,
                send_actions=self.actions.send_due if self.actions and self.config.ccnow else None,
                actions_every_s=self.ticks.actions_s,
                store_failed=rt.store.unusable,
            )
            await self._send_status()  # READY=1 names the failing accounts before a pass ends
            startup = self._spawn(self._startup_pass())
            self.scheduler.start()
            await asyncio.wait(
                [startup, asyncio.ensure_future(stop.wait())],
                timeout=self.ticks.ready_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not stop.is_set():  # else stopped (or the store found corrupt) before it was ready
                self.notifier.ready(status=self._status_line())
                log.info(
                    "daemon.ready",
                    extra=fields(
                        store=str(self.config.store_path),
                        receiver=(r := self.config.receiver) and f"{r.listen_host}:{r.listen_port}",
                        event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
                    ),
                )
            await stop.wait()
            ended = True
        finally:
            self.notifier.stopping()
            log.info("daemon.stopping")
            await self._shutdown(delivering)
            self.stopped = ended  # at daemon.stopped: a signal after it is no second one
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def _shutdown(self, delivering: asyncio.Future[None]) -> None:
        # No new work from here: no job starts, and both listeners stop accepting at once (the
        # receiver took notifications while the API waited for a request in flight).
        if self.scheduler is not None:
            self.scheduler.stop_starting()
        self.writes.stop(writes_stop_s(self.config))
        try:
            cancelled = await self._stop_work(delivering)
        finally:
            # Last: connections taken before the stop answer 503 until now, not cut off unanswered.
            listeners = [x for x in (self.api, self.receiver) if x is not None]
            await asyncio.gather(*(x.close() for x in listeners))
            # Before the runtime closes its lock's descriptor of the database (SQLite's locks).
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

    async def _stop_work(self, delivering: asyncio.Future[None]) -> int:
        cancelled = 0  # jobs and tasks
        listeners = [x for x in (self.api, self.receiver) if x is not None]
        await asyncio.gather(*(x.stop_accepting() for x in listeners))
        if self.scheduler is not None:
            cancelled += await self.scheduler.shutdown(JOBS_STOP_TIMEOUT_S)
        await self.writes.wait()  # a job's (cancelled above), the API's (its caller then answered)
        for task in list(self._tasks):
            task.cancel()
            cancelled += 1
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=JOBS_STOP_TIMEOUT_S)
        await self._flush_outbox(delivering)
        return cancelled

    async def _flush_outbox(self, delivering: asyncio.Future[None]) -> None:
        """Stop delivery within OUTBOX_FLUSH_TIMEOUT_S whatever the sinks do: a lane waiting to
        retry stops at once, an answer under way is waited for until the bound, then what is
        due and not waiting for a retry is flushed in the time left."""
        delivery = self.rt.delivery
        end = time.monotonic() + OUTBOX_FLUSH_TIMEOUT_S
        delivery.stop(within_s=OUTBOX_FLUSH_TIMEOUT_S - OUTBOX_RECORD_S)
        try:
            # The cutoff ends it in time; this is for a store that does not answer.
            await asyncio.wait_for(asyncio.shield(delivering), OUTBOX_FLUSH_TIMEOUT_S)
        except asyncio.TimeoutError:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)
            return
        left = end - time.monotonic()
        if left <= OUTBOX_RECORD_S:
            return
        with contextlib.suppress(StoreError, asyncio.TimeoutError):  # StoreError: logged once
            await asyncio.wait_for(
                delivery.drain(left - OUTBOX_RECORD_S, grace_s=0.0, retries=False), left
            )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _startup_pass(self) -> None:
        try:
            report = await self.rt.coordinators.startup_pass()
        except StoreError:
            return  # logged once by the store's health; the scheduled jobs keep trying
        except Exception:
            log.error("startup_pass.failed", exc_info=True)
            return
        self._on_pass(NamedReport("start-up catch-up", report, is_pass=True))
        try:
            await self.rt.prune()  # then daily (scheduler.py)
        except StoreError:
            return
        except Exception:
            log.error("prune.failed", exc_info=True)

    def _on_pass(self, named: NamedReport) -> None:
        # A notification's check or an API refresh is no pass (README, `status` `last_pass`):
        # the line keeps the last pass, though what the check found may change `failing`.
        if named.is_pass:
            self.last_pass = f"{named.name}: {named.report.summary()}"
        self._spawn(self._send_status())

    async def _send_status(self) -> None:
        # The accounts failing now, whatever pass came last: the line an operator reads in
        # `systemctl status` must not drop a failing account one poll interval later.
        configured = self.config.schedules()  # by (source, account)
        with contextlib.suppress(StoreError):
            self.failing = sorted(
                f"{s.source}/{s.account}"
                for s in await self.rt.store.sources.states()
                if s.failing and (s.source, s.account) in configured
            )
        self.notifier.status(self._status_line())

    def _status_line(self) -> str:
        # A failing store first: no pass records anything meanwhile, whatever the line says.
        episode = self.rt.store.health.current
        store = [f"store failing ({episode.kind})"] if episode else []
        accounts = [f"failing {','.join(self.failing)}"] if self.failing else []
        return "; ".join([*store, *accounts, f"last pass {self.last_pass}"])

    # --- receiver and API ------------------------------------------------------------

    async def _start_receiver(self) -> None:
        receiver = self.config.receiver
        if receiver is None:
            return
        app = build_app(
            receiver,
            self.hub,
            ccv_accounts=[c.name for c in self.config.ccv],
            ccnow_tokens={c.name: c.notification_token for c in self.config.ccnow},
            metrics=self.metrics,
            checks_stop_timeout_s=NOTIFICATION_CHECKS_STOP_TIMEOUT_S,
        )
        limits = ConnectionLimits.from_config(receiver)
        self.receiver = Receiver(app, shutdown_timeout_s=RECEIVER_STOP_TIMEOUT_S, limits=limits)
        where = (receiver.listen_host, receiver.listen_port)
        await self.receiver.start_as(*where, file=self.config.file, key="receiver.listen")

    async def start_api(self) -> None:
        """Make the writers (CCV submits and prices, CCNow actions), then serve `[api]` when
        configured. The writes a stopped process left open are settled before: Runtime's start."""
        api = self.config.api
        submitter = self.submitter or self.rt.submitter(self.writes, give_way=True)
        # Also without a CCNow account: the API settles by a person's word the uncertain
        # actions of an account the config no longer names.
        self.actions = self.rt.action_sender(self.writes)
        if api is None:
            return
        self.api_reader = await Store.open(self.config.store_path, readonly=True)
        # One store, one health: a damaged page the API's reads find first is logged once and
        # stops the daemon (74) as the writer's would; a busy read is a wait (StoreHealth).
        self.api_reader.health = self.rt.store.health
        deps = ApiDeps(
            store=self.rt.store,
            reader=self.api_reader,
            submitter=submitter,
            actions=self.actions,
            refresh=self.hub.refresh_order,
            accounts={
                "ccv": [c.name for c in self.config.ccv],
                "ccnow": [c.name for c in self.config.ccnow],
            },
            watched=self.config.watch_settled(),
            secrets=config_secrets(self.config),
            body_timeout_s=self.api_limits.header_timeout_s,
            metrics=self.metrics,
        )
        app = build_api(api, deps)
        # Run as the API closes, before its requests' 1 s to answer: a caller whose write was
        # sent gets the provider's answer (the stop waited for the writes already, unless one of
        # its steps before that wait failed).
        app.on_shutdown.append(lambda _: self.writes.wait())
        self.api = ApiListener(app, self.api_limits, shutdown_timeout_s=RECEIVER_STOP_TIMEOUT_S)
        await self.api.start_as(
            api.listen_host, api.listen_port, file=self.config.file, key="api.listen"
        )


async def run_daemon(
    config: Config,
    *,
    integrity_check_max_bytes: int = INTEGRITY_CHECK_MAX_BYTES,
    stop: asyncio.Event | None = None,
    ticks: Ticks = TICKS,
) -> int:
    """Run the service until SIGTERM, SIGINT or SIGHUP, or until `stop` is set when given (then no
    signal handler is installed); return the exit code. A store of up to
    `integrity_check_max_bytes` is checked before anything runs."""
    notifier = Notifier.from_environ()
    loop = asyncio.get_running_loop()
    signals = eventloop.stop_signals() if stop is None else ()
    stopping = asyncio.Event() if stop is None else stop
    echo = eventloop.SigtermEcho()
    served: Daemon | None = None
    signalled = False  # the stop a damaged store begins is no signal's: a signal then is a first

    def on_signal(signum: int, _frame: object = None) -> None:
        nonlocal signalled
        if echo(signum):
            return
        if served is not None and served.stopped:
            # Nothing left to cut short, but closing the store and sinks, or asyncio.run's wait
            # for its threads, may hang: ended cleanly (ignored, only SIGKILL ended it).
            bad = served.rt.store.health.current  # a damaged store's 74 (logged) stays
            eventloop.exit_now(EX_IOERR if bad is not None and bad.kind == "corrupt" else 0)
        if signalled:
            log.warning("daemon.force_exit", extra=fields(signal=signal.Signals(signum).name))
            # At once, as a kill would (the store is safe: WAL, synchronous=FULL): unwinding
            # waited for what the stop waits for, a slow sink, and a SystemExit until a third.
            eventloop.exit_now(1)
        signalled = True
        log.info("daemon.signal", extra=fields(signal=signal.Signals(signum).name))
        stopping.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with Runtime(config, outbox_tick_s=ticks.outbox_s, hint_wait_s=ticks.hint_s) as rt:
            await check_store(rt.store, max_bytes=integrity_check_max_bytes)
            await warn_not_configured(config, rt.store)
            rt.store.health.watch(on_corrupt=stopping.set)
            served = Daemon(config, rt, notifier, ticks=ticks)
            await served.serve(stopping)
            episode = rt.store.health.current
            if episode is not None and episode.kind == "corrupt":
                raise StoreError(f"cannot use database {rt.store.path}: {episode.error}")
    finally:
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
                # Not SIG_DFL, which killed it (129, 130, 143) as it wound down: after a clean
                # stop a signal exits at once; a failed start's unwind ignores it (75, 74 stay).
                signal.signal(sig, on_signal if served and served.stopped else signal.SIG_IGN)
        notifier.close()
    return 0
