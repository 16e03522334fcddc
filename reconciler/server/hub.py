"""What the receiver and the API ask of the running daemon: notifications and refreshes go to
the account's coordinator (poller/) as hints; /healthz and /metrics read the store.

Failures become state, not log lines: a failing store is in /healthz and was logged once by the
store's health, so a notification that meets it adds nothing more.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import CCNowConfig, CCVConfig, Config
from ..delivery import Delivery
from ..logs import fields
from ..metrics import Metrics
from ..model import OrderKey, Source, SourceState
from ..passes.report import PassReport
from ..poller.coordinator import Coordinator, NamedReport
from ..poller.coordinators import Coordinators
from ..schedule import rest_ahead
from ..store import Store, StoreError
from .health import Health, SourceHealth
from .notification_hub import not_recorded

log = logging.getLogger("reconciler.server")


class Hub:
    """The daemon's side of the receiver's NotificationHub and of the API's refresh."""

    def __init__(
        self,
        config: Config,
        coordinators: Coordinators,
        store: Store,
        delivery: Delivery,
        metrics: Metrics,
        *,
        on_pass: Callable[[NamedReport], None] = lambda named: None,
    ) -> None:
        self.config = config
        self.coordinators = coordinators
        self.store = store
        self.delivery = delivery
        self.metrics = metrics
        self.on_pass = on_pass

    async def refresh_order(self, key: OrderKey) -> bool:
        """Check one followed order now (the API's `?refresh=1`); return whether it answered."""
        coordinator = self.coordinators.get(key.source, key.account)
        if coordinator is None:
            return False
        report = await coordinator.check([key.order_id], via="poll")
        self.on_pass(NamedReport(f"{key.source}/{key.account} refresh", report, is_pass=False))
        return report.checked > report.failed

    async def record_ccv_order(self, account: str, order_id: str) -> bool:
        """Keep a CCV notification for a followed order in the store before it is answered 202
        (poller/ccv_notified.py): CCV calls once, and it stands until a check of the order
        answers, through a stop or a crash before its check. Return whether it was kept (not:
        no such account, or an order nobody follows). One tracked a moment later loses nothing:
        its check, coming after the track, keeps it then, and whatever stops meanwhile, a newly
        tracked order's first check is due at once and asks after the call. Raises StoreError."""
        coordinator = self.coordinators.ccv.get(account)
        if coordinator is None:
            return False
        return await coordinator.note_notified(order_id, followed_only=True)

    async def record_ccv_reference(self, account: str, reference: str) -> bool:
        """Record a CCV notification by external reference before it is answered 202: an
        uncertain submit of it settled, the reference remembered, the notification kept for
        each followed order carrying it. Return whether it was (a configured account).
        Raises StoreError."""
        coordinator = self.coordinators.ccv.get(account)
        if coordinator is None:
            return False
        await coordinator.record_reference(reference)
        return True

    async def check_ccv_order(
        self, account: str, order_id: str, received_at: float, *, recorded: bool = False
    ) -> None:
        """A CCV notification for a followed order: check it now. One nobody follows (never
        tracked, or untracked since) is not asked about: its answer would be dropped.
        `recorded`: `record_ccv_order` kept it when it came; else it is kept now."""
        coordinator = self.coordinators.ccv.get(account)
        if coordinator is None:
            return
        with contextlib.suppress(StoreError), self._hint():
            if not await self.store.orders.load([OrderKey("ccv", account, order_id)]):
                log.info(
                    "notification.not_followed",
                    extra=fields(
                        source="ccv",
                        account=account,
                        order_id=order_id,
                        hint="reconciler track ccv ID follows it",
                    ),
                )
                return
            if not recorded:
                # Not kept when it came (the store failed then, or the order was tracked since):
                # kept now. A store that cannot keep it does not cost the check itself.
                try:
                    await coordinator.note_notified(order_id)
                except StoreError as exc:
                    not_recorded(account, "check", str(exc), order_id=order_id)
            report = await coordinator.check([order_id], via="notification")
            self._notified(coordinator, report, received_at)

    async def check_ccv_reference(
        self, account: str, reference: str, received_at: float, *, recorded: bool = False
    ) -> None:
        """A CCV notification by external reference: check its orders, or remember it.
        `recorded`: `record_ccv_reference` recorded it when it came; else it is recorded now."""
        coordinator = self.coordinators.ccv.get(account)
        if coordinator is None:
            return
        with contextlib.suppress(StoreError), self._hint():
            if not recorded:
                # As for an order: a store that cannot record it does not cost the check.
                try:
                    await coordinator.record_reference(reference)
                except StoreError as exc:
                    not_recorded(account, "check", str(exc), reference=reference)
            report = await coordinator.check_reference(reference, recorded=True)
            if report is not None:
                self._notified(coordinator, report, received_at)

    async def poll_ccnow(
        self,
        account: str,
        order_ids: Sequence[str],
        received_at: float,
        mentioned: Sequence[str] = (),
    ) -> None:
        """A CCNow server notification: poll the pending list and query the hinted ids (the
        `mentioned` ones only if followed already)."""
        coordinator = self.coordinators.ccnow.get(account)
        if coordinator is None:
            return
        with contextlib.suppress(StoreError), self._hint():
            report = await coordinator.notified(order_ids, mentioned=mentioned)
            self._notified(coordinator, report, received_at)

    def _hint(self) -> contextlib.AbstractContextManager[None]:
        """Mark a notification's check as running: passes give way meanwhile (hint_gate.py)."""
        return self.coordinators.writer.hints.running()

    def _notified(
        self, coordinator: Coordinator[Any], report: PassReport, received_at: float
    ) -> None:
        # Every check a notification caused, whatever it found: the slow ones are often those
        # that found nothing new or failed.
        latency_s = time.monotonic() - received_at
        self.metrics.observe_notification_latency(coordinator.source, latency_s)
        self.on_pass(NamedReport(f"{coordinator.name} notification", report, is_pass=False))

    async def health(self) -> Health:
        """Return per-source health, the store's and the outbox backlog for /healthz."""
        store = self.store
        store.health.check_file()  # a store gone commits on as if nothing happened
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
        now = self.coordinators.writer.clock()
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
                    rest_until=self._rest_until(source, acc.name, st, now),
                )
            )
        return Health(
            sources=tuple(entries),
            outbox={
                lane.config.name: backlog.get(lane.config.name, 0) for lane in self.delivery.lanes
            },
            store_failing_since=None if episode is None else episode.since,
            store_error=None if episode is None else episode.error,
        )

    def _rest_until(
        self, source: Source, account: str, state: SourceState | None, now: float
    ) -> float | None:
        """The account's rest still ahead at `now`: as the store records it, or as its
        coordinator holds it (one an action's status read was asked, which the account's
        next pass records), the later."""
        coordinator = self.coordinators.get(source, account)
        held = None if coordinator is None else coordinator.rest.until
        return rest_ahead(None if state is None else state.rest_until, held, now=now)

    async def refresh_metrics(self) -> None:
        """Update the gauges that are read from the store."""
        store = self.store
        # First: a failing store may fail the reads below, and its gauge is what says why.
        store.health.check_file()
        self.metrics.set_store(store.health.current.kind if store.health.current else None)
        # Every configured account, recorded or not: an account that never answered exports
        # last success 0, and one no longer configured does not linger.
        accounts: list[tuple[Source, CCVConfig | CCNowConfig]] = [
            *(("ccv", c) for c in self.config.ccv),
            *(("ccnow", c) for c in self.config.ccnow),
        ]
        self.metrics.set_followed(
            await store.orders.counts(), accounts={(s, a.name) for s, a in accounts}
        )
        states = {(s.source, s.account): s for s in await store.sources.states()}
        stuck = await store.orders.stuck_counts(time.time(), self.config.alerts.stuck_after_s)
        now = self.coordinators.writer.clock()
        for source, acc in accounts:
            st = states.get((source, acc.name))
            self.metrics.set_last_success(source, acc.name, st.last_success if st else None)
            self.metrics.set_rest_until(
                source, acc.name, self._rest_until(source, acc.name, st, now)
            )
            self.metrics.set_source(
                source,
                acc.name,
                failing=st.failing if st else False,
                poll_interval_s=acc.poll_interval_s,
            )
        self.metrics.set_stuck({(s, a.name): stuck.get((s, a.name), 0) for s, a in accounts})
        sinks = [lane.config.name for lane in self.delivery.lanes]
        backlog = await store.outbox.pending_counts()
        self.metrics.set_outbox_backlog({sink: backlog.get(sink, 0) for sink in sinks})
        dead = await store.outbox.dead_counts()
        self.metrics.set_dead_letters({sink: dead.get(sink, 0) for sink in sinks})
        # A disabled sink's backlog grows slowly when events are few: said in a figure of its own.
        disabled = await store.outbox.disabled_sinks()
        self.metrics.set_sinks_disabled({sink: sink in disabled for sink in sinks})
