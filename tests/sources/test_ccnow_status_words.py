"""What follows a documented CCNow status word in an answer line: columns of data (a date, an
amount, a tracking number, a currency code or a carrier's name) leave the status; any other word,
in capitals or not (`pending ERROR`, `completed FRAUD`, `pending HOLD`), may say the order failed
or stands somewhere new, so the line is kept whole and flagged, never read as the bare status.
And an undocumented status that differs only by case in one answer is one answer."""

from __future__ import annotations

import pytest

from reconciler.sources.ccnow_answer import by_id, parse_answer

X = "333-33-3333"


@pytest.mark.parametrize(
    "rest",
    [
        "pending FAIL",
        "pending NO",
        "pending ERROR",
        "pending NOK",  # Norway's krone, but `not OK` as well: no currency an answer names
        "pending DECLINED",
        "pending HOLD",
        "mark_shipped ERROR",
        "completed FRAUD",
        "completed VOID",
        "canceled ERR",
        "pending\tDENIED",  # a tab makes no word data
        "pending\tfailed",
        "pending USD FAIL",  # a currency beside it does not either
        "pending ERROR 12.50",  # nor a digit in another column
    ],
)
def test_a_word_after_a_status_word_keeps_the_line_whole(rest: str) -> None:
    (order,) = parse_answer(f"{X} {rest}\n").orders
    assert order.status != rest.split()[0]
    # kept verbatim, its blanks as CCNow wrote them (a tab stays a tab)
    assert order.status == rest or (order.status is None and order.unreadable)


@pytest.mark.parametrize(
    ("rest", "status"),
    [
        ("pending USD", "pending"),
        ("pending EUR", "pending"),
        ("pending\tCAD", "pending"),
        ("pending usd 12.50", "pending"),
        ("mark_shipped UPS 1Z999AA10123456784", "mark_shipped"),
        ("mark_shipped USPS", "mark_shipped"),
        ("mark_shipped DHL JD014600006281230704", "mark_shipped"),
        ("mark_shipped FedEx 2026-11-30", "mark_shipped"),
        ("MARK_SHIPPED FEDEX", "mark_shipped"),
        ("pending 2026-11-30 12.50", "pending"),
    ],
)
def test_columns_of_data_leave_the_status(rest: str, status: str) -> None:
    (order,) = parse_answer(f"{X} {rest}\n").orders
    assert order.status == status


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (f"{X} On  Hold", "On  Hold"),
        (f"{X} on\thold", "on\thold"),
        (f" \t{X} \t on \t hold \t\r", "on \t hold"),  # only the line's ends are trimmed
        (f"{X}\tpending  review", "pending  review"),  # a documented word that is not alone
    ],
)
def test_an_undocumented_status_keeps_its_inner_blanks(line: str, status: str) -> None:
    (order,) = parse_answer(f"{line}\n").orders
    assert order.status == status


@pytest.mark.parametrize(
    ("rest", "status"),
    [
        ("pending  USD", "pending"),
        ("mark_shipped\t UPS  1Z999AA10123456784", "mark_shipped"),
        ("pending  review", "pending  review"),  # a word, not data: kept whole, as written
    ],
)
def test_a_documented_word_followed_by_data_still_reads_as_that_word(
    rest: str, status: str
) -> None:
    (order,) = parse_answer(f"{X} {rest}\n").orders
    assert order.status == status


def test_blank_variants_of_one_undocumented_word_in_one_answer_agree() -> None:
    answer = parse_answer(f"{X} On  Hold\n{X} on hold\n{X} ON\tHOLD\n", asked=[X])
    lines, disagreeing = by_id(answer)
    assert not disagreeing
    assert lines[X].status == "ON\tHOLD"  # the last line, as written


def test_case_variants_of_one_undocumented_word_in_one_answer_agree() -> None:
    answer = parse_answer(f"{X} Pending_Review\n{X} pending_review\n", asked=[X])
    lines, disagreeing = by_id(answer)
    assert not disagreeing
    assert str(lines[X].status).lower() == "pending_review"


def test_different_undocumented_words_in_one_answer_still_disagree() -> None:
    answer = parse_answer(f"{X} Pending_Review\n{X} on_hold\n", asked=[X])
    assert by_id(answer)[1] == {X}
