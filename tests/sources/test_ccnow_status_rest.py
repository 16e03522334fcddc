"""What follows a documented CCNow status word in an answer line (sources/ccnow_words.py's
`documented_status`, which the polls and the actions' answers both read lines by): free text
that is no status (`mark_shipped UPS Ground`, a carrier in two words) leaves the status, kept as
data; text that says an error (`ERR`, `error`, `fail`, `invalid` as a word's start, in any case)
or may be a status of its own (`pending review`, `pending HOLD`) keeps the line whole, flagged
as every word the document does not list is."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.sources.ccnow_answer import parse_answer
from reconciler.sources.ccnow_words import DOCUMENTED, documented_status

X = "396-10-1142"


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("mark_shipped", ("mark_shipped", None)),
        ("MARK_SHIPPED", ("mark_shipped", None)),
        ("mark_shipped UPS Ground", ("mark_shipped", "UPS Ground")),
        ("mark_shipped\tFedEx Home Delivery", ("mark_shipped", "FedEx Home Delivery")),
        ("mark_shipped UPS 1Z999AA10123456784", ("mark_shipped", "UPS 1Z999AA10123456784")),
        ("mark_shipped Ground", ("mark_shipped", "Ground")),
        ("mark_shipped ups ground", ("mark_shipped", "ups ground")),  # a carrier's code first
        ("pending 2026-11-30 12.50", ("pending", "2026-11-30 12.50")),
        ("MARK_SHIPPED FEDEX", ("mark_shipped", "FEDEX")),
        ("completed Thank you!", ("completed", "Thank you!")),
        # Says an error, as a word's start, in any case: kept whole.
        ("pending ERROR", None),
        ("pending ERR42", None),
        ("pending err", None),
        ("mark_shipped UPS Ground ERR", None),
        ("mark_shipped UPS Ground (failed)", None),
        ("mark_shipped FAILURE", None),
        ("canceled Invalid", None),
        ("pending USD FAIL", None),
        ("pending ERROR 12.50", None),
        ("pending NO", None),
        ("pending NOK", None),
        ("completed FRAUD", None),
        ("completed VOID", None),
        ("pending\tDENIED", None),
        # May be a status of its own: a documented word or a part of one, or a word written
        # as the status word is (lower case after lower case): kept whole.
        ("pending review", None),
        ("PENDING REVIEW", None),
        ("mark_shipped extra words", None),
        ("pending HOLD", None),
        ("pending DECLINED", None),
        ("pending completed", None),
        ("mark_shipped Test Delivery", None),
        ("pending (awaiting)", None),
        # Signs alone say nothing one can read: kept whole.
        ("pending ?", None),
        ("pending ()", None),
        ("pending -", None),
        # Not a documented word first: kept whole.
        ("on hold", None),
        ("shipped UPS Ground", None),
        ("", None),
    ],
)
def test_what_follows_a_documented_word(text: str, read: tuple[str, str | None] | None) -> None:
    assert documented_status(text) == read


def test_pending_err42_is_kept_whole_and_flagged_by_the_answer_reader() -> None:
    # Read `pending` before: `ERR42` has a digit, which made it a column of data.
    (order,) = parse_answer(f"{X} pending ERR42\n").orders
    assert order.status == "pending ERR42" and order.status not in DOCUMENTED


def test_a_carrier_in_two_words_reads_as_the_status_with_its_data_kept() -> None:
    (order,) = parse_answer(f"{X} mark_shipped UPS Ground\n").orders
    assert (order.status, order.data) == ("mark_shipped", "UPS Ground")


def test_data_that_echoes_the_password_is_masked() -> None:
    (order,) = parse_answer(f"{X} mark_shipped Via Sw0rdFish9\n", secrets=["Sw0rdFish9"]).orders
    assert order.status == "mark_shipped" and "Sw0rdFish9" not in str(order.data)


# --- properties -------------------------------------------------------------------------------

_CASES = st.sampled_from([str.lower, str.upper, str.title])
_WORD = st.sampled_from(sorted(DOCUMENTED))
_ERRORS = st.sampled_from(["err", "error", "fail", "failed", "invalid", "Err42", "ERROR:"])
# Free text: words with a capital first, no error word and no status word among them.
_FREE = st.lists(
    st.sampled_from(["Ground", "Express", "Home", "Delivery", "Priority", "Overnight", "Box"]),
    min_size=1,
    max_size=4,
).map(" ".join)
_TEXT = st.text(string.ascii_letters + string.digits + " .-:", max_size=30)


@settings(max_examples=300, deadline=None)
@given(word=_WORD, case=_CASES, free=_FREE)
def test_free_text_after_a_documented_word_is_that_status_and_kept(
    word: str, case: Callable[[str], str], free: str
) -> None:
    assert documented_status(f"{case(word)} UPS {free}") == (word, f"UPS {free}")


@settings(max_examples=300, deadline=None)
@given(word=_WORD, case=_CASES, before=_TEXT, error=_ERRORS, after=_TEXT, upper=st.booleans())
def test_text_that_says_an_error_keeps_the_line_whole(
    word: str, case: Callable[[str], str], before: str, error: str, after: str, upper: bool
) -> None:
    said = error.upper() if upper else error
    assert documented_status(f"{case(word)} {before} {said} {after}".rstrip()) is None


@settings(max_examples=300, deadline=None)
@given(word=_WORD, other=_WORD, case=_CASES, before=_FREE)
def test_another_status_word_after_one_keeps_the_line_whole(
    word: str, other: str, case: Callable[[str], str], before: str
) -> None:
    assert documented_status(f"{case(word)} {before} {case(other)}") is None


@settings(max_examples=500, deadline=None)
@given(text=_TEXT)
def test_a_read_is_a_documented_word_and_loses_nothing(text: str) -> None:
    read = documented_status(text)
    if read is not None:
        status, data = read
        assert status in DOCUMENTED
        first, *rest = text.split(None, 1)
        assert first.lower() == status
        assert data == (rest[0].strip() if rest else None)
