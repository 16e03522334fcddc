"""What decides a CCNow action CCNow answers with `error_message` lines alone (i1): a line naming
a command's field refuses that command whatever else it says (unless it says CCNow is down:
test_ccnow_down_words.py); words naming no field decide
nothing: the command is sent again, alone, and a day of only such answers makes it `uncertain`
(a ship or cancel whose order took is done), never `refused`; a maintenance or a stretch when
nothing ran does not count. Also a chunked answer without a final line end, and a stop. Against
a fake CCNow on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from reconciler.config import RetryConfig, load_config
from reconciler.reconcile import Reconciler
from reconciler.sources.http import Gates, RequestFailed, request
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_actions import ActionSender, Tally, build
from reconciler.writes.in_flight import InFlight
from tests.conftest import call_cli, write_config
from tests.fake_providers import CCNOW_PASSWORD, FakeCCNow, Reply
from tests.writes.test_ccnow_actions import (
    ARGS,
    WORD,
    A,
    B,
    ccnow,
    commands,
    make_due,
    query,
    tracked,
)
from tests.writes.test_ccnow_answers import action_posts, of_type
from tests.writes.test_ccnow_unsettled import action_events, days_ago

MAINTENANCE = Reply(200, "error_message system down for maintenance\n")

# --- a line naming a field refuses its command, whatever else it says ------------------------


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("add-tracking", "error_message x_trackname_1 unknown tracking service"),
        ("adjust", "error_message Internal server error while processing x_amount_1"),
        ("adjust", "error_message X_AMOUNT_1 exceeds order total"),
        (
            "add-tracking",
            "error_message x_tracknumber_1 cannot be checked: unavailable for this carrier",
        ),
    ],
)
async def test_a_line_naming_a_field_refuses_its_command_whatever_else_it_says(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, words: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.always = Reply(200, words + "\n")
    result = await ccnow(cfg, action, A, *ARGS[action])
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", words)]
    assert action_events(tmp_path) == [("order.action_refused", WORD[action])]
    # Not retried for ever as an outage: nothing is left to send.
    assert (await ccnow(cfg, action, A, *ARGS[action])).code == 65
    assert len(action_posts(fake_ccnow)) == 1


async def test_a_mixed_answer_quotes_the_line_that_decided_each_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    named, other = "error_message x_notes_1 too long", "error_message Database error"
    fake_ccnow.script = [Reply(200, f"{named}\n{other}\n")]
    result = await ccnow(cfg, "ship", A, B, "--notes", "Thanks")
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", named), (B, "queued", other)]
    [refused] = of_type(tmp_path, "order.action_refused")
    assert (refused["order_id"], refused["answer"]) == (A, named)


# --- words naming no field decide nothing --------------------------------------------------


async def test_one_bad_command_neither_stalls_nor_ends_the_others_of_its_post(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # CCNow turns away every post holding B, in words naming no field; A is fine alone.
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    fake_ccnow.replies_for[B] = Reply(200, "error_message Tracking number already used\n")
    first = await ccnow(cfg, "ship", A, B)
    assert first.code == 75, first.stdout + first.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["queued", "queued"]
    await make_due(tmp_path)
    again = await ccnow(cfg, "ship", A, B)
    assert action_posts(fake_ccnow) == [[A, B], [A], [B]]  # each alone from then on
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded", "queued"], again.stderr
    await days_ago(tmp_path, "unsettled_since")
    last = await ccnow(cfg, "ship", A, B)
    assert last.code == 75, last.stdout + last.stderr
    said = "error_message Tracking number already used (for a day)"
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped"), (B, "uncertain", said)]
    assert action_events(tmp_path) == [
        ("order.action_succeeded", "ship"),
        ("order.action_uncertain", "ship"),
    ]
    assert fake_ccnow.orders == {A: "mark_shipped", B: "pending"}


@pytest.mark.parametrize(
    "words",
    [
        "error_message Discount exceeds order total",
        "error_message order is not pending",
        "error_message Database error, action not performed",
        "error_message No space left on device",
        "error_message Access denied",
    ],
)
async def test_a_day_of_answers_naming_no_field_makes_a_command_uncertain_never_refused(
    tmp_path: Path, fake_ccnow: FakeCCNow, words: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    fake_ccnow.always = Reply(200, words + "\n")
    for _ in range(2):
        await make_due(tmp_path)
        first = await ccnow(cfg, "adjust", A, "--amount", "9.00")
        assert first.code == 75, first.stdout + first.stderr
        assert commands(tmp_path) == [(A, "queued", words)]
    assert action_events(tmp_path) == []
    await days_ago(tmp_path, "unsettled_since")  # the day counts from the first such answer
    last = await ccnow(cfg, "adjust", A, "--amount", "9.00")
    assert last.code == 75, last.stdout + last.stderr
    said = f"{words} (for a day)"
    assert commands(tmp_path) == [(A, "uncertain", said)]
    [uncertain] = of_type(tmp_path, "order.action_uncertain")
    assert (uncertain["action"], uncertain["answer"]) == ("adjust", said)
    assert of_type(tmp_path, "order.action_refused") == []
    # For a person, never sent again.
    assert (await ccnow(cfg, "adjust", A, "--amount", "9.00")).code == 75
    assert len(action_posts(fake_ccnow)) == 3
    assert (await ccnow(cfg, "resolve", A, "--not-sent")).code == 0


async def test_a_ship_whose_order_took_is_done_when_its_day_ends(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    # Shipped in the backroom; CCNow turns the post away as a whole (a status query is
    # answered as usual).
    fake_ccnow.orders[A] = "mark_shipped"
    fake_ccnow.actions_answer = ["error_message order is not pending"]
    assert (await ccnow(cfg, "ship", A)).code == 75
    asked = len(fake_ccnow.requests)
    await days_ago(tmp_path, "unsettled_since")
    await make_due(tmp_path)
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (the order's status)")]
    assert action_events(tmp_path) == [("order.action_succeeded", "ship")]
    assert len(fake_ccnow.requests) == asked + 2  # the post, then the status read once


@pytest.mark.parametrize("gap", ["maintenance", "nothing-ran"])
async def test_a_maintenance_or_a_stop_of_more_than_a_day_does_not_end_a_command(
    tmp_path: Path, fake_ccnow: FakeCCNow, gap: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    words = "error_message Discount exceeds order total"
    fake_ccnow.script = [Reply(200, words + "\n")]
    assert (await ccnow(cfg, "adjust", A, "--amount", "9.00")).code == 75
    if gap == "maintenance":
        fake_ccnow.script = [MAINTENANCE]
        await make_due(tmp_path)
        assert (await ccnow(cfg, "adjust", A, "--amount", "9.00")).code == 75
    else:
        await days_ago(tmp_path, "next_attempt_at")  # due a day ago: nothing sent it since
    await days_ago(tmp_path, "unsettled_since")  # the clock the rule reads, were it still running
    fake_ccnow.script = [Reply(200, words + "\n")]
    assert (await ccnow(cfg, "adjust", A, "--amount", "9.00")).code == 75
    assert commands(tmp_path) == [(A, "queued", words)]
    assert action_events(tmp_path) == []


# --- a chunked answer without a final line end ----------------------------------------------


async def test_a_chunked_answer_whose_last_line_ends_with_a_status_word_is_read(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # A pending list that is one message, chunked, with no line end: nothing pending.
    fake_ccnow.always = Reply(200, "message no_pending_orders", chunked=True)
    polled = await call_cli("--config", write_config(tmp_path, ccnow=fake_ccnow), "catch-up")
    assert polled.code == 0, polled.stderr
    fake_ccnow.always = None
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, f"{A} mark_shipped", chunked=True)]
    fake_ccnow.orders[A] = "mark_shipped"  # CCNow ran the post, as its scripted answer says
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert action_posts(fake_ccnow) == [[A]]  # posted once: no retry
    # Its order's line, the last without its line end, may be a longer one cut short: the
    # order's status read decides (test_ccnow_commands_one_at_a_time.py).
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (the order's status)")]
    assert "ccnow.answer_cut" not in result.stderr


async def test_a_chunked_answer_cut_mid_word_is_retried_with_its_own_warning(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, f"{A} mark_shi", chunked=True)]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert action_posts(fake_ccnow) == [[A], [A]]
    assert "ccnow.answer_cut" in result.stderr


# --- a stop --------------------------------------------------------------------------------


async def test_a_post_the_stop_halts_counts_no_attempt_and_keeps_its_due_time(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    fake_ccnow.orders = {A: "pending"}
    in_flight = InFlight()
    loop = asyncio.get_running_loop()

    def stop_at_the_claim(statement: str) -> None:
        # SIGTERM lands as the claim is written, before the post leaves.
        if "SET state = 'sending'" in statement:
            loop.call_soon_threadsafe(in_flight.stop, 5.0)

    store = await Store.open(tmp_path / "reconciler.db")
    try:
        [(row, _)] = await cmds.record(store, build(config.ccnow[0], "ship", [A]), 0.0)
        async with store.transaction():
            # Six failed attempts before, due at 1000.
            await store.conn.execute(
                "UPDATE commands SET attempts = 6, next_attempt_at = 1000 WHERE id = ?", (row.id,)
            )
        [row] = await cmds.get(store, [row.id])
        await store.conn.set_trace_callback(stop_at_the_claim)
        async with aiohttp.ClientSession() as session:
            reconciler = Reconciler(config, store)
            sender = ActionSender(
                store, session, reconciler, config.ccnow, in_flight=in_flight, gates=Gates()
            )
            await sender.send([row], Tally())
    finally:
        await store.close()
    assert in_flight.stopping
    assert fake_ccnow.requests == []
    sql = "SELECT state, attempts, next_attempt_at, maybe_reached_at FROM commands"
    assert query(tmp_path, sql) == [("queued", 6, 1000.0, None)]


async def test_a_stop_during_a_long_backoff_after_a_503_returns_at_once_reaching_nothing(
    fake_ccnow: FakeCCNow,
) -> None:
    fake_ccnow.always = Reply(503, "busy", headers={"Retry-After": "3600"})
    halt = asyncio.Event()
    retry = RetryConfig(attempts=3, backoff_s=1.0, max_backoff_s=7200.0)
    async with aiohttp.ClientSession() as session:
        sent = asyncio.ensure_future(
            request(
                session,
                "POST",
                URL(fake_ccnow.url),
                headers={},
                data=b"x_clientid=x",
                timeout=aiohttp.ClientTimeout(total=5),
                gate=asyncio.Semaphore(1),
                retry=retry,
                max_body=1000,
                log=logging.getLogger("test"),
                halt=halt,
            )
        )
        await fake_ccnow.wait_until(lambda: len(fake_ccnow.requests) == 1)
        started = time.monotonic()
        halt.set()
        with pytest.raises(RequestFailed) as failed:
            await asyncio.wait_for(sent, 5)
    assert time.monotonic() - started < 2
    assert len(fake_ccnow.requests) == 1
    # A 503 turned the post away: it ran nothing, so a ship in it is not "maybe reached".
    assert (failed.value.word, failed.value.reached) == ("http_503", False)


async def test_a_refusal_cut_inside_a_field_name_refuses_no_other_command(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The line is cut to 200 characters before its field names are read: the cut lands inside
    # `x_orderid_12`. Was: read as `x_orderid_1`, the first command refused for the twelfth's
    # words. Now the cut word names nothing: the line decides nothing, each is sent later.
    ids = [f"500-00-{1001 + i}" for i in range(12)]
    fake_ccnow.orders = {i: "pending" for i in ids}
    cfg = await tracked(tmp_path, fake_ccnow, *ids)
    line = "error_message " + "w" * 174 + " x_orderid_12 is not pending"
    assert line.index("x_orderid_12") + len("x_orderid_1") == 200
    fake_ccnow.script = [Reply(200, line + "\n")]
    result = await ccnow(cfg, "ship", *ids)
    assert result.code == 75, result.stdout + result.stderr
    assert [(i, state) for i, state, _ in commands(tmp_path)] == [(i, "queued") for i in ids]
    assert of_type(tmp_path, "order.action_refused") == []
    assert fake_ccnow.orders == {i: "pending" for i in ids}
    # The next run sends them: CCNow takes each.
    await make_due(tmp_path)
    assert (await ccnow(cfg, "ship", *ids)).code == 0
    assert {state for _, state, _ in commands(tmp_path)} == {"succeeded"}
