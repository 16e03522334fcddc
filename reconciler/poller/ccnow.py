"""A CCNow account's coordinator: CCNow has to be asked, so its pending list is polled on an
interval, the orders that left the list are queried, and a server notification makes a poll
happen now."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..config import CCNowConfig
from ..model import (
    ORDER_ERROR,
    UNKEPT_ANSWERS,
    Observation,
    OrderKey,
    Outcome,
    Via,
)
from ..passes.report import PassReport
from ..sources.ccnow_batches import Probe, Said
from ..sources.errors import ProtocolError, SourceError
from ..sources.http import RequestFailed
from ..sources.rest import AccountRest
from ..store.passes import remember_pass
from . import ccnow_notified
from .ccnow_list import ListMemory, followed, still_open, undecided
from .coordinator import PAGE_ORDERS, Coordinator, Emit, NamedReport
from .health import Part, Verdict, verdict
from .witnesses import Witnesses

if TYPE_CHECKING:
    from ..reconcile import Reconciler

log = logging.getLogger("reconciler.poller")


class CCNowSource(Protocol):
    """What the coordinator needs of a CCNow client (sources/ccnow.py)."""

    async def pending_list(self) -> list[Observation]:
        """Return the orders CCNow lists as pending; raise SourceError for the account."""
        ...

    async def query(
        self,
        order_ids: Sequence[str],
        emit: Emit,
        *,
        probe: Probe | None = None,
        catch_up: bool = False,
    ) -> None:
        """Query orders, awaiting `emit` for each; raise SourceError for the account, unless
        `probe` finds the account answering through its failures: those orders' failures
        alone. `catch_up`: the orders its posts did not reach are asked again within it."""
        ...

    def carried(self) -> Collection[str]:
        """The orders its queries carried to their next poll, not checked yet."""
        ...

    def forget_carried(self, order_ids: Iterable[str]) -> None:
        """Forget carried orders no longer followed."""
        ...


class CCNowCoordinator(Coordinator[CCNowSource]):
    """One CCNow account."""

    source = "ccnow"
    config: CCNowConfig
    # The orders on the pending list are checked by it, poll after poll, and their queries
    # keep being put off: a failing query part probes one of them all the same.
    probe_any_open = True

    def __init__(
        self,
        config: CCNowConfig,
        client: CCNowSource,
        writer: Reconciler,
        *,
        secrets: Sequence[str] = (),
        page_orders: int = PAGE_ORDERS,
        rest: AccountRest | None = None,
    ) -> None:
        super().__init__(
            config, client, writer, secrets=secrets, page_orders=page_orders, rest=rest
        )
        self.listed = ListMemory(config.schedule)
        self.witnesses = Witnesses(self._answered)

    async def _ask(self, order_ids: list[str], emit: Emit) -> None:
        witnesses = self.witnesses

        async def answered(obs: Observation) -> None:
            if obs.outcome is not Outcome.FAILED:
                witnesses.query_answered(obs.key.order_id)
            await emit(obs)

        await self.client.query(order_ids, answered, probe=self._answers)
        await self._forget_carried(order_ids)

    async def _forget_carried(self, asked: Collection[str]) -> None:
        """Have the client forget the orders it carried that are no longer followed (untracked,
        ended, settled and no longer watched): never asked again, each was kept for the
        process's life. Those not in this query (`asked`) are read from the store: few, the
        parts past some batch's posts."""
        others = [i for i in self.client.carried() if i not in asked]
        if not others:
            return
        keys = [OrderKey("ccnow", self.account, i) for i in sorted(others)]
        states = await self.store.orders.load(keys)
        since = self.settled_since()
        gone = [k.order_id for k in keys if not followed(states.get(k), since)]
        if gone:
            self.client.forget_carried(gone)

    async def _answers(
        self,
        asked: Sequence[str],
        *,
        listed: bool = False,
        lists: bool = True,
        read: Sequence[str] = (),
        spoke: bool = False,
    ) -> Said:
        """The probe (the one place choosing its order and judging its answer): whether the
        account answers a query of another order than `asked`, asked when a query's failures
        may be its orders' own (posts of one order alone each: an order CCNow stops at, or
        answers 500 for, due alone at its failure's backoff, failed the account, and the next
        check of another recovered it, pass after pass; both halves of a 5xx batch). The order:
        the last the query read (`read`), else the account's witnesses (poller/witnesses.py:
        orders whose last check answered a status, in turn, a second asked when the first
        fails: it may have broken since its last check; one that failed as a witness only when
        every other did, until a query of its own answers), else the pending list when `lists`
        (not read again when the pass read it, `listed`). Not while the account fails, unless
        the query read one: that check was its probe (`tick_due`). An answer about the whole
        account (a refused login, maintenance) raises. `spoke`: the query's own answers named
        the orders asked in CCNow's words (odd orders): it answers, nothing is asked."""
        if spoke:
            return Said.ANSWERS
        other = next((i for i in reversed(read) if i not in asked), None)
        if other is not None:  # it answered in this very query
            return await self._query_says(other)
        if (await self.store.sources.state(self.source, self.account)).failing:
            return Said.FAILING
        witnesses = await self.witnesses.choose(asked)  # one at a time, in turn, as CCV's
        for other in witnesses:
            self.witnesses.asked(other)
            if await self._query_says(other) is Said.ANSWERS:
                self.witnesses.query_answered(other)
                return Said.ANSWERS
            self.witnesses.failed(other)
        if witnesses:
            return Said.FAILS
        if not lists:
            return Said.NO_OTHER  # and the list may answer while every query fails
        try:
            if not listed:
                await self.client.pending_list()
        except SourceError:
            return Said.FAILS
        return Said.ANSWERS

    async def _query_says(self, order_id: str) -> Said:
        """Whether a query of one order gets CCNow's word about it: also an answer holding a
        line no order's can be read from beside the order's own (an odd order's, its check
        failing `protocol`): CCNow's program answered about it, and that is the order's own
        trouble, as in a pass's queries (`BatchFailures.finish`); it counted as the
        account's failure, and two such witnesses failed the account."""
        said: list[Observation] = []
        spoken: list[bool] = []

        async def keep(observation: Observation) -> None:
            said.append(observation)

        async def named(
            asked: Sequence[str],
            *,
            lists: bool = True,
            read: Sequence[str] = (),
            spoke: bool = False,
        ) -> Said:
            # A witness's query asks no other order: only what its own answer said counts.
            spoken.append(spoke)
            return Said.ANSWERS if spoke else Said.FAILS

        try:
            await self.client.query([order_id], keep, probe=named)
        except (RequestFailed, ProtocolError):
            # No answer, or one that says nothing of the order (empty, a line that cannot be
            # read alone, a page): a malformed answer is a source error, as in any check.
            return Said.FAILS
        if any(spoken):
            return Said.ANSWERS
        answers = any(
            o.outcome is not Outcome.FAILED or o.reason in (ORDER_ERROR, *UNKEPT_ANSWERS)
            for o in said
        )
        return Said.ANSWERS if answers else Said.FAILS

    async def _open_ids(self) -> list[str]:
        """Return every open order id of the account, read a page at a time."""
        ids: list[str] = []
        after = 0
        since = self.settled_since()  # watched when it began
        while True:
            page, after = await self.store.orders.open_ids(
                self.source, self.account, after=after, limit=self.page_orders, settled_since=since
            )
            if not page:
                return ids
            ids.extend(page)

    async def full_pass(self, *, via: Via) -> PassReport:
        """Fetch the pending list, then query every other open order. Every open order on the
        list, no query is asked, and no list line says the queries answer: an account whose
        checks fail is asked the daemon's probe, one order's query (else it never recovered
        at a catch-up, each exiting 0 while `status` said failing); no open order to ask, the
        list answering is the account answering (else every catch-up exited 75 for good).
        Still failing, it is in the report's failing sources: its exit and `status` agree."""
        queried: list[str] = []
        report = await self.pending_list_pass(via=via, everything=True, queried=queried)
        state = await self.store.sources.state(self.source, self.account)
        if "checks" in state.failing_parts and not (report.failed_sources or queried):
            if probed := [s.key.order_id for s in await self._probe_due()]:  # any open one
                report.add(await self.check(probed, via=via, probe=True))
            else:
                await self.settle([("checks", Verdict(True))], via=via, report=report)
            state = await self.store.sources.state(self.source, self.account)
        if state.failing and self.name not in report.failed_sources:
            report.failed_sources[self.name] = state.last_error or "failed"
        return report

    async def pending_list_pass(
        self,
        *,
        via: Via,
        everything: bool = False,
        seen: set[str] | None = None,
        queried: list[str] | None = None,
    ) -> PassReport:
        """Fetch the pending list, then query the orders whose state it cannot tell.

        With `everything`, every open order is queried (catch-up); otherwise only the orders
        that left the pending list since the last poll, and none while the queries fail.
        `seen` gets the orders the pass had an answer about (the list's lines, the queries'),
        `queried` those it queried (the pass's own: not another pass's meanwhile)."""
        seen = set() if seen is None else seen
        report = PassReport()
        # Failing queries are asked by the probe alone (`tick_due`), once per backoff period:
        # else every poll would ask a CCNow in maintenance again and stretch the backoff past
        # any use. The orders that left the list meanwhile wait in `self.listed` for the first
        # poll after the queries answer again.
        queries_answer = await self.resting("checks") is False
        ask_all = everything or (self.listed.ask_all and queries_answer)
        batcher = self._batcher(via, report)
        # Reveals orders nobody tracked; the pass is timed once, by `batcher`.
        listing = self._batcher(via, report, discover=True, timed=False)
        answered_list = False
        asked = 0
        from_list = 0  # the checks the list's own lines answered, doubted ones taken too
        to_query: list[str] = []
        answered: set[str] = set()
        probe_answered = False  # a query's probe found the account answering
        witnesses = self.witnesses

        async def probe(
            asked: Sequence[str],
            *,
            lists: bool = True,
            read: Sequence[str] = (),
            spoke: bool = False,
        ) -> Said:
            nonlocal probe_answered
            said = await self._answers(
                asked, listed=answered_list, lists=lists, read=read, spoke=spoke
            )
            probe_answered = probe_answered or said is Said.ANSWERS
            return said

        async def emit(obs: Observation) -> None:
            answered.add(obs.key.order_id)
            if obs.outcome is not Outcome.FAILED:
                seen.add(obs.key.order_id)
                # A query's answer, not the list's line: that would forget it at every poll.
                witnesses.query_answered(obs.key.order_id)
            await batcher.add(obs)

        async def ask() -> None:
            nonlocal answered_list, asked, from_list, to_query
            open_ids: list[str] = []
            if ask_all:
                # Read before the list is asked: a catch-up whose list fails has asked about
                # every open order all the same, and counts each as a failed check.
                open_ids = await self._open_ids()
                asked = len(open_ids)
            listed = await self.client.pending_list()
            listed_ids = {o.key.order_id for o in listed}
            self.listed.read(listed_ids)
            if ask_all:
                to_query = [oid for oid in open_ids if oid not in listed_ids]
            elif queries_answer:
                left = self.listed.take()
                try:
                    to_query = await still_open(self.store, self.account, left)
                except BaseException:
                    # The store could not say which are open (or the job was cancelled): they
                    # wait for the next poll, not for their own schedule.
                    self.listed.queried(left, ())
                    raise
            seen.update(o.key.order_id for o in listed if o.outcome is not Outcome.FAILED)
            for obs in listed:
                await listing.add(obs._replace(listed=True))  # it may lag: diff.lags
            await listing.flush()
            answered_list = True
            from_list = report.checked - report.failed
            # Lines that may lag behind a query's or an action's answer (diff.lags) said nothing
            # (not `seen`): the order's query decides, a catch-up's, or a poll's once it is due.
            seen.difference_update(report.doubted)
            if asking := ask_all or queries_answer:
                due = self.listed.doubts_due(
                    report.doubted, self.now(), everything=ask_all, forward=report.sooner
                )
                to_query += [i for i in due if i not in to_query]
            # A doubted line is no check (reconcile.py): its query, if asked, is the order's.
            asked = len(listed) - len(report.doubted) + len(to_query)
            if queried is not None:
                queried.extend(to_query)
            lines = {o.key.order_id: o for o in listed if o.key.order_id in report.forward}
            try:  # A catch-up decides every order it asks: none carried to a next poll.
                if to_query:
                    await self.client.query(to_query, emit, probe=probe, catch_up=ask_all)
                    await self._forget_carried(to_query)
            except SourceError:  # what answered before it is kept (`_asking`), lines too
                from_list += await undecided(lines, to_query, seen, listing)
                raise
            from_list += await undecided(lines, to_query if asking else lines, seen, listing)

        try:
            error = await self._asking(ask, listing, batcher)
        finally:
            # A catch-up's orders left unanswered are asked again whole (`ask_all`).
            self.listed.queried(() if ask_all else to_query, answered)
        if ask_all:
            self.listed.ask_all = error is not None
        self._count_unanswered(asked, report, error)
        verdicts: list[tuple[Part, Verdict | None]]
        if not answered_list:
            verdicts = [("pending_list", Verdict(False, error))]
        else:
            # The orders on the list are checks of the pass too (a catch-up in which they alone
            # answered did not fail every check), but only a query that answered says the
            # queries answer again: else the list would clear their failure every poll.
            answers = report.answers(error=error, complete=ask_all)
            checks = verdict(answers)
            if checks is not None and checks.ok and answers.answered <= from_list:
                checks = None
            if checks is not None and not checks.ok and error is None and probe_answered:
                checks = None  # one order's post failed alone, and another's answered
            verdicts = [("pending_list", Verdict(True)), ("checks", checks)]
        await self.settle(verdicts, via=via, report=report)
        return report

    async def tick_pending_list(self) -> list[NamedReport]:
        """Poll the pending list, unless its failure is being left alone for a while."""
        if await self.resting("pending_list") is None:
            return []
        started = self.now()
        report = await self.pending_list_pass(via="poll")
        name = f"{self.name} pending list"
        await remember_pass(self.store, name, report, started, self.now())
        return [NamedReport(name, report, is_pass=True)]

    async def notified(
        self, order_ids: Sequence[str], *, mentioned: Sequence[str] = ()
    ) -> PassReport:
        """A server notification: poll the pending list and query the ids it named, and
        those it only mentioned whose orders are followed already (ccnow_notified.py)."""
        return await ccnow_notified.notified(self, order_ids, mentioned)
