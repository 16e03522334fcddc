"""A CCNow account's coordinator: CCNow has to be asked, so its pending list is polled on an
interval, the orders that left the list are queried, and a server notification makes a poll
happen now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ..config import CCNowConfig
from ..model import Observation, Via
from ..passes.report import PassReport
from .coordinator import (
    Coordinator,
    Emit,
    NamedReport,
    remember_pass,
)
from .health import Part, Verdict, verdict

if TYPE_CHECKING:
    pass


class CCNowSource(Protocol):
    """What the coordinator needs of a CCNow client (sources/ccnow.py)."""

    async def pending_list(self) -> list[Observation]:
        """Return the orders CCNow lists as pending; raise SourceError for the account."""
        ...

    async def query(self, order_ids: Sequence[str], emit: Emit) -> None:
        """Query orders, awaiting `emit` for each; raise SourceError for the account."""
        ...


class CCNowCoordinator(Coordinator[CCNowSource]):
    """One CCNow account."""

    source = "ccnow"
    config: CCNowConfig
    # The orders on the pending list are checked by it, poll after poll, and their queries
    # keep being put off: a failing query part probes one of them all the same.
    probe_any_open = True

    async def _ask(self, order_ids: list[str], emit: Emit) -> None:
        await self.client.query(order_ids, emit)

    async def full_pass(self, *, via: Via) -> PassReport:
        """Fetch the pending list, then query every other open order."""
        return await self.pending_list_pass(via=via, everything=True)

    async def pending_list_pass(self, *, via: Via, everything: bool = False) -> PassReport:
        """Fetch the pending list, then query the orders whose state it cannot tell.

        With `everything`, every open order is queried (catch-up); otherwise only the orders
        that left the pending list since the last poll, and none while the queries fail.
        """
        report = PassReport()
        # Failing queries are asked by the probe alone (`tick_due`), once per backoff period:
        # else every poll would ask a CCNow in maintenance again and stretch the backoff past
        # any use. The orders that left the list stay `pending` in the store, so the first
        # poll after the queries answer again asks about them.
        query_left = everything or await self.resting("checks") is False
        batcher = self._batcher(via, report)
        # Reveals orders nobody tracked; the pass is timed once, by `batcher`.
        listing = self._batcher(via, report, discover=True, timed=False)
        answered_list = False
        asked = 0
        from_list = 0  # the checks the list's own lines answered

        async def ask() -> None:
            nonlocal answered_list, asked, from_list
            to_query: list[str] = []
            if everything:
                # Read before the list is asked: a catch-up whose list fails has asked about
                # every open order all the same, and counts each as a failed check.
                to_query = await self._open_ids()
                asked = len(to_query)
            listed = await self.client.pending_list()
            listed_ids = {o.key.order_id for o in listed}
            if query_left and not everything:
                before = await self.store.orders.with_status("ccnow", self.account, ["pending"])
                to_query = [s.key.order_id for s in before]
            for obs in listed:
                await listing.add(obs)
            await listing.flush()
            answered_list = True
            from_list = report.checked - report.failed
            left = [oid for oid in to_query if oid not in listed_ids]
            asked = len(listed) + len(left)
            if left:
                await self.client.query(left, batcher.add)

        error = await self._asking(ask, listing, batcher)
        self._count_unanswered(asked, report, error)
        verdicts: list[tuple[Part, Verdict | None]]
        if not answered_list:
            verdicts = [("pending_list", Verdict(False, error))]
        else:
            # The orders on the list are checks of the pass too (a catch-up in which they alone
            # answered did not fail every check), but only a query that answered says the
            # queries answer again: else the list would clear their failure every poll.
            answers = report.answers(error=error, complete=everything)
            checks = verdict(answers)
            if checks is not None and checks.ok and answers.answered <= from_list:
                checks = None
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
        return [(name, report)]

    async def notified(self, order_ids: Sequence[str]) -> PassReport:
        """A server notification: poll the pending list and query the ids it named."""
        report = await self.pending_list_pass(via="notification")
        if order_ids:
            # The notification came with the account's token, so its ids are the account's own
            # orders: each is queried, followed or not, and one CCNow knows is followed from now
            # on. The receiver bounds the ids per notification and per account.
            report.add(await self.check(order_ids, via="notification", discover=True))
        return report
