"""What a fresh look at CCNow's answers to actions found (g1): an outage's words are no refusal,
a status word in capitals is the documented word, a chunked answer cut mid-line is no answer,
and a stopping daemon sends nothing more. Against fake CCNow servers on 127.0.0.1; the stop
against a real daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.daemon import Ticks
from tests.conftest import call_cli, cli_env, daemon_here, poll_until, write_config
from tests.fake_providers import FakeCCNow, Reply, Seen
from tests.writes.test_ccnow_actions import (
    ARGS,
    WORD,
    A,
    ccnow,
    commands,
    make_due,
    recorded_unsent,
    tracked,
)
from tests.writes.test_ccnow_answers import action_posts, changes
from tests.writes.test_ccnow_unsettled import action_events

# --- 1. an outage's words are not a refusal --------------------------------------------------


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("ship", "error_message Database error, action not performed"),
        ("ship", "error_message Internal server error while processing action"),
        ("ship", "error_message Could not save notes: disk full"),
        ("adjust", "error_message amount service error"),
    ],
)
async def test_an_outage_s_words_naming_no_field_leave_the_command_queued(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, words: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, words + "\n")]
    first = await ccnow(cfg, action, A, *ARGS[action])
    assert first.code == 75, first.stdout + first.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
    assert action_events(tmp_path) == []
    # CCNow back: the same line sends it, and it takes.
    await make_due(tmp_path)
    again = await ccnow(cfg, action, A, *ARGS[action])
    assert again.code == 0, again.stdout + again.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded"]
    assert [a for _, a, _ in fake_ccnow.actions] == [WORD[action]]
    assert action_events(tmp_path) == [("order.action_succeeded", WORD[action])]


async def test_a_field_named_as_ccnow_writes_it_still_refuses_its_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    words = "error_message amount_1 exceeds order total"
    fake_ccnow.always = Reply(200, words + "\n")
    result = await ccnow(cfg, "adjust", A, "--amount", "99.00")
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", words)]


# --- 2. a whole post refused in words of no field: test_ccnow_refusal_words.py ---------------


# --- 3. a documented word in capitals is the documented word ----------------------------------


async def test_a_ship_answered_in_capitals_then_polled_raises_one_change(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.actions_answer = [f"{A} MARK_SHIPPED"]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped")]
    # CCNow's normal answer to the next poll: the same status, no change.
    assert fake_ccnow.orders[A] == "mark_shipped"
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    assert changes(tmp_path) == [("pending", "mark_shipped", "action")]


async def test_an_order_polled_canceled_in_capitals_is_in_its_end_state(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.orders[A] = "CANCELED"
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    listed = await call_cli("--config", cfg, "orders", "--json")
    [order] = [o for o in _orders(listed.stdout) if o["order_id"] == A]
    # Not polled for ever as an unknown word: the documented end state.
    assert (order["status"], order["end_state"]) == ("canceled", True), order
    assert changes(tmp_path) == [("pending", "canceled", "catch-up")]


def _orders(text: str) -> list[dict[str, Any]]:
    document = json.loads(text)
    return list(document if isinstance(document, list) else document["orders"])


# --- 4. a chunked answer cut mid-line ---------------------------------------------------------


async def test_a_chunked_answer_cut_mid_line_is_no_answer_and_the_ship_is_sent_again(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, f"{A} mark_shi", chunked=True)]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped")]
    assert action_events(tmp_path) == [("order.action_succeeded", "ship")]


async def test_a_poll_answer_chunked_and_cut_mid_line_changes_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # Its last line is undecided, asked again alone, and cut again at another byte: that
    # order's check fails, nothing changes (a line repeated exactly decides:
    # tests/sources/test_ccnow_last_line.py).
    fake_ccnow.script = [
        Reply(200, "message no_pending_orders\n"),
        Reply(200, f"{A} pend", chunked=True),
        Reply(200, f"{A} pendin", chunked=True),
    ]
    await call_cli("--config", cfg, "catch-up", "--source", "ccnow")
    assert changes(tmp_path) == []
    assert fake_ccnow.script == []


async def test_a_chunked_answer_with_its_line_end_is_read(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, f"{A} mark_shipped\n", chunked=True)]
    assert (await ccnow(cfg, "ship", A)).code == 0
    assert action_posts(fake_ccnow) == [[A]]


# --- 5. a stopping daemon sends nothing more --------------------------------------------------


def _log_messages(tmp_path: Path) -> list[str]:
    text = (tmp_path / "daemon.log").read_text()
    return [json.loads(line.lstrip("<0123456789>"))["message"] for line in text.splitlines()]


def _ship_post(seen: Seen) -> bool:
    return seen.form.get("x_action_1") == "ship"


def _naming(fake: FakeCCNow, order_id: str) -> list[Seen]:
    return [s for s in fake.requests if s.form.get("x_orderid_1") == order_id]


@pytest.mark.parametrize("answer", ["http-503", "no-line"])
async def test_a_stop_makes_no_new_attempt_nor_status_read(
    tmp_path: Path, fake_ccnow: FakeCCNow, answer: str
) -> None:
    # The queue's ship is out when the stop comes; its answer, given once the stop began, would
    # be followed by a retry (503) or a status read (no line for the order): new requests.
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    await recorded_unsent(cfg, "ship", A)
    if answer == "http-503":
        fake_ccnow.replies_for[A] = Reply(503)
    else:
        fake_ccnow.actions_answer = ["message no_pending_orders"]
    fake_ccnow.answer_late = _ship_post
    # In this process, its queue read every 0.2 s (not 5 s), stopped as SIGTERM stops it.
    async with daemon_here(cfg, cli_env(), ticks=Ticks(actions_s=0.2)) as running:
        await fake_ccnow.wait_until(lambda: any(map(_ship_post, fake_ccnow.requests)), 30)
        stopped = asyncio.ensure_future(running.stop())
        await poll_until(
            lambda: "daemon.writes_in_flight" in _log_messages(tmp_path), 10, "the stop"
        )
        fake_ccnow.release.set()
        assert await asyncio.wait_for(stopped, 30) == 0
    assert len(_naming(fake_ccnow, A)) == 1, [s.form for s in _naming(fake_ccnow, A)]
    # Left safe for the next start: queued, not cut off `sending`.
    assert [state for _, state, _ in commands(tmp_path)] == ["queued"]
    assert action_events(tmp_path) == []
