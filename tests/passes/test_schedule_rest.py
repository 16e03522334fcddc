"""The pure rule of an account's rest at its provider's word (schedule.rest_until, rests,
held_rest): how long a Retry-After rests it, within the bound, and that a rest holds every part
of it."""

from __future__ import annotations

import pytest

from reconciler.model import SourceState
from reconciler.schedule import MAX_REST_S, held_rest, rest_ahead, rest_until, resting, rests

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("wait_s", "until"),
    [
        (None, None),  # no Retry-After
        (30.0, None),  # a request's own retry waits that long
        (30.5, T0 + 30.5),
        (300.0, T0 + 300.0),
        (86400.0, T0 + MAX_REST_S),  # a day asked: an hour
    ],
)
def test_rest_until(wait_s: float | None, until: float | None) -> None:
    assert rest_until(wait_s, cap_s=30.0, now=T0) == until


def test_a_rest_ends_at_its_time_and_never_holds_past_the_bound() -> None:
    assert rests(T0 + 10, now=T0)
    assert not rests(T0 + 10, now=T0 + 10)
    assert not rests(None, now=T0)
    # The clock put back two hours since the rest began: it holds no longer than the bound.
    assert not rests(T0 + 600, now=T0 - 7200)
    assert MAX_REST_S == 3600.0


def test_a_rest_holds_every_part_even_one_not_failing() -> None:
    state = SourceState("ccnow", "default", rest_until=T0 + 60)
    for part in ("checks", "pending_list", "probe"):
        assert resting(state, part, interval_s=60, now=T0) is None
    assert resting(state, "checks", interval_s=60, now=T0 + 60) is False


def test_a_rest_ending_beyond_the_bound_is_none_held() -> None:
    """One recorded while the clock was ahead is void, not the later end a new rest loses to."""
    assert held_rest(None, now=T0) is None
    assert held_rest(T0 - 10, now=T0) == T0 - 10  # ended: a new rest's end is later anyway
    assert held_rest(T0 + MAX_REST_S, now=T0) == T0 + MAX_REST_S
    assert held_rest(T0 + MAX_REST_S + 1, now=T0) is None


def test_the_rest_shown_is_the_latest_still_ahead() -> None:
    """What /healthz, /metrics and `status` show: a rest still ahead, the later of the store's
    record and a process's own; an ended one, or one beyond the bound (void), is none."""
    assert rest_ahead(None, now=T0) is None
    assert rest_ahead(T0 + 300, now=T0) == T0 + 300
    assert rest_ahead(T0 + 300, T0 + 600, now=T0) == T0 + 600
    assert rest_ahead(T0, now=T0) is None  # ended
    assert rest_ahead(T0 - 5, None, now=T0) is None
    assert rest_ahead(T0 + MAX_REST_S + 1, now=T0) is None  # void: recorded while ahead
    assert rest_ahead(T0 + MAX_REST_S + 1, T0 + 60, now=T0) == T0 + 60  # the void one loses
