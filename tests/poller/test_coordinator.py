"""The pass rules, in-process: fake clients injected through each account's coordinator, a real
SQLite store. One order's bad answer fails that order alone; an account fails when its answers
as a whole say so, with one source.failed and one source.recovered; a failing account is left
alone for its backoff; notifications make checks happen now."""

from __future__ import annotations

import asyncio
import functools
import logging

import pytest

from reconciler.passes.report import STARTED_FAILING_LINES
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.ccv import CCVCoordinator
from reconciler.sources.errors import (
    AuthenticationFailed,
    ProtocolError,
    SourceError,
    SourceUnavailable,
)
from tests.fake_providers import CCV_KEY
from tests.poller.conftest import CCV_IDS, POLL_INTERVAL_S, World, track

A, B, C = "396-10-1142", "397-10-1159", "398-10-1160"
FAILED, RECOVERED = ("source.failed", None), ("source.recovered", None)


# --- CCV ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (AuthenticationFailed("http 401"), "http 401"),
        (SourceUnavailable("maintenance"), "maintenance"),
        (ProtocolError(""), "protocol"),  # no text: the error's kind is the reason
    ],
)
async def test_an_account_refusal_changes_nothing_and_fails_it_once(
    world: World, refusal: SourceError, reason: str
) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.statuses = dict.fromkeys(CCV_IDS, "New")
    world.ccv_client.refusal = refusal
    for _ in range(3):
        report = await world.ccv.full_pass(via="catch-up")
        assert report.failed_sources == {"ccv/default": reason} and not report.ok
        world.clock.now += 60
    assert await world.events() == [FAILED]
    assert (await world.order("ccv", CCV_IDS[0])).status is None
    assert await world.failing("ccv")

    world.ccv_client.refusal = None
    report = await world.ccv.full_pass(via="catch-up")
    assert report.ok
    assert sorted(await world.events(), key=str) == sorted(
        [FAILED, RECOVERED, *(("order.discovered", i) for i in CCV_IDS)], key=str
    )
    assert not await world.failing("ccv")


async def test_one_orders_403_fails_that_order_alone(world: World) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.forbidden = {CCV_IDS[0]}
    others = CCV_IDS[1:]
    for status in ("New", "Completed"):
        world.ccv_client.statuses = dict.fromkeys(others, status)
        report = await world.ccv.full_pass(via="catch-up")
        # A failed check makes `catch-up` exit 75, but the account is not failing.
        assert report.failed == 1 and not report.failed_sources and not report.ok
        world.clock.now += 60
    events = await world.events()
    assert sorted(events) == sorted(
        [*(("order.discovered", i) for i in others), *(("order.status_changed", i) for i in others)]
    )
    assert (await world.order("ccv", CCV_IDS[0])).status is None


async def test_every_check_of_a_catch_up_failing_fails_the_account_and_one_answer_recovers_it(
    world: World,
) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.forbidden = set(CCV_IDS)
    report = await world.ccv.full_pass(via="catch-up")
    # The probe answering, a 403 of each order's own fails the orders, not the account.
    assert world.ccv_client.probes == 1 and not report.failed_sources and report.failed == 3
    assert await world.events() == []

    world.ccv_client.probe_error = AuthenticationFailed("http 403")  # the key refused
    for _ in range(2):
        report = await world.ccv.full_pass(via="catch-up")
        assert report.failed_sources == {"ccv/default": "every check failed (http_403)"}
    assert await world.events() == [FAILED]
    assert world.ccv_client.asked == CCV_IDS * 3  # every order asked, once per pass
    assert world.ccv_client.probes == 2  # the pass in the account's backoff asks none

    world.ccv_client.forbidden = set(CCV_IDS[1:])
    world.ccv_client.statuses = {CCV_IDS[0]: "New"}
    await world.ccv.full_pass(via="catch-up")
    assert await world.events() == [FAILED, ("order.discovered", CCV_IDS[0]), RECOVERED]


async def test_a_failing_account_is_left_alone_for_its_backoff_then_asked_one_order(
    world: World,
) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.refusal = AuthenticationFailed("http 401")
    await world.ccv.full_pass(via="catch-up")
    assert await world.failing("ccv")

    world.clock.now += POLL_INTERVAL_S - 1  # within the first backoff (one poll interval)
    assert await world.ccv.tick_due() == []
    assert world.ccv_client.asked == []

    world.ccv_client.refusal = None
    world.ccv_client.statuses = dict.fromkeys(CCV_IDS, "New")
    world.clock.now += 2
    [(name, report, is_pass)] = await world.ccv.tick_due()
    assert name == "ccv/default due" and is_pass and report.checked == 1  # a probe, not a storm
    assert len(world.ccv_client.asked) == 1
    assert await world.events() == [
        FAILED,
        ("order.discovered", world.ccv_client.asked[0]),
        RECOVERED,
    ]

    [(_, report, _)] = await world.ccv.tick_due()  # answering again: every due order is asked
    assert report.checked == 2


async def test_a_due_check_in_which_no_order_answered_asks_the_probe(world: World) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.statuses = dict.fromkeys(CCV_IDS, "New")
    await world.ccv.check(CCV_IDS[:2], via="poll")
    assert world.ccv_client.probes == 0  # orders answered: that proves the account

    # Two troubled orders, and the account answers the probe: the orders fail alone.
    world.ccv_client.forbidden = set(CCV_IDS)
    report = await world.ccv.check(CCV_IDS[:2], via="poll")
    assert world.ccv_client.probes == 1 and report.failed == 2 and not report.failed_sources
    assert not await world.failing("ccv")

    # A page served with 200 for everything, the probe too: the account fails.
    world.ccv_client.probe_error = ProtocolError("html page (http 200)")
    report = await world.ccv.check(CCV_IDS[:1], via="poll")
    assert report.failed_sources == {"ccv/default": "html page (http 200)"}
    assert (await world.events())[-1] == FAILED


async def answering(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Follow CCV_IDS, each answered once, and capture the warnings from then on."""
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.statuses = dict.fromkeys(CCV_IDS, "New")
    await world.ccv.check(CCV_IDS, via="poll")
    caplog.set_level(logging.WARNING, logger="reconciler")


def check_failed_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the orders of the `order.check_failed` lines logged so far."""
    lines = [r for r in caplog.records if r.getMessage() == "order.check_failed"]
    return [r.__dict__["fields"]["order_id"] for r in lines]


async def test_orders_that_start_failing_are_logged_while_the_account_answers(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await answering(world, caplog)
    logged = functools.partial(check_failed_lines, caplog)

    # The account answers the probe: each order fails on its own, one line when it starts.
    world.ccv_client.forbidden = set(CCV_IDS[:2])
    for _ in range(2):
        await world.ccv.check(CCV_IDS[:2], via="poll")
        assert logged() == CCV_IDS[:2]

    # The probe fails too: the order that starts failing now is the account's source.failed.
    world.ccv_client.forbidden = set(CCV_IDS)
    world.ccv_client.probe_error = ProtocolError("html page (http 200)")
    await world.ccv.check(CCV_IDS[2:], via="poll")
    assert (await world.events())[-1] == FAILED
    assert logged() == CCV_IDS[:2]


async def test_the_heartbeat_probes_only_when_nothing_answered_for_a_poll_interval(
    world: World,
) -> None:
    await world.ccv.heartbeat()  # never answered yet
    assert world.ccv_client.probes == 1
    world.clock.now += POLL_INTERVAL_S / 2
    await world.ccv.heartbeat()
    assert world.ccv_client.probes == 1
    world.clock.now += POLL_INTERVAL_S
    world.ccv_client.probe_error = SourceUnavailable("gateway 404")
    await world.ccv.heartbeat()
    assert world.ccv_client.probes == 2 and await world.events() == [FAILED]
    await world.ccv.heartbeat()  # resting: the failed probe is not repeated at once
    assert world.ccv_client.probes == 2


async def test_no_reason_carries_the_api_key(world: World) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.refusal = SourceUnavailable(f"refused key {CCV_KEY}")
    report = await world.ccv.full_pass(via="catch-up")
    [reason] = report.failed_sources.values()
    [event] = await world.store.events.history()
    state = await world.store.sources.state("ccv", "default")
    for text in (reason, event.body.decode(), str(state.last_error)):
        assert "refused key" in text and CCV_KEY not in text


async def test_a_reference_notified_before_its_order_is_tracked_makes_its_first_check_notified(
    world: World,
) -> None:
    assert await world.ccv.check_reference("INV-2041") is None  # remembered, nothing to check
    await track(world, "ccv", CCV_IDS[0], ref="INV-2041")
    await track(world, "ccv", CCV_IDS[1])
    world.ccv_client.statuses = dict.fromkeys(CCV_IDS, "New")
    passes = {name: (report, is_pass) for name, report, is_pass in await world.ccv.tick_due()}
    assert passes["ccv/default notification"][0].checked == 1
    assert passes["ccv/default due"][0].checked == 1
    # The notification's checks are no pass (`status`'s last pass, systemd STATUS=).
    assert (passes["ccv/default notification"][1], passes["ccv/default due"][1]) == (False, True)
    events = {d["order_id"]: d["via"] for d in await world.data()}
    assert events == {CCV_IDS[0]: "notification", CCV_IDS[1]: "poll"}

    report = await world.ccv.check_reference("INV-2041")  # a tracked order: checked now
    assert report is not None and report.checked == 1


async def test_a_cancelled_pass_is_not_swallowed_and_changes_no_health(world: World) -> None:
    await track(world, "ccv", *CCV_IDS)
    world.ccv_client.hold = asyncio.Event()
    task = asyncio.ensure_future(world.ccv.full_pass(via="catch-up"))
    await asyncio.wait_for(world.ccv_client.waiting.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await world.events() == []
    assert (await world.store.sources.state("ccv", "default")).failure_streak == 0


async def test_a_catch_up_asks_every_open_order_once_a_page_at_a_time(world: World) -> None:
    ids = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(5)]
    await track(world, "ccv", *ids)
    world.ccv_client.statuses = dict.fromkeys(ids, "New")
    world.ccv_client.statuses[ids[2]] = "Completed"  # an end state: asked no more
    ccv = CCVCoordinator(world.ccv.config, world.ccv_client, world.ccv.writer, page_orders=2)
    for _ in range(2):
        await ccv.full_pass(via="catch-up")
    assert sorted(world.ccv_client.asked) == sorted(ids + [i for i in ids if i != ids[2]])

    ccnow_ids = [f"{400 + n}-10-1000" for n in range(5)]
    await track(world, "ccnow", *ccnow_ids)
    world.ccnow_client.statuses = dict.fromkeys(ccnow_ids, "processing")
    ccnow = CCNowCoordinator(
        world.ccnow.config, world.ccnow_client, world.ccnow.writer, page_orders=2
    )
    report = await ccnow.full_pass(via="catch-up")
    assert report.checked == 5 and sorted(world.ccnow_client.queried) == sorted(ccnow_ids)


# --- CCNow -------------------------------------------------------------------------------------


async def test_the_pending_list_follows_new_orders_and_the_ones_that_left_it_are_queried(
    world: World,
) -> None:
    await track(world, "ccnow", A)
    world.ccnow_client.pending = {A, B}  # B was tracked by nobody
    report = await world.ccnow.pending_list_pass(via="poll")
    assert report.ok and world.ccnow_client.queried == []
    assert sorted(await world.events()) == [("order.discovered", A), ("order.discovered", B)]

    world.ccnow_client.pending = {B}
    world.ccnow_client.statuses = {A: "mark_shipped"}
    await world.ccnow.pending_list_pass(via="poll")
    assert world.ccnow_client.queried == [A]  # only the order that left the list
    assert (await world.order("ccnow", A)).status == "mark_shipped"


async def test_an_order_that_left_the_list_while_stopped_is_asked_once_the_queries_answer(
    world: World,
) -> None:
    await track(world, "ccnow", B)
    world.ccnow_client.pending = {A}
    await world.ccnow.pending_list_pass(via="poll")
    # Another process (the daemon restarted), which never read the list: A left it meanwhile,
    # and the start-up catch-up's queries fail.
    ccnow = CCNowCoordinator(world.ccnow.config, world.ccnow_client, world.ccnow.writer)
    world.ccnow_client.pending = set()
    world.ccnow_client.query_error = SourceUnavailable("maintenance")
    await ccnow.full_pass(via="catch-up")
    assert await world.failing("ccnow")

    world.ccnow_client.query_error = None
    world.ccnow_client.statuses = {A: "completed", B: "processing"}
    world.clock.now += POLL_INTERVAL_S
    await ccnow.tick_due()  # the probe asks B, the order due soonest, and the account answers
    assert not await world.failing("ccnow")
    world.ccnow_client.queried.clear()
    await ccnow.pending_list_pass(via="poll")  # and the next poll asks what the catch-up meant to
    assert sorted(world.ccnow_client.queried) == [A, B]
    assert (await world.order("ccnow", A)).status == "completed"


async def test_a_probe_that_says_nothing_keeps_the_backoff_and_asks_another_order_next(
    world: World,
) -> None:
    await track(world, "ccnow", A, B)
    world.ccnow_client.query_error = SourceUnavailable("maintenance")
    await world.ccnow.check([A, B], via="poll")
    assert await world.failing("ccnow")
    world.ccnow_client.query_error = None
    world.ccnow_client.silent = {A, B}  # answers come, with no line for either order
    world.ccnow_client.queried.clear()
    probed_at = []
    for _ in range(30):  # half an hour, a due tick a minute
        world.clock.now += 60
        asked = len(world.ccnow_client.queried)
        await world.ccnow.tick_due()
        if len(world.ccnow_client.queried) > asked:
            probed_at.append(world.clock.now)
    # One probe per backoff period (5 minutes, then 10), each asking another order.
    started = probed_at[0] - 300
    assert [t - started for t in probed_at] == [300, 900]
    assert sorted(world.ccnow_client.queried) == [A, B]
    assert await world.events() == [FAILED]
    state = await world.store.sources.state("ccnow", "default")
    assert state.failure_streak == 3 and state.last_error == "maintenance"


async def test_a_failing_pending_list_queries_nothing_and_the_queries_do_not_recover_it(
    world: World,
) -> None:
    await track(world, "ccnow", A, B)
    world.ccnow_client.statuses = {A: "processing", B: "processing"}
    world.ccnow_client.list_error = SourceUnavailable("maintenance")
    for _ in range(3):  # poll after poll: the list fails, the due queries answer
        report = await world.ccnow.pending_list_pass(via="poll")
        assert report.failed_sources == {"ccnow/default": "maintenance"}
        assert world.ccnow_client.queried == []
        report = await world.ccnow.check([A, B], via="poll")
        assert report.checked == 2 and report.failed == 0
        world.ccnow_client.queried.clear()
    assert [e for e in await world.events() if e[1] is None] == [FAILED]

    world.ccnow_client.list_error = None
    await world.ccnow.pending_list_pass(via="poll")
    assert [e for e in await world.events() if e[1] is None] == [FAILED, RECOVERED]


async def test_every_ccnow_query_of_a_catch_up_failing_fails_the_account(world: World) -> None:
    await track(world, "ccnow", A, B)
    world.ccnow_client.errors = {A, B}
    report = await world.ccnow.full_pass(via="catch-up")
    assert report.failed_sources == {"ccnow/default": "every check failed (order_error)"}
    assert await world.events() == [FAILED]

    world.ccnow_client.errors = {B}  # one order answering is the account answering
    world.ccnow_client.statuses = {A: "processing"}
    report = await world.ccnow.full_pass(via="catch-up")
    assert report.failed == 1 and not report.failed_sources
    assert await world.events() == [FAILED, ("order.discovered", A), RECOVERED]


async def test_an_error_line_does_not_recover_an_account_error_lines_helped_fail(
    world: World,
) -> None:
    # A catch-up failing with one order's own error line and two answers without a line is
    # "every check failed (missing)": a probe answering that error line recovered the account,
    # the next catch-up failed it again, and so on.
    await track(world, "ccnow", A, B, C)
    world.ccnow_client.errors = {A}
    world.ccnow_client.silent = {B, C}
    report = await world.ccnow.full_pass(via="catch-up")
    assert report.failed_sources == {"ccnow/default": "every check failed (missing)"}
    probed = set()
    for _ in range(60):  # an hour, a due tick a minute: every order is probed
        world.clock.now += 60
        world.ccnow_client.queried.clear()
        await world.ccnow.tick_due()
        probed.update(world.ccnow_client.queried)
    assert probed == {A, B, C}
    assert await world.events() == [FAILED]

    world.ccnow_client.silent = set()
    world.ccnow_client.statuses = {B: "processing"}  # a status: the account answers
    await world.ccnow.full_pass(via="catch-up")
    assert [e for e in await world.events() if e[1] is None] == [FAILED, RECOVERED]
    assert not (await world.store.sources.state("ccnow", "default")).failed_on_own_word


async def test_a_ccnow_notification_polls_the_list_and_follows_the_ids_it_names(
    world: World,
) -> None:
    world.ccnow_client.pending = {A}
    world.ccnow_client.statuses = {C: "processing"}
    report = await world.ccnow.notified([C])
    assert report.checked == 2 and report.ok
    assert (await world.order("ccnow", C)).status == "processing"
    assert [d["via"] for d in await world.data()] == ["notification", "notification"]


async def test_a_pass_in_which_many_orders_start_failing_logs_a_bounded_number_of_lines(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [f"7e57a11c-0000-4000-8000-{n:012d}" for n in range(STARTED_FAILING_LINES + 30)]
    await track(world, "ccv", *ids)
    world.ccv_client.statuses = dict.fromkeys(ids, "New")
    await world.ccv.check(ids, via="poll")
    caplog.set_level(logging.WARNING, logger="reconciler")
    # A key's rights cut for most orders while the account still answers for some.
    world.ccv_client.forbidden = set(ids[1:])
    await world.ccv.check(ids, via="poll")
    lines = [r.__dict__["fields"] for r in caplog.records if r.name == "reconciler.poller"]
    single = [f for f in lines if "order_id" in f]
    (summed,) = [f for f in lines if "more" in f]
    assert len(single) == STARTED_FAILING_LINES
    assert summed["more"] == len(ids) - 1 - STARTED_FAILING_LINES


async def test_an_order_failing_alone_after_an_outage_is_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await answering(world, caplog)
    logged = functools.partial(check_failed_lines, caplog)

    # An outage: every check fails, the account's source.failed line is theirs.
    world.ccv_client.forbidden = set(CCV_IDS)
    world.ccv_client.probe_error = ProtocolError("html page (http 200)")
    await world.ccv.check(CCV_IDS, via="poll")
    assert (await world.events())[-1] == FAILED and logged() == []
    # It ends, but one order is refused on its own from now on: that is its failure, logged
    # once, though the outage had already counted failures for it.
    world.ccv_client.forbidden = {CCV_IDS[0]}
    world.ccv_client.probe_error = None
    for _ in range(3):
        await world.ccv.check(CCV_IDS, via="poll")
    assert logged() == [CCV_IDS[0]]
