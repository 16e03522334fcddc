"""A CCNow answer that does not settle an action's order (`message no_pending_orders`, only
another order's line, lines for it that disagree) says nothing of whether CCNow ran it: an
`adjust` becomes uncertain and is never sent again; a ship or cancel is found taken by the
order's status, or else queued and sent again, as a tracking upload is, and uncertain after a
day. Against a fake CCNow that applies the action, then
answers so."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from reconciler.writes.ccnow_actions import UNSETTLED_FOR_S
from tests.conftest import read_events
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, WORD, A, ccnow, commands, make_due, tracked

UNSETTLING = {
    "no-pending-orders": ["message no_pending_orders"],
    "another-order": ["999-99-9999 pending"],
    "disagreeing": [f"{A} completed"],
}


def unsettling(fake: FakeCCNow, lines: list[str]) -> None:
    """The fake applies the action, then answers `lines` in place of the order's own line
    (beside it, for lines that disagree with it)."""
    if not lines[0].startswith(A):
        fake.omit = {A}
    fake.extra_lines = lines


def unsettling_actions(fake: FakeCCNow, lines: list[str]) -> None:
    """As `unsettling`, for the posts carrying an action only: a status query is answered."""
    fake.actions_answer = lines if not lines[0].startswith(A) else [f"{A} pending", *lines]


def action_events(tmp_path: Path) -> list[tuple[str, str]]:
    return [
        (e["type"], e["data"]["action"])
        for e in read_events(tmp_path)
        if e["type"].startswith("order.action")
    ]


@pytest.mark.parametrize("lines", list(UNSETTLING.values()), ids=list(UNSETTLING))
async def test_an_adjust_the_answer_does_not_settle_is_uncertain_and_never_sent_again(
    tmp_path: Path, fake_ccnow: FakeCCNow, lines: list[str]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    unsettling(fake_ccnow, lines)
    first = await ccnow(cfg, "adjust", A, "--amount", "3.00")
    assert first.code == 75, first.stdout + first.stderr
    assert [a for _, a, _ in fake_ccnow.actions] == ["adjust"]  # CCNow did apply it
    assert commands(tmp_path) == [(A, "uncertain", "no single answer line for this order")]
    assert action_events(tmp_path) == [("order.action_uncertain", "adjust")]
    # The snapshot still says pending: a second discount, under a new key, must wait.
    fake_ccnow.omit, fake_ccnow.extra_lines = set(), []
    again = await ccnow(cfg, "adjust", A, "--amount", "3.00", "--key", "second")
    assert again.code == 65 and "is uncertain" in again.stdout, again.stdout
    assert (await ccnow(cfg, "adjust", A, "--amount", "3.00")).code == 75
    assert [a for _, a, _ in fake_ccnow.actions] == ["adjust"]
    assert action_events(tmp_path) == [("order.action_uncertain", "adjust")]


@pytest.mark.parametrize("lines", list(UNSETTLING.values()), ids=list(UNSETTLING))
@pytest.mark.parametrize("action", ["ship", "cancel"])
async def test_a_ship_or_cancel_the_answer_does_not_settle_is_found_taken_by_its_status(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, lines: list[str]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    unsettling_actions(fake_ccnow, lines)
    first = await ccnow(cfg, action, A, *ARGS[action])
    assert first.code == 0, first.stdout + first.stderr
    [(_, state, answer)] = commands(tmp_path)
    assert state == "succeeded" and answer is not None
    assert answer.endswith("(the order's status)"), answer
    assert [a for _, a, _ in fake_ccnow.actions] == [WORD[action]]  # posted once
    assert action_events(tmp_path) == [("order.action_succeeded", WORD[action])]


@pytest.mark.parametrize("lines", list(UNSETTLING.values()), ids=list(UNSETTLING))
async def test_a_tracking_upload_the_answer_does_not_settle_is_queued_and_sent_again(
    tmp_path: Path, fake_ccnow: FakeCCNow, lines: list[str]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    unsettling(fake_ccnow, lines)
    first = await ccnow(cfg, "add-tracking", A, *ARGS["add-tracking"])
    assert first.code == 75, first.stdout + first.stderr
    assert "queued 1" in first.stderr
    assert commands(tmp_path) == [(A, "queued", "no single answer line for this order")]
    assert action_events(tmp_path) == []  # not refused: CCNow took it
    fake_ccnow.omit, fake_ccnow.extra_lines = set(), []
    # The same line again sends the queued command once it is due.
    await make_due(tmp_path)
    again = await ccnow(cfg, "add-tracking", A, *ARGS["add-tracking"])
    assert again.code == 0, again.stdout + again.stderr
    [(_, state, _)] = commands(tmp_path)
    assert state == "succeeded"
    # Sent twice: the tracking upload is the one action a repeat adds again (README).
    assert [a for _, a, _ in fake_ccnow.actions] == ["track", "track"]
    assert action_events(tmp_path) == [("order.action_succeeded", "track")]


async def days_ago(tmp_path: Path, column: str) -> None:
    """Move a command's time back a day (what the daemon would see a day later); off the event
    loop, where a daemon of this process may need it to end its transaction."""
    await asyncio.to_thread(_days_ago, tmp_path, column)
    await make_due(tmp_path)  # a day later, its next attempt is due


def _days_ago(tmp_path: Path, column: str) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db", timeout=60)) as conn, conn:
        conn.execute(f"UPDATE commands SET {column} = {column} - ?", (UNSETTLED_FOR_S,))


@pytest.mark.parametrize("action", ["ship", "add-tracking"])
async def test_an_action_never_settled_is_uncertain_a_day_after_the_first_such_answer(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str
) -> None:
    # Every post naming the order, the status query too, is answered without its line: the
    # command is not sent for ever, and not called refused either (CCNow may have run it).
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # First queued through a maintenance of more than a day: no answer about the order yet.
    fake_ccnow.script = [Reply(200, "error_message system down for maintenance\n")]
    assert (await ccnow(cfg, action, A, *ARGS[action])).code == 75
    await days_ago(tmp_path, "created_at")
    fake_ccnow.replies_for[A] = Reply(200, "message no_pending_orders\n", "text/plain")
    for _ in range(3):
        await make_due(tmp_path)
        assert (await ccnow(cfg, action, A, *ARGS[action])).code == 75
        assert commands(tmp_path)[0][1] == "queued"  # the day counts from the first answer
    await days_ago(tmp_path, "unsettled_since")
    last = await ccnow(cfg, action, A, *ARGS[action])
    assert last.code == 75, last.stdout + last.stderr
    said = "no single answer line for this order (for a day)"
    assert commands(tmp_path) == [(A, "uncertain", said)]
    assert action_events(tmp_path) == [("order.action_uncertain", WORD[action])]
