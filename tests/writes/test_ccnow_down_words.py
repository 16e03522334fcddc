"""What says CCNow is down in an answer to an action's post (l2): phrases, not a bare `down` or
`unavailable`, checked before the field names a line holds; how long such lines may keep a
command queued; and a chunked answer whose last line has no line end but reads whole. Against a
fake CCNow on 127.0.0.1, the sender's clock moved as the daemon's would be, hour by hour."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import CCNowConfig, load_config
from reconciler.reconcile import Reconciler
from reconciler.sources.ccnow_answer import says_down
from reconciler.sources.ccnow_cut import (
    is_complete,
    read_complete,
    read_last_line,
    undecided_line,
)
from reconciler.sources.http import Gates
from reconciler.sources.http import Reply as HTTPReply
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.migrations import MIGRATIONS, statements
from reconciler.writes.ccnow_actions import ActionSender, build
from tests.conftest import write_config
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
from tests.writes.test_ccnow_answers import action_posts

DAY = 86400.0
HOUR = 3600.0


@dataclass
class Clock:
    """The sender's clock, moved by the test."""

    now: float

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def sender(
    tmp_path: Path, fake: FakeCCNow, clock: Clock
) -> AsyncIterator[tuple[Store, ActionSender, CCNowConfig]]:
    config = load_config(write_config(tmp_path, ccnow=fake))
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        async with aiohttp.ClientSession() as session:
            reconciler = Reconciler(config, store)
            actions = ActionSender(
                store, session, reconciler, config.ccnow, clock=clock, gates=Gates()
            )
            yield store, actions, config.ccnow[0]
    finally:
        await store.close()


async def sent_when_due(
    store: Store, actions: ActionSender, clock: Clock, command_id: int, until: float
) -> cmds.Command:
    """Send a queued command each time it is due, as a running daemon does, until it ends or
    its next attempt is after `until`; return it as it stands then."""
    while True:
        [c] = await cmds.get(store, [command_id])
        if c.state != "queued" or c.next_attempt_at > until:
            return c
        clock.now = max(clock.now, c.next_attempt_at)
        await actions.send_due()


def action_events(tmp_path: Path) -> list[str]:
    sql = "SELECT type FROM events WHERE type LIKE 'order.action%' ORDER BY seq"
    return [t for (t,) in query(tmp_path, sql)]


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)


# --- words about the command are no outage ----------------------------------------------------


@pytest.mark.parametrize(
    "words",
    [
        "error_message Discount unavailable for this order",
        "error_message price marked down already",
        "error_message Offline orders cannot be discounted",
    ],
)
async def test_a_refusal_with_a_word_of_an_outage_in_it_ends_after_a_day(
    tmp_path: Path, fake_ccnow: FakeCCNow, words: str
) -> None:
    # Taken for an outage, it started no day: sent again every hour for ever, with no event.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.always = Reply(200, words + "\n")
    clock = Clock(time.time())
    start = clock.now
    async with sender(tmp_path, fake_ccnow, clock) as (store, actions, cfg):
        taken = await actions.take(build(cfg, "adjust", [A], amount="9.00"))
        c = await sent_when_due(store, actions, clock, taken.rows[0].id, start + 2 * DAY)
    assert (c.state, c.answer) == ("uncertain", f"{words} (for a day)")
    assert start + DAY <= c.closed_at < start + DAY + HOUR  # type: ignore[operator]
    assert action_events(tmp_path) == ["order.action_uncertain"]


# --- lines saying CCNow is down: no day, but three days at most -------------------------------


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("adjust", "error_message system down for maintenance"),
        ("adjust", "error_message Service Unavailable"),
        ("add-tracking", "error_message Tracking temporarily unavailable, try again later"),
        ("ship", "error_message The server is down"),
    ],
)
async def test_lines_saying_ccnow_is_down_keep_a_command_queued_three_days_then_uncertain(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, words: str
) -> None:
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.always = Reply(200, words + "\n")  # the status read at the end too
    clock = Clock(time.time())
    start = clock.now
    amount = "9.00" if action == "adjust" else None
    carrier, number = ("DHL", "JD01") if action == "add-tracking" else (None, None)
    async with sender(tmp_path, fake_ccnow, clock) as (store, actions, cfg):
        new = build(cfg, action, [A], amount=amount, carrier=carrier, number=number)
        [row] = (await actions.take(new)).rows
        # Past a day: a maintenance starts no day, so it is still queued, with no event.
        c = await sent_when_due(store, actions, clock, row.id, start + 2 * DAY)
        assert (c.state, c.answer) == ("queued", words)
        assert action_events(tmp_path) == []
        c = await sent_when_due(store, actions, clock, row.id, start + 5 * DAY)
    assert (c.state, c.answer) == ("uncertain", f"{words} (for 3 days)")
    assert start + 3 * DAY <= c.closed_at < start + 3 * DAY + HOUR  # type: ignore[operator]
    assert action_events(tmp_path) == ["order.action_uncertain"]
    assert fake_ccnow.actions == []


async def test_the_three_days_count_from_the_first_answer_a_maintenance_included(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # Two and a half days of maintenance, then a refusal naming no field: the day would end
    # at 3.5 days; the three days end first.
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.always = Reply(200, "error_message system down for maintenance\n")
    clock = Clock(time.time())
    start = clock.now
    async with sender(tmp_path, fake_ccnow, clock) as (store, actions, cfg):
        [row] = (await actions.take(build(cfg, "adjust", [A], amount="9.00"))).rows
        await sent_when_due(store, actions, clock, row.id, start + 2.5 * DAY)
        words = "error_message Discount exceeds order total"
        fake_ccnow.always = Reply(200, words + "\n")
        c = await sent_when_due(store, actions, clock, row.id, start + 5 * DAY)
    assert (c.state, c.answer) == ("uncertain", f"{words} (for 3 days)")
    assert start + 3 * DAY <= c.closed_at < start + 3 * DAY + HOUR  # type: ignore[operator]


async def test_a_command_in_its_day_at_the_upgrade_counts_its_three_days_from_that_day(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    db = tmp_path / "reconciler.db"
    now = time.time()
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for script in MIGRATIONS[:19]:
            for sql in statements(script):
                conn.execute(sql)
        conn.execute("PRAGMA user_version = 19")
        conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
        conn.execute(
            "INSERT INTO commands (account, order_id, action, idempotency_key, amount, state, "
            "attempts, next_attempt_at, answer, created_at, unsettled_since) VALUES ('default', "
            "?, 'adjust', 'k', '9.00', 'queued', 5, ?, 'error_message Database error', ?, ?)",
            (A, now, now - 2.6 * DAY, now - 2.5 * DAY),
        )
    fake_ccnow.orders = {A: "pending"}
    fake_ccnow.always = Reply(200, "error_message system down for maintenance\n")
    clock = Clock(now)
    async with sender(tmp_path, fake_ccnow, clock) as (store, actions, _cfg):
        c = await sent_when_due(store, actions, clock, 1, now + 2 * DAY)
    assert c.state == "uncertain"
    assert now + 0.5 * DAY <= c.closed_at < now + 0.5 * DAY + HOUR  # type: ignore[operator]


# --- a line saying CCNow is down names no field -----------------------------------------------


@pytest.mark.parametrize(
    ("action", "words", "held"),
    [
        (
            "ship",
            "error_message system down for maintenance: x_action unavailable until 10:00",
            [A, B],
        ),
        # About command 1 only: the other goes again at once (m1 finding 2).
        (
            "add-tracking",
            "error_message x_tracknumber_1 cannot be checked now, try again later",
            [A],
        ),
    ],
)
async def test_a_line_saying_ccnow_is_down_refuses_nothing_whatever_field_it_names(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, words: str, held: list[str]
) -> None:
    fake_ccnow.orders = {A: "pending", B: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A, B)
    fake_ccnow.script = [Reply(200, words + "\n")]
    first = await ccnow(cfg, action, A, B, *ARGS[action])
    assert first.code == 75, first.stdout + first.stderr
    assert [(o, s, a) for o, s, a in commands(tmp_path) if o in held] == [
        (o, "queued", words) for o in held
    ]
    assert [s for o, s, _ in commands(tmp_path) if o not in held] == ["succeeded"] * (2 - len(held))
    await make_due(tmp_path)
    again = await ccnow(cfg, action, A, B, *ARGS[action])
    assert again.code == 0, again.stdout + again.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded", "succeeded"]
    assert sorted((o, a) for o, a, _ in fake_ccnow.actions) == [
        (A, WORD[action]),
        (B, WORD[action]),
    ]


# --- a chunked answer without a final line end ------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body", "answer"),
    [
        ("ship", f"{A} mark_shipped\t2026-11-30", "succeeded"),
        ("cancel", f"{A} canceled", "succeeded"),
    ],
)
async def test_a_chunked_answer_whose_last_line_reads_whole_is_taken_at_once(
    tmp_path: Path, fake_ccnow: FakeCCNow, action: str, body: str, answer: str
) -> None:
    # Taken for cut: an adjust was uncertain, a ship posted again and again.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.always = Reply(200, body, chunked=True)
    result = await ccnow(cfg, action, A, *ARGS[action])
    assert result.code == (0 if answer == "succeeded" else 65), result.stdout + result.stderr
    assert [state for _, state, _ in commands(tmp_path)] == [answer]
    assert action_posts(fake_ccnow) == [[A]]
    assert "ccnow.answer_cut" not in result.stderr


@pytest.mark.parametrize(
    ("last", "whole"),
    [
        (f"{A} pending", True),
        (f"{A} MARK_SHIPPED 2026-11-30", True),
        (f"{A} mark_shipped\t2026-11-30\tUPS", True),
        ("message no_pending_orders", True),
        # An error line's words decide: cut, `x_orderid_12` reads `x_orderid_1` (another
        # command refused), `... down for maintenance` reads as a refusal. Posted again: an
        # answer of error lines applied nothing.
        (f"{A} error_message unknown order", False),
        ("error_message x_amount_1 exceeds order total", False),
        ("error_message x_orderid_1", False),
        (f"{A} pend", False),
        (f"{A} mark_shi", False),
        (f"{A} on hol", False),
        (f"{A} error_mess", False),
        ("error_mess", False),
        ("message no_pending", False),
        (f"{A[:6]}", False),
    ],
)
def test_a_chunked_answer_s_last_line_is_whole_when_the_line_reader_reads_it_whole(
    last: str, whole: bool
) -> None:
    body = f"{B} pending\n{last}".encode()
    reply = HTTPReply(200, body, "text/plain", 0.0, framed=False, chunked=True)
    assert is_complete(reply) is whole


@pytest.mark.parametrize("last", ["pend", "complete"])
def test_a_framed_cut_word_is_undecided_for_reads_alone(last: str) -> None:
    # An action's answer ending so is lost (`is_complete`), never one with its last line left
    # out: the writes' helper says so itself, whatever ran before it (was: only a docstring's
    # promise that is_complete had turned it away).
    reply = HTTPReply(200, f"{B} pending\n{A} {last}".encode(), "text/plain", 0.0, framed=True)
    assert undecided_line(reply) is None and not is_complete(reply)
    assert read_last_line(reply, query=True) == (None, A) and read_complete(reply)


async def test_a_chunked_error_line_without_its_line_end_refuses_nothing(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # `error_message x_orderid_12 is not pending` cut to `error_message x_orderid_1` refused
    # command 1 for good; an answer of error lines applied nothing, so it is posted again.
    fake_ccnow.orders = {A: "pending"}
    cfg = await tracked(tmp_path, fake_ccnow, A)
    fake_ccnow.script = [Reply(200, "error_message x_orderid_1", chunked=True)]
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert [state for _, state, _ in commands(tmp_path)] == ["succeeded"]
    assert "ccnow.answer_cut" in result.stderr


@pytest.mark.parametrize(
    ("line", "down"),
    [
        ("error_message system down for maintenance", True),
        ("error_message CCNow is temporarily offline", True),
        ("error_message Service Unavailable", True),
        ("error_message x_tracknumber_1 cannot be checked now, try again later", True),
        ("error_message Order is down to zero", False),
        ("error_message price is down already", False),
        ("error_message Discount unavailable for this order", False),
    ],
)
def test_only_a_phrase_about_ccnow_itself_says_it_is_down(line: str, down: bool) -> None:
    assert says_down(line) is down
