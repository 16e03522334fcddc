"""A poll's CCNow lines read by the rules an action's answer follows: a documented status word
followed by a column that may be a refusal's code (`pending E42`, `pending NOK1`) or says a
failure (`pending ERR42`) is no status of the order's, neither the word (`pending`, as if the
line were clean) nor a new one (`pending ERR42`, moving the snapshot to it): that order's check
fails, its snapshot unchanged, and the words are logged (masked) once per answer. Columns of
data (a date, an amount, a carrier and its tracking number) still leave the status. A cut last
line asked again is compared as every other pair of an order's lines is (`same_answer`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_answer import OrderLine, order_line, parse_answer
from reconciler.sources.ccnow_words import may_refuse
from tests.conftest import Clock
from tests.fake_providers import FakeCCNow, ccnow_config
from tests.poller.test_ccnow_parts import ccnow, order_kinds, track  # noqa: F401
from tests.sources.test_ccnow import Collector, RawServer, chunked, failed, ok

X, Y = "396-10-1142", "397-10-1159"
CODED = ["pending E42", "pending ERR42", "pending NOK1", "PENDING e42", "mark_shipped USD R7"]
DATA = [
    "pending 2026-11-30 12.50",
    "pending\tUSD",
    "mark_shipped UPS 1Z999AA10123456784",
    "mark_shipped DHL JD014600006281230704",  # a code after its carrier: a tracking number
    "completed 2026-11-30T12:00:00Z",
    "pending $12.50",
]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.mark.parametrize("rest", CODED)
def test_a_code_after_a_status_word_may_be_a_refusal(rest: str) -> None:
    assert may_refuse(rest)


@pytest.mark.parametrize("rest", [*DATA, "pending", "pending review", "on hold 2"])
def test_data_and_other_words_are_no_refusal(rest: str) -> None:
    assert not may_refuse(rest)


@pytest.mark.parametrize("rest", CODED)
async def test_a_query_s_line_with_a_code_fails_that_order_alone(
    fake_ccnow: FakeCCNow,
    session: aiohttp.ClientSession,
    rest: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_ccnow.orders.update({X: rest, Y: "pending"})
    emit = Collector()
    with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
        await CCNowClient(ccnow_config(fake_ccnow.url), session).query([X, Y], emit)
    # Was `ok(X, "pending")` (its code a column of data) or `ok(X, "pending ERR42")`.
    assert emit.seen == [failed(X, "order_error"), ok(Y, "pending")]
    (record,) = [r for r in caplog.records if r.msg == "ccnow.status_with_code"]
    said = vars(record)["fields"]
    assert said == {"count": 1, "order_ids": [X], "words": rest}


@pytest.mark.parametrize("rest", DATA)
async def test_a_query_s_columns_of_data_still_leave_the_status(
    fake_ccnow: FakeCCNow, session: aiohttp.ClientSession, rest: str
) -> None:
    fake_ccnow.orders[X] = rest
    emit = Collector()
    await CCNowClient(ccnow_config(fake_ccnow.url), session).query([X], emit)
    assert emit.seen == [ok(X, rest.split()[0].lower())]


async def test_the_pending_list_leaves_out_a_line_with_a_code(
    fake_ccnow: FakeCCNow, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ccnow.orders.update({X: "pending NOK1", Y: "pending"})
    fake_ccnow.pending_statuses = {"pending NOK1", "pending"}
    with caplog.at_level(logging.WARNING, logger="reconciler.sources.ccnow"):
        listed = await CCNowClient(ccnow_config(fake_ccnow.url), session).pending_list()
    assert listed == [ok(Y, "pending")]  # was ok(X, "pending") too
    unread = [r for r in caplog.records if r.msg == "ccnow.pending_lines_unreadable"]
    assert [vars(r)["fields"]["order_ids"] for r in unread] == [[X]]


def test_an_action_s_answer_still_reads_the_status_and_its_columns() -> None:
    # The write side's rule (writes/ccnow_outcome.py reads `cut`) is left as it is.
    (line,) = parse_answer(f"{X} pending E42\n").orders
    assert (line.status, line.cut) == ("pending", True)


async def test_a_poll_s_code_leaves_the_snapshot_as_it_was(
    ccnow: tuple[CCNowCoordinator, Clock],  # noqa: F811
    fake_ccnow: FakeCCNow,
) -> None:
    coordinator, clock = ccnow
    await track(coordinator, clock, X)
    fake_ccnow.orders = {X: "processing"}
    await coordinator.full_pass(via="catch-up")
    for rest in ("pending E42", "pending ERR42"):
        fake_ccnow.orders = {X: rest}
        clock.now += 3600
        await coordinator.full_pass(via="catch-up")
    key = OrderKey("ccnow", "default", X)
    state = (await coordinator.store.orders.load([key]))[key]
    assert (state.status, state.failure_streak) == ("processing", 2)
    assert await order_kinds(coordinator) == [("order.discovered", X)]


# --- order_line: the dropped columns said once, by the line --------------------------------------


def test_order_line_says_its_dropped_columns_by_its_flag_alone() -> None:
    line = order_line(X, "pending 2026-11-30", None)
    assert isinstance(line, OrderLine)  # was (line, True): the flag twice
    assert line.cut and line.status == "pending"
    assert not order_line(X, "pending", None).cut


# --- a cut last line asked again: compared as every pair of an order's lines is ------------------


@pytest.mark.parametrize(
    ("last", "again", "decided"),
    [
        (f"{X} On_Hold", f"{X} on_hold", ok(X, "on_hold")),
        (f"{X} on  hold", f"{X} ON\thold", ok(X, "ON\thold")),
        (f"{X} error_message Order Locked", f"{X} error_message order  locked", "order_error"),
    ],
)
async def test_a_cut_last_line_asked_again_is_compared_without_case_or_blanks(
    session: aiohttp.ClientSession, last: str, again: str, decided: object
) -> None:
    first = chunked(f"{Y} pending\n{last}".encode())
    async with RawServer([first, chunked(again.encode())]) as server:
        emit = Collector()
        await CCNowClient(ccnow_config(server.url), session).query([Y, X], emit)
        # Was failed(X, "truncated_answer"): `another when asked again`.
        expected = failed(X, decided) if isinstance(decided, str) else decided
        assert emit.seen == [ok(Y, "pending"), expected]
        assert server.requests == 2
