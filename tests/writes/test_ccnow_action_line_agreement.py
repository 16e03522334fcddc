"""How an action's answer lines for its order are read, against a fake CCNow on 127.0.0.1 that
applies the action and answers these lines: lines that differ only in case or in the id's
hyphens are one answer (the polls' rule, `ccnow_answer.by_id`, not a second copy of it), and a
documented status followed by free text (`mark_shipped UPS Ground`) is that status, unless the
text says an error (`pending ERR42`: kept whole, a status CCNow does not document)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_providers import FakeCCNow
from tests.writes.test_ccnow_actions import ARGS, A, ccnow, commands, tracked

HYPHENLESS = A.replace("-", "")

# (action, answer lines, command's state, its answer words)
AGREEING = {
    "case-of-a-documented-word": (
        "ship",
        [f"{A} mark_shipped", f"{A} MARK_SHIPPED"],
        "succeeded",
        "mark_shipped",
    ),
    "hyphenless-id": (
        "ship",
        [f"{A} mark_shipped", f"{HYPHENLESS} MARK_SHIPPED"],
        "succeeded",
        "mark_shipped",
    ),
    "free-text-beside-the-bare-word": (
        "ship",
        [f"{A} mark_shipped UPS Ground", f"{HYPHENLESS} MARK_SHIPPED"],
        "succeeded",
        "mark_shipped",
    ),
    "case-of-an-undocumented-word": (
        "adjust",
        [f"{A} Pending_Review", f"{HYPHENLESS} pending_review"],
        "uncertain",
        "answered 'pending_review', a status CCNow does not document",
    ),
    "case-of-an-error-line": (
        "add-tracking",
        [f"{A} error_message Tracking number rejected", f"{HYPHENLESS} ERROR_MESSAGE tracking "
         "NUMBER  rejected"],
        "refused",
        "ERROR_MESSAGE tracking NUMBER  rejected",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(AGREEING.values()), ids=list(AGREEING))
async def test_lines_that_differ_only_in_case_or_hyphens_are_one_answer(
    tmp_path: Path, fake_ccnow: FakeCCNow, case: tuple[str, list[str], str, str]
) -> None:
    action, lines, state, words = case
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = lines
    run = await ccnow(cfg, action, A, *ARGS[action])
    assert commands(tmp_path) == [(A, state, words)], run.stdout + run.stderr


async def test_lines_that_say_different_things_still_disagree(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A discount answered `pending` and an error: which one CCNow meant cannot be told.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} pending", f"{A} error_message amount rejected"]
    run = await ccnow(cfg, "adjust", A, *ARGS["adjust"])
    assert run.code == 75, run.stdout + run.stderr
    assert commands(tmp_path) == [(A, "uncertain", "no single answer line for this order")]


async def test_a_ship_answered_with_a_carrier_in_two_words_is_done(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Read as a status CCNow does not document, the ship was `uncertain` for a person.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} mark_shipped UPS Ground"]
    run = await ccnow(cfg, "ship", A, *ARGS["ship"])
    assert run.code == 0, run.stdout + run.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped")]


@pytest.mark.parametrize("rest", ["ERR42", "ERROR", "Invalid amount", "fail"])
async def test_a_discount_answered_pending_and_an_error_word_is_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow, rest: str
) -> None:
    # `pending ERR42` read `pending` before (a digit made `ERR42` data): `succeeded`.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} pending {rest}"]
    run = await ccnow(cfg, "adjust", A, *ARGS["adjust"])
    assert run.code == 75, run.stdout + run.stderr
    words = f"answered 'pending {rest}', a status CCNow does not document"
    assert commands(tmp_path) == [(A, "uncertain", words)]
