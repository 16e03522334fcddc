"""Account health, in one place: what a pass's answers as a whole say about a provider account,
and the health state machine that turns those verdicts into one `source.failed` and one
`source.recovered` per episode.

Pure: no I/O and no clock; callers pass `now`. Every pass of an account's coordinator (CCV checks
and probe, the CCNow pending list and queries, a catch-up) ends by handing its answers to
`verdict` and the result to `next_health` (`Coordinator.settle`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from ..events import Event, event_id
from ..model import (
    HEALTH_PARTS,
    EventType,
    HealthPart,
    Severity,
    SourceState,
    Via,
)
from ..passes.report import PassAnswers
from ..schedule import backoff_ends, rests
from ..sources.errors import KEY_REFUSED

Part = HealthPart
PARTS = HEALTH_PARTS

# A success clears the failures of the parts it proves: answered checks prove what the probe
# proves, but not the pending list (nor the reverse): else one part failing while another answers
# makes the account flap between failed and recovered on every poll.
_CLEARS: Final[Mapping[Part, frozenset[Part]]] = {
    "checks": frozenset({"checks", "probe"}),
    "pending_list": frozenset({"pending_list"}),
    "probe": frozenset({"probe"}),
}

# A wave: this many orders found before answering the provider's own 404 in one pass, and more
# than half of the pass's checks, says more about the account (a base URL of another
# environment, a provider incident) than about the orders. A small account losing two orders
# at once is not a wave: those wait for their own confirmation.
LOST_WAVE_MIN = 3
_LOST_WAVE = " orders not found at once"  # the reason of a wave, after its count
_EVERY_FAILED = "every check failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a pass says about its account: answering, or failing for `reason`."""

    ok: bool
    reason: str | None = None
    # The failure is made, in part, of the provider's own word about orders (an error line of
    # the order's own, a "not found"): the same word at a probe then proves nothing.
    own_word: bool = False
    # The failure is the key refused (a 401 for the account): a probe that CCV answers ends it.
    key_refused: bool = False
    # The failure is the account's rest keeping the pass back, nothing sent: no failed probe
    # (the rest failed the account once; its backoff is not lengthened by hints meanwhile).
    held: bool = False


# The outage failures of a pass that fail its account without a probe (`is_outage`).
OUTAGE_CHECKS = 2


def verdict(answers: PassAnswers) -> Verdict | None:
    """Return what a pass's answers as a whole say about the account, or None when they say
    nothing (no check made, or a few orders of a partial pass failed on their own)."""
    if answers.error is not None:
        return Verdict(False, answers.error, key_refused=is_key_refused(answers.error))
    checked = answers.answered + answers.failed
    # Orders just submitted are not known yet (a lag, not a loss): counted among the checks,
    # ten of them would hide a wave of the orders found before behind them.
    if is_lost_wave(answers.lost, checked - answers.fresh):
        return Verdict(False, f"{answers.lost}{_LOST_WAVE}", own_word=True)
    if answers.answered:
        return Verdict(True)
    # Orders going missing one by one wait for their own confirmation; they fail no account.
    # A partial pass's failures alone cannot tell a few troubled orders from the account's
    # trouble, unless most are an outage's: a probe may answer through a 5xx, a timeout or a
    # gateway's 404 of every check, and an account of a few open orders, fewer than the
    # breaker's run, would never fail however long they all failed so. Even then, orders that
    # answered before are asked first where any are (`needs_witness`).
    if answers.failed > answers.not_found and (answers.complete or is_outage(answers)):
        # The cause, not only the count: a redirect, a timeout and a login page need different
        # hands. The reason is in no event id (`health_event`).
        cause = f" ({answers.reason})" if answers.reason else ""
        own_word = bool(answers.own_errors or answers.not_found)
        return Verdict(False, f"{_EVERY_FAILED}{cause}", own_word=own_word)
    return None


def is_key_refused(reason: str) -> bool:
    """Whether an account's failure is the key refused: a 401 for the account (CCV's, which a
    probe asking with the same key tests), not an outage nor an order's own answer."""
    return reason == KEY_REFUSED


def probe_verdict(answers: PassAnswers, state: SourceState) -> Verdict:
    """Return what the probe of a failing account's checks says when its answers as a whole say
    nothing (`verdict` None): the provider's own answer about the order, an error line of its
    own or a "not found" not confirmed yet, proves the account answers (else one troubled
    order would hold it failing); anything else leaves it failing for its reason, and its
    backoff starts again (else every tick would probe)."""
    # ... unless such words failed the account (`SourceState.failed_on_own_word`): else it
    # flaps, recovered at the probe, failed again at the next catch-up.
    if (answers.own_errors or answers.not_found) and not state.failed_on_own_word:
        return Verdict(True)
    return Verdict(False, state.last_error)


def needs_probe(answers: PassAnswers) -> bool:
    """Whether a pass in which no order answered should ask the probe whether the account
    answers at all: its failures, not most of them an outage's, cannot tell the account's
    trouble from a few troubled orders (a 403 each). A CCV answer naming orderStatus in words
    no check keeps is an answer (`PassReport.answers`): else orders failing so, alone in a
    pass, asked the probe."""
    return (
        answers.error is None
        and not answers.answered
        and answers.failed > answers.not_found
        and not is_outage(answers)
    )


def needs_witness(answers: PassAnswers) -> bool:
    """Whether a partial pass (due checks, a notification's) that fails its account on outage
    failures alone (`is_outage`) should first ask other orders, ones whose last check answered
    a status (poller/witnesses.py): orders that each answer 500 for ever come due together at
    their failure's backoff, and a pass of them alone failed the account, the next check of
    the others recovering it (`source.failed` / `source.recovered` every few seconds, 4 such
    orders of 20). The probe cannot say: it may answer through an outage of every check."""
    return (
        answers.error is None
        and not answers.complete
        and not answers.answered
        and is_outage(answers)
        and not is_lost_wave(answers.lost, answers.answered + answers.failed - answers.fresh)
    )


def is_outage(answers: PassAnswers) -> bool:
    """Whether most of a pass's failed checks (half or more: a tie must not go whichever way
    the answers arrived) failed of an outage's reason, two at least: then they are the
    account's, unless orders that answered before answer now (`needs_witness`: orders that
    fail so come due together). One check cannot tell one order's 500 from CCV's (an order
    due alone at its failure's backoff failed the account, the others' next check recovered
    it: pages, pass after pass): the probe says."""
    return answers.outages >= OUTAGE_CHECKS and 2 * answers.outages >= answers.failed


def is_lost_wave(lost: int, checked: int) -> bool:
    """Return whether so many orders found before went missing in one pass that the account,
    not the orders, is the likely cause."""
    return lost >= LOST_WAVE_MIN and 2 * lost > checked


def next_health(
    state: SourceState,
    verdicts: Sequence[tuple[Part, Verdict]],
    *,
    now: float,
    interval_s: float,
    stale: bool = False,
    rest: str | None = None,
) -> tuple[SourceState, EventType | None]:
    """Apply a pass's verdicts to an account's health; return the new health and the flip.

    The account fails when a first part fails and recovers when its last failing part answers
    again: `source.failed` once, `source.recovered` once, whatever the parts do in between.
    `interval_s`: the account's poll interval, which its backoff doubles. `stale`: the pass
    began before the account's last flip was written (`is_stale`): passes run together and
    settle as they end, so its answers may be older than that flip's, and flip nothing back.
    `rest`: the reason of a rest it met or recorded, news however old it is (`rest_is_news`).
    """
    verdicts, stale = rest_is_news(verdicts, stale=stale, rest=rest)
    parts = set(state.failing_parts)
    new = state
    for part, result in verdicts:
        if result.ok:
            cleared = _CLEARS[part]
            if part == "probe" and new.failed_on_key and not new.failed_on_own_word:
                # The probe asks with the key the checks use: its answer (CCV's own JSON 404)
                # proves the key is taken again, which ends the checks' failure of a 401. Else
                # the account stayed failing, its last success moving on at each heartbeat
                # probe, until an order's check answered, up to max_interval later.
                cleared = cleared | {"checks"}
            elif part == "probe" and "checks" in parts:
                # Checks failing of an outage or of CCV's word about orders: the probe may
                # answer through those, and proves nothing of them; no success either while
                # the account fails on them (`status`, /healthz and metrics agree).
                parts -= cleared
                continue
            parts -= cleared
            new = replace(new, last_success=now)
            if not rests(new.rest_until, now=now):
                # The first success after a rest ends its record: a clock put back within it
                # afterwards must not rest the account again.
                new = replace(new, rest_until=None)
        else:
            parts.add(part)
            new = replace(new, last_failure=now, last_error=result.reason)
            if part == "checks":  # the checks' last failure says what ends it
                new = replace(new, failed_on_key=result.key_refused)
            if result.own_word:  # kept until the account recovers, whatever fails after
                new = replace(new, failed_on_own_word=True)
    # Nor is a stale pass's failure: the outage it saw is the one the last flip's pass saw.
    probed = not stale and any(
        not result.ok and not (result.held and state.failing) for _, result in verdicts
    )
    if probed and (not state.failing or now >= backoff_ends(state, interval_s=interval_s)):
        # One failure per probe, however many of its parts failed (a CCV probe tick's check and
        # probe): the backoff doubles per failed probe, as the README promises. A failure
        # within the backoff period is no probe (the pending list and a query ms apart, a
        # restart's catch-up and its first jobs, a notification's poll): it counts once. Nor
        # is a pass the account's rest kept back, nothing sent (`Verdict.held`).
        new = replace(new, failure_streak=state.failure_streak + 1, backoff_from=now)
    new = replace(new, failing_parts=frozenset(parts))
    if not parts:
        new = replace(
            new,
            failure_streak=0,
            backoff_from=None,
            last_error=None,
            failed_on_own_word=False,
            failed_on_key=False,
        )
    if stale and new.failing != state.failing:
        # Answers sent before the outage, arriving after a newer pass failed the account, or
        # requests hung from inside it, failing after a newer pass recovered it: else one
        # outage gave several `source.failed` / `source.recovered` pairs.
        return state, None
    if new.failing and not state.failing:
        return replace(new, episode=state.episode + 1), EventType.SOURCE_FAILED
    if state.failing and not new.failing:
        return new, EventType.SOURCE_RECOVERED
    return new, None


def is_stale(began: float, flipped_at: float | None) -> bool:
    """Whether a pass that began at `began` began before the account's last flip was written
    (`flipped_at`, None when none flipped it in this process; one clock, the caller's): its
    answers may be older than the flip's, whose pass may have begun before it (a catch-up
    failing the account at its end, a notification's check answered before the outage
    ending after it)."""
    return flipped_at is not None and began < flipped_at


def rest_is_news(
    said: Sequence[tuple[Part, Verdict]], *, stale: bool, rest: str | None
) -> tuple[list[tuple[Part, Verdict]], bool]:
    """Return a pass's verdicts and whether it is stale, given the rest it met or recorded
    (`rest`, its reason; None: none). A rest is news however old the pass: its failures fail
    the account (a stale pass's answers still recover nothing), and a pass that recorded the
    rest of another's 429 (whichever settles first takes it) fails the account for it, else
    it rested answering when the one that met it was stale. That failure is of the pass's own
    part, which its next answer clears (a CCNow account's pending list, with no order to
    query, would never clear its checks)."""
    if rest is None or not said:
        return list(said), stale
    failures = [(part, v) for part, v in said if not v.ok]
    resting = (said[0][0], Verdict(False, rest))
    if stale:
        return failures or [resting], False
    return (list(said) if failures else [*said, resting]), False


def health_event(
    before: SourceState,
    after: SourceState,
    kind: EventType,
    *,
    now: float,
    via: Via,
    store_id: str,
    failed_reason: str | None = None,
) -> Event:
    """Return the `source.failed` / `source.recovered` event of a flip from `before` to `after`.

    Its id names the flip by when it happened, not only by the episode's number: a store
    restored from a backup counts its episodes again, and a new failure must not take the id
    of an old, different one. A redelivery sends the stored body, id and all.
    """
    severity: Severity
    data: dict[str, Any] = {"source": after.source, "account": after.account}
    if kind is EventType.SOURCE_RECOVERED:
        # The failure it ends, as its `source.failed` named it, though the error changed on
        # the way (maintenance, then HTTP 500): `last_reason` is the last one.
        severity, reason = "info", failed_reason or before.last_error
        data.update(reason=reason, last_reason=before.last_error)
    else:
        severity, reason = "error", after.last_error
        data.update(reason=reason)
    data.update(severity=severity, via=via)
    return Event(
        id=event_id(
            store_id, "source", after.source, after.account, after.episode, kind.value, now
        ),
        type=kind,
        time=now,
        source=after.source,
        account=after.account,
        order_id=None,
        severity=severity,
        data=data,
    )
