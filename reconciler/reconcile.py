"""Apply what a pass observed: load the snapshot -> diff -> one transaction (orders, events,
outbox). The passes themselves belong to each account's coordinator (poller/)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from .config import Config, ScheduleConfig
from .diff import diff
from .events import Event
from .logs import fields
from .model import Observation, OrderKey, OrderState, Outcome, Via
from .passes.batcher import BATCH_ROWS, HINT_ROWS, PART_S, PENDING_BATCHES
from .passes.hint_gate import MAX_WAIT_S, HintGate
from .passes.hint_group import Group, Member
from .passes.report import PassReport
from .schedule import plan, stuck_event
from .store import Store, after_commit
from .store.live_pages import Page
from .store.references import carried_also
from .store.taken import acting, last_taken
from .taken import contradicted, unconfirmed_event

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ("BATCH_ROWS", "PENDING_BATCHES", "PassReport", "Reconciler")

log = logging.getLogger("reconciler.reconcile")

# (an order, the reference it carried, the one its provider answered, the other orders of its
# account that carry the answered one)
Differs = tuple[OrderKey, str, str, list[str]]
# What runs in an `apply`'s transaction after its rows: given the rows before and the write's
# time (its rows' `last_checked`), its own events.
Within = Callable[[Mapping[OrderKey, OrderState], float], Awaitable[Sequence[Event]]]
# The orders a `discover` write does not follow again, read in its transaction.
Withheld = Callable[[], Awaitable[Collection[OrderKey]]]


class Reconciler:
    """Records what the providers answered: the snapshot, the history and the events."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[], None] = lambda: None,
        on_events: Callable[[Sequence[Event]], None] = lambda events: None,
        batch_rows: int = BATCH_ROWS,
        pending_batches: int = PENDING_BATCHES,
        hint_rows: int = HINT_ROWS,
        part_s: float = PART_S,
        rng: random.Random | None = None,
        hint_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self.config = config
        # Observations per transaction; also the outage failures a pass holds to write again
        # if its account answers again (PassReport.note_outage): a batch's worth, written in
        # the recovery's own transaction.
        self.batch_rows = batch_rows
        self.pending_batches = pending_batches  # full batches queued before workers wait
        self.hint_rows = hint_rows  # observations per transaction while a hint is checked
        self.part_s = part_s  # a pass's transaction's duration, at most, while hints arrive
        self.last_write_s = 0.0  # how long the latest `apply` held the writer (batcher.py)
        self.store = store
        self.clock = clock
        self.on_commit = on_commit
        self.on_events = on_events
        # The schedule's jitter (`plan`); a test passes a seeded one to replay a schedule.
        self.rng = rng if rng is not None else random.Random()
        # Notification checks in flight: passes give way to them, at most `hint_wait_s` at a time.
        self.hints = HintGate(max_wait_s=hint_wait_s)
        # Notifications' observations waiting for the writer, to be committed together.
        self._hint_group: Group | None = None
        self.metrics: Metrics | None = None
        # Hears how many more orders a pass has checked (commands/progress.py for `catch-up`).
        self.on_checked: Callable[[int], None] = lambda n: None
        # Hears that an account started failing or recovered, whatever found it (the daemon's
        # systemd STATUS= names the accounts failing now).
        self.on_health: Callable[[], object] = lambda: None
        self.schedules: dict[tuple[str, str], ScheduleConfig] = config.schedules()

    # --- writing -----------------------------------------------------------------------------

    async def apply(
        self,
        observations: Sequence[Observation],
        *,
        via: Via,
        report: PassReport | None = None,
        discover: bool = False,
        within: Within | None = None,
        page: Page | None = None,
        withheld: Withheld | None = None,
    ) -> int:
        """Diff observations against the snapshot and commit rows, history and events together.

        Only with `discover` (the CCNow pending list) does an order that is not followed become
        followed. Otherwise its row was deleted by `untrack` after its check began: the untrack
        wins, and what the check saw is dropped; so it is, with `discover`, of the orders
        `withheld()` names (untracked while a CCNow action of theirs was being sent). Returns
        the number of events queued; `report` counts the orders that went missing. `within`
        runs in the same transaction, after the rows are written, given the rows as they were
        before (those of the observations' orders that were followed) and the write's time, and
        returns events of its own (a CCNow action closes its command).
        `page`: the pass's page of orders, read instead of the database where it holds them.

        Notifications' observations that wait for the writer together are committed in one
        transaction (hint_group.py): a burst of them then costs one write, not one each in turn.
        """
        if via == "notification" and within is None and page is None:
            member = Member(list(observations), report, discover)
            if self._hint_group is not None and self._hint_group.take(member):
                written = await member.written
                if written is not None:
                    return written
                # The transaction that was to carry it failed: it writes its own.
            return await self._write_group(Group(member))
        async with self.store.transaction(urgent=via == "notification"):
            began = time.monotonic()
            events, references, tally = await self._write(
                observations,
                via=via,
                # Read once the writer is ours: a fresher answer written while this waited is
                # then older than `now`, and this one's older answer is judged stale against it.
                now=self.clock(),
                discover=discover,
                within=within,
                page=page,
                reports=None if report is None else [(None, report)],
                withheld=withheld,
            )
        self.last_write_s = time.monotonic() - began
        self._written(events, references, tally)
        return len(events)

    async def apply_within(
        self, observations: Sequence[Observation], *, via: Via, report: PassReport
    ) -> Callable[[], None]:
        """Write observations again in the caller's transaction (a pass's failed checks once
        their account recovers, `Coordinator.settle`); return what to call once it commits."""
        events, references, tally = await self._write(
            observations,
            via=via,
            now=self.clock(),
            discover=False,
            within=None,
            page=None,
            reports=[(None, report)],
        )
        return lambda: self._written(events, references, tally)

    async def _write_group(self, group: Group) -> int:
        """Commit a group of notifications' observations; return the leader's event count."""
        self._hint_group = group
        leader = group.members[0]
        try:
            async with self.store.transaction(urgent=True):
                if self._hint_group is group:
                    self._hint_group = None  # later ones wait for the next transaction
                events, references, tally = await self._write(
                    [o for m in group.members for o in m.observations],
                    via="notification",
                    now=self.clock(),
                    discover=leader.discover,
                    within=None,
                    page=None,
                    reports=[(m.keys, m.report) for m in group.members if m.report is not None],
                )
        except BaseException as exc:
            if after_commit(exc):
                # Committed, then cancelled (a stop): written, its members not to write it
                # again (a failed check's streak counted twice).
                group.done(events)
                self._written(events, references, tally)
                raise
            if self._hint_group is group:
                self._hint_group = None
            group.failed()
            raise
        group.done(events)
        self._written(events, references, tally)
        return group.count(leader, events)

    async def _write(
        self,
        observations: Sequence[Observation],
        *,
        via: Via,
        now: float,
        discover: bool,
        within: Within | None,
        page: Page | None,
        reports: Sequence[tuple[frozenset[OrderKey] | None, PassReport]] | None,
        withheld: Withheld | None = None,
    ) -> tuple[list[Event], list[Differs], Callable[[], None]]:
        """Write observations in the caller's transaction; return the events queued, the
        references that differ, and what tells the reports once it commits: each counts the
        lost orders among its keys (None: all) and is given the failed checks of those that
        start failing."""
        store = self.store
        urgent = via == "notification"
        # A pass's (its reports'): counted in /metrics once judged, after the commit.
        not_found = [o for o in observations if o.outcome is Outcome.NOT_FOUND] if reports else []
        snapshot = await store.orders.load((o.key for o in observations), page)
        if not discover and len(snapshot) < len(observations):
            observations = [o for o in observations if o.key in snapshot]
        elif withheld is not None and len(snapshot) < len(observations):
            out = await withheld()
            observations = [o for o in observations if o.key in snapshot or o.key not in out]
        failing = await self._failing_accounts(observations)
        sending = await acting(store, [o.key for o in observations if o.listed])
        result = diff(
            snapshot,
            observations,
            now=now,
            via=via,
            store_id=store.store_id,
            failing_accounts=failing,
            acting=sending,
        )
        # A check that failed while its account fails is the outage's failure until the pass
        # finds the account answering (`Coordinator.settle` writes it again then).
        outage = (
            [o for o in observations if o.outcome is Outcome.FAILED and o.key[:2] in failing]
            if failing
            else []
        )
        started = [
            o
            for o in result.started_failing
            if not (failing and o.outcome is Outcome.FAILED and o.key[:2] in failing)
        ]
        lost_keys, fresh_keys, doubted = result.lost, result.fresh, result.doubted

        def tally() -> None:
            # After the commit only: a group's transaction that failed counted nothing, and each
            # member's own write counts its orders once.
            if not_found and self.metrics is not None:
                self.metrics.observe_not_found(not_found, lost_keys | fresh_keys)
            for keys, report in reports or ():
                lost = len(lost_keys if keys is None else lost_keys & keys)
                fresh = len(fresh_keys if keys is None else fresh_keys & keys)
                report.lost += lost
                report.fresh += fresh
                report.failed += lost + fresh
                report.note_outage(
                    (o for o in outage if keys is None or o.key in keys), self.batch_rows
                )
                report.note_started_failing(o for o in started if keys is None or o.key in keys)
                mine = [k for k in doubted if keys is None or k in keys]
                report.doubted.update((k.order_id, snapshot[k]) for k in mine)
                # Not one whose ship or cancel is being sent: its close's line decides.
                steps = [k for k in mine if k in result.forward]
                report.forward.update(k.order_id for k in steps if k not in sending)
                # A later step whose query fails waits as any doubt's (failure_streak times
                # max_interval), not min_interval: held as it is, it would be asked for ever.
                report.sooner.update(k.order_id for k in steps)
                report.sooner.update(
                    k.order_id
                    for k in mine
                    if k in result.sooner and not snapshot[k].failure_streak
                )
                # A line that said nothing is no check: its query, if asked, is the order's one.
                report.checked -= len(mine)

        rows = []
        events = list(result.events)
        alerts = self.config.alerts
        for state in result.states.values():
            stuck = stuck_event(state, alerts=alerts, now=now, store_id=store.store_id, via=via)
            if stuck is not None:
                state = stuck[0]
                events.append(stuck[1])
            key = state.key
            schedule = self.schedules.get((key.source, key.account))
            when = None
            if schedule is not None:
                status = state.status
                limit = None if status is None else alerts.stuck_after_s.get((key.source, status))
                when = plan(
                    state,
                    changed=key in result.changed,
                    schedule=schedule,
                    now=now,
                    jitter=self.rng.random(),
                    stuck_after_s=limit,
                )
            rows.append((state, when))
        # A pending list's line that may lag (diff.lags) writes nothing: the order's query
        # decides, in the pass's query step where it takes it (poller/ccnow.py), else at its
        # check as planned or the bound of `schedule.doubt_due`. Not due at once: a list lagging
        # for hours would have it asked at every poll.
        await store.orders.save(snapshot, rows)
        differs: list[Differs] = []
        if result.references:
            # With the rows that now carry the provider's reference: never one without the other.
            await store.orders.add_aliases(result.references)
            # A reference meant to name one order: said when CCV's answer makes it name several.
            answered = [(key, ref) for key, _, ref in result.references]
            also = await carried_also(store, answered)
            differs = [(*r, others) for r, others in zip(result.references, also, strict=True)]
        if result.moved_back:
            events += await self._unconfirmed(result.moved_back, now=now, via=via)
        if within is not None:
            events += await within(snapshot, now)
        # A notification's event passes the backlog of other orders' (a catch-up's).
        await store.events.add(events, urgent=urgent)
        return events, differs, tally

    async def _unconfirmed(
        self, moved: Sequence[tuple[OrderState, OrderState]], *, now: float, via: Via
    ) -> list[Event]:
        """Return an `order.action_unconfirmed` for each order an answer moved back from where
        a ship or cancel CCNow answered as taken left it (`mark_shipped -> pending`): reading
        the provider back contradicts the action's answer (DESIGN: writes are confirmed by the
        same reading as everything else). Only the order's latest such action, and only where
        the read contradicts it (`taken.contradicted`). Once per action: its id names it."""
        taken = await last_taken(self.store, (after.key for _, after in moved))
        store_id = self.store.store_id
        events: list[Event] = []
        for before, after in moved:
            c = taken.get(after.key)
            if c is None or not contradicted(c, before):
                # Moved there by CCNow's backroom (after an action a read confirmed, or none
                # through reconciler): no action to name.
                continue
            once = unconfirmed_event(
                store_id, c, closed_at=c.closed_at, before=before, after=after, now=now, via=via
            )
            if any(e.id == once.id for e in events):
                continue
            if await self.store.events.seq_of(once.id) is not None:
                continue
            events.append(once)
        return events

    def _written(
        self,
        events: Sequence[Event],
        references: Sequence[Differs],
        tally: Callable[[], None],
    ) -> None:
        """After a commit: tell the reports, log what a provider answered that differs, tell
        the listeners."""
        tally()
        for key, tracked, answered, also in references:
            log.warning(
                "order.external_reference_differs",
                extra=fields(
                    source=key.source,
                    account=key.account,
                    order_id=key.order_id,
                    tracked=tracked,
                    answered=answered,
                    also_carried_by=also,
                ),
            )
        self.committed(events)

    async def _failing_accounts(self, observations: Sequence[Observation]) -> set[tuple[str, str]]:
        """Return the failing accounts among those whose orders answered "not found" or
        failed."""
        accounts = {o.key[:2] for o in observations if o.outcome is not Outcome.OK}
        failing: set[tuple[str, str]] = set()
        for source, account in accounts:
            if (await self.store.sources.state(source, account)).failing:
                failing.add((source, account))
        return failing

    def committed(self, events: Sequence[Event]) -> None:
        """Tell listeners about events just committed (by `apply` or elsewhere); the metrics
        count them from the store (`Store.events_committed`), whatever wrote them."""
        if events:
            self.on_events(events)
            self.on_commit()
