"""One reconciliation pass: fetch from the providers -> diff -> one transaction per batch."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import aiohttp

from .batcher import BATCH_ROWS, PENDING_BATCHES, Batcher
from .config import CCNowConfig, CCVConfig, Config, ScheduleConfig
from .diff import diff
from .events import Event
from .logs import fields
from .model import SOURCES, Observation, Outcome, Source, Via, known_statuses, status_info
from .pass_report import PassReport
from .poller import (
    Part,
    Verdict,
    health_event,
    needs_probe,
    next_health,
    verdict,
)
from .redact import config_secrets, redact
from .schedule import plan, stuck_event
from .sources.ccnow import CCNowClient
from .sources.ccv import CCVClient
from .sources.errors import SourceError
from .store import Store
from .store.orders import Page
from .store.passes import LastPass, record_pass

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["BATCH_ROWS", "PENDING_BATCHES", "PassReport", "Reconciler"]

log = logging.getLogger("reconciler.reconcile")

PAGE_ORDERS = 10000  # order ids read from the store at a time during a catch-up
# A source.failed reason is a short text kept in the database, events and logs.
MAX_REASON_LENGTH = 200
SETTLED: dict[Source, tuple[str, ...]] = {
    source: tuple(s for s in known_statuses(source) if status_info(source, s).settled)
    for source in SOURCES
}


class Reconciler:
    """Checks orders against the providers and records what changed."""

    def __init__(
        self,
        config: Config,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[], None] = lambda: None,
        on_events: Callable[[Sequence[Event]], None] = lambda events: None,
        batch_rows: int = BATCH_ROWS,
        pending_batches: int = PENDING_BATCHES,
    ) -> None:
        self.config = config
        self.batch_rows = batch_rows  # observations per transaction
        self.pending_batches = pending_batches  # full batches queued before workers wait
        self.store = store
        self.clock = clock
        self.on_commit = on_commit
        self.on_events = on_events
        self.rng = random.Random()
        self.metrics: Metrics | None = None
        # Hears how many more orders a pass has checked (progress.py for `catch-up`).
        self.on_checked: Callable[[int], None] = lambda n: None
        self._secrets = tuple(config_secrets(config))
        self.ccv = {c.name: CCVClient(c, session) for c in config.ccv}
        self.ccnow = {c.name: CCNowClient(c, session) for c in config.ccnow}
        self.schedules: dict[tuple[str, str], ScheduleConfig] = {
            **{("ccv", c.name): c.schedule for c in config.ccv},
            **{("ccnow", c.name): c.schedule for c in config.ccnow},
        }

    # --- writing -----------------------------------------------------------------------------

    async def apply(
        self,
        observations: Sequence[Observation],
        *,
        via: Via,
        report: PassReport | None = None,
        discover: bool = False,
        within: Callable[[], Awaitable[Sequence[Event]]] | None = None,
        page: Page | None = None,
    ) -> int:
        """Diff observations against the snapshot and commit rows, history and events together.

        Only with `discover` (the CCNow pending list) does an order that is not followed become
        followed. Otherwise its row was deleted by `untrack` after its check began: the untrack
        wins, and what the check saw is dropped. Returns the number of events queued; `report`
        counts the orders that went missing. `within` runs in the same transaction, after the
        rows are written, and returns events of its own (a CCNow action closes its command).
        `page`: the pass's page of orders, read instead of the database where it holds them.
        """
        now = self.clock()
        store = self.store
        async with store.transaction():
            snapshot = await store.orders.load((o.key for o in observations), page)
            if not discover and len(snapshot) < len(observations):
                observations = [o for o in observations if o.key in snapshot]
            result = diff(
                snapshot,
                observations,
                now=now,
                via=via,
                store_id=store.store_id,
                failing_accounts=await self._failing_accounts(observations),
            )
            if report is not None:
                report.lost += len(result.lost)
                report.failed += len(result.lost)
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
                rows.append((state, when))
            await store.orders.save(snapshot, rows)
            if within is not None:
                events += await within()
            await store.events.add(events)
        for key, tracked, answered in result.references:
            log.warning(
                "order.external_reference_differs",
                extra=fields(
                    source=key.source,
                    account=key.account,
                    order_id=key.order_id,
                    tracked=tracked,
                    answered=answered,
                ),
            )
        self._committed(events)
        return len(events)

    async def _failing_accounts(self, observations: Sequence[Observation]) -> set[tuple[str, str]]:
        """Return the failing accounts among those whose orders answered "not found"."""
        accounts = {o.key[:2] for o in observations if o.outcome is Outcome.NOT_FOUND}
        failing: set[tuple[str, str]] = set()
        for source, account in accounts:
            if (await self.store.sources.state(source, account)).failing:
                failing.add((source, account))
        return failing

    async def settle(
        self,
        source: Source,
        account: str,
        verdicts: Sequence[tuple[Part, Verdict | None]],
        *,
        via: Via,
        report: PassReport,
    ) -> None:
        """Apply what a pass's answers say about its account to the account's health: one
        `source.failed` when it starts failing, one `source.recovered` when it answers again."""
        said = [(part, v) for part, v in verdicts if v is not None]
        for _, v in said:
            if not v.ok:
                report.failed_sources[f"{source}/{account}"] = v.reason or "failed"
        if not said:
            return
        now = self.clock()
        store = self.store
        async with store.transaction():
            state = await store.sources.state(source, account)
            new, flip = next_health(state, said, now=now)
            await store.sources.save(new)
            event = None
            if flip is not None:
                event = health_event(state, new, flip, now=now, via=via, store_id=store.store_id)
                await store.events.add([event])
        if event is not None:
            # The event's own log line (log sink) is the one line an operator sees.
            self._committed([event])
            report.events += 1

    def _committed(self, events: Sequence[Event]) -> None:
        if events:
            if self.metrics is not None:
                self.metrics.observe_events(events)
            self.on_events(events)
            self.on_commit()

    # --- passes ------------------------------------------------------------------------------

    async def remember_pass(self, name: str, report: PassReport, started: float) -> None:
        """Record a finished pass (begun at `started`, this clock) for `reconciler status`."""
        last = LastPass(
            name,
            started,
            round(max(self.clock() - started, 0.0), 3),
            report.checked,
            report.failed,
            report.events,
            tuple(sorted(report.failed_sources)),
        )
        await record_pass(self.store, last)

    async def catch_up(self, source: Source | None = None) -> PassReport:
        """Check every followed order not in an end state once, plus the CCNow pending list."""
        started = self.clock()
        report = await self._catch_up(source)
        await self.remember_pass(
            "catch-up" if source is None else f"catch-up {source}", report, started
        )
        return report

    async def _catch_up(self, source: Source | None) -> PassReport:
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
        batcher = Batcher(self, via, report, "ccv", cfg.name)
        client = self.ccv[cfg.name]
        page = None
        error = None
        try:
            while True:
                page = batcher.page = await self.store.orders.page(
                    "ccv",
                    cfg.name,
                    after=page.after if page else 0,
                    limit=PAGE_ORDERS,
                    settled_since=self.clock() - cfg.schedule.watch_settled_s,
                    settled=SETTLED["ccv"],
                )
                if page.ids:
                    await client.check_orders(page.ids, batcher.add)
                if len(page.ids) < PAGE_ORDERS:
                    break  # the last page: no need to ask for the next one
            await batcher.flush()
        except SourceError as exc:
            await batcher.flush()
            error = self._reason(exc)
        finally:
            await batcher.close()
        answers = report.answers(error=error, complete=True)
        await self.settle("ccv", cfg.name, [("checks", verdict(answers))], via=via, report=report)
        return report

    async def ccnow_pass(
        self, cfg: CCNowConfig, *, via: Via, everything: bool = False
    ) -> PassReport:
        """Fetch the pending list, then query the orders whose state it cannot tell.

        With `everything`, every open order is queried (catch-up); otherwise only the orders
        that left the pending list since the last poll.
        """
        report = PassReport()
        batcher = Batcher(self, via, report, "ccnow", cfg.name)
        # Reveals orders nobody tracked; the pass is timed once, by `batcher`.
        listing = Batcher(self, via, report, "ccnow", cfg.name, discover=True, timed=False)
        client = self.ccnow[cfg.name]
        answered_list = False
        error = None
        try:
            listed = await client.pending_list()
            listed_ids = {o.key.order_id for o in listed}
            if everything:
                to_query = await self._all_open_ids("ccnow", cfg.name, cfg.schedule)
            else:
                before = await self.store.orders.with_status("ccnow", cfg.name, ["pending"])
                to_query = [s.key.order_id for s in before]
            for obs in listed:
                await listing.add(obs)
            await listing.flush()
            answered_list = True
            left = [oid for oid in to_query if oid not in listed_ids]
            if left:
                await client.query(left, batcher.add)
            await batcher.flush()
        except SourceError as exc:
            await batcher.flush()
            error = self._reason(exc)
        finally:
            await listing.close()
            await batcher.close()
        verdicts: list[tuple[Part, Verdict | None]]
        if not answered_list:
            verdicts = [("pending_list", Verdict(False, error))]
        else:
            # The orders on the list answered too: with the queries, they are the pass's checks.
            answers = report.answers(error=error, complete=everything)
            verdicts = [("pending_list", Verdict(True)), ("checks", verdict(answers))]
        await self.settle("ccnow", cfg.name, verdicts, via=via, report=report)
        return report

    async def check_orders(
        self,
        source: Source,
        account: str,
        order_ids: Iterable[str],
        *,
        via: Via,
        discover: bool = False,
    ) -> PassReport:
        """Check given orders of one account now (due ticks, notifications). With `discover`
        (ids an authenticated CCNow notification named), an order not followed yet is followed."""
        report = PassReport()
        batcher = Batcher(self, via, report, source, account, discover=discover)
        ids = list(order_ids)
        if not ids:
            return report
        error = None
        try:
            if source == "ccv":
                await self.ccv[account].check_orders(ids, batcher.add)
            else:
                await self.ccnow[account].query(ids, batcher.add)
            await batcher.flush()
        except SourceError as exc:
            await batcher.flush()
            error = self._reason(exc)
        finally:
            await batcher.close()
        answers = report.answers(error=error)
        verdicts: list[tuple[Part, Verdict | None]] = [("checks", verdict(answers))]
        if source == "ccv" and needs_probe(answers):
            verdicts.append(("probe", await self._probe(account)))
        await self.settle(source, account, verdicts, via=via, report=report)
        return report

    async def probe_ccv(self, cfg: CCVConfig, *, via: Via) -> PassReport:
        """Ask CCV about an order id that does not exist: any answer that shows the key was
        accepted proves the account answers."""
        report = PassReport()
        result = await self._probe(cfg.name)
        await self.settle("ccv", cfg.name, [("probe", result)], via=via, report=report)
        return report

    async def _probe(self, account: str) -> Verdict:
        try:
            await self.ccv[account].probe()
        except SourceError as exc:
            return Verdict(False, self._reason(exc))
        return Verdict(True)

    async def _all_open_ids(self, source: Source, account: str, sched: ScheduleConfig) -> list[str]:
        ids: list[str] = []
        after = ""
        while True:
            page = await self.store.orders.open_ids(
                source,
                account,
                after=after,
                limit=PAGE_ORDERS,
                settled_since=self.clock() - sched.watch_settled_s,
                settled=SETTLED[source],
            )
            if not page:
                return ids
            ids.extend(page)
            after = page[-1]

    def _reason(self, exc: SourceError) -> str:
        # Whatever a client let through, no secret reaches the event, the database or the log.
        return redact(str(exc) or exc.reason, self._secrets, limit=MAX_REASON_LENGTH)
