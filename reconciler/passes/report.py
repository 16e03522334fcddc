"""What a pass did, per account: counts for logs, `reconciler status` and health verdicts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple

from ..model import ORDER_ERROR, UNKEPT_ANSWERS, Observation, OrderState

# `order.check_failed` lines a pass logs before it sums up the rest in one line.
STARTED_FAILING_LINES = 20


@dataclass(frozen=True, slots=True)
class PassAnswers:
    """How the checks of one pass of one account ended."""

    # The provider answered: a status, its own "not found", or words about the order nothing
    # may keep (UNKEPT_ANSWERS: the order's check failed, but the account answers).
    answered: int = 0
    failed: int = 0  # no answer for that order
    lost: int = 0  # of `failed`: orders found before that the provider now says it does not know
    # of `failed`: orders just submitted that the provider does not know yet (not yet confirmed)
    fresh: int = 0
    own_errors: int = 0  # of `failed`: an error line of the order's own (ORDER_ERROR)
    error: str | None = None  # the pass stopped for the whole account (401, breaker, error line)
    complete: bool = False  # the pass asked every open order of the account (a catch-up)
    reason: str | None = None  # the commonest reason of the failed checks ("timeout", ...)
    # Of `failed`: an outage's (CCV's 5xx, timeout, ...), the provider's or something in
    # between's, not the order's: when they are most of the failures, the account's.
    outages: int = 0

    @property
    def not_found(self) -> int:
        """Of `failed`: the provider's own "not found", not confirmed yet (lost or fresh)."""
        return self.lost + self.fresh


@dataclass
class PassReport:
    """What a pass did, per account; `ok` means every order answered."""

    checked: int = 0
    failed: int = 0
    lost: int = 0  # of `failed`: orders found before that CCV now says it does not know
    fresh: int = 0  # of `failed`: orders just submitted that CCV does not know yet
    events: int = 0
    failed_sources: dict[str, str] = field(default_factory=dict)  # "ccv/default" -> reason
    # The failed checks (not the lost orders) counted by their reason ("timeout", "http_302").
    reasons: Counter[str] = field(default_factory=Counter)
    # The failed checks of orders whose checks had answered until this pass, the first
    # STARTED_FAILING_LINES of them, and the rest counted by reason: the pass's own `settle`
    # (poller/coordinator.py) logs them and empties both. Bounded, whatever the pass's size.
    started_failing: list[Observation] = field(default_factory=list)
    started_failing_more: Counter[str] = field(default_factory=Counter)
    # The failed checks written while their account was failing: the outage's, unless the
    # pass's own `settle` finds the account answering again; then they are the orders' own,
    # and written again once the outage's failures are forgotten. The first
    # Reconciler.batch_rows of them, whatever the pass's size: those past it fail on their own
    # a pass later (their failure forgotten with the outage's). A pass in which every order
    # fails leaves its account failing, and drops them.
    outage_failures: list[Observation] = field(default_factory=list)
    # Orders whose pending list line may lag behind or contradict their snapshot (diff.lags),
    # with their row as the line found it: the pass's query step asks them, a poll's only those
    # due (schedule.doubt_due, poller/ccnow_list.py).
    doubted: dict[str, OrderState] = field(default_factory=dict)
    # Those of them to ask sooner (schedule.doubt_due): the line names a later step than the
    # held status (diff.later), or is one of `forward`.
    sooner: set[str] = field(default_factory=set)
    # Those of them held before `pending` that the list names `pending` (diff.next_step), whose
    # ship or cancel is not being sent: the line applies when their query cannot decide
    # (poller/ccnow.py).
    forward: set[str] = field(default_factory=set)
    # The pass stopped at the account's rest, which kept its request back (none was sent):
    # its failure is the rest's, counted once already (poller/health.py `Verdict.held`).
    rest_held: bool = False
    # The provider asked this pass's request to wait (a 429's Retry-After): news however old
    # the pass, unlike its answers (`Coordinator._settle_health`).
    rest_met: bool = False
    # When the pass began, before any request of it (time.monotonic()): its answers are no
    # older, and a pass begun before the account's last flip flips nothing back (`next_health`).
    began: float = field(default_factory=time.monotonic, compare=False, repr=False)

    def count_unanswered(self, asked: int, error: str | None) -> int:
        """Count the orders asked of the provider that a failure of the whole account (`error`)
        left without an answer, and return how many: each is a failed check of the pass
        (`catch-up.done`, the last pass in `status`), though none is written to its order (the
        account's failure it was)."""
        if error is None or asked <= self.checked:
            return 0
        unanswered = asked - self.checked
        self.checked += unanswered
        self.failed += unanswered
        return unanswered

    def note_outage(self, observations: Iterable[Observation], limit: int) -> None:
        """Hold failed checks written while their account fails, `limit` at most."""
        room = limit - len(self.outage_failures)
        if room > 0:
            self.outage_failures += islice(observations, room)

    def note_started_failing(self, observations: Iterable[Observation]) -> None:
        """Keep orders whose checks start failing, up to STARTED_FAILING_LINES, and count the
        rest."""
        for obs in observations:
            if len(self.started_failing) < STARTED_FAILING_LINES:
                self.started_failing.append(obs)
            else:
                self.started_failing_more[obs.reason or "failed"] += 1

    @property
    def ok(self) -> bool:
        """True when no source failed and no check failed."""
        return not self.failed_sources and self.failed == 0

    def add(self, other: PassReport) -> None:
        """Fold another report into this one."""
        self.checked += other.checked
        self.failed += other.failed
        self.lost += other.lost
        self.fresh += other.fresh
        self.events += other.events
        self.failed_sources.update(other.failed_sources)
        self.reasons.update(other.reasons)

    def summary(self) -> str:
        """One line for logs and systemd STATUS=."""
        text = f"checked={self.checked} failed={self.failed} events={self.events}"
        if self.failed_sources:
            text += " failing=" + ",".join(sorted(self.failed_sources))
        return text

    def answers(
        self,
        *,
        error: str | None = None,
        complete: bool = False,
        outages: frozenset[str] = frozenset(),
    ) -> PassAnswers:
        """Return this report's checks as the answers a health verdict is made of; `outages`:
        the reasons of an outage's failures (`PassAnswers.outages`)."""
        commonest = self.reasons.most_common(1)
        unkept = sum(self.reasons[reason] for reason in UNKEPT_ANSWERS)
        return PassAnswers(
            answered=self.checked - self.failed + unkept,
            failed=self.failed - unkept,
            lost=self.lost,
            fresh=self.fresh,
            own_errors=self.reasons[ORDER_ERROR],
            error=error,
            complete=complete,
            reason=commonest[0][0] if commonest else None,
            outages=sum(self.reasons[reason] for reason in outages),
        )


class NamedReport(NamedTuple):
    """What a tick checked, named for logs and systemd STATUS=."""

    name: str
    report: PassReport
    # A pass (`status`'s last pass): the checks of due orders a notification named are not.
    is_pass: bool
