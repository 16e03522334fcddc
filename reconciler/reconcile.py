"""One reconciliation pass: fetch from the providers -> diff -> one transaction per batch."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from .config import CCNowConfig, CCVConfig, Config, ScheduleConfig
from .diff import diff, source_outcome
from .events import Event
from .model import Observation, Outcome, Source, Via, known_statuses, status_info
from .schedule import plan, stuck_event
from .sinks.base import OutboxEvent
from .sources.ccnow import CCNowClient
from .sources.ccv import CCVClient
from .sources.errors import SourceError
from .store import Store, state_row

if TYPE_CHECKING:
    from .metrics import Metrics

BATCH_ROWS = 2000  # observations per transaction
PENDING_BATCHES = 4  # full batches waiting for the writer before workers wait too
PAGE_ORDERS = 10000  # order ids read from the store at a time during a catch-up
# An order id no order has; `check --online` and the CCV heartbeat expect a 404 for it.
PROBE_ORDER_ID = "reconciler-probe"
SETTLED = tuple(s for s in known_statuses("ccnow") if status_info("ccnow", s).settled)


@dataclass
class PassReport:
    """What a pass did, per account; `ok` means every order answered."""

    checked: int = 0
    failed: int = 0
    events: int = 0
    failed_sources: dict[str, str] = field(default_factory=dict)  # "ccv/default" -> reason

    @property
    def ok(self) -> bool:
        """True when no source failed and no check failed."""
        return not self.failed_sources and self.failed == 0

    def add(self, other: PassReport) -> None:
        """Fold another report into this one."""
        self.checked += other.checked
        self.failed += other.failed
        self.events += other.events
        self.failed_sources.update(other.failed_sources)

    def summary(self) -> str:
        """One line for logs and systemd STATUS=."""
        text = f"checked={self.checked} failed={self.failed} events={self.events}"
        if self.failed_sources:
            text += " failing=" + ",".join(sorted(self.failed_sources))
        return text


class _Batcher:
    """Collects observations from concurrent workers; a writer task commits them a batch at a
    time while the workers go on asking. Workers wait only when PENDING_BATCHES are queued.
    It lives as long as the pass over one account, and so times it for the metrics."""

    def __init__(
        self, reconciler: Reconciler, via: Via, report: PassReport, source: Source, account: str
    ) -> None:
        self.reconciler = reconciler
        self.via = via
        self.report = report
        self.where = (source, account)
        self.started = time.monotonic()
        self.buffer: list[Observation] = []
        self.queue: asyncio.Queue[list[Observation] | None] = asyncio.Queue(PENDING_BATCHES)
        self.writer: asyncio.Task[None] | None = None
        self.error: Exception | None = None

    async def add(self, obs: Observation) -> None:
        self.buffer.append(obs)
        if len(self.buffer) >= BATCH_ROWS:
            if self.error is not None:
                raise self.error  # a failed write stops the workers with its error
            batch, self.buffer = self.buffer, []
            if self.writer is None:
                self.writer = asyncio.ensure_future(self._write())
            await self.queue.put(batch)

    async def flush(self) -> None:
        """Write what is buffered and wait until every batch is committed."""
        batch, self.buffer = self.buffer, []
        writer, self.writer = self.writer, None
        if writer is not None:
            await self.queue.put(None)
            await writer
        if self.error is not None:
            raise self.error
        if batch:
            await self._apply(batch)

    async def close(self) -> None:
        """Stop the writer without writing more (the pass is over or failed)."""
        metrics = self.reconciler.metrics
        if metrics is not None:
            metrics.observe_pass(*self.where, self.via, time.monotonic() - self.started)
        writer, self.writer = self.writer, None
        self.buffer = []
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _write(self) -> None:
        # After a failure the writer goes on taking batches (and drops them), so that no worker
        # waits forever on a full queue; the next `add` or `flush` raises the failure.
        while (batch := await self.queue.get()) is not None:
            if self.error is None:
                try:
                    await self._apply(batch)
                except Exception as exc:
                    self.error = exc

    async def _apply(self, batch: list[Observation]) -> None:
        metrics = self.reconciler.metrics
        if metrics is not None:
            key = batch[0].key
            metrics.observe_checks(key.source, key.account, batch)
        self.report.checked += len(batch)
        self.report.failed += sum(1 for o in batch if o.outcome is Outcome.FAILED)
        # Await first: `report.events += await ...` would read the count before the await.
        events = await self.reconciler.apply(batch, via=self.via)
        self.report.events += events


class Reconciler:
    """Checks orders against the providers and records what changed."""

    def __init__(
        self,
        config: Config,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[Sequence[OutboxEvent] | None], None] = lambda rows: None,
        on_events: Callable[[Sequence[Event]], None] = lambda events: None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.on_commit = on_commit
        self.on_events = on_events
        self.rng = random.Random()
        self.metrics: Metrics | None = None
        self.ccv = {c.name: CCVClient(c, session) for c in config.ccv}
        self.ccnow = {c.name: CCNowClient(c, session) for c in config.ccnow}
        self.schedules: dict[tuple[str, str], ScheduleConfig] = {
            **{("ccv", c.name): c.schedule for c in config.ccv},
            **{("ccnow", c.name): c.schedule for c in config.ccnow},
        }

    # --- writing -----------------------------------------------------------------------------

    async def apply(self, observations: Sequence[Observation], *, via: Via) -> int:
        """Diff observations against the snapshot and commit rows, history and events together.

        Returns the number of events queued.
        """
        now = self.clock()
        store = self.store
        async with store.transaction():
            snapshot = await store.load_orders(o.key for o in observations)
            result = diff(snapshot, observations, now=now, via=via, store_id=store.store_id)
            rows = []
            events = list(result.events)
            alerts = self.config.alerts
            for state in result.states.values():
                stuck = stuck_event(state, alerts=alerts, now=now, store_id=store.store_id, via=via)
                if stuck is not None:
                    state = stuck[0]
                    events.append(stuck[1])
                schedule = self.schedules.get((state.key.source, state.key.account))
                when = None
                if schedule is not None:
                    when = plan(
                        state,
                        changed=state.key in result.changed,
                        schedule=schedule,
                        now=now,
                        jitter=self.rng.random(),
                    )
                rows.append(state_row(state, when))
            await store.save_order_rows(rows)
            stored = await store.add_events(events)
        self._committed(events, stored)
        return len(events)

    async def record_source(
        self, source: Source, account: str, *, ok: bool, via: Via, reason: str | None = None
    ) -> int:
        """Record a pass's outcome for a provider account; return events queued (0 or 1)."""
        now = self.clock()
        store = self.store
        async with store.transaction():
            state = await store.source_state(source, account)
            new, event = source_outcome(
                state, ok=ok, now=now, via=via, store_id=store.store_id, reason=reason
            )
            await store.save_source_state(new)
            stored = await store.add_events([event]) if event is not None else []
        if event is not None:
            # The event's own log line (log sink) is the one line an operator sees.
            self._committed([event], stored)
        return 1 if event is not None else 0

    def _committed(self, events: Sequence[Event], stored: Sequence[OutboxEvent] | None) -> None:
        if events:
            if self.metrics is not None:
                self.metrics.observe_events(events)
            self.on_events(events)
            self.on_commit(stored)

    # --- passes ------------------------------------------------------------------------------

    async def catch_up(self, source: Source | None = None) -> PassReport:
        """Check every followed order not in an end state once, plus the CCNow pending list."""
        report = PassReport()
        if source in (None, "ccnow"):
            for ccnow in self.config.ccnow:
                report.add(await self.ccnow_pass(ccnow, via="catch-up", everything=True))
        if source in (None, "ccv"):
            for ccv in self.config.ccv:
                report.add(await self.ccv_pass(ccv, via="catch-up"))
        return report

    async def ccv_pass(self, cfg: CCVConfig, *, via: Via) -> PassReport:
        """Check every open order of one CCV account, a page of ids at a time."""
        report = PassReport()
        batcher = _Batcher(self, via, report, "ccv", cfg.name)
        client = self.ccv[cfg.name]
        after = 0
        try:
            while True:
                ids, after = await self.store.open_orders_page(
                    "ccv", cfg.name, after=after, limit=PAGE_ORDERS
                )
                if ids:
                    await client.check_orders(ids, batcher.add)
                if len(ids) < PAGE_ORDERS:
                    break  # the last page: no need to ask for the next one
            await batcher.flush()
        except SourceError as exc:
            await batcher.flush()
            return await self._source_failed(report, "ccv", cfg.name, exc, via)
        finally:
            await batcher.close()
            self.store.forget_page()
        answered = report.checked - report.failed
        if report.checked and not answered:
            reason = "every check failed"
            report.failed_sources[f"ccv/{cfg.name}"] = reason
            report.events += await self.record_source(
                "ccv", cfg.name, ok=False, via=via, reason=reason
            )
        else:
            report.events += await self.record_source("ccv", cfg.name, ok=True, via=via)
        return report

    async def ccnow_pass(
        self, cfg: CCNowConfig, *, via: Via, everything: bool = False
    ) -> PassReport:
        """Fetch the pending list, then query the orders whose state it cannot tell.

        With `everything`, every open order is queried (catch-up); otherwise only the orders
        that left the pending list since the last poll.
        """
        report = PassReport()
        batcher = _Batcher(self, via, report, "ccnow", cfg.name)
        client = self.ccnow[cfg.name]
        try:
            listed = await client.pending_list()
            listed_ids = {o.key.order_id for o in listed}
            if everything:
                to_query = await self._all_open_ids("ccnow", cfg.name, cfg.schedule)
            else:
                before = await self.store.orders_with_status("ccnow", cfg.name, ["pending"])
                to_query = [s.key.order_id for s in before]
            for obs in listed:
                await batcher.add(obs)
            await batcher.flush()
            left = [oid for oid in to_query if oid not in listed_ids]
            if left:
                await client.query(left, batcher.add)
            await batcher.flush()
        except SourceError as exc:
            await batcher.flush()
            return await self._source_failed(report, "ccnow", cfg.name, exc, via)
        finally:
            await batcher.close()
        report.events += await self.record_source("ccnow", cfg.name, ok=True, via=via)
        return report

    async def check_orders(
        self, source: Source, account: str, order_ids: Iterable[str], *, via: Via
    ) -> PassReport:
        """Check given orders of one account now (due ticks, notifications)."""
        report = PassReport()
        batcher = _Batcher(self, via, report, source, account)
        ids = list(order_ids)
        if not ids:
            return report
        try:
            if source == "ccv":
                await self.ccv[account].check_orders(ids, batcher.add)
            else:
                await self.ccnow[account].query(ids, batcher.add)
            await batcher.flush()
        except SourceError as exc:
            await batcher.flush()
            return await self._source_failed(report, source, account, exc, via)
        finally:
            await batcher.close()
        if report.checked > report.failed:
            report.events += await self.record_source(source, account, ok=True, via=via)
        return report

    async def probe_ccv(self, cfg: CCVConfig, *, via: Via) -> None:
        """Ask CCV for an order id that does not exist: a 404 proves key and service work."""
        try:
            obs = await self.ccv[cfg.name].fetch(PROBE_ORDER_ID)
        except SourceError as exc:
            await self._source_failed(PassReport(), "ccv", cfg.name, exc, via)
            return
        if obs.outcome is not Outcome.FAILED:
            await self.record_source("ccv", cfg.name, ok=True, via=via)

    async def _all_open_ids(self, source: Source, account: str, sched: ScheduleConfig) -> list[str]:
        ids: list[str] = []
        after = ""
        while True:
            page = await self.store.open_order_ids(
                source,
                account,
                after=after,
                limit=PAGE_ORDERS,
                settled_since=self.clock() - sched.watch_settled_s,
                settled=SETTLED,
            )
            if not page:
                return ids
            ids.extend(page)
            after = page[-1]

    async def _source_failed(
        self, report: PassReport, source: Source, account: str, exc: SourceError, via: Via
    ) -> PassReport:
        reason = str(exc) or exc.reason
        report.failed_sources[f"{source}/{account}"] = reason
        report.events += await self.record_source(source, account, ok=False, via=via, reason=reason)
        return report
