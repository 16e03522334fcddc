"""A post CCNow applied, whose answer was lost after whole lines for some of its orders (cut
short, or an error line beside them): those lines say what CCNow did with their orders, and
only the other commands are posted again. Every command of the post was posted again, each
tracking upload its line said CCNow took added a second time. The others' fate cannot be known:
a ship, cancel or tracking upload is posted again (a repeated upload costs nothing; an adjust,
which costs money, is `uncertain`, and so are all of a post's when an error line came beside
the lines). Each answer is sent by a fake CCNow on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Reply, cut_off
from tests.writes.test_ccnow_actions import ARGS, A, B, C, ccnow, commands
from tests.writes.test_ccnow_answers import action_posts

ANSWERS = {
    "cut": cut_off(f"{A} pending\n{B} pending\n{C} pen"),
    "framed-cut": Reply(200, f"{A} pending\n{B} pending\n{C} pen"),
    "error-beside": Reply(200, f"{A} pending\n{B} pending\nerror_message Database error\n"),
}


@pytest.mark.parametrize("answer", list(ANSWERS.values()), ids=list(ANSWERS))
async def test_a_tracking_upload_answered_in_part_posts_only_the_rest(
    tmp_path: Path, fake_ccnow: FakeCCNow, answer: Reply
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending", C: "pending"}
    fake_ccnow.after_applying = [answer]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "add-tracking", A, B, C, *ARGS["add-tracking"])
    assert result.code == 0, result.stdout + result.stderr
    assert action_posts(fake_ccnow) == [[A, B, C], [C]]
    # C's fate was unknown: posted again (CCNow may show its tracking twice).
    assert [o for o, _a, _f in fake_ccnow.actions] == [A, B, C, C]
    assert commands(tmp_path) == [(o, "succeeded", "pending") for o in (A, B, C)]


async def test_a_ship_answered_in_part_posts_only_the_rest(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.after_applying = [cut_off(f"{A} mark_shipped\n{B} mark_sh")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A, B, *ARGS["ship"])
    assert result.code == 0, result.stdout + result.stderr
    assert action_posts(fake_ccnow)[:2] == [[A, B], [B]]
    assert [s for _o, s, _a in commands(tmp_path)] == ["succeeded", "succeeded"]


async def test_an_adjust_answered_in_part_is_closed_by_its_whole_line_the_other_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Never posted twice. A's line came whole: it says what CCNow did with A's discount, as in
    # a whole answer (both were `uncertain`); B's was cut: lost, a person looks.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.after_applying = [cut_off(f"{A} pending\n{B} pen")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "adjust", A, B, *ARGS["adjust"])
    assert result.code == 75, result.stdout + result.stderr
    assert action_posts(fake_ccnow) == [[A, B]]
    assert commands(tmp_path) == [(A, "succeeded", "pending"), (B, "uncertain", "truncated_answer")]


@pytest.mark.parametrize(
    "answer",
    [
        cut_off(f"{A} pending\nerror_message daily limit reached\n{B} pen"),
        Reply(200, f"{A} pending\nerror_message daily limit reached\n"),
        # The error line last, without its line end: not a whole line, still an error line.
        cut_off(f"{A} pending\nerror_message daily limit reached"),
        cut_off(f"{A} pending\nerror_message daily li"),
        Reply(200, f"{A} pending\nerror_message daily limit reached", framed=False, chunked=True),
        Reply(200, f"{A} pending\nerror_message daily limit reached"),
    ],
    ids=["cut", "whole", "cut-open", "cut-mid-word", "chunked-open", "framed-open"],
)
async def test_an_adjust_s_line_beside_an_error_line_is_still_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow, answer: Reply
) -> None:
    # The error line may be about any discount of the post, A's too: as in a whole answer.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.after_applying = [answer]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "adjust", A, B, *ARGS["adjust"])
    assert result.code == 75, result.stdout + result.stderr
    assert action_posts(fake_ccnow) == [[A, B]]
    assert [s for _o, s, _a in commands(tmp_path)] == ["uncertain", "uncertain"]
