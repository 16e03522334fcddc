"""The adaptive schedule and the stuck rule, as pure functions with an injected clock."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from typing import Any

import pytest

from reconciler.config import AlertsConfig, ScheduleConfig
from reconciler.model import NEVER, EventType, OrderKey, OrderState, SourceState
from reconciler.schedule import doubt_due, plan, resting, source_backoff_s, stuck_event

T0 = 1_800_000_000.0
HOUR = 3600.0


def next_check(
    state: OrderState,
    *,
    changed: bool,
    schedule: ScheduleConfig,
    now: float,
    jitter: float = 0.0,
    stuck_limits: dict[tuple[str, str], float] | None = None,
) -> OrderState:
    """The order as the store saves it after a check: with the interval and time `plan` gives,
    under its status's limit of `stuck_limits` as the reconciler passes it."""
    limit = (stuck_limits or {}).get((state.key.source, state.status or ""))
    interval, at = plan(
        state, changed=changed, schedule=schedule, now=now, jitter=jitter, stuck_after_s=limit
    )
    return state._replace(interval_s=interval, next_check_at=at)


SCHED = ScheduleConfig(
    min_interval_s=60, max_interval_s=6 * HOUR, status_intervals_s={"AwaitingPayment": 120}
)
CCV = OrderKey("ccv", "default", "a1")
CCNOW = OrderKey("ccnow", "default", "396-10-1142")


def simulate_requests_per_hour(days: int) -> list[float]:
    """Check one idle order on its schedule for `days`; return requests per hour, per day."""
    state = OrderState(
        key=CCV, status="New", version=1, first_seen=T0, last_changed=T0, tracked_at=T0
    )
    state = next_check(state, changed=True, schedule=SCHED, now=T0)
    per_day = [0] * days
    while state.next_check_at < T0 + days * 86400:
        now = state.next_check_at
        per_day[int((now - T0) // 86400)] += 1
        state = next_check(state, changed=False, schedule=SCHED, now=now)
    return [n / 24 for n in per_day]


def test_request_budget_of_unchanged_orders_falls_as_they_age() -> None:
    rates = simulate_requests_per_hour(4)
    assert rates[0] > rates[1] >= rates[2] >= rates[3]
    assert rates[3] == pytest.approx(4 / 24, abs=0.05)  # at max_interval: 4 checks a day
    assert rates[0] < 1.0  # even the first day stays well below fixed one-minute polling (60/h)


def test_change_resets_to_min_interval_and_unchanged_doubles() -> None:
    s = OrderState(key=CCV, status="New", interval_s=1600.0, tracked_at=T0)
    assert next_check(s, changed=True, schedule=SCHED, now=T0).interval_s == 60
    assert next_check(s, changed=False, schedule=SCHED, now=T0).interval_s == 3200
    big = s._replace(interval_s=5 * HOUR)
    assert next_check(big, changed=False, schedule=SCHED, now=T0).interval_s == 6 * HOUR


def test_recently_changed_orders_stay_close_for_the_active_window() -> None:
    moved = OrderState(
        key=CCV,
        status="Screening",
        version=2,
        first_seen=T0 - 86400,
        last_changed=T0,
        interval_s=3 * HOUR,
        tracked_at=T0 - 86400,
    )
    within = next_check(moved, changed=False, schedule=SCHED, now=T0 + HOUR)
    assert within.interval_s == SCHED.active_max_interval_s
    after = next_check(moved, changed=False, schedule=SCHED, now=T0 + 13 * HOUR)
    assert after.interval_s == 6 * HOUR
    discovered = moved._replace(first_seen=T0)  # first sight is not a change
    assert (
        next_check(discovered, changed=False, schedule=SCHED, now=T0 + HOUR).interval_s == 6 * HOUR
    )


def test_end_states_are_never_polled_and_status_overrides_apply() -> None:
    done = OrderState(key=CCV, status="Completed", end_state=True, tracked_at=T0)
    assert next_check(done, changed=True, schedule=SCHED, now=T0).next_check_at == NEVER
    waiting = OrderState(key=CCV, status="AwaitingPayment", interval_s=3000, tracked_at=T0)
    assert next_check(waiting, changed=False, schedule=SCHED, now=T0).next_check_at == T0 + 120


def test_settled_ccnow_orders_are_watched_daily_then_dropped() -> None:
    sched = replace(SCHED, watch_settled_s=180 * 86400, settled_interval_s=86400)
    fresh = OrderState(key=CCNOW, status="completed", last_changed=T0, tracked_at=T0)
    assert next_check(fresh, changed=True, schedule=sched, now=T0).next_check_at == T0 + 86400
    old = next_check(fresh, changed=False, schedule=sched, now=T0 + 181 * 86400)
    assert old.next_check_at == NEVER


def test_ccv_failed_is_watched_daily_like_a_settled_order() -> None:
    sched = replace(SCHED, watch_settled_s=180 * 86400, settled_interval_s=86400)
    failed = OrderState(key=CCV, status="Failed", interval_s=120, last_changed=T0, tracked_at=T0)
    assert next_check(failed, changed=True, schedule=sched, now=T0).next_check_at == T0 + 86400
    old = next_check(failed, changed=False, schedule=sched, now=T0 + 181 * 86400)
    assert old.next_check_at == NEVER


def test_failed_checks_back_off_but_stay_bounded() -> None:
    s = OrderState(key=CCV, status="New", interval_s=600, failure_streak=1, tracked_at=T0)
    first = next_check(s, changed=False, schedule=SCHED, now=T0).next_check_at - T0
    later = (
        next_check(
            s._replace(failure_streak=4), changed=False, schedule=SCHED, now=T0
        ).next_check_at
        - T0
    )
    assert 60 <= first <= later <= 600


@pytest.mark.parametrize(
    ("interval_s", "expected"), [(3600.0, 300.0), (120.0, 120.0), (None, 60.0)]
)
def test_a_missing_order_keeps_its_rhythm_until_confirmed(
    interval_s: float | None, expected: float
) -> None:
    # Issue 10 item 4: never the daily not-found rhythm, nor slower than the confirmation.
    s = OrderState(
        key=CCV, status="AwaitingPayment", interval_s=interval_s, missing_since=T0, tracked_at=T0
    )
    planned = next_check(s, changed=False, schedule=SCHED, now=T0)
    assert planned.next_check_at - T0 == expected
    assert planned.interval_s == interval_s


ALERTS = AlertsConfig(stuck_after_s={("ccv", "AwaitingPayment"): 2 * 86400})


def test_stuck_is_raised_once_per_stuck_period() -> None:
    s = OrderState(key=CCV, status="AwaitingPayment", version=2, last_changed=T0, tracked_at=T0)
    assert stuck_event(s, alerts=ALERTS, now=T0 + 86400, store_id="x") is None
    raised = stuck_event(s, alerts=ALERTS, now=T0 + 2 * 86400 + 1, store_id="x")
    assert raised is not None
    marked, event = raised
    assert event.type is EventType.STUCK and event.severity == "warning"
    assert stuck_event(marked, alerts=ALERTS, now=T0 + 3 * 86400, store_id="x") is None
    # A new status starts a new period (the version moves on with every transition).
    moved = marked._replace(version=4, last_changed=T0 + 4 * 86400)
    assert stuck_event(moved, alerts=ALERTS, now=T0 + 7 * 86400, store_id="x") is not None
    # Not found (a transition too, with the status kept): `order.not_found` said it, not stuck.
    gone = marked._replace(version=3, not_found=True)
    assert stuck_event(gone, alerts=ALERTS, now=T0 + 3 * 86400, store_id="x") is None


def test_stuck_for_and_stuck_after_are_both_seconds_as_floats() -> None:
    # stuck_for_s was rounded to a whole number (3) beside the limit's float (3.0).
    s = OrderState(key=CCV, status="AwaitingPayment", version=2, last_changed=T0, tracked_at=T0)
    alerts = AlertsConfig(stuck_after_s={("ccv", "AwaitingPayment"): 3})
    raised = stuck_event(s, alerts=alerts, now=T0 + 3.25, store_id="x")
    assert raised is not None
    data = json.loads(raised[1].body())["data"]
    assert (data["stuck_for_s"], data["stuck_after_s"]) == (3.25, 3.0)
    assert type(data["stuck_for_s"]) is type(data["stuck_after_s"]) is float


STUCK_LIMITS = {("ccv", "Processing"): 20 * HOUR, ("ccv", "Incomplete"): 7 * 24 * HOUR}
STUCK_SCHED = replace(SCHED, status_intervals_s={"Incomplete": 6 * HOUR})
# How late after its deadline an order is checked at most: its jitter (10 % of min_interval).
STUCK_SPREAD_S = 0.1 * SCHED.min_interval_s


def stuck_plan(state: OrderState, *, now: float, jitter: float = 0.0) -> tuple[float | None, float]:
    """`plan` under STUCK_SCHED, with the order's limit of STUCK_LIMITS."""
    return plan(
        state,
        changed=False,
        schedule=STUCK_SCHED,
        now=now,
        jitter=jitter,
        stuck_after_s=STUCK_LIMITS.get(("ccv", state.status or "")),
    )


@pytest.mark.parametrize("status", ["Processing", "Incomplete"])
def test_order_stuck_is_raised_when_its_limit_is_reached_not_a_check_later(status: str) -> None:
    # With the default max_interval (6 h), or a 6 h pin, the check after the limit came up to
    # 6 h late, and `order.stuck` (status STUCK, the gauge) with it.
    limit = STUCK_LIMITS[("ccv", status)]
    state = OrderState(
        key=CCV, status=status, version=1, first_seen=T0, last_changed=T0, tracked_at=T0
    )
    planned = partial(next_check, schedule=STUCK_SCHED, jitter=0.99, stuck_limits=STUCK_LIMITS)
    state = planned(state, changed=True, now=T0)
    alerts = AlertsConfig(STUCK_LIMITS)
    while True:
        now = state.next_check_at
        state = planned(state, changed=False, now=now)
        stuck = stuck_event(state, alerts=alerts, now=now, store_id="s")
        if stuck is not None:
            break
        assert now < T0 + limit
    assert limit <= stuck[1].data["stuck_for_s"] <= limit + STUCK_SPREAD_S
    # Reported: the order keeps its own rhythm from then on.
    interval, at = stuck_plan(stuck[0], now=now)
    assert interval is not None and interval >= 6 * HOUR and at == now + interval


def test_orders_that_changed_together_come_due_at_their_stuck_deadline_apart() -> None:
    # Written in one batch, they became stuck in the same second and came due in it together,
    # whatever their jitter; now spread over 10 % of min_interval after the deadline.
    state = OrderState(
        key=CCV, status="Processing", version=1, last_changed=T0, tracked_at=T0, interval_s=HOUR
    )
    now = T0 + 19 * HOUR
    due = [stuck_plan(state, now=now, jitter=jitter)[1] for jitter in (0.0, 0.5, 0.99)]
    assert due == [T0 + 20 * HOUR, T0 + 20 * HOUR + 3.0, T0 + 20 * HOUR + 0.99 * STUCK_SPREAD_S]


def test_a_stuck_deadline_never_plans_a_check_sooner_than_min_interval() -> None:
    state = OrderState(
        key=CCV, status="Processing", version=1, last_changed=T0, tracked_at=T0, interval_s=HOUR
    )
    interval, at = stuck_plan(state, now=T0 + 20 * HOUR - 1)
    assert (interval, at) == (2 * HOUR, T0 + 20 * HOUR - 1 + 60)
    # Not for an order whose checks fail or that CCV says it does not know: never stuck.
    failing = state._replace(failure_streak=1)
    assert stuck_plan(failing, now=T0 + 19 * HOUR)[1] == T0 + 19 * HOUR + 60
    gone = state._replace(not_found=True)
    assert stuck_plan(gone, now=T0 + 19 * HOUR)[1] == T0 + 19 * HOUR + SCHED.not_found_interval_s


@pytest.mark.parametrize(("streak", "expected"), [(0, 0), (1, 60), (2, 120), (5, 960), (30, 3600)])
def test_failing_source_backoff(streak: int, expected: float) -> None:
    assert source_backoff_s(streak, 60) == expected


def test_a_failing_part_rests_for_its_backoff_and_the_other_parts_are_asked() -> None:
    # Third failed probe at T0, polled every minute: left alone for 4 minutes, from T0, though
    # a failure within that period came later (a notification's check).
    state = SourceState(
        "ccv",
        "default",
        failing_parts=frozenset({"checks"}),
        failure_streak=3,
        last_failure=T0 + 200,
        backoff_from=T0,
    )
    assert resting(state, "checks", interval_s=60, now=T0 + 239) is None
    assert resting(state, "checks", interval_s=60, now=T0 + 240) is True
    assert resting(state, "probe", interval_s=60, now=T0 + 1) is False
    assert resting(SourceState("ccv", "default"), "checks", interval_s=60, now=T0) is False


@pytest.mark.parametrize(
    "last_check",
    [
        {"not_found": True, "interval_s": 86400.0},
        {"failure_streak": 3, "interval_s": 86400.0},
        {"missing_since": T0 + 181 * 86400},
    ],
    ids=["not found", "failing", "missing"],
)
def test_a_settled_order_past_its_watch_is_never_checked_again_whatever_it_answered(
    last_check: dict[str, Any],
) -> None:
    # A `completed` order that later answered "not found" was checked every
    # not_found_interval for ever, while catch-ups left it out and retention pruned it.
    sched = replace(SCHED, watch_settled_s=180 * 86400, settled_interval_s=86400)
    state = OrderState(key=CCNOW, status="completed", last_changed=T0, tracked_at=T0)
    state = state._replace(**last_check)
    # Two days before the end: a check a day later still falls within the watch.
    watched = next_check(state, changed=False, schedule=sched, now=T0 + 178 * 86400)
    assert watched.next_check_at < NEVER
    old = next_check(state, changed=False, schedule=sched, now=T0 + 181 * 86400)
    assert old.next_check_at == NEVER


def test_a_settled_order_never_changed_is_watched_from_when_it_was_tracked() -> None:
    # As retention and the catch-up's reads have it: coalesce(last_changed, tracked_at, 0).
    sched = replace(SCHED, watch_settled_s=180 * 86400, settled_interval_s=86400)
    state = OrderState(key=CCV, status="Failed", tracked_at=T0)
    old = next_check(state, changed=False, schedule=sched, now=T0 + 181 * 86400)
    assert old.next_check_at == NEVER


@pytest.mark.parametrize("status", ["Failed", "completed"])
def test_a_check_that_would_fall_past_the_watch_is_never_planned(status: str) -> None:
    # Moved to a settled status at T0 with a watch of 30 s and a check every 20 s: checked at
    # T0 + 23 s, the order's next check (T0 + 43 s) was stored and made once the watch was over.
    sched = replace(SCHED, watch_settled_s=30, settled_interval_s=20)
    key = CCV if status == "Failed" else CCNOW
    state = OrderState(key=key, status=status, last_changed=T0, tracked_at=T0)
    assert next_check(state, changed=True, schedule=sched, now=T0 + 5).next_check_at == T0 + 25
    assert next_check(state, changed=False, schedule=sched, now=T0 + 23).next_check_at == NEVER
    failing = state._replace(failure_streak=1, interval_s=20.0)
    assert next_check(failing, changed=False, schedule=sched, now=T0 + 23).next_check_at == NEVER


# --- a doubted pending list line's query (diff.lags) ------------------------------------------


def test_a_failing_doubt_is_asked_again_from_its_last_query_not_its_last_answer() -> None:
    # Declined a month ago (never checked since, an end state), its query failed just now.
    ended = OrderState(
        OrderKey("ccnow", "default", "600-00-0002"),
        status="declined",
        end_state=True,
        last_checked=T0 - 30 * 24 * HOUR,
        next_check_at=NEVER,
    )
    max_s = SCHED.max_interval_s
    assert doubt_due(ended, SCHED, forward=False) == T0 - 30 * 24 * HOUR + max_s
    once, twice = ended._replace(failure_streak=1), ended._replace(failure_streak=2)
    assert doubt_due(once, SCHED, forward=False, queried=T0) == T0 + max_s
    assert doubt_due(twice, SCHED, forward=False, queried=T0) == T0 + 2 * max_s
    # Asked before its last answer: the answer counts.
    assert doubt_due(ended, SCHED, forward=False, queried=T0 - 40 * 24 * HOUR) == (
        T0 - 30 * 24 * HOUR + max_s
    )
    held = ended._replace(status="processing", end_state=False, next_check_at=T0 + HOUR)
    assert doubt_due(held, SCHED, forward=True, queried=T0) == T0 + SCHED.min_interval_s
