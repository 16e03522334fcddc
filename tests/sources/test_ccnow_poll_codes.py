"""A poll's CCNow lines: a documented status word followed by columns of data reads as that
status, whatever the data looks like (a tracking number alone or before its carrier, a date, two
parcels, a currency run into its amount): a rule that took letters-then-a-digit for a refusal's
code failed such orders' checks on every pass and left a new order on the pending list
unfollowed. (An action's answer is read by its own rule: writes/ccnow_outcome.py.) A cut last
line asked again is compared as every other pair of an order's lines is (`same_answer`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.sources.ccnow import CCNowClient
from reconciler.sources.ccnow_answer import OrderLine, order_line, parse_answer
from tests.conftest import Clock
from tests.fake_providers import FakeCCNow, ccnow_config
from tests.poller.test_ccnow_parts import ccnow, order_kinds, track  # noqa: F401
from tests.sources.test_ccnow import Collector, RawServer, chunked, failed, ok

X, Y = "396-10-1142", "397-10-1159"
DATA = [
    "pending 2026-11-30 12.50",
    "pending\tUSD",
    "mark_shipped UPS 1Z999AA10123456784",
    "mark_shipped DHL JD014600006281230704",
    "completed 2026-11-30T12:00:00Z",
    "pending $12.50",
    "pending E42",  # a code or data: nothing says which, and the order is pending either way
    "completed JD014600006281230704",  # a tracking number alone
    "completed JD014600006281230704 DHL",  # before its carrier
    "completed UPS 1Z 999 AA1 01 2345 6784",  # written with spaces
    "completed 2026-11-30 LZ123456789US",  # after a date
    "completed DHL JD0146000062 JD0146000063",  # two parcels
    "pending USD12.50",
    "pending EUR-10.00",
    "pending Nov-30-2026",
]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.mark.parametrize("rest", DATA)
async def test_a_query_s_columns_of_data_still_leave_the_status(
    fake_ccnow: FakeCCNow, session: aiohttp.ClientSession, rest: str
) -> None:
    fake_ccnow.orders[X] = rest
    emit = Collector()
    await CCNowClient(ccnow_config(fake_ccnow.url), session).query([X], emit)
    assert emit.seen == [ok(X, rest.split()[0].lower())]


async def test_the_pending_list_reads_a_status_before_columns_of_data(
    fake_ccnow: FakeCCNow, session: aiohttp.ClientSession
) -> None:
    fake_ccnow.orders.update({X: "pending USD12.50", Y: "pending"})
    fake_ccnow.pending_statuses = {"pending USD12.50", "pending"}
    listed = await CCNowClient(ccnow_config(fake_ccnow.url), session).pending_list()
    assert sorted(o.key.order_id for o in listed) == [X, Y]
    assert {o.status for o in listed} == {"pending"}


def test_an_action_s_answer_still_reads_the_status_and_its_columns() -> None:
    # The write side's rule (writes/ccnow_outcome.py reads `cut`) is left as it is.
    (line,) = parse_answer(f"{X} pending E42\n").orders
    assert (line.status, line.cut) == ("pending", True)


async def test_a_followed_order_s_status_before_a_tracking_number_is_its_status(
    ccnow: tuple[CCNowCoordinator, Clock],  # noqa: F811
    fake_ccnow: FakeCCNow,
) -> None:
    coordinator, clock = ccnow
    await track(coordinator, clock, X)
    fake_ccnow.orders = {X: "mark_shipped"}
    await coordinator.full_pass(via="catch-up")
    fake_ccnow.orders = {X: "completed JD014600006281230704 DHL"}
    clock.now += 3600
    await coordinator.full_pass(via="catch-up")
    key = OrderKey("ccnow", "default", X)
    state = (await coordinator.store.orders.load([key]))[key]
    assert (state.status, state.failure_streak) == ("completed", 0)


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
