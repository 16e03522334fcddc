"""The reconciliation rules, pure: (snapshot, observations) -> rows and events.

Every transition (a status change, or first sight) is an event; the stored events are the
orders' history.

No I/O and no clock: callers pass `now`. Every rule of what counts as a change lives here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .events import Event, order_event, transition_id
from .model import (
    NOT_FOUND_UNCONFIRMED,
    EventType,
    Observation,
    OrderKey,
    OrderState,
    Outcome,
    Via,
    same_status,
    status_info,
)
from .schedule import NOT_FOUND_CONFIRM_S


@dataclass
class DiffResult:
    """What a batch of observations changes."""

    states: dict[OrderKey, OrderState] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # orders whose status changed (or were discovered) in this batch: checked again soon
    changed: set[OrderKey] = field(default_factory=set)
    # orders found before that answered "not found" and wait for a later check to confirm it
    lost: set[OrderKey] = field(default_factory=set)
    # orders submitted through reconciler, never found by a check yet, that CCV does not know
    # yet (its first "not found" within NOT_FOUND_CONFIRM_S): failed checks, but no lost wave
    # (three submits while CCV lags are not the account's failure)
    fresh: set[OrderKey] = field(default_factory=set)
    # (order, reference tracked, reference the provider answered) where the two differ
    references: list[tuple[OrderKey, str, str]] = field(default_factory=list)
    # failed checks of orders whose checks answered until now (failure streak 0 -> 1)
    started_failing: list[Observation] = field(default_factory=list)
    # orders a CCNow pending list's line contradicts the status the snapshot holds, whatever
    # the two words (`lags`): nothing applied; their query decides (poller/ccnow.py)
    doubted: set[OrderKey] = field(default_factory=set)
    # those of them whose line names a later step of CCNow's lifecycle (`later`): asked sooner
    sooner: set[OrderKey] = field(default_factory=set)
    # those of them held before `pending` that the line names `pending`, their likely next step
    # (`next_step`): the line applies when their query cannot decide
    forward: set[OrderKey] = field(default_factory=set)
    # CCNow orders an answer moved back from what a ship or cancel leads to (`mark_shipped`) to
    # pending or before, (row before, row after): such an action may not have taken
    moved_back: list[tuple[OrderState, OrderState]] = field(default_factory=list)


def diff(
    snapshot: Mapping[OrderKey, OrderState],
    observations: Iterable[Observation],
    *,
    now: float,
    via: Via,
    store_id: str,
    failing_accounts: Collection[tuple[str, str]] = (),
    acting: Collection[OrderKey] = (),
) -> DiffResult:
    """Apply observations in order to the snapshot; return the touched rows and their events.

    Observations of orders that are not in the snapshot are first sightings (the CCNow pending
    list reveals orders nobody tracked). A failed check changes nothing but the failure streak.
    An order found before that answers "not found" is reported only when a check at least
    NOT_FOUND_CONFIRM_S later says so again, and not while its account (source, account) is in
    `failing_accounts`: a wave of such answers is the account's failure, not the orders'.
    An observation asked before the answer the snapshot holds is skipped (`stale`), and so is
    a CCNow pending list's line that may lag behind it or contradicts it (`lags`, in `doubted`),
    or names an order in `acting` (a ship or cancel of it being sent: CCNow's answer to it may
    have come, and the list lags for hours behind an action; in `doubted` too).
    """
    result = DiffResult()
    for obs in observations:
        prev = result.states.get(obs.key) or snapshot.get(obs.key)
        # The held time first: a first catch-up's rows hold none, and skip the call.
        if prev is not None and prev.asked_at is not None and stale(prev, obs, now=now):
            continue
        if obs.listed and prev is not None and (lags(prev, obs) or obs.key in acting):
            result.doubted.add(obs.key)
            if later(prev, obs):
                result.sooner.add(obs.key)
            if next_step(prev, obs):
                result.forward.add(obs.key)
            continue
        if obs.outcome is Outcome.OK:
            _observed(result, prev, obs, now=now, via=via, store_id=store_id)
        elif obs.outcome is Outcome.NOT_FOUND:
            if prev is None:
                continue
            asked = _dated(prev.asked_at, obs)
            if _confirmed_missing(prev, now=now, failing_accounts=failing_accounts):
                _not_found(result, prev, now=now, via=via, store_id=store_id, asked=asked)
            else:
                if prev.missing_since is None and not prev.failure_streak:
                    # Said once, as a failed check: until confirmed the order counts as failed
                    # (a catch-up exits 75), and the operator must see why.
                    result.started_failing.append(obs._replace(reason=NOT_FOUND_UNCONFIRMED))
                since = now if prev.missing_since is None else prev.missing_since
                # A failed check like any other (`status`, `orders`), last_checked included:
                # it stays at the last answer that gave a status.
                result.states[obs.key] = prev._replace(
                    failure_streak=prev.failure_streak + 1, missing_since=since, asked_at=asked
                )
                (result.lost if prev.status is not None else result.fresh).add(obs.key)
        elif prev is not None:
            if not prev.failure_streak:
                result.started_failing.append(obs)
            result.states[obs.key] = prev._replace(failure_streak=prev.failure_streak + 1)
    return result


def stale(prev: OrderState, obs: Observation, *, now: float) -> bool:
    """Whether an answer was asked before the one the snapshot holds (or before a write's own
    answer): it is older news, and changes nothing (no event; the next check settles it).

    A check asked before a CCNow action or a notification's check and answered after it would
    otherwise undo what that one recorded (`mark_shipped -> pending`), and the next check would
    raise the change again. Only an answer whose request was sent strictly earlier is stale:
    one request's answers (a line twice) are not. A held time in the future means the clock was
    put back: nothing can be judged against it, and the answer counts as before. A CCNow
    action's answer is not older than a read sent while its post waited for it that says the
    order as it was before CCNow ran the action (`_before_action`)."""
    asked, held = obs.asked, prev.asked_at
    if asked is None or held is None or not asked < held <= now:
        return False
    return not _before_action(prev, obs)


# The status CCNow takes its actions in: it marks a pending order shipped or canceled, and
# takes tracking and discounts for orders in "pending" state (its Order Update API).
ACTED_ON = "pending"
# What a ship or cancel CCNow ran leaves the order in: only such a line can be newer than a
# `pending` read. A line saying a hold (a refused ship of an order on hold that became pending
# meanwhile) may be older than that read.
ACTION_RESULTS = frozenset({"mark_shipped", "mark_canceled", "completed", "canceled"})
# The statuses an order has until CCNow runs a ship or cancel: pending and those before it.
BEFORE_ACTION = frozenset(
    {"received", "paypal_hold", "processing", "vacation_hold", "preorder_hold", "getman_hold"}
    | {ACTED_ON}
)

# CCNow's lifecycle (its Order Update API's table; the sandbox walks it): each documented word's
# stage, an order moving only to a later one (`test` is in none: it is no step of a real order).
_STAGES: Final[Mapping[str, int]] = {
    "received": 0,
    "paypal_hold": 1,
    "processing": 2,
    **dict.fromkeys(("vacation_hold", "preorder_hold", "getman_hold"), 3),
    **dict.fromkeys((ACTED_ON, "declined", "rejected"), 4),
    **dict.fromkeys(("mark_shipped", "mark_canceled"), 5),
    **dict.fromkeys(("completed", "canceled"), 6),
    **dict.fromkeys(("refunded", "chargeback"), 7),
}


def later(prev: OrderState, obs: Observation) -> bool:
    """Whether a pending list's line names a word that may be the order's next step: later in
    CCNow's lifecycle than the held status (`completed` or `mark_canceled` for a `pending`
    order, `pending` for a `processing` one). A real change the list shows is then seen soon
    (`schedule.doubt_due`); an earlier word (a lagging list) or one in no stage waits."""
    held, said = prev.status, obs.status
    if held is None or said is None:
        return False
    was, now = _STAGES.get(held.lower()), _STAGES.get(said.lower())
    return was is not None and now is not None and now > was


def lags(prev: OrderState, obs: Observation) -> bool:
    """Whether a pending list's line (`obs.listed`) contradicts the status the snapshot holds,
    whatever the two words: `pending` against what a query, an action's answer or an earlier
    line said (`mark_shipped`, `declined`, `test`, `processing`, a word CCNow does not
    document), or another word against `pending` (`completed`). CCNow does not document when
    an order leaves the list, nor that it lists only pending ones, nor that the list and the
    queries agree: the line may lag behind the query, and taken for newer news it flipped the
    order back, and the next query forward, for ever (an end state seemed to reopen at every
    poll); a list documented as the orders pending that names one `completed` says something
    doubtful of itself (taken, it stood for a day, refusing ships, until a query flipped it
    back). It is no news by itself: the order's query decides (`schedule.doubt_due`). A line
    saying the held status (in any case) is no contradiction, and an order reported not found
    that the list names is found again."""
    held, said = prev.status, obs.status
    return (
        prev.key.source == "ccnow"
        and held is not None
        and said is not None
        and not prev.not_found
        and not same_status(held, said)
    )


def next_step(prev: OrderState, obs: Observation) -> bool:
    """Whether a pending list's line says the order's likely next step: it names `pending` an
    order held before it (`processing`). The line applies when its query cannot decide
    (poller/ccnow_list.py); any other word (a `pending` order listed `completed`, a
    `processing` one `canceled`) waits for a query that says it."""
    held, said = prev.status, obs.status
    return (
        held in BEFORE_ACTION
        and held != ACTED_ON
        and said is not None
        and same_status(said, ACTED_ON)
    )


def _before_action(prev: OrderState, obs: Observation) -> bool:
    """Whether the answer the snapshot holds came from a read sent while a CCNow action's post
    (`obs`, its answer line) waited for its answer, and says the order before CCNow ran it.

    Sent after the post, that read may have been answered before CCNow ran the action or
    after: `pending` can only be before a line saying what the action made of it
    (`ACTION_RESULTS`: the action's answer was the newer news, and skipped, the action's `via:
    action` change was lost to the next poll); any other status (`completed` after a ship's
    `mark_shipped`) may be after, and holds, and so does `pending` against a line saying a hold
    (the hold may have ended after CCNow answered). A read sent after the answer came is newer,
    whatever it says."""
    answered, held = obs.answered, prev.asked_at
    return (
        answered is not None
        and held is not None
        and held <= answered
        and prev.status == ACTED_ON
        and obs.status in ACTION_RESULTS
        and not prev.not_found
    )


def _dated(held: float | None, obs: Observation) -> float | None:
    """The time an order's row holds once an answer is applied: when the answer's request was
    sent, or (its age not known) the time held before. A CCNow action's answer line is dated
    by when it came: a read sent while its post waited and answered after it was applied says
    nothing newer (`pending` from before CCNow ran it would undo the action)."""
    if obs.answered is not None:
        return obs.answered
    asked = obs.asked
    return held if asked is None else asked


def _observed(
    result: DiffResult,
    prev: OrderState | None,
    obs: Observation,
    *,
    now: float,
    via: Via,
    store_id: str,
) -> None:
    key, status = obs.key, obs.status
    if status is None:  # an OK observation always carries a status; refuse to invent one
        return
    info = status_info(key.source, status)
    base = prev or OrderState(key=key, tracked_at=now)
    if key.source == "ccnow" and not info.known and same_status(base.status, status):
        # A word CCNow does not document, in another case (`Pending_Review`, `pending_review`),
        # is the same word: no change, and it stays as first seen (an endpoint that flips case
        # would raise a change every poll). A documented word comes in the document's case: one
        # an older release stored in capitals (`CANCELED`) changes to it. CCV's words stay as
        # CCV writes them.
        status = base.status or status
    reference = obs.external_reference or base.external_reference
    tracked, answered = base.external_reference, obs.external_reference
    if tracked is not None and answered is not None and answered != tracked:
        # The provider's word wins (it is what the order carries), but never silently.
        result.references.append((key, tracked, answered))
    # Found again after `order.not_found` (which said status null): that is a change, whatever
    # the status, or consumers of the events would go on believing the order gone.
    found_again = base.not_found
    previous = None if found_again else base.status
    changed = found_again or previous != status
    state = OrderState(
        key=key,
        status=status,
        external_reference=reference,
        # First sight sets it, though a submit's answer did before: schedule._active would take
        # the first sight for a change.
        first_seen=now if base.status is None else base.first_seen,
        last_changed=now if changed else base.last_changed,
        last_checked=now,
        end_state=info.end_state,
        not_found=False,
        failure_streak=0,
        version=base.version + 1 if changed else base.version,
        next_check_at=base.next_check_at,
        interval_s=base.interval_s,
        stuck_version=None if changed else base.stuck_version,
        tracked_at=base.tracked_at,
        missing_since=None,
        asked_at=_dated(base.asked_at, obs),
    )
    result.states[key] = state
    if not changed:
        return
    ev = order_event(
        EventType.DISCOVERED if base.status is None else EventType.STATUS_CHANGED,
        key,
        id=transition_id(store_id, key, base.tracked_at, state.version, previous, status),
        time=now,
        severity=info.severity,
        external_reference=reference,
        previous_status=previous,
        status=status,
        end_state=info.end_state,
        via=via,
        unknown_status=not info.known,
    )
    result.events.append(ev)
    result.changed.add(key)
    if key.source == "ccnow" and previous in ACTION_RESULTS and status in BEFORE_ACTION:
        result.moved_back.append((base, state))


def _confirmed_missing(
    prev: OrderState, *, now: float, failing_accounts: Collection[tuple[str, str]]
) -> bool:
    """Whether a "not found" answer is reported now: at once for an order never found (a
    mistyped id shows at once), else only once a check minutes later confirms it while its
    account answers. An order whose submit CCV answered with its id was seen in that answer
    (`first_seen`, no status yet): CCV may not know it for a moment."""
    if prev.not_found or (prev.status is None and prev.first_seen is None):
        return True
    return (
        prev.missing_since is not None
        and now - prev.missing_since >= NOT_FOUND_CONFIRM_S
        and (prev.key.source, prev.key.account) not in failing_accounts
    )


def _not_found(
    result: DiffResult,
    prev: OrderState,
    *,
    now: float,
    via: Via,
    store_id: str,
    asked: float | None,
) -> None:
    key = prev.key
    if prev.not_found:  # reported once; the order stays followed and is checked rarely
        result.states[key] = prev._replace(last_checked=now, failure_streak=0, asked_at=asked)
        return
    version = prev.version + 1
    ev = order_event(
        EventType.NOT_FOUND,
        key,
        id=transition_id(store_id, key, prev.tracked_at, version, prev.status, None, "not_found"),
        time=now,
        severity="warning",
        external_reference=prev.external_reference,
        previous_status=prev.status,
        status=None,
        end_state=False,
        via=via,
    )
    result.states[key] = prev._replace(
        not_found=True,
        last_checked=now,
        failure_streak=0,
        version=version,
        missing_since=None,
        asked_at=asked,
    )
    result.events.append(ev)
