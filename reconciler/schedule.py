"""Pure rules for when an order is checked next, when it counts as stuck, and how long a failing
account is left alone.

An order that just changed is checked again soon; every unchanged check doubles its interval up
to a ceiling, so the request budget of idle orders falls as they age. No clock is read here.
"""

from __future__ import annotations

from .config import AlertsConfig, ScheduleConfig
from .events import Event, order_event, transition_id
from .model import (
    NEVER,
    SETTLED,
    EventType,
    HealthPart,
    OrderState,
    SourceState,
    Via,
    settled_at,
    status_info,
    unwatched,
)

# An order found before that answers "not found" is reported when a check at least this much
# later confirms it; until then it keeps its rhythm (never slower than this).
NOT_FOUND_CONFIRM_S = 300.0
# The longest an account rests at a provider's word (a Retry-After, `rest_until`): a day asked,
# or a date years ahead, rests it this long, then its reads go on and ask again.
MAX_REST_S = 3600.0


def plan(
    state: OrderState,
    *,
    changed: bool,
    schedule: ScheduleConfig,
    now: float,
    jitter: float = 0.0,
    stuck_after_s: float | None = None,
) -> tuple[float | None, float]:
    """Return the order's check interval and the time of its next check.

    `jitter` in [0, 1) stretches the interval by up to 10 % so that orders tracked together do
    not stay in lockstep. An order is checked no later than when it would become stuck
    (`stuck_deadline` under its status's `stuck_after_s`), but not sooner than `min_interval`;
    orders that changed together come due then over 10 % of `min_interval`, not at once.
    """
    if state.end_state:
        return None, NEVER
    key = state.key
    since = settled_at(state.last_changed, state.tracked_at)
    if unwatched(key.source, state.status, since, settled_since=now - schedule.watch_settled_s):
        # Before the branches below: a settled order that fails or answers "not found" past
        # its watch is no more watched than one that answers.
        return None, NEVER
    settled = state.status in SETTLED[key.source]
    # A settled order's watch ends at `watch_ends`: a check planned later would never be made.
    watch_ends = since + schedule.watch_settled_s if settled else NEVER
    if state.missing_since is not None:
        interval = min(state.interval_s or schedule.min_interval_s, NOT_FOUND_CONFIRM_S)
        return state.interval_s, _within(now + interval * (1 + 0.1 * jitter), watch_ends)
    if state.not_found:
        interval = schedule.not_found_interval_s
        return interval, _within(now + interval * (1 + 0.1 * jitter), watch_ends)
    if state.failure_streak > 0:
        # A failed check keeps the order's interval but retries sooner, backing off per failure.
        base = schedule.min_interval_s * 2 ** min(state.failure_streak - 1, 16)
        interval = min(base, state.interval_s or schedule.min_interval_s, schedule.max_interval_s)
        interval = max(interval, min(schedule.min_interval_s, schedule.max_interval_s))
        return state.interval_s, _within(now + interval * (1 + 0.1 * jitter), watch_ends)
    if settled:
        interval = schedule.settled_interval_s
    elif state.status in schedule.status_intervals_s:
        interval = schedule.status_intervals_s[state.status]
    elif changed or state.interval_s is None:
        interval = schedule.min_interval_s
    else:
        interval = min(state.interval_s * 2, schedule.max_interval_s)
        if _active(state, schedule, now):
            interval = min(interval, schedule.active_max_interval_s)
        interval = max(interval, schedule.min_interval_s)
    at = now + interval * (1 + 0.1 * jitter)
    # By the time it would become stuck, else `order.stuck` waits for the next check, up to
    # max_interval late; the interval itself goes on as planned.
    deadline = None if stuck_after_s is None else stuck_deadline(state, stuck_after_s)
    if deadline is not None:
        floor = schedule.min_interval_s
        at = min(at, max(deadline, now + floor) + 0.1 * jitter * floor)
    return interval, _within(at, watch_ends)


def doubt_due(
    state: OrderState,
    schedule: ScheduleConfig,
    *,
    forward: bool,
    queried: float | None = None,
    began: float | None = None,
) -> float:
    """Return when a poll queries an order whose pending list's line contradicts its snapshot
    (`diff.lags`): at its planned check, and at the latest `max_interval` after its last check
    (an end state, or a settled order past its watch, is never due: while the list went on
    naming it, a real change was never asked), `failure_streak` times that while its query
    fails, or `min_interval` after it when the line may be the order's next step (`forward`:
    a word later in CCNow's lifecycle, diff.later, unless its checks fail and a failed query
    does not let the line apply: reconcile.py), which would else wait for an interval grown to
    hours (a real change the list shows, seen late). Its last check is its last answer or
    `queried`, when its doubt's query was last asked (answered or not), whichever is later: a
    failed check does not move `last_checked`, and counted from an answer weeks old (an end
    state's) the bound is past, its query asked at every poll while it fails. Once asked, a
    `forward` line waits as long as the doubt has lasted since it `began` (up to
    max_interval): a list that goes on naming a word its query denies costs ever fewer
    queries, not one per min_interval."""
    last = max(state.last_checked or 0.0, queried or 0.0)
    if forward:
        lasted = 0.0 if queried is None or began is None else queried - began
        gap = min(schedule.max_interval_s, max(schedule.min_interval_s, lasted))
        return min(state.next_check_at, last + gap)
    return min(state.next_check_at, last + schedule.max_interval_s * max(1, state.failure_streak))


def _within(at: float, watch_ends: float) -> float:
    """Return the check time `at`, or NEVER when it falls at or after the end of the order's
    watch (model.unwatched: the end itself is past it)."""
    return NEVER if at >= watch_ends else at


def _active(state: OrderState, schedule: ScheduleConfig, now: float) -> bool:
    """An order that changed status lately (its first sight aside) is likely to change again."""
    changed_at = state.last_changed
    return (
        changed_at is not None
        and changed_at != state.first_seen
        and now - changed_at < schedule.active_window_s
    )


def stuck_event(
    state: OrderState, *, alerts: AlertsConfig, now: float, store_id: str, via: Via = "poll"
) -> tuple[OrderState, Event] | None:
    """Return the order marked as reported stuck and its `order.stuck` event, once per period.

    A stuck period is the time an order spends in one status; a new status starts a new one.
    An order the provider no longer knows is not stuck: `order.not_found` said so already, or
    will once a later check confirms it (`missing_since`). Nor is one whose checks fail: its
    status is only the last one answered, and `failure_streak` says what is wrong.
    """
    if state.status is None:
        return None
    limit = alerts.stuck_after_s.get((state.key.source, state.status))
    if limit is None:
        return None
    deadline = stuck_deadline(state, limit)
    if deadline is None or now < deadline:
        return None
    key = state.key
    ev = order_event(
        EventType.STUCK,
        key,
        id=transition_id(
            store_id, key, state.tracked_at, state.version, state.status, state.status, "stuck"
        ),
        time=now,
        severity="warning",
        external_reference=state.external_reference,
        previous_status=state.status,
        status=state.status,
        end_state=False,
        via=via,
        unknown_status=not status_info(key.source, state.status).known,
        # Both seconds as floats (to the ms), as every duration `_s` field: the limit may be
        # "500ms", and a whole number next to a float read as two kinds of value.
        stuck_for_s=round(now - deadline + limit, 3),
        stuck_after_s=float(limit),
    )
    return state._replace(stuck_version=state.version), ev


def stuck_deadline(state: OrderState, limit: float) -> float | None:
    """Return when the order becomes stuck under its status's `limit` (`stuck_after`), or None:
    reported stuck already in this status, or an order that is not stuck whatever the time
    (no status answered, not found or missing, its checks failing, in an end state)."""
    if (
        state.stuck_version == state.version
        or state.last_changed is None
        or state.status is None
        or state.not_found
        or state.missing_since is not None
        or state.failure_streak > 0
        or state.end_state
    ):
        return None
    return state.last_changed + limit


def source_backoff_s(failure_streak: int, interval_s: float) -> float:
    """Return how long a failing source is left alone before it is probed again."""
    if failure_streak <= 0:
        return 0.0
    return float(min(interval_s * 2 ** min(failure_streak - 1, 10), 3600.0))


def backoff_ends(state: SourceState, *, interval_s: float) -> float:
    """Return when a failing account's backoff period ends: its next failure then is a failed
    probe, which doubles it (`poller.health.next_health`), and its failing parts are asked."""
    return (state.backoff_from or 0.0) + source_backoff_s(state.failure_streak, interval_s)


def rest_until(
    wait_s: float | None, *, cap_s: float, now: float, bound_s: float = MAX_REST_S
) -> float | None:
    """Return until when an account rests after a 429 or 503 whose Retry-After asked `wait_s`
    seconds (`sources.http.parse_retry_after`), or None when none came or a request's own
    retries wait that long (`cap_s`, `retry.max_backoff_s`): at most `bound_s` from `now`."""
    if wait_s is None or wait_s <= cap_s:
        return None
    return now + min(wait_s, bound_s)


def rests(until: float | None, *, now: float, bound_s: float = MAX_REST_S) -> bool:
    """Return whether an account still rests at `now` for a rest asked `until` then: no read
    of it is sent. One ending further than `bound_s` from now (the clock put back since it
    began) is over, not longer than the bound."""
    return until is not None and now < until <= now + bound_s


def held_rest(until: float | None, *, now: float, bound_s: float = MAX_REST_S) -> float | None:
    """Return the end of a rest held or recorded, `until`, or None when it ends further than
    `bound_s` from now: recorded while the clock was ahead, it is void, else it outlasted every
    later rest (the later end wins) and those were never kept once the clock was put right."""
    return None if until is None or until > now + bound_s else until


def rest_ahead(*ends: float | None, now: float, bound_s: float = MAX_REST_S) -> float | None:
    """Return when an account's rest ends, the latest of `ends` (recorded in the store, held by
    a process) still ahead at `now` (`rests`), or None: an ended rest, and one void under
    `held_rest`, are no rest an operator is shown."""
    return max(
        (u for u in ends if u is not None and rests(u, now=now, bound_s=bound_s)), default=None
    )


def resting(state: SourceState, part: HealthPart, *, interval_s: float, now: float) -> bool | None:
    """Return None while the failing `part` of an account is left alone (its backoff has not
    run out), or any part while the account rests as its provider asked (`rests`), else
    whether that part is failing; the account's other parts are asked as usual."""
    if rests(state.rest_until, now=now):
        return None
    if part not in state.failing_parts:
        return False
    return None if now < backoff_ends(state, interval_s=interval_s) else True
