"""A column after a documented CCNow status word whose word starts as an error does (`ERR42`,
`Failed2`, `invalid_3`: err, fail, invalid, unknown, deni/deny, declin, reject, refus, in any
case) is never data, whatever digit or code it holds: the line is kept whole and flagged, as
any word the document does not list is. `pending ERR42` read `pending` (its digit made it
data), and a discount so answered was reported applied. What counts as data is not widened:
a column is still data only when it holds a digit or is a listed code."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.sources.ccnow_answer import parse_answer
from reconciler.sources.ccnow_words import DOCUMENTED, is_data

X = "396-10-1142"


@pytest.mark.parametrize(
    "rest",
    [
        "pending ERR42",
        "pending err42",
        "pending Err-42",
        "pending ERR_42",
        "pending ERROR42",
        "pending FAIL1",
        "pending Failed2",
        "pending invalid_3",
        "pending UNKNOWN9",
        "pending DENIED2",
        "pending deny3",
        "pending DECLINED05",
        "pending declined-05",
        "pending REJECT7",
        "pending Rejected7",
        "pending refused8",
        "pending REFUSAL8",
        "mark_shipped UPS ERR404",  # a carrier's code beside it does not make it data
        "mark_shipped 2026-11-30 ERR404",  # nor a date
        "pending ERR42 12.50",
        "pending USD\tERR42",
        "mark_canceled ERR42",
        "completed E:ERR42",  # the word after a sign starts as an error does
    ],
)
def test_an_error_word_with_a_digit_keeps_the_line_whole(rest: str) -> None:
    (order,) = parse_answer(f"{X} {rest}\n").orders
    assert order.status not in DOCUMENTED
    # Kept whole, as written (a sign in it: no word to read).
    assert order.status == rest or (order.status is None and order.unreadable)


@pytest.mark.parametrize(
    ("rest", "status"),
    [
        # The look-alike rule stands: a digit or a listed code is data.
        ("pending 2026-11-30 12.50", "pending"),
        ("pending USD", "pending"),
        ("mark_shipped UPS 1Z999AA10123456784", "mark_shipped"),
        ("mark_shipped DHL JD014600006281230704", "mark_shipped"),
        ("mark_shipped FedEx 2026-11-30", "mark_shipped"),
        ("pending R42", "pending"),
        # An error prefix inside a word, not at its start, is no error word.
        ("mark_shipped 1ZERR4567", "mark_shipped"),
        ("pending 12FAIL", "pending"),
    ],
)
def test_columns_of_data_still_leave_the_status(rest: str, status: str) -> None:
    (order,) = parse_answer(f"{X} {rest}\n").orders
    assert order.status == status


@pytest.mark.parametrize(
    "rest",
    [
        # No digit, no listed code: never data, as before (the guards of the free-text rule).
        "Amount exceeds order total",
        "Cannot ship",
        "Too late",
        "Ground",
        "review",
    ],
)
def test_free_text_is_still_no_data(rest: str) -> None:
    assert not is_data(rest)
    (order,) = parse_answer(f"{X} pending {rest}\n").orders
    assert order.status == f"pending {rest}"


_CASES = st.sampled_from([str.lower, str.upper, str.title])
_PREFIXES = st.sampled_from(
    ["err", "fail", "invalid", "unknown", "deni", "deny", "declin", "reject", "refus"]
)
_DATA = st.sampled_from(["12.50", "2026-11-30", "USD", "UPS", "1Z999AA10123456784", ""])


@settings(max_examples=300, deadline=None)
@given(
    word=st.sampled_from(sorted(DOCUMENTED)),
    prefix=_PREFIXES,
    case=_CASES,
    tail=st.text("0123456789-_:ABCedr", max_size=6),
    before=_DATA,
    after=_DATA,
)
def test_no_error_word_is_ever_read_as_data(
    word: str, prefix: str, case: Callable[[str], str], tail: str, before: str, after: str
) -> None:
    column = case(prefix) + tail
    assert not is_data(column)
    rest = " ".join(c for c in (before, column, after) if c)
    (order,) = parse_answer(f"{X} {word} {rest}\n").orders
    assert order.status not in DOCUMENTED
