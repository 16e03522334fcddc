"""A CCV account's coordinator: CCV has no list to poll, so its orders are checked one by one
when due, a probe proves the account answers when nothing else did, and a notification (by
order id or by external reference) makes a check happen now."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from ..config import CCVConfig
from ..model import (
    UNKEPT_ANSWERS,
    Observation,
    OrderKey,
    OrderState,
    Outcome,
    Via,
    settled_at,
    unwatched,
)
from ..passes.report import PassAnswers, PassReport
from ..sources.ccv import OUTAGE_REASONS
from ..sources.errors import CircuitOpen
from ..sources.rest import AccountRest
from ..store.notified_orders import Notes
from . import ccv_notified as notified
from . import ccv_refused as refused
from .catch_ups import unread
from .ccv_probe import SharedProbe
from .coordinator import HEALTHY_RECORDED_S, PAGE_ORDERS, Coordinator, Emit
from .health import (
    Part,
    Verdict,
    is_key_refused,
    needs_probe,
    needs_witness,
    probe_verdict,
    verdict,
)
from .witnesses import WITNESSES, Witnesses, still_answered

if TYPE_CHECKING:
    from ..reconcile import Reconciler

log = logging.getLogger("reconciler.poller")


class CCVSource(Protocol):
    """What the coordinator needs of a CCV client (sources/ccv.py)."""

    async def check_orders(self, ids: Iterable[str], emit: Emit, *, key_taken: bool = ...) -> None:
        """Check every order, awaiting `emit` for each; raise SourceError for the account."""

    async def probe(self) -> None:
        """Return when CCV answers and accepts the key; raise SourceError when not."""


class CCVCoordinator(Coordinator[CCVSource]):
    """One CCV account."""

    source = "ccv"
    config: CCVConfig
    # The probe asks the endpoint the checks ask: when it fails, the account's checks fail too
    # (a gateway's page or a maintenance answer for every order), and rest with it; else every
    # due order would keep its own rhythm through the outage, and a probe follow each tick.
    checks_parts = ("checks", "probe")
    outage_reasons = OUTAGE_REASONS

    def __init__(
        self,
        config: CCVConfig,
        client: CCVSource,
        writer: Reconciler,
        *,
        remember_ref_s: float | None = None,
        secrets: Sequence[str] = (),
        page_orders: int = PAGE_ORDERS,
        healthy_recorded_s: float = HEALTHY_RECORDED_S,
        rest: AccountRest | None = None,
    ) -> None:
        super().__init__(
            config,
            client,
            writer,
            secrets=secrets,
            page_orders=page_orders,
            healthy_recorded_s=healthy_recorded_s,
            rest=rest,
        )
        # How long a notification's reference waits for its order to be tracked (None: no
        # receiver, so no notification comes).
        self.remember_ref_s = remember_ref_s
        self._probes = SharedProbe(self.client.probe, self.reason)
        # The notified orders not answered yet (ccv_notified.py), read once, and the checks of
        # them the running check made (its own: `notified.holding`) until they are settled.
        self.notified_ids: set[str] | None = None
        self.notified_seen: contextvars.ContextVar[list[Observation] | None]
        self.notified_seen = contextvars.ContextVar(f"notified_seen {self.name}", default=None)
        self.notes = Notes(self.store, self.source, self.account)  # records, written together
        self.witnesses = Witnesses(self._answered)

    async def check(
        self,
        order_ids: Iterable[str],
        *,
        via: Via,
        discover: bool = False,
        probe: bool = False,
        said: list[Observation] | None = None,
    ) -> PassReport:
        with notified.holding(self):
            return await super().check(
                order_ids, via=via, discover=discover, probe=probe, said=said
            )

    async def _ask(self, order_ids: list[str], emit: Emit) -> Collection[str] | None:
        # A breaker opening in a partial pass (due orders, a notification's) is judged as its
        # outage failures are, witnesses first (`_checks_verdict`): orders answering 500 for
        # ever, 16 of 20, came due together, opened it and failed the account before any
        # witness was asked, the next probe recovering it (49 flips in 900 s). A catch-up
        # (`full_pass`) asks the client itself: there the breaker fails the account as before.
        # Orders that failed so lately go last: those that answer reset the breaker's run.
        ids = self.witnesses.suspects_last(order_ids)
        emitted: set[str] = set()

        async def keep(observation: Observation) -> None:
            emitted.add(observation.key.order_id)
            notified.seen(self, observation)
            self.witnesses.saw(
                observation.key.order_id,
                outage=observation.reason in OUTAGE_REASONS,
                answered_at=self.now() if observation.outcome is Outcome.OK else None,
            )
            await emit(observation)

        try:
            await refused.check_orders(self, ids, keep)
        except CircuitOpen as exc:
            self.witnesses.suspect(exc.asked)
            unasked = [i for i in ids if i not in emitted and i not in exc.asked]
            await self._postpone([i for i in ids if i not in emitted])
            return set(unasked)
        return None

    async def _probe_due(self) -> list[OrderState]:
        """Return the orders a failing account's probe asks, two at most: the one of
        `Coordinator._probe_due`'s rotation and, beside it, the next of those this process saw
        answering when the account failed (`Witnesses.answering`), in turn. Either answering a
        status recovers the account. The rotation alone (orders whose last check answered, then
        due ones), once the outage's probes had asked those answering before it, went on to
        orders failing on their own (16 of 20 answering 500 for ever), each failing, the
        backoff doubling: the account stayed failed 15 minutes and more after the outage ended.
        Those answering at its onset alone, or taking turns with the rotation, may be orders
        that broke on their own with it: the rotation, asked every time, finds the account
        answering no later than it did alone (the backoff's periods are the same)."""
        due = await super()._probe_due()
        rotation = {s.key.order_id for s in due}
        since = self.settled_since()
        for order_id in self.witnesses.answering(self.config.schedule.max_interval_s * 1.1):
            if order_id in rotation:
                continue
            key = OrderKey(self.source, self.account, order_id)
            state = (await self.store.orders.load([key])).get(key)
            if state is None or state.end_state:
                continue
            changed = settled_at(state.last_changed, state.tracked_at)
            if not unwatched(self.source, state.status, changed, settled_since=since):
                self.witnesses.probed(order_id)
                return [state, *due]
        return due

    async def _due(self, until: float, limit: int) -> list[OrderState]:
        # Notified orders whose check has not answered yet go first (ccv_notified.py).
        first = await notified.due(self)
        due = await super()._due(until, limit)  # a running catch-up's orders left out
        ids = {s.key.order_id for s in first}
        return [*first, *(s for s in due if s.key.order_id not in ids)][: max(limit, len(first))]

    async def _postpone(self, unasked: Sequence[str]) -> None:
        """Give the orders a breaker left unasked a backoff of their own, a poll interval spread
        over 10 % of it: no answer, so no failed check nor `order.check_failed`, but else they
        were due again at once and asked on every tick."""
        now, interval_s, count = self.now(), self.config.poll_interval_s, len(unasked)
        planned = [
            (order_id, now + interval_s * (1 + 0.1 * n / count))
            for n, order_id in enumerate(unasked)
        ]
        if planned:
            async with self.store.transaction():
                await self.store.orders.postpone(self.source, self.account, planned)

    async def _after_checks(
        self, answers: PassAnswers, began: float
    ) -> list[tuple[Part, Verdict | None]]:
        await notified.settle(self)  # the pass's batches are written: its answers stand
        # While the account rests (a notification's check in its backoff), the probe waits for
        # the backoff too: a check's failure then adds nothing to what the account's says.
        if needs_probe(answers) and await self.resting(*self.checks_parts) is not None:
            return [("probe", await self._probes.verdict(since=began))]
        return []

    async def _checks_verdict(
        self, answers: PassAnswers, asked: list[str], via: Via, report: PassReport
    ) -> Verdict | None:
        checks = verdict(answers)
        if needs_witness(answers):
            return await self._witness(asked, via, report) or checks
        return checks

    async def _witness(self, asked: Sequence[str], via: Via, report: PassReport) -> Verdict | None:
        """Check the account's witnesses (poller/witnesses.py: orders not in `asked` whose last
        check answered a status, in turn), one at a time until one answers, into `report`: one
        answering (a status, CCV's own word about it) proves the account answers; all failing
        leave it to the pass's failures (None), as do none to ask (every open order failing: an
        outage, however few they are) or an account failing already (that pass was its probe,
        `tick_due`, or a notification's check within its backoff); both failing, two more."""
        if (await self.store.sources.state(self.source, self.account)).failing:
            return None
        tried = list(asked)
        for order_id in await self.witnesses.choose(asked):
            if (said := await self._witness_says(order_id, tried, via, report)) is not None:
                return said
        latest = [OrderKey(self.source, self.account, i) for i in self.witnesses.latest(tried)]
        states, since = await self.store.orders.load(latest), self.settled_since()
        more = [k for k in latest if still_answered(states.get(k), settled_since=since)]
        for key in more[:WITNESSES]:
            if (said := await self._witness_says(key.order_id, tried, via, report)) is not None:
                return said
        return None

    async def _witness_says(
        self, order_id: str, tried: list[str], via: Via, report: PassReport
    ) -> Verdict | None:
        """Check one witness into `report`, the pass's checks so far in `tried`: whether it
        proves the account answers (or fails it, a 401), None when it failed alone."""
        self.witnesses.asked(order_id)
        tried.append(order_id)
        said: list[Observation] = []
        batcher = self._batcher(via, report)

        async def keep(observation: Observation) -> None:
            said.append(observation)
            await batcher.add(observation)

        error = await self._asking(lambda: self._ask([order_id], keep), batcher)
        self._count_unanswered(len(tried), report, error)
        if error is not None:  # a 401, say: the account's own failure
            return Verdict(False, error, key_refused=is_key_refused(error))
        if any(o.outcome is not Outcome.FAILED or o.reason in UNKEPT_ANSWERS for o in said):
            return Verdict(True)
        return None

    async def full_pass(self, *, via: Via) -> PassReport:
        """Check every open order of the account, a page of ids at a time."""
        async with self.catch_ups.running(self.now()) as upto:  # its orders not a tick's
            with notified.holding(self):
                return await self._full_pass(via=via, upto=upto)

    async def _full_pass(self, *, via: Via, upto: int | None) -> PassReport:
        report = PassReport()
        batcher, store, asked = self._batcher(via, report), self.store, 0
        # Notified orders not answered yet first, end states too: a stop may have cut their
        # notification's check, and CCV does not call again.
        first = [s.key.order_id for s in await notified.due(self, every=True)]

        async def add(observation: Observation) -> None:
            notified.seen(self, observation)
            await batcher.add(observation)

        after = 0  # the last page it read: the orders after it were not asked

        async def ask() -> None:
            nonlocal asked, after
            if first:
                asked += len(first)
                await refused.check_orders(self, first, add)
            # The pass holds each page it reads and hands it back with its batches (`load`
            # reads the page's rows instead of the database while the page is current).
            while True:
                page = batcher.page = await store.orders.page(
                    "ccv",
                    self.account,
                    after=after,
                    limit=self.page_orders,
                    settled_since=self.settled_since(),
                    upto=upto,
                )
                after = page.after
                if ids := [i for i in page.ids if i not in first] if first else page.ids:
                    asked += len(ids)
                    await refused.check_orders(self, ids, add)
                if len(page.ids) < self.page_orders:
                    break  # the last page: no need to ask for the next one

        began = time.monotonic()
        error = await self._asking(ask, batcher)
        asked += 0 if error is None else await unread(self, after, first)
        await notified.settle(self)
        self._count_unanswered(asked, report, error)
        if not asked and error is None:
            return await self._nothing_asked(report, via=via)
        answers = report.answers(error=error, complete=True, outages=self.outage_reasons)
        checks = verdict(answers)
        verdicts: list[tuple[Part, Verdict | None]] = [("checks", checks)]
        if checks is not None and verdict(replace(answers, complete=False)) is None:
            # Every check failed, none for the whole account, most not of an outage's reason
            # (a 403 of the order's own, say; `verdict` fails the account on those): as the
            # daemon's due check does, the probe says whether the account answers, else an
            # account whose few open orders each fail alone would fail at a catch-up (an error
            # event, exit 75) while the daemon finds it answering. The probe answering, the
            # failures are the orders' own.
            probed = await self._after_checks(answers, began)
            if any(v is not None and v.ok for _, v in probed) and not await self._held(answers):
                verdicts = probed
            else:  # named as before: what the checks failed of, not the probe's word
                verdicts = [*probed, ("checks", checks)]
        await self.settle(verdicts, via=via, report=report)
        return report

    async def _nothing_asked(self, report: PassReport, *, via: Via) -> PassReport:
        """A pass with no order to ask: an account failing on its checks or its probe is asked
        the probe (once its backoff is over), whose answer alone can end that failure (its
        orders untracked, say, after CCV answered its own 404 for each); else it stayed failing
        for good, each catch-up exiting 0 while `status` said failing. Still failing, it is in
        the report's failing sources."""
        state = await self.store.sources.state(self.source, self.account)
        parts = [p for p in self.checks_parts if p in state.failing_parts]
        if parts and await self.resting(*self.checks_parts) is not None:
            probed = await self._probes.verdict()
            if not probed.ok:  # a 401 keeps its mark: the probe that answers ends that failure
                probed = replace(probed, key_refused=is_key_refused(probed.reason or ""))
            await self.settle([(p, probed) for p in parts], via=via, report=report)
            state = await self.store.sources.state(self.source, self.account)
        if state.failing and self.name not in report.failed_sources:
            report.failed_sources[self.name] = state.last_error or "failed"
        return report

    async def _held(self, answers: PassAnswers) -> bool:
        """Whether checks that answered so keep an account failing on its checks though the
        probe answers, as they keep it at the daemon's probe tick (`probe_verdict`: only a
        status or CCV's own word about an order ends that failure)."""
        state = await self.store.sources.state(self.source, self.account)
        return "checks" in state.failing_parts and not probe_verdict(answers, state).ok

    async def probe(self, *, via: Via) -> PassReport:
        """Ask CCV about an order id that does not exist: any answer that shows the key was
        accepted proves the account answers."""
        report = PassReport()
        await self.settle([("probe", await self._probes.verdict())], via=via, report=report)
        return report

    async def heartbeat(self) -> PassReport:
        """When no status request succeeded for a poll interval, probe once, so that /healthz
        and source.failed stay true though CCV has no list to poll; return what the probe
        found (an empty report when none was needed)."""
        state = await self.store.sources.state("ccv", self.account)
        if state.last_success is not None and self.now() - state.last_success < (
            self.config.poll_interval_s
        ):
            return PassReport()
        if await self.resting(*self.checks_parts) is None:
            return PassReport()
        if (
            "checks" in state.failing_parts
            and not await self.store.orders.open_count(
                self.source, self.account, settled_since=self.settled_since()
            )
            and not await notified.due(self, every=True)  # asked by the due checks, end states too
        ):
            return await self._nothing_asked(PassReport(), via="poll")
        return await self.probe(via="poll")

    async def note_notified(self, order_id: str, *, followed_only: bool = True) -> bool:
        """Keep a notification of an order (with `followed_only`, the default: if followed)
        until a check of it answers; return whether it was kept."""
        return await notified.note(self, order_id, followed_only=followed_only)

    async def record_reference(self, reference: str) -> None:
        """Record a notification by external reference before its check (ccv_notified.py)."""
        await notified.record_reference(self, reference)

    async def check_reference(self, reference: str, *, recorded: bool = False) -> PassReport | None:
        """A notification by external reference: check its orders now, or remember the
        reference until one is tracked (None); `recorded`: `record_reference` ran already."""
        return await notified.check_reference(self, reference, recorded=recorded)

    async def _notified_early(self, due: Sequence[OrderState]) -> set[str]:
        # A notification that named an external reference before its order was tracked is
        # applied now: the order's first check counts as notified.
        refs = [s.external_reference for s in due if s.status is None and s.external_reference]
        if not refs or self.remember_ref_s is None:
            return set()
        not_before = self.now() - self.remember_ref_s
        named = await self.store.sources.take_references(self.account, refs, not_before)
        return {s.key.order_id for s in due if s.external_reference in named}
