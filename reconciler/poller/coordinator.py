"""What every account's coordinator does, whatever its provider: ask the client, hand what it
answers to the reconciler a batch at a time, and turn the answers as a whole into the account's
health (one `source.failed` when it starts failing, one `source.recovered` when it answers again).
The provider's own rhythm (CCV's probe, CCNow's pending list) lives in ccv.py and ccnow.py.
"""

from __future__ import annotations

import abc
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Generic, TypeVar

from ..config import CCNowConfig, CCVConfig
from ..model import EventType, Observation, OrderState, Source, Via
from ..passes.batcher import Batcher
from ..passes.report import NamedReport as NamedReport  # its users import it from here
from ..passes.report import PassAnswers, PassReport
from ..redact import held, redact
from ..schedule import resting
from ..sources.errors import RestAsked, SourceError
from ..sources.rest import AccountRest
from ..store.passes import remember_pass
from .catch_ups import CatchUps
from .check_lines import log_started_failing
from .clock_step import ClockSteps
from .first_checks import FirstChecks
from .health import Part, Verdict, health_event, is_stale, next_health, probe_verdict, verdict
from .rests import record_rest

if TYPE_CHECKING:
    from ..reconcile import Reconciler
    from ..store import Store

Emit = Callable[[Observation], Awaitable[None]]


MAX_TICK_S = 5.0  # how often due orders are looked for, at most
PROBE_ROTATION = 20  # different orders a failing account's probes ask, before they start over
DUE_LIMIT_PER_CONCURRENCY = 200  # orders per tick per unit of concurrency
PAGE_ORDERS = 10000  # order ids read from the store at a time during a catch-up
MAX_REASON_LENGTH = 200  # a source.failed reason: a short text kept in the database, events, logs
# A healthy account's last success is written at most this often (a hint's check would write it
# in a transaction of its own, each one queueing behind the others and a pass's batches).
HEALTHY_RECORDED_S = 1.0

ClientT = TypeVar("ClientT")


class Coordinator(abc.ABC, Generic[ClientT]):
    """One provider account: its checks (through `client`), its health and its due orders."""

    source: Source
    # Whether a failing account's probe may be an order whose check is not due yet (the one due
    # soonest): else an account whose other answers keep every open order's next check away
    # (CCNow's pending list) would never ask what failed, nor recover.
    probe_any_open = False
    # The parts whose failure rests the due checks: one probe per backoff period (`tick_due`).
    checks_parts: tuple[Part, ...] = ("checks",)
    outage_reasons: frozenset[str] = frozenset()  # PassAnswers.outages: those fail unprobed

    def __init__(
        self,
        config: CCVConfig | CCNowConfig,
        client: ClientT,
        writer: Reconciler,
        *,
        secrets: Sequence[str] = (),
        due_per_concurrency: int = DUE_LIMIT_PER_CONCURRENCY,
        page_orders: int = PAGE_ORDERS,
        healthy_recorded_s: float = HEALTHY_RECORDED_S,
        rest: AccountRest | None = None,
    ) -> None:
        self.config = config
        self.rest = AccountRest(clock=writer.clock) if rest is None else rest  # its client's
        self.client = client
        self.healthy_recorded_s = healthy_recorded_s
        self.account = config.name
        self.writer = writer
        self.store: Store = writer.store
        self.due_limit = config.concurrency * due_per_concurrency
        self.page_orders = page_orders
        self._secrets = held(secrets)
        # When the account's good health was last written or claimed (see `settle`).
        self._healthy_at: float | None = None
        self._probed: set[str] = set()  # asked by `_probe_due` since the account failed
        # When its last flip was written (time.monotonic(), as `PassReport.began`; `is_stale`).
        self._flipped_at: float | None = None
        self._first_checks = FirstChecks(self.store, self.source, self.account)
        self._steps = ClockSteps(self.store, self.source, config, rng=writer.rng)  # see _due
        # The account's catch-ups running in this process (CCV's `full_pass` holds one).
        self.catch_ups = CatchUps(self.store)

    @property
    def name(self) -> str:
        """Return the account as logs and reports name it: `ccv/default`."""
        return f"{self.source}/{self.account}"

    @property
    def tick_s(self) -> float:
        """Return how often the scheduler looks for this account's due orders."""
        return min(MAX_TICK_S, max(self.config.schedule.min_interval_s / 2, 0.5))

    def now(self) -> float:
        """Return the time on the reconciler's clock, the one its transactions are dated by."""
        return self.writer.clock()

    def settled_since(self) -> float:
        """Return `settled_since` of model.unwatched now: a settled order whose watch began
        then or before is no longer watched."""
        return self.now() - self.config.schedule.watch_settled_s

    # --- what a provider's coordinator supplies ----------------------------------------------

    @abc.abstractmethod
    async def _ask(self, order_ids: list[str], emit: Emit) -> Collection[str] | None:
        """Ask the provider about these orders, awaiting `emit` for each answer; return those
        a circuit breaker left unasked (CCV's), if any: no check of theirs was made."""

    async def _after_checks(
        self, answers: PassAnswers, began: float
    ) -> list[tuple[Part, Verdict | None]]:
        """Return what else the account's health needs after checks that answered so, begun
        at `began` (time.monotonic())."""
        return []

    async def _checks_verdict(
        self, answers: PassAnswers, asked: list[str], via: Via, report: PassReport
    ) -> Verdict | None:
        """Return what a check of `asked` that answered so says of the account's checks (CCV's
        may ask one order more into `report` first: `needs_witness`)."""
        return verdict(answers)

    async def _notified_early(self, due: Sequence[OrderState]) -> set[str]:
        """Return the due orders a notification named before they were tracked."""
        return set()

    @abc.abstractmethod
    async def full_pass(self, *, via: Via) -> PassReport:
        """Check every open order of the account (a catch-up)."""

    # --- checks ------------------------------------------------------------------------------

    async def check(
        self,
        order_ids: Iterable[str],
        *,
        via: Via,
        discover: bool = False,
        probe: bool = False,
        said: list[Observation] | None = None,
    ) -> PassReport:
        """Check given orders now (due ticks, notifications, the API's refresh). `discover` (ids
        an authenticated CCNow notification named): an order not followed yet is followed; `probe`:
        a failing account's probe (`probe_verdict`); `said` gets the answers as they come."""
        report = PassReport()
        ids = list(order_ids)
        if not ids:
            return report
        began = time.monotonic()
        batcher = self._batcher(via, report, discover=discover)
        unasked: Collection[str] = ()

        async def emit(observation: Observation) -> None:
            if said is not None:
                said.append(observation)
            await batcher.add(observation)

        async def ask() -> None:
            nonlocal unasked
            unasked = await self._ask(ids, emit) or ()

        error = await self._asking(ask, batcher)
        asked = [i for i in ids if i not in unasked] if unasked else ids
        self._count_unanswered(len(asked), report, error)
        answers = report.answers(error=error, outages=self.outage_reasons)
        checks = await self._checks_verdict(answers, asked, via, report)
        if probe and checks is None:
            state = await self.store.sources.state(self.source, self.account)
            checks = probe_verdict(answers, state)
        verdicts: list[tuple[Part, Verdict | None]] = [("checks", checks)]
        verdicts += await self._after_checks(answers, began)
        await self.settle(verdicts, via=via, report=report)
        return report

    async def tick_due(self) -> list[NamedReport]:
        """Check the orders that are due (one only, as a probe, while the account fails)."""
        failing = await self.resting(*self.checks_parts)
        if failing is None and self.rest.failure() is not None:
            return []  # the provider asked to wait: not even a first check
        if failing is None:  # resting: only a just-submitted order's first check, as the probe
            failing, due = True, await self._first_checks.due(self.settled_since())
        elif failing:
            # A failing source gets one probe per backoff period, not a storm of checks.
            due = await self._probe_due()
        else:
            self._probed.clear()
            due = await self._due(self.now(), self.due_limit)
        if not due:
            return []
        passes: list[NamedReport] = []
        notified = await self._notified_early(due)
        if notified:
            hinted = [s.key.order_id for s in due if s.key.order_id in notified]
            report = await self.check(hinted, via="notification", probe=failing)
            passes.append(NamedReport(f"{self.name} notification", report, is_pass=False))
        rest = [s.key.order_id for s in due if s.key.order_id not in notified]
        started = self.now()
        report = await self.check(rest, via="poll", probe=failing)
        passes.append(NamedReport(f"{self.name} due", report, is_pass=True))
        await remember_pass(self.store, f"{self.name} due", report, started, self.now())
        return passes

    async def _probe_due(self) -> list[OrderState]:
        """Return the order a failing account's probe asks, not asked since it failed (any again
        once each was, or PROBE_ROTATION were): one whose last check answered a status, due or
        not, else the one due soonest (one failing on its own says nothing of the provider)."""
        if len(self._probed) >= PROBE_ROTATION:
            self._probed.clear()
        limit = len(self._probed) + 1  # each read in a stable order: one at least not probed
        answered = await self._answered(limit)
        fresh = [s for s in answered if s.key.order_id not in self._probed]
        until = math.inf if self.probe_any_open else self.now()
        # Only then the due orders: by next_check_at, they may walk every account's open ones.
        due = [] if fresh else await self._due(until, limit)
        fresh = fresh or [s for s in due if s.key.order_id not in self._probed]
        if not fresh:
            self._probed.clear()
            fresh = answered or due
        self._probed.update(s.key.order_id for s in fresh[:1])
        return fresh[:1]

    def _batcher(
        self, via: Via, report: PassReport, *, discover: bool = False, timed: bool = True
    ) -> Batcher:
        return Batcher(
            self.writer, via, report, self.source, self.account, discover=discover, timed=timed
        )

    async def _asking(self, ask: Callable[[], Awaitable[object]], *batchers: Batcher) -> str | None:
        """Run `ask`, which feeds `batchers`, and commit what they hold; return why the provider
        stopped answering for the whole account (401, breaker, error line), or None."""
        error = None
        try:
            await ask()
            for batcher in batchers:
                await batcher.flush()
        except SourceError as exc:
            # What was answered before the account failed is true, and kept.
            for batcher in batchers:
                await batcher.flush()
                if isinstance(exc, RestAsked) and exc.held:
                    batcher.report.rest_held = True
                elif isinstance(exc, RestAsked):
                    batcher.report.rest_met = True
            error = self.reason(exc)
        finally:
            for batcher in batchers:
                await batcher.close()
        return error

    def _count_unanswered(self, asked: int, report: PassReport, error: str | None) -> None:
        """`PassReport.count_unanswered`, and the metrics' count of them."""
        unanswered = report.count_unanswered(asked, error)
        if unanswered and (metrics := self.writer.metrics) is not None:
            metrics.observe_unanswered(self.source, self.account, unanswered)

    async def _due(self, until: float, limit: int) -> list[OrderState]:
        await self._steps.check(self.now())  # checks planned before the clock was put back
        since = self.settled_since()  # then unwatched: never due
        began = self.catch_ups.since()  # then its own orders are the catch-up's to ask
        return await self.store.orders.due(
            self.source, self.account, until, limit, since, catch_up=began
        )

    async def _answered(self, limit: int) -> list[OrderState]:
        """Orders whose last check answered, a probe's first choice (CCNow's query probe's)."""
        since = self.settled_since()  # then unwatched: never asked
        return await self.store.orders.answered(self.source, self.account, limit, since)

    def reason(self, exc: SourceError) -> str:
        """Return a failure's reason as events, the database and logs may show it."""
        # Whatever a client let through, no secret reaches the event, the database or the log.
        return redact(str(exc) or exc.reason, self._secrets, limit=MAX_REASON_LENGTH)

    # --- health ------------------------------------------------------------------------------

    async def resting(self, *parts: Part) -> bool | None:
        """Return None while a failing one of `parts` is left alone (its backoff has not run out),
        else whether one of them is failing (the account's other parts are asked as usual)."""
        state = await self.store.sources.state(self.source, self.account)
        self.rest.hold(state.rest_until)  # a rest another process or start was asked
        now, interval_s = self.now(), self.config.poll_interval_s
        said = [resting(state, part, interval_s=interval_s, now=now) for part in parts]
        return None if None in said else any(said)

    async def settle(
        self, verdicts: Sequence[tuple[Part, Verdict | None]], *, via: Via, report: PassReport
    ) -> None:
        """Apply what a pass's answers say about the account to its health: one
        `source.failed` when it starts failing, one `source.recovered` when it answers again."""
        # A pass that began or lengthened the rest failed for it, though a request of it was
        # kept back (concurrent checks): only one kept back whole is the rest's alone.
        rested = await record_rest(self)
        held = not rested and report.rest_held
        said = [
            (part, replace(v, held=held) if held and not v.ok else v)
            for part, v in verdicts
            if v is not None
        ]
        for _, v in said:
            if not v.ok:
                report.failed_sources[self.name] = v.reason or "failed"
        outage, report.outage_failures = report.outage_failures, []
        kept = self.rest.failure(held=False) if rested or report.rest_met else None
        rest = None if kept is None else self.reason(kept)
        failing = await self._settle_health(said, outage, via=via, report=report, rest=rest)
        # Taken after the health: an account that recovers notes its pass's failures again.
        started_failing, report.started_failing = report.started_failing, []
        more, report.started_failing_more = report.started_failing_more, Counter()
        if started_failing:
            if failing is None:  # the pass said nothing of the account: as it was
                failing = (await self.store.sources.state(self.source, self.account)).failing
            if not failing:  # else the orders' failures are the account's (source.failed)
                log_started_failing(self.source, self.account, started_failing, more)

    async def _settle_health(
        self,
        said: Sequence[tuple[Part, Verdict]],
        outage: Sequence[Observation],
        *,
        via: Via,
        report: PassReport,
        rest: str | None,
    ) -> bool | None:
        """Write the account's health after a pass's verdicts; return whether it is failing now
        (None: it said nothing). `outage`: its checks that failed while the account failed."""
        if not said:
            return None
        now = self.now()
        fresh = rest is None and not is_stale(report.began, self._flipped_at)  # nor a rest's news
        if fresh and self._written_healthy(said, now):
            return False  # a burst of hints writes the account's good health once, not each time
        store = self.store
        refailed: Callable[[], None] | None = None
        try:
            # A hint's record goes before a pass's batches waiting for the database.
            async with store.transaction(urgent=via == "notification"):
                state = await store.sources.state(self.source, self.account)
                interval_s = self.config.poll_interval_s
                stale = is_stale(report.began, self._flipped_at)
                new, flip = next_health(
                    state, said, now=now, interval_s=interval_s, stale=stale, rest=rest
                )
                await store.sources.save(new)
                event = None
                if flip is not None:
                    why, sid = None, store.store_id  # why: what its source.failed named
                    if flip is EventType.SOURCE_RECOVERED:
                        latest = await store.events.latest_failed(self.source, self.account)
                        why = None if latest is None else latest[1]
                    event = health_event(
                        state, new, flip, now=now, via=via, store_id=sid, failed_reason=why
                    )
                    await store.events.add([event])
                if flip is EventType.SOURCE_RECOVERED:
                    # The outage's failures were the account's. One of this very pass is the
                    # order's own: written again, it counts one failure (`status`, backoff)
                    # and is logged now, not a pass later.
                    await store.orders.forget_failures(self.source, self.account)
                    if outage:
                        refailed = await self.writer.apply_within(outage, via=via, report=report)
        except BaseException:
            self._healthy_at = None
            raise
        self._healthy_at = None if new.failing else now
        if flip is not None:
            self._flipped_at = time.monotonic()
        if refailed is not None:
            refailed()
        if event is not None:
            # The event's own log line (log sink) is the one line an operator sees.
            self.writer.committed([event])
            self.writer.on_health()
            report.events += 1
        return new.failing

    def _written_healthy(self, said: Sequence[tuple[Part, Verdict]], now: float) -> bool:
        """Whether good news is all a pass says of an account whose good health was written (or
        is being written) under HEALTHY_RECORDED_S ago; otherwise good news claims the write,
        so that the hints checked meanwhile do not queue a write each."""
        if not all(v.ok for _, v in said):
            return False
        if self._healthy_at is not None and now - self._healthy_at < self.healthy_recorded_s:
            return True
        self._healthy_at = now
        return False
