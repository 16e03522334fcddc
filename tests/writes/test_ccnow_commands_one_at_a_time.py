"""What a second outside probe of CCNow actions found, against fake CCNow servers on 127.0.0.1:
a field name in capitals is a field name; a refusal after a post that may have taken is not
closed on a status read that said nothing; a discount on its way holds a second one back; one
order's commands go in the order they were made; a tracking upload refused after a post that
may have reached CCNow is uncertain; an answer too large to read is lost, not turned away; a
chunked answer's open last line is no line for its order."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from reconciler.sources.ccnow import MAX_BODY_BYTES
from tests.conftest import free_port, read_events, write_config
from tests.fake_providers import FakeCCNow, Reply, Seen, html_page
from tests.server.test_api import api_toml
from tests.writes.test_ccnow_actions import A, ccnow, commands, daemon_with_api, make_due, tracked
from tests.writes.test_ccnow_maybe_taken import actions, snapshot


def action_events(tmp_path: Path) -> list[str]:
    return [e["type"] for e in read_events(tmp_path) if e["type"].startswith("order.action_")]


async def lost_twice(tmp_path: Path, fake: FakeCCNow, *args: str) -> Path:
    """A config whose command's post reached CCNow (applied) and whose answers were lost."""
    fake.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake, A)
    fake.after_applying = [html_page(502), html_page(502)]
    first = await ccnow(cfg, *args)
    assert first.code == 75, first.stdout + first.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
    await make_due(tmp_path)  # its next attempt's time come
    return cfg


# --- 1. a field name in capitals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line", "code", "state"),
    [
        (
            ("adjust", A, "--amount", "3.00"),
            "error_message X_AMOUNT exceeds order total",
            65,
            "refused",
        ),
        (("ship", A), "error_message x_OrderId missing", 65, "refused"),
        (("adjust", A, "--amount", "3.00"), "error_message Amount_1 too large", 65, "refused"),
        (
            ("ship", A),
            "error_message system down for maintenance: X_ACTION unavailable until 10:00",
            75,
            "queued",
        ),
    ],
)
async def test_a_field_named_in_capitals_decides_as_in_small_letters(
    tmp_path: Path, fake_ccnow: FakeCCNow, args: tuple[str, ...], line: str, code: int, state: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, line + "\n")]
    result = await ccnow(cfg, *args)
    assert result.code == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert commands(tmp_path) == [(A, state, line)]


# --- 2. a refusal after a post that may have taken, its status not read ----------------------

UNREAD = {
    "http-500": Reply(500),
    "http-503": Reply(503),
    "maintenance": Reply(200, "error_message system down for maintenance\n"),
    "empty-200": Reply(200, ""),
    "no-pending-orders": Reply(200, "message no_pending_orders\n"),
    "lines-disagree": Reply(200, f"{A} pending\n{A} mark_shipped\n"),
}


@pytest.mark.parametrize("read", list(UNREAD.values()), ids=list(UNREAD))
async def test_a_ship_refused_after_a_lost_answer_stays_queued_when_its_status_is_not_read(
    tmp_path: Path, fake_ccnow: FakeCCNow, read: Reply
) -> None:
    cfg = await lost_twice(tmp_path, fake_ccnow, "ship", A)
    assert fake_ccnow.orders[A] == "mark_shipped"  # the lost post took
    fake_ccnow.script = [Reply(200, f"{A} error_message order not pending\n")]
    fake_ccnow.always = read
    again = await ccnow(cfg, "ship", A)
    assert again.code == 75, again.stdout + again.stderr
    [(_, state, answer)] = commands(tmp_path)
    assert state == "queued", answer
    assert answer == "error_message order not pending (its order's status could not be read)"
    assert action_events(tmp_path) == []
    # The status answers again: the re-sent ship is refused as not pending, and found taken.
    fake_ccnow.always = None
    await make_due(tmp_path)
    last = await ccnow(cfg, "ship", A)
    assert last.code == 0, last.stdout + last.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (taken by an earlier attempt)")]
    assert action_events(tmp_path) == ["order.action_succeeded"]


# --- 3. a discount on its way holds a second one back ---------------------------------------


def _adjust_post(seen: Seen) -> bool:
    return seen.form.get("x_action_1") == "adjust"


async def test_a_second_discount_while_the_first_is_being_sent_is_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    port = free_port()
    cfg = write_config(tmp_path, ccnow=fake_ccnow, extra=api_toml(port))
    base = f"http://127.0.0.1:{port}/api/v1/ccnow/actions"
    fake_ccnow.answer_late = _adjust_post
    first = {"order_id": A, "action": "adjust", "amount": "3.00", "idempotency_key": "K1"}
    async with daemon_with_api(cfg, port) as http:

        async def post(doc: dict[str, str]) -> tuple[int, dict[str, object]]:
            async with http.post(base, json=doc) as r:
                return r.status, await r.json()

        sending = asyncio.ensure_future(post(first))
        await fake_ccnow.wait_until(lambda: any(map(_adjust_post, fake_ccnow.requests)), 30)
        # Both would be uncertain if both answers were lost, and one `resolve` settles both.
        status, body = await asyncio.wait_for(post({**first, "idempotency_key": "K2"}), 10)
        assert (status, body["state"], body["id"]) == (202, "refused", None), body
        assert "is being sent" in str(body["answer"]), body
        fake_ccnow.release.set()
        status, body = await asyncio.wait_for(sending, 30)
        assert (status, body["state"]) == (202, "done"), body
    assert [a for _, a, _ in fake_ccnow.actions] == ["adjust"]
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded"]


# --- 4. one order's commands in the order they were made -------------------------------------


async def test_a_new_ship_waits_for_an_older_queued_discount_of_its_order(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(429)]  # turned away: queued, due in 30 s
    adjusted = await ccnow(cfg, "adjust", A, "--amount", "3.00")
    assert adjusted.code == 75, adjusted.stdout + adjusted.stderr
    shipped = await ccnow(cfg, "ship", A)
    # Sent first, the ship would make the discount a refusal (`order not pending`): it waits.
    assert shipped.code == 75, shipped.stdout + shipped.stderr
    assert [(a, s) for a, s in _actions_states(tmp_path)] == [
        ("adjust", "queued"),
        ("ship", "queued"),
    ]
    assert actions(fake_ccnow) == ["adjust"]
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn, conn:
        conn.execute("UPDATE commands SET next_attempt_at = 0")  # the 30 s have passed
    again = await ccnow(cfg, "ship", A)
    assert again.code == 0, again.stdout + again.stderr
    assert actions(fake_ccnow) == ["adjust", "adjust", "ship"]
    assert [s for _, s in _actions_states(tmp_path)] == ["succeeded", "succeeded"]
    assert fake_ccnow.orders[A] == "mark_shipped"


def _actions_states(tmp_path: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        return conn.execute("SELECT action, state FROM commands ORDER BY id").fetchall()


# --- 5. a tracking upload refused after a post that may have reached CCNow -------------------


async def test_a_tracking_upload_refused_after_a_lost_answer_is_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    args = ("add-tracking", A, "--carrier", "DHL", "--number", "JD01")
    cfg = await lost_twice(tmp_path, fake_ccnow, *args)
    assert [a for _, a, _ in fake_ccnow.actions] == ["track", "track"]  # CCNow has it
    fake_ccnow.orders[A] = "mark_shipped"  # shipped meanwhile: CCNow refuses the re-send
    again = await ccnow(cfg, *args)
    assert again.code == 75, again.stdout + again.stderr
    assert commands(tmp_path) == [
        (
            A,
            "uncertain",
            "error_message order not pending (an earlier attempt may have reached CCNow with it)",
        )
    ]
    assert action_events(tmp_path) == ["order.action_uncertain"]


# --- 6. an answer too large to read ----------------------------------------------------------


async def test_a_200_too_large_to_read_may_have_been_run(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.after_applying = [Reply(200, "x" * (MAX_BODY_BYTES + 1))]
    first = await ccnow(cfg, "ship", A)
    assert first.code == 75, first.stdout + first.stderr
    assert commands(tmp_path) == [(A, "queued", "answer_too_large")]
    # The re-send, once due, is refused as not pending: the post CCNow answered took.
    await make_due(tmp_path)
    again = await ccnow(cfg, "ship", A)
    assert again.code == 0, again.stdout + again.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (taken by an earlier attempt)")]


# --- 7. a chunked answer's open last line ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line", "code", "state", "answer"),
    [
        # `canceled` cut from a longer word: an end state, never asked again.
        (("cancel", A), f"{A} canceled", 75, "queued", "no single answer line for this order"),
        # An adjust's or a tracking upload's counts:
        # tests/writes/test_ccnow_broken_action_answers.py.
    ],
)
async def test_a_chunked_answer_s_last_line_without_its_end_is_no_line_for_its_order(
    tmp_path: Path,
    fake_ccnow: FakeCCNow,
    args: tuple[str, ...],
    line: str,
    code: int,
    state: str,
    answer: str,
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, line, chunked=True)]  # CCNow did not take it
    result = await ccnow(cfg, *args)
    assert result.code == code, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, state, answer)]
    assert snapshot(tmp_path, A) == "pending"
