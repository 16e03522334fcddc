"""What CCNow's answer to an action's post says, read as CCNow means it: a status word in
capitals, a whole answer whose last line has no line end, a post refused for a command's own
fields, and an order's status read after an answer that did not settle it. Against a fake
CCNow on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import call_cli, read_events, write_config
from tests.fake_providers import FakeCCNow, Reply
from tests.writes.test_ccnow_actions import A, B, C, ccnow, commands, make_due, tracked

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")


def action_posts(fake: FakeCCNow) -> list[list[str]]:
    """The orders of each post that carried an action, in order."""
    posts = []
    for seen in fake.requests:
        if seen.form.get("x_action_1", "query") != "query":
            n = sum(1 for name in seen.form if name.startswith("x_orderid_"))
            posts.append([seen.form[f"x_orderid_{i}"] for i in range(1, n + 1)])
    return posts


def of_type(tmp_path: Path, type: str) -> list[dict[str, Any]]:
    return [e["data"] for e in read_events(tmp_path) if e["type"] == type]


def changes(tmp_path: Path) -> list[tuple[str, str, str]]:
    return [
        (d["previous_status"], d["status"], d["via"])
        for d in of_type(tmp_path, "order.status_changed")
    ]


# --- an answer word in other case -------------------------------------------------------------


@pytest.mark.parametrize(
    "line", [f"{A} MARK_SHIPPED", f"{A} Mark_Shipped\t2026-11-30"], ids=["capitals", "with-a-date"]
)
async def test_a_ship_answered_in_capitals_is_done_as_the_documented_word(
    tmp_path: Path, fake_ccnow: FakeCCNow, line: str
) -> None:
    word = "mark_shipped"
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [line]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert f"{A} ship succeeded: {word}" in result.stdout
    assert commands(tmp_path) == [(A, "succeeded", word)]
    assert [d["answer"] for d in of_type(tmp_path, "order.action_succeeded")] == [word]
    assert of_type(tmp_path, "order.action_refused") == []
    # The snapshot has the documented word: CCNow's next answer in its case changes nothing.
    assert changes(tmp_path) == [("pending", word, "action")]
    again = await ccnow(cfg, "ship", A)
    assert again.code == 0 and "(made before with this key)" in again.stdout, again.stdout
    assert action_posts(fake_ccnow) == [[A]]


async def test_a_ship_whose_order_status_reads_in_capitals_is_done(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # No line for the order; then its status, asked at once, in capitals.
    fake_ccnow.script = [Reply(200, "message no_pending_orders\n"), Reply(200, f"{A} COMPLETED\n")]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", "completed (the order's status)")]


async def test_an_order_whose_last_status_reads_past_pending_in_capitals_is_refused_unasked(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "COMPLETED"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    asked = len(fake_ccnow.requests)
    result = await ccnow(cfg, "cancel", A)
    assert result.code == 65, result.stdout + result.stderr
    assert "its last known status is completed, past pending" in result.stdout
    assert len(fake_ccnow.requests) == asked


# --- a whole answer without a final line end --------------------------------------------------


@pytest.mark.parametrize(
    ("action", "args", "line", "changed"),
    [
        ("adjust", ["--amount", "4.00"], f"{A} pending", []),
        ("ship", [], f"{A} mark_shipped", [("pending", "mark_shipped", "action")]),
    ],
    ids=["adjust", "ship"],
)
async def test_an_answer_of_its_full_length_without_a_final_line_end_closes_the_command(
    tmp_path: Path,
    fake_ccnow: FakeCCNow,
    action: str,
    args: list[str],
    line: str,
    changed: list[tuple[str, str, str]],
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # Content-Length says how long it is: aiohttp would have raised had it come short.
    fake_ccnow.script = [Reply(200, line)]
    result = await ccnow(cfg, action, A, *args)
    assert result.code == 0, result.stdout + result.stderr
    assert action_posts(fake_ccnow) == [[A]]  # posted once
    assert commands(tmp_path) == [(A, "succeeded", line.split()[1])]
    assert of_type(tmp_path, "order.action_uncertain") == []
    assert changes(tmp_path) == changed


# --- a post refused for a command's own fields -------------------------------------------------


async def test_an_adjust_ccnow_refuses_for_its_amount_is_refused_with_its_event(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    words = "error_message x_amount_1 exceeds order total"
    fake_ccnow.always = Reply(200, words + "\n")
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "adjust", A, "--amount", "99.00")
    assert result.code == 65, result.stdout + result.stderr
    assert f"{A} adjust refused: {words}" in result.stdout
    assert "refused 1, uncertain 0, queued 0" in result.stderr
    assert commands(tmp_path) == [(A, "refused", words)]
    [refused] = of_type(tmp_path, "order.action_refused")
    assert (refused["action"], refused["answer"]) == ("adjust", words)
    # Nothing is left to send: the same line answers the refusal, and nothing is posted again.
    again = await ccnow(cfg, "adjust", A, "--amount", "99.00")
    assert again.code == 65 and "(made before with this key)" in again.stdout, again.stdout
    assert action_posts(fake_ccnow) == [[A]]


async def test_a_batch_refused_for_one_command_s_notes_sends_the_others_again_at_once(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending", C: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.script = [Reply(200, "error_message x_notes_2 too long\n")]
    result = await ccnow(cfg, "ship", A, B, C, "--notes", "Thank you")
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [
        (A, "succeeded", "mark_shipped"),
        (B, "refused", "error_message x_notes_2 too long"),
        (C, "succeeded", "mark_shipped"),
    ]
    assert action_posts(fake_ccnow) == [[A, B, C], [A, C]]
    assert [d["order_id"] for d in of_type(tmp_path, "order.action_refused")] == [B]
    assert fake_ccnow.orders[B] == "pending"


@pytest.mark.parametrize(
    "words",
    [
        "error_message system down for maintenance",
        "error_message amount checks unavailable",
        "error_message invalid x_password",
        "error_message daily limit reached",
    ],
)
async def test_a_post_refused_for_ccnow_s_own_reasons_stays_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow, words: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.script = [Reply(200, words + "\n")]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    first = await ccnow(cfg, "adjust", A, "--amount", "5.00")
    assert first.code == 75, first.stdout + first.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
    assert of_type(tmp_path, "order.action_refused") == []
    await make_due(tmp_path)
    again = await ccnow(cfg, "adjust", A, "--amount", "5.00")
    assert again.code == 0, again.stdout + again.stderr
    assert [(o, a) for o, a, _ in fake_ccnow.actions] == [(A, "adjust")]


# --- the status read after an answer that did not settle the order ----------------------------


@pytest.mark.parametrize(
    "before",
    [[], [MAINTENANCE]],
    ids=["no-line-for-the-order", "not-pending-after-an-earlier-post"],
)
async def test_a_ship_found_done_by_its_order_status_puts_that_status_in_the_snapshot(
    tmp_path: Path, fake_ccnow: FakeCCNow, before: list[Reply]
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    for reply in before:
        fake_ccnow.script = [reply]
        await make_due(tmp_path)
        assert (await ccnow(cfg, "ship", A)).code == 75
    # Shipped in the backroom meanwhile; this post's answer does not say so for the order.
    answer = f"{A} error_message order not pending\n" if before else "message no_pending_orders\n"
    fake_ccnow.script = [Reply(200, answer), Reply(200, f"{A} completed\n")]
    fake_ccnow.orders[A] = "completed"
    await make_due(tmp_path)
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path)[0][1] == "succeeded"
    assert changes(tmp_path) == [("pending", "completed", "action")]
    orders = await call_cli("--config", cfg, "orders", "--json")
    assert '"completed"' in orders.stdout, orders.stdout
    # The next poll finds what the status read already put there: no second event.
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    assert changes(tmp_path) == [("pending", "completed", "action")]
