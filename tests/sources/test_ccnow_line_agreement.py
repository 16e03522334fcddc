"""When an answer's several lines for one order are one answer (`ccnow_answer.same_answer`, by
which `by_id` reads a poll's lines and the actions' `lines_by_id` theirs): lines that differ
only in the case of the status word, in the case and blanks of an error line's words, or in the
id's hyphens. Any other two disagree: a poll fails that order (`protocol`) alone, never taking
the last of two different error lines (a guessed `not_found`)."""

from __future__ import annotations

import pytest

from reconciler.model import Outcome
from reconciler.sources.ccnow_answer import by_id, parse_answer
from reconciler.sources.ccnow_match import match
from reconciler.writes.ccnow_outcome import lines_by_id

X = "396-10-1142"
Y = X.replace("-", "")


@pytest.mark.parametrize(
    "lines",
    [
        [f"{X} Pending_Review", f"{Y} pending_review"],
        [f"{X} pending review", f"{Y} PENDING\tREVIEW"],
        [f"{X} mark_shipped", f"{Y} MARK_SHIPPED"],
        [f"{X} error_message Tracking number rejected",
         f"{Y} ERROR_MESSAGE tracking  NUMBER rejected"],
        [f"{X} error_message unknown order", f"{X} error_message Unknown Order"],
        [f"{X} not_found", f"{Y} NOT_FOUND"],
    ],
)  # fmt: skip
def test_lines_that_differ_only_in_case_blanks_or_hyphens_agree(lines: list[str]) -> None:
    answer = parse_answer("".join(f"{x}\n" for x in lines), asked=[X])
    kept, disagreeing = by_id(answer)
    assert not disagreeing and set(kept) == {X}
    assert lines_by_id(answer)[X] == kept[X] == answer.orders[-1]


@pytest.mark.parametrize(
    "lines",
    [
        [f"{X} Pending_Review", f"{X} on_hold"],
        [f"{X} pending", f"{X} mark_shipped"],
        [f"{X} pending", f"{X} error_message amount rejected"],
        [f"{X} error_message tracking number rejected", f"{X} error_message carrier rejected"],
        [f"{X} error_message rejected", f"{X} error_message rejected."],
        [f"{X} error_message database busy", f"{X} error_message unknown order"],
        [f"{X} error unknown order", f"{X} error_message unknown order"],
        [f"{X} pending", f"{X} pending (awaiting)"],
    ],
)
def test_lines_that_say_different_things_disagree(lines: list[str]) -> None:
    answer = parse_answer("".join(f"{x}\n" for x in lines), asked=[X])
    assert by_id(answer)[1] == {X}
    assert lines_by_id(answer) == {X: None}


def test_a_poll_fails_an_order_whose_error_lines_differ_alone() -> None:
    # The last line, `unknown order`, read alone is a not_found: with another error before it
    # for the same order, which CCNow meant cannot be told. The other order reads.
    z = "397-10-1159"
    body = f"{X} error_message database busy\n{z} pending\n{X} error_message unknown order\n"
    seen = match("default", [X, z], parse_answer(body, asked=[X, z]), 1.0)
    assert [(o.key.order_id, o.outcome, o.reason) for o in seen] == [
        (X, Outcome.FAILED, "protocol"),
        (z, Outcome.OK, None),
    ]


@pytest.mark.parametrize(
    "lines",
    [
        ["error_message x_orderid_1 unknown order", f"{X} error_message unknown order"],
        [f"{X} error_message unknown order", f"{X} error_message order not found"],
    ],
)
def test_a_poll_reads_error_lines_meaning_the_same_in_other_words_as_one(lines: list[str]) -> None:
    # Both say the order is not found: a poll reads that (the order goes on to be confirmed
    # lost), not a disagreement failing its check every pass.
    body = "".join(f"{x}\n" for x in lines)
    seen = match("default", [X], parse_answer(body, asked=[X]), 1.0)
    assert [(o.key.order_id, o.outcome) for o in seen] == [(X, Outcome.NOT_FOUND)]
