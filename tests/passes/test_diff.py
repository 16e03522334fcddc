"""The reconciliation rules, as pure functions over plain data."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.diff import DiffResult, diff
from reconciler.model import (
    EventType,
    Observation,
    OrderKey,
    OrderState,
    Outcome,
)
from reconciler.schedule import NOT_FOUND_CONFIRM_S

NOW = 1_800_000_000.0
STORE = "store-1"
CCV = OrderKey("ccv", "default", "8f1b6a9e-0000-4000-8000-000000000001")
CCNOW = OrderKey("ccnow", "default", "396-10-1142")


def ok(key: OrderKey, status: str, ref: str | None = None) -> Observation:
    return Observation(key, Outcome.OK, status=status, external_reference=ref)


def tracked(key: OrderKey, **kw: object) -> OrderState:
    kw.setdefault("tracked_at", NOW - 100)
    return OrderState(key=key, **kw)  # type: ignore[arg-type]


def test_first_sight_of_a_tracked_order_is_discovered() -> None:
    result = diff(
        {CCV: tracked(CCV)},
        [ok(CCV, "AwaitingPayment", "ref-1")],
        now=NOW,
        via="catch-up",
        store_id=STORE,
    )
    [event] = result.events
    assert event.type is EventType.DISCOVERED
    assert event.data["previous_status"] is None
    assert event.data["status"] == "AwaitingPayment"
    assert event.data["external_reference"] == "ref-1"
    assert event.data["via"] == "catch-up"
    assert event.severity == "info"
    state = result.states[CCV]
    assert (state.status, state.first_seen, state.last_changed, state.version) == (
        "AwaitingPayment",
        NOW,
        NOW,
        1,
    )
    assert [e.data["status"] for e in result.events] == ["AwaitingPayment"]


def test_order_from_the_pending_list_that_nobody_tracked_is_discovered() -> None:
    result = diff({}, [ok(CCNOW, "pending")], now=NOW, via="poll", store_id=STORE)
    assert [e.type for e in result.events] == [EventType.DISCOVERED]
    assert result.states[CCNOW].tracked_at == NOW


def test_unchanged_status_emits_nothing_and_updates_last_checked() -> None:
    prev = tracked(CCV, status="New", version=1, last_changed=NOW - 50, last_checked=NOW - 50)
    result = diff({CCV: prev}, [ok(CCV, "New")], now=NOW, via="poll", store_id=STORE)
    assert result.events == []
    assert result.states[CCV].last_checked == NOW
    assert result.states[CCV].last_changed == NOW - 50


def test_an_answer_sets_every_field_of_the_orders_state() -> None:
    # Every field distinct, so that one taken for another shows.
    prev = OrderState(
        key=CCV,
        status="New",
        external_reference="ref-1",
        first_seen=NOW - 500,
        last_changed=NOW - 400,
        last_checked=NOW - 300,
        end_state=False,
        not_found=False,
        failure_streak=2,
        version=3,
        next_check_at=NOW - 1,
        interval_s=600.0,
        stuck_version=2,
        tracked_at=NOW - 900,
        missing_since=NOW - 200,
    )
    same = diff({CCV: prev}, [ok(CCV, "New")], now=NOW, via="poll", store_id=STORE)
    assert same.states[CCV] == prev._replace(last_checked=NOW, failure_streak=0, missing_since=None)
    moved = diff({CCV: prev}, [ok(CCV, "Completed", "ref-2")], now=NOW, via="poll", store_id=STORE)
    assert moved.states[CCV] == OrderState(
        key=CCV,
        status="Completed",
        external_reference="ref-2",
        first_seen=NOW - 500,
        last_changed=NOW,
        last_checked=NOW,
        end_state=True,
        not_found=False,
        failure_streak=0,
        version=4,
        next_check_at=NOW - 1,
        interval_s=600.0,
        stuck_version=None,
        tracked_at=NOW - 900,
        missing_since=None,
    )


@pytest.mark.parametrize(
    ("key", "before", "after", "severity", "end"),
    [
        (CCV, "New", "Completed", "info", True),
        (CCV, "Screening", "Closed", "warning", True),
        (CCV, "AwaitingPayment", "Canceled", "warning", True),
        # CCV `Failed` waits for a CCV employee: not final, a Completed or Canceled may follow
        (CCV, "New", "Failed", "error", False),
        (CCV, "Failed", "Completed", "info", True),
        (CCV, "Failed", "Canceled", "warning", True),
        (CCV, "Processing", "Incomplete", "info", False),
        (CCNOW, "pending", "mark_shipped", "info", False),
        (CCNOW, "processing", "declined", "error", True),
        (CCNOW, "processing", "rejected", "error", True),
        (CCNOW, "completed", "chargeback", "error", True),
        (CCNOW, "completed", "refunded", "warning", False),
        (CCNOW, "pending", "canceled", "warning", True),
        (CCNOW, "mark_shipped", "completed", "info", False),
        (CCNOW, "received", "test", "info", True),
    ],
)
def test_status_change_carries_severity_and_end_state(
    key: OrderKey, before: str, after: str, severity: str, end: bool
) -> None:
    prev = tracked(key, status=before, version=3)
    result = diff({key: prev}, [ok(key, after)], now=NOW, via="poll", store_id=STORE)
    [event] = result.events
    assert event.type is EventType.STATUS_CHANGED
    assert (event.data["previous_status"], event.data["status"]) == (before, after)
    assert (event.severity, event.data["severity"], event.data["end_state"]) == (
        severity,
        severity,
        end,
    )
    assert result.states[key].end_state is end


def test_unknown_status_word_is_kept_verbatim_and_flagged() -> None:
    prev = tracked(CCNOW, status="pending", version=1)
    result = diff(
        {CCNOW: prev}, [ok(CCNOW, "Held_For_Review")], now=NOW, via="poll", store_id=STORE
    )
    [event] = result.events
    assert event.data["status"] == "Held_For_Review"
    assert event.data["unknown_status"] is True
    assert event.severity == "warning"
    assert result.states[CCNOW].end_state is False


def test_failed_check_changes_nothing_but_the_failure_streak() -> None:
    prev = tracked(CCV, status="New", version=1, last_checked=NOW - 10)
    result = diff(
        {CCV: prev},
        [Observation(CCV, Outcome.FAILED, reason="timeout")],
        now=NOW,
        via="poll",
        store_id=STORE,
    )
    assert result.events == []
    assert result.states[CCV].status == "New"
    assert result.states[CCV].failure_streak == 1
    assert result.states[CCV].last_checked == NOW - 10


def test_a_different_external_reference_is_taken_and_reported() -> None:
    prev = tracked(CCV, status="New", version=1, external_reference="ref-tracked")
    result = diff({CCV: prev}, [ok(CCV, "New", "ref-ccv")], now=NOW, via="poll", store_id=STORE)
    assert result.references == [(CCV, "ref-tracked", "ref-ccv")]
    assert result.states[CCV].external_reference == "ref-ccv"
    same = diff({CCV: prev}, [ok(CCV, "New", "ref-tracked")], now=NOW, via="poll", store_id=STORE)
    absent = diff({CCV: prev}, [ok(CCV, "New")], now=NOW, via="poll", store_id=STORE)
    assert same.references == absent.references == []
    assert absent.states[CCV].external_reference == "ref-tracked"


def not_found(state: OrderState, now: float, **kw: object) -> DiffResult:
    return diff(
        {state.key: state},
        [Observation(state.key, Outcome.NOT_FOUND)],
        now=now,
        via="poll",
        store_id=STORE,
        **kw,  # type: ignore[arg-type]
    )


def test_an_order_never_found_is_reported_at_its_first_not_found_and_once() -> None:
    first = not_found(tracked(CCV), NOW)
    assert [e.type for e in first.events] == [EventType.NOT_FOUND]
    assert first.lost == set()
    again = not_found(first.states[CCV], NOW + 60)
    assert again.events == []
    assert again.states[CCV].not_found is True


def test_an_order_found_before_is_reported_missing_only_when_a_later_check_confirms() -> None:
    first = not_found(tracked(CCV, status="AwaitingPayment", version=1), NOW)
    assert first.events == [] and first.lost == {CCV}
    assert first.states[CCV].missing_since == NOW and not first.states[CCV].not_found
    soon = not_found(first.states[CCV], NOW + NOT_FOUND_CONFIRM_S - 1)
    assert soon.events == [] and soon.states[CCV].missing_since == NOW
    later = not_found(soon.states[CCV], NOW + NOT_FOUND_CONFIRM_S)
    assert [e.type for e in later.events] == [EventType.NOT_FOUND]
    assert later.events[0].data["previous_status"] == "AwaitingPayment"
    assert later.states[CCV].not_found and later.states[CCV].missing_since is None
    assert not_found(later.states[CCV], NOW + 2 * NOT_FOUND_CONFIRM_S).events == []


def test_an_unconfirmed_not_found_is_a_failed_check_until_confirmed() -> None:
    # As a 403's: the streak counts (`status`, `orders`), last_checked stays at the last answer.
    found = tracked(CCV, status="New", version=1, last_checked=NOW - 60)
    first = not_found(found, NOW)
    soon = not_found(first.states[CCV], NOW + 60)
    assert [(s.failure_streak, s.last_checked) for s in (first.states[CCV], soon.states[CCV])] == [
        (1, NOW - 60),
        (2, NOW - 60),
    ]
    assert [o.reason for o in first.started_failing] == ["not_found_unconfirmed"]
    assert soon.started_failing == []
    later = not_found(soon.states[CCV], NOW + NOT_FOUND_CONFIRM_S)
    assert (later.states[CCV].failure_streak, later.states[CCV].not_found) == (0, True)
    # An order already failing (a 403) says no second line when its answer becomes a 404.
    forbidden = found._replace(failure_streak=1)
    assert not_found(forbidden, NOW).started_failing == []
    assert not_found(forbidden, NOW).states[CCV].failure_streak == 2


def test_a_missing_order_is_not_confirmed_while_its_account_fails() -> None:
    first = not_found(tracked(CCV, status="New", version=1), NOW)
    held = not_found(first.states[CCV], NOW + 3600, failing_accounts={("ccv", "default")})
    assert held.events == [] and held.lost == {CCV}
    other = not_found(first.states[CCV], NOW + 3600, failing_accounts={("ccnow", "default")})
    assert [e.type for e in other.events] == [EventType.NOT_FOUND]


@pytest.mark.parametrize("status", ["AwaitingPayment", "Completed"])
def test_an_order_found_again_after_not_found_is_an_event(status: str) -> None:
    # `order.not_found` said status null; without an event for its return, consumers would go
    # on believing the order gone while the snapshot says it is back.
    first = not_found(tracked(CCV, status="AwaitingPayment", version=1), NOW)
    gone = not_found(first.states[CCV], NOW + NOT_FOUND_CONFIRM_S)
    assert [e.type for e in gone.events] == [EventType.NOT_FOUND]
    back = diff(gone.states, [ok(CCV, status)], now=NOW + 7200, via="poll", store_id=STORE)
    [event] = back.events
    assert event.type is EventType.STATUS_CHANGED
    assert (event.data["previous_status"], event.data["status"]) == (None, status)
    assert event.id not in {e.id for e in gone.events}
    assert not back.states[CCV].not_found
    again = diff(back.states, [ok(CCV, status)], now=NOW + 7300, via="poll", store_id=STORE)
    assert again.events == []


def test_an_order_never_found_then_found_is_discovered() -> None:
    gone = not_found(tracked(CCV), NOW)
    back = diff(gone.states, [ok(CCV, "New")], now=NOW + 60, via="poll", store_id=STORE)
    assert [(e.type, e.data["previous_status"]) for e in back.events] == [
        (EventType.DISCOVERED, None)
    ]


def test_an_answer_clears_a_missing_order() -> None:
    first = not_found(tracked(CCV, status="New", version=1), NOW)
    back = diff(first.states, [ok(CCV, "New")], now=NOW + 60, via="poll", store_id=STORE)
    assert back.events == [] and back.states[CCV].missing_since is None
    # A later "not found" starts a new confirmation period.
    again = not_found(back.states[CCV], NOW + NOT_FOUND_CONFIRM_S + 1)
    assert again.events == [] and again.states[CCV].missing_since == NOW + NOT_FOUND_CONFIRM_S + 1


def test_event_ids_are_stable_for_the_same_transition_and_differ_otherwise() -> None:
    prev = tracked(CCV, status="New", version=1)
    a = diff({CCV: prev}, [ok(CCV, "Completed")], now=NOW, via="poll", store_id=STORE)
    b = diff({CCV: prev}, [ok(CCV, "Completed")], now=NOW + 5, via="catch-up", store_id=STORE)
    assert a.events[0].id == b.events[0].id  # found again after a crash: same id
    # The same place in the history with another status (after a restore from backup).
    other = diff({CCV: prev}, [ok(CCV, "Failed")], now=NOW, via="poll", store_id=STORE)
    assert other.events[0].id != a.events[0].id
    other_store = diff({CCV: prev}, [ok(CCV, "Completed")], now=NOW, via="poll", store_id="x")
    assert other_store.events[0].id != a.events[0].id
    retracked = diff(
        {CCV: tracked(CCV, status="New", version=1, tracked_at=NOW)},
        [ok(CCV, "Completed")],
        now=NOW,
        via="poll",
        store_id=STORE,
    )
    assert retracked.events[0].id != a.events[0].id


def test_two_observations_of_one_order_in_a_batch_chain() -> None:
    result = diff(
        {}, [ok(CCNOW, "pending"), ok(CCNOW, "mark_shipped")], now=NOW, via="poll", store_id=STORE
    )
    assert [e.type for e in result.events] == [EventType.DISCOVERED, EventType.STATUS_CHANGED]
    assert len({e.id for e in result.events}) == 2


def test_cloudevent_shape_matches_the_contract() -> None:
    result = diff(
        {CCNOW: tracked(CCNOW, status="pending", version=1)},
        [ok(CCNOW, "mark_shipped")],
        now=NOW,
        via="poll",
        store_id=STORE,
    )
    ce = result.events[0].cloudevent()
    assert ce["specversion"] == "1.0"
    assert ce["source"] == "reconciler/ccnow/default"
    assert ce["subject"] == "396-10-1142"
    assert ce["time"].endswith("Z")
    assert ce["datacontenttype"] == "application/json"
    assert set(ce["data"]) >= {
        "source",
        "account",
        "order_id",
        "external_reference",
        "previous_status",
        "status",
        "end_state",
        "severity",
        "via",
    }


def test_event_ids_are_uuid5_of_the_store_and_the_transition() -> None:
    import uuid

    from reconciler.events import _NAMESPACE, event_id

    name = "/".join(["store-1", "ccv", "default", "o-1", "1.5", "2"])
    assert event_id("store-1", "ccv", "default", "o-1", 1.5, 2) == str(uuid.uuid5(_NAMESPACE, name))


# --- answers asked before the one the snapshot holds ---------------------------------------------

ASKED = NOW - 10  # when the request whose answer the snapshot holds was sent


def shipped(**kw: object) -> OrderState:
    """An order a CCNow ship moved on, its post sent at ASKED."""
    return tracked(CCNOW, status="mark_shipped", version=2, asked_at=ASKED, **kw)


@pytest.mark.parametrize(
    "observation",
    [
        Observation(CCNOW, Outcome.OK, status="pending", asked=ASKED - 0.5),
        Observation(CCNOW, Outcome.NOT_FOUND, asked=ASKED - 0.5),
        Observation(CCNOW, Outcome.FAILED, reason="order_error", asked=ASKED - 0.5),
    ],
    ids=["status", "not-found", "failed"],
)
def test_an_answer_asked_before_the_one_held_changes_nothing(observation: Observation) -> None:
    # A query sent before the ship's post and answered after it says "pending": applied, it
    # would raise a false `mark_shipped -> pending` and the next poll the ship again.
    result = diff({CCNOW: shipped()}, [observation], now=NOW, via="poll", store_id=STORE)
    assert (result.events, result.states, result.started_failing) == ([], {}, [])


def test_an_answer_asked_after_the_one_held_is_applied_and_held() -> None:
    later = Observation(CCNOW, Outcome.OK, status="completed", asked=ASKED + 1)
    result = diff({CCNOW: shipped()}, [later], now=NOW, via="poll", store_id=STORE)
    assert [(e.data["previous_status"], e.data["status"]) for e in result.events] == [
        ("mark_shipped", "completed")
    ]
    assert result.states[CCNOW].asked_at == ASKED + 1
    # The same request's answer again (a line twice) is no older news; nor one unchanged.
    again = diff({CCNOW: result.states[CCNOW]}, [later], now=NOW, via="poll", store_id=STORE)
    assert again.events == [] and again.states[CCNOW].last_checked == NOW


def test_in_one_batch_the_later_request_wins_whatever_the_order_of_answers() -> None:
    newer = Observation(CCNOW, Outcome.OK, status="completed", asked=ASKED + 2)
    older = Observation(CCNOW, Outcome.OK, status="mark_shipped", asked=ASKED + 1)
    result = diff({CCNOW: shipped()}, [newer, older], now=NOW, via="poll", store_id=STORE)
    assert [e.data["status"] for e in result.events] == ["completed"]
    assert (result.states[CCNOW].status, result.states[CCNOW].asked_at) == ("completed", ASKED + 2)


@pytest.mark.parametrize(
    ("held", "asked"),
    [
        (None, ASKED - 5),  # a row of a store from before the rule: its next answer counts
        (ASKED, None),  # an answer of unknown age
        (NOW + 3600, NOW - 1),  # the clock was put back: the held time is in the future
    ],
    ids=["nothing-held", "asked-unknown", "clock-put-back"],
)
def test_an_answer_that_cannot_be_judged_older_is_applied(
    held: float | None, asked: float | None
) -> None:
    prev = tracked(CCNOW, status="mark_shipped", version=2, asked_at=held)
    answer = Observation(CCNOW, Outcome.OK, status="completed", asked=asked)
    result = diff({CCNOW: prev}, [answer], now=NOW, via="poll", store_id=STORE)
    assert [e.data["status"] for e in result.events] == ["completed"]
    assert result.states[CCNOW].asked_at == (held if asked is None else asked)


def test_an_order_whose_submit_ccv_answered_with_its_id_gets_the_same_grace() -> None:
    # CCV's 2xx named it (`first_seen`, no status yet): a "not found" at its first check is CCV
    # not consistent yet, and waits for a check minutes later, as for an order found before.
    submitted = tracked(CCV, first_seen=NOW - 5)
    first = not_found(submitted, NOW)
    assert first.events == [] and first.fresh == {CCV} and first.lost == set()
    assert [o.reason for o in first.started_failing] == ["not_found_unconfirmed"]
    soon = not_found(first.states[CCV], NOW + NOT_FOUND_CONFIRM_S - 1)
    assert soon.events == []
    later = not_found(soon.states[CCV], NOW + NOT_FOUND_CONFIRM_S)
    assert [e.type for e in later.events] == [EventType.NOT_FOUND]
    assert later.events[0].data["previous_status"] is None
    # Found meanwhile instead: discovered, and its first sight is then (no change to come).
    found = diff(first.states, [ok(CCV, "New")], now=NOW + 60, via="poll", store_id=STORE)
    assert [e.type for e in found.events] == [EventType.DISCOVERED]
    assert found.states[CCV].first_seen == NOW + 60 and found.states[CCV].missing_since is None


def test_submitted_orders_ccv_does_not_know_yet_are_no_lost_wave() -> None:
    # Three submits on a new account while CCV lags: their first "not found" are failed checks
    # (a catch-up exits 75), not orders found before that went missing (the account's failure).
    keys = [CCV._replace(order_id=f"8f1b6a9e-0000-4000-8000-00000000001{n}") for n in range(3)]
    snapshot = {k: tracked(k, first_seen=NOW - 5) for k in keys}
    found = CCV._replace(order_id="8f1b6a9e-0000-4000-8000-000000000020")
    snapshot[found] = tracked(found, status="New", version=1)
    result = diff(
        snapshot,
        [Observation(k, Outcome.NOT_FOUND) for k in snapshot],
        now=NOW,
        via="poll",
        store_id=STORE,
    )
    assert result.events == []
    assert result.fresh == set(keys) and result.lost == {found}
    assert len(result.started_failing) == 4


# --- a CCNow action's answer and the reads sent while its post waited ---------------------------

POSTED, CAME = NOW - 20, NOW - 18  # the ship's post sent, its answer come


def ship_answer(status: str = "mark_shipped") -> Observation:
    return Observation(CCNOW, Outcome.OK, status=status, asked=POSTED, answered=CAME)


def read(status: str, asked: float) -> OrderState:
    """The order as a read sent at `asked` left it."""
    return tracked(CCNOW, status=status, version=1, asked_at=asked)


def test_a_read_saying_pending_while_the_post_waited_is_before_the_action() -> None:
    # Sent after the post, answered `pending` before its answer came: CCNow had not run the
    # ship yet. The ship's answer is the newer news, with its `via: action` change.
    result = diff({CCNOW: read("pending", POSTED + 0.3)}, [ship_answer()], **ACTION)
    assert [
        (e.data["previous_status"], e.data["status"], e.data["via"]) for e in result.events
    ] == [("pending", "mark_shipped", "action")]
    assert result.states[CCNOW].asked_at == CAME


@pytest.mark.parametrize("status", ["completed", "refunded", "canceled", "mark_shipped"])
def test_a_read_saying_what_the_action_cannot_precede_still_wins(status: str) -> None:
    # Answered after CCNow ran the ship: `mark_shipped` now would be a false regression.
    held = read(status, POSTED + 0.3)
    result = diff({CCNOW: held}, [ship_answer()], **ACTION)
    assert (result.events, result.states) == ([], {})


@pytest.mark.parametrize(
    "prev",
    [
        read("pending", CAME + 0.1),  # a read sent after the answer came is newer
        tracked(CCNOW, status="pending", version=1, asked_at=POSTED + 0.3, not_found=True),
    ],
    ids=["sent-after-the-answer", "not-found"],
)
def test_only_a_pending_read_sent_while_the_post_waited_gives_way(prev: OrderState) -> None:
    result = diff({CCNOW: prev}, [ship_answer()], **ACTION)
    assert (result.events, result.states) == ([], {})


@pytest.mark.parametrize(
    "line", ["processing", "vacation_hold", "getman_hold", "preorder_hold", "on hold", "pending"]
)
def test_an_action_line_saying_no_status_past_pending_gives_no_way(line: str) -> None:
    # A ship posted for an order on hold, answered with the order's line as it was (refused):
    # a read sent while the post waited says `pending` (the hold ended meanwhile). That read
    # holds: `pending -> processing` via action would be a false regression, raised back by
    # the next poll.
    result = diff({CCNOW: read("pending", POSTED + 0.3)}, [ship_answer(line)], **ACTION)
    assert (result.events, result.states) == ([], {})


def test_a_read_sent_while_the_post_waited_and_answered_after_the_action_is_older() -> None:
    # The action's answer holds the order from when it came: a read sent before then and
    # answered after it was applied (`pending`, from before CCNow ran the ship) changes nothing.
    applied = diff({CCNOW: read("pending", POSTED - 5)}, [ship_answer()], **ACTION).states
    late = Observation(CCNOW, Outcome.OK, status="pending", asked=POSTED + 0.3)
    result = diff(applied, [late], now=NOW, via="poll", store_id=STORE)
    assert (result.events, result.states) == ([], {})
    after = Observation(CCNOW, Outcome.OK, status="completed", asked=CAME + 1)
    result = diff(applied, [after], now=NOW, via="poll", store_id=STORE)
    assert [e.data["status"] for e in result.events] == ["completed"]


ACTION: dict[str, Any] = {"now": NOW, "via": "action", "store_id": STORE}
