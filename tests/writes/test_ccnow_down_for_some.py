"""Lines saying CCNow is down that are about some commands only (m1): an order's own answer line
(`ID error_message Database error, try again later`) refuses nothing, and is bounded as a
whole post's such line is; a whole post's such line naming one command's field holds back no
other command of the post. Against a fake CCNow on 127.0.0.1, the sender's clock moved as the
daemon's would be."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.writes.ccnow_actions import build
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.writes.test_ccnow_actions import ARGS, WORD, A, B, ccnow, commands, make_due, tracked
from tests.writes.test_ccnow_down_words import (
    DAY,
    HOUR,
    Clock,
    action_events,
    sender,
    sent_when_due,
)


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)


# --- an order's own line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("ship", "error_message Database error, try again later"),
        ("cancel", "error_message Service Unavailable"),
    ],
)
async def test_an_orders_own_line_saying_ccnow_is_down_refuses_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, words: str
) -> None:
    # It refused the command for good, with an order.action_refused.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    fake_ccnow.script = [Reply(200, f"{A} {words}\n")]
    args = ARGS[action]
    first = await ccnow(cfg, action, A, *args)
    assert first.code == 75, first.stdout + first.stderr
    assert commands(tmp_path) == [(A, "queued", words)]
    assert action_events(tmp_path) == []
    await make_due(tmp_path)
    again = await ccnow(cfg, action, A, *args)
    assert again.code == 0, again.stdout + again.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded"]
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, WORD[action])]


async def test_an_adjust_whose_own_line_says_ccnow_is_down_is_uncertain_not_sent_again(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The post ran (B's line came with it): A's discount may have been applied. It was queued
    # and posted a second time.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    down = "error_message Database error, try again later"
    fake_ccnow.actions_answer = [f"{B} pending", f"{A} {down}"]
    first = await ccnow(cfg, "adjust", A, B, "--amount", "7.50")
    assert sorted(commands(tmp_path)) == [(A, "uncertain", down), (B, "succeeded", "pending")]
    assert sorted(action_events(tmp_path)) == ["order.action_succeeded", "order.action_uncertain"]
    again = await ccnow(cfg, "adjust", A, "--amount", "7.50")
    assert "made before" in again.stdout and again.code == 75  # the same command: not sent
    assert sorted(o for o, _, _ in fake_ccnow.actions) == [A, B], first.stdout + first.stderr


async def test_an_orders_own_lines_saying_ccnow_is_down_keep_it_three_days_then_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Beside another order's answer: the post ran, and only this order's line says it is down.
    words = "error_message Database error, try again later"
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.replies_for = {A: Reply(200, f"{B} pending\n{A} {words}\n")}
    clock = Clock(time.time())
    start = clock.now
    async with sender(tmp_path, fake_ccnow, clock) as (store, actions, cfg):
        [row] = (await actions.take(build(cfg, "ship", [A]))).rows
        # Past a day: no day starts, so it is still queued, with no event.
        c = await sent_when_due(store, actions, clock, row.id, start + 2 * DAY)
        assert (c.state, c.answer) == ("queued", words)
        assert action_events(tmp_path) == []
        c = await sent_when_due(store, actions, clock, row.id, start + 5 * DAY)
    assert (c.state, c.answer) == ("uncertain", f"{words} (for 3 days)")
    assert start + 3 * DAY <= c.closed_at < start + 3 * DAY + HOUR  # type: ignore[operator]
    assert action_events(tmp_path) == ["order.action_uncertain"]
    assert fake_ccnow.actions == []


# --- a whole post's line naming one command's field -----------------------------------------


async def test_a_line_saying_ccnow_is_down_for_one_command_holds_no_other_back(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # CCNow keeps turning away every post naming A, in words about A's field: B was kept
    # queued with A, every post refused, and both were uncertain three days later.
    words = "error_message x_orderid_1 cannot be checked now, try again later"
    fake_ccnow.orders = {A: "pending", B: "pending"}
    fake_ccnow.replies_for = {A: Reply(200, words + "\n")}
    clock = Clock(time.time())
    start = clock.now
    async with sender(tmp_path, fake_ccnow, clock) as (store, actions, cfg):
        a, b = (await actions.take(build(cfg, "ship", [A, B]))).rows
        assert [(c.state, c.answer) for c in await actions.commands([a.id, b.id])] == [
            ("queued", words),
            ("succeeded", "mark_shipped"),
        ]
        assert [(o, action) for o, action, _ in fake_ccnow.actions] == [(B, "ship")]
        # A goes on as after any line saying CCNow is down: no day, three days at most.
        c = await sent_when_due(store, actions, clock, a.id, start + 2 * DAY)
        assert (c.state, c.answer) == ("queued", words)
        c = await sent_when_due(store, actions, clock, a.id, start + 5 * DAY)
    assert (c.state, c.answer) == ("uncertain", f"{words} (for 3 days)")
    assert action_events(tmp_path) == ["order.action_succeeded", "order.action_uncertain"]
