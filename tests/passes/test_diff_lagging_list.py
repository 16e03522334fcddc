"""A CCNow pending list's line that may lag behind the status the snapshot holds, or contradicts
it whatever the words (diff.lags), and the answers that move an order back from where a ship or
cancel leads (`moved_back`)."""

from __future__ import annotations

import pytest

from reconciler.diff import diff
from reconciler.model import Observation, OrderKey, OrderState, Outcome
from tests.passes.test_diff import CCNOW, CCV, NOW, STORE, tracked


def line(status: str = "pending", *, listed: bool = True) -> Observation:
    """The list's line (or, not `listed`, a query's answer), asked after the snapshot's."""
    return Observation(CCNOW, Outcome.OK, status=status, asked=NOW - 1, listed=listed)


def held(status: str, **kw: object) -> dict[OrderKey, OrderState]:
    return {CCNOW: tracked(CCNOW, status=status, version=2, asked_at=NOW - 10, **kw)}


@pytest.mark.parametrize(
    "status",
    [
        *("mark_shipped", "mark_canceled", "completed", "canceled", "refunded", "chargeback"),
        # End states, a word CCNow does not document, a status before pending: the query said
        # it, and the list's line contradicting it is no news either.
        *("declined", "rejected", "test", "shipped_ok", "processing", "received"),
    ],
)
def test_a_list_line_contradicting_the_snapshots_status_is_no_news(status: str) -> None:
    result = diff(held(status), [line()], now=NOW, via="poll", store_id=STORE)
    assert (result.events, result.states, result.doubted) == ([], {}, {CCNOW})


def test_a_list_line_with_another_word_contradicts_too() -> None:
    # Whatever the two words: a `pending` order the list names `completed` too (its query
    # decides; taken, a query saying `pending` flipped it back).
    for before, said in [
        ("mark_shipped", "completed"),
        ("declined", "Pending Review"),
        ("pending", "completed"),
        ("pending", "pending review"),
        ("pending", "mark_shipped"),
        ("processing", "completed"),
    ]:
        result = diff(held(before), [line(said)], now=NOW, via="poll", store_id=STORE)
        assert (result.events, result.states, result.doubted) == ([], {}, {CCNOW})
        assert result.forward == set()


def test_a_pending_line_for_an_order_before_pending_is_its_next_step() -> None:
    for said in ["pending", "Pending"]:
        result = diff(held("processing"), [line(said)], now=NOW, via="poll", store_id=STORE)
        assert (result.states, result.doubted, result.forward) == ({}, {CCNOW}, {CCNOW})
        assert result.sooner == {CCNOW}


@pytest.mark.parametrize(
    ("before", "said", "sooner"),
    [
        # A word later in CCNow's lifecycle may be the order's next step: asked sooner.
        *(("pending", s, True) for s in ("mark_shipped", "Completed", "mark_canceled")),
        *(("pending", s, True) for s in ("canceled", "refunded", "chargeback")),
        ("processing", "completed", True),
        ("paypal_hold", "declined", True),
        ("mark_shipped", "completed", True),
        # An earlier word (a lagging list), one of the same stage or in none: it waits.
        *(("mark_shipped", s, False) for s in ("pending", "processing", "mark_canceled")),
        *(("pending", s, False) for s in ("processing", "declined", "test", "shipped_ok")),
        ("completed", "mark_shipped", False),
        ("test", "completed", False),
    ],
)
def test_a_line_naming_a_later_step_is_asked_sooner(before: str, said: str, sooner: bool) -> None:
    result = diff(held(before), [line(said)], now=NOW, via="poll", store_id=STORE)
    assert (result.states, result.doubted) == ({}, {CCNOW})
    assert result.sooner == ({CCNOW} if sooner else set())
    assert result.forward == set()


@pytest.mark.parametrize(
    ("before", "obs", "after"),
    [
        ("pending", line(), "pending"),  # the list and the snapshot agree
        ("pending", line("PENDING"), "pending"),
        ("Shipped_OK", line("shipped_ok"), "Shipped_OK"),  # the same word in another case
        ("pending", line("completed", listed=False), "completed"),
        ("mark_shipped", line(listed=False), "pending"),  # a query's answer decides
        ("declined", line(listed=False), "pending"),
    ],
    ids=["agrees", "agrees-case", "same-word", "pending-query", "query", "query-end-state"],
)
def test_other_lines_are_applied_as_before(before: str, obs: Observation, after: str) -> None:
    result = diff(held(before), [obs], now=NOW, via="poll", store_id=STORE)
    assert result.doubted == set()
    assert result.states[CCNOW].status == after


def test_a_first_sight_takes_the_lines_word_whatever_it_is() -> None:
    # Nothing held to contradict: a line for an order nobody follows, or one tracked and never
    # answered, finds it with its word (unchanged by doubting lines against `pending`).
    for snapshot in [{}, {CCNOW: tracked(CCNOW, version=0)}]:
        result = diff(snapshot, [line("completed")], now=NOW, via="poll", store_id=STORE)
        assert result.doubted == set()
        [event] = result.events
        assert (event.type.value, event.data["status"]) == ("order.discovered", "completed")


def test_a_line_for_an_order_reported_not_found_is_applied() -> None:
    result = diff(
        held("mark_shipped", not_found=True), [line()], now=NOW, via="poll", store_id=STORE
    )
    assert result.doubted == set()
    assert [e.data["previous_status"] for e in result.events] == [None]


def test_a_query_moving_an_order_back_from_an_actions_result_is_noted() -> None:
    result = diff(held("mark_shipped"), [line(listed=False)], now=NOW, via="poll", store_id=STORE)
    [(before, after)] = result.moved_back
    assert (before.status, after.status) == ("mark_shipped", "pending")
    # Forward, or between statuses no action leads to: nothing noted.
    for status, answer in [("pending", "mark_shipped"), ("processing", "pending")]:
        moved = diff(
            held(status), [line(answer, listed=False)], now=NOW, via="poll", store_id=STORE
        )
        assert moved.moved_back == []


def test_ccv_orders_are_never_doubted_nor_moved_back() -> None:
    snapshot = {CCV: tracked(CCV, status="Completed", version=1, asked_at=NOW - 10)}
    obs = Observation(CCV, Outcome.OK, status="New", asked=NOW - 1, listed=True)
    result = diff(snapshot, [obs], now=NOW, via="poll", store_id=STORE)
    assert (result.doubted, result.moved_back) == (set(), [])
