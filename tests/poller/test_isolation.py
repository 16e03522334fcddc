"""Invariant 7, isolation: one order's bad answer fails that order alone; an account fails when
its answers as a whole say so, with one source.failed and one source.recovered (issue 10)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import Config, load_config
from reconciler.metrics import Metrics
from reconciler.model import OrderKey, OrderState
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinator import Coordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.schedule import NOT_FOUND_CONFIRM_S
from reconciler.sources.ccv import PROBE_ORDER_ID
from reconciler.sources.http import Gates
from reconciler.store import Store, StoreError
from tests.conftest import (
    Clock,
    call_cli,
    cli_env,
    daemon_here,
    free_port,
    poll_until,
    read_events,
    write_config,
)
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV, Reply, html_page

CCV_IDS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 5)]
CCNOW_IDS = ["396-10-1142", "397-10-1159", "398-10-1160"]
FORBIDDEN = Reply(403, '{"message": "Forbidden"}', "application/json")
GATEWAY_404 = Reply(404, "<html><body><h1>404 Not Found</h1></body></html>", "text/html")


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def source_events(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events if e["type"].startswith("source.")]


@pytest.fixture
async def ccv_reconciler(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCVCoordinator, Config, Clock]]:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(write_config(tmp_path, ccv=fake_ccv))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    try:
        await store.orders.track("ccv", "default", [(i, None) for i in CCV_IDS], clock.now)
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            yield Coordinators.build(config, writer, session, Gates()).ccv["default"], config, clock
    finally:
        await store.close()


async def kinds_of(reconciler: Coordinator[Any]) -> list[tuple[str, str | None]]:
    return [(e.type, e.order_id) for e in await reconciler.store.events.history()]


async def source_kinds(coordinator: Coordinator[Any]) -> list[str]:
    return [kind for kind, order_id in await kinds_of(coordinator) if order_id is None]


async def event_data(coordinator: Coordinator[Any]) -> list[dict[str, Any]]:
    """Return each event's `data`, as a sink receives it."""
    return [json.loads(e.body)["data"] for e in await coordinator.store.events.history()]


async def state_of(coordinator: Coordinator[Any], order_id: str) -> OrderState:
    key = OrderKey(coordinator.source, "default", order_id)
    return (await coordinator.store.orders.load([key]))[key]


@pytest.fixture
async def ccnow_reconciler(
    tmp_path: Path, fake_ccnow: FakeCCNow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCNowCoordinator, Config]]:
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)
    config = load_config(write_config(tmp_path, ccnow=fake_ccnow))
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        await store.orders.track("ccnow", "default", [(i, None) for i in CCNOW_IDS], 1.0)
        async with aiohttp.ClientSession() as session:
            yield (
                Coordinators.build(config, Reconciler(config, store), session, Gates()).ccnow[
                    "default"
                ],
                config,
            )
    finally:
        await store.close()


# --- item 1: a 403 for one CCV order ------------------------------------------------------------


async def test_a_403_for_one_ccv_order_fails_that_order_alone(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    ccv, _, clock = ccv_reconciler
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "AwaitingPayment")
    fake_ccv.replies[CCV_IDS[1]] = FORBIDDEN
    first = await ccv.full_pass(via="catch-up")
    assert not first.ok  # a check failed: `catch-up` exits 75
    others = [i for i in CCV_IDS if i != CCV_IDS[1]]
    assert sorted(await kinds_of(ccv)) == sorted(("order.discovered", i) for i in others)

    # Pass after pass, the other orders are still checked and the account is not failed.
    for status in ("New", "Completed"):
        clock.now += 60
        fake_ccv.orders.update(dict.fromkeys(others, status))
        report = await ccv.full_pass(via="catch-up")
        assert report.failed == 1 and not report.failed_sources
    events = await ccv.store.events.history()
    assert [e for e in events if e.type.startswith("source.")] == []
    changes = [(e.order_id, json.loads(e.body)["data"]["status"]) for e in events[3:]]
    assert sorted(changes) == sorted((i, s) for i in others for s in ("New", "Completed"))
    assert (await state_of(ccv, CCV_IDS[1])).status is None


async def test_a_403_for_one_ccv_order_in_the_daemon(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    fake_ccv.replies[CCV_IDS[0]] = FORBIDDEN
    cfg = write_config(
        tmp_path, ccv=fake_ccv, ccv_extra='min_interval = "0.5s"\nmax_interval = "1s"'
    )
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    others = CCV_IDS[1:]
    async with daemon_here(cfg, cli_env()):
        await poll_until(lambda: len(read_events(tmp_path)) >= 3, 20, "start-up discovery")
        fake_ccv.orders.update(dict.fromkeys(others, "FulfillmentDone"))

        def changed() -> set[str]:
            return {
                e["subject"] for e in read_events(tmp_path) if e["type"] == "order.status_changed"
            }

        await poll_until(lambda: changed() == set(others), 20, "every other order's change")
        # The forbidden order was asked again meanwhile, and failed alone.
        await poll_until(
            lambda: len(fake_ccv.requests_for(CCV_IDS[0])) >= 3, 20, "the 403 order re-asked"
        )
    assert source_events(read_events(tmp_path)) == []


# --- item 4: a gateway's 404 is no "order not found" ------------------------------------------


async def test_a_gateway_404_is_an_account_failure_and_no_order_is_lost(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    ccv, _, clock = ccv_reconciler
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "AwaitingPayment")
    assert (await ccv.full_pass(via="catch-up")).ok

    fake_ccv.always = GATEWAY_404
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "Failed")
    for _ in range(2):
        clock.now += NOT_FOUND_CONFIRM_S + 1
        assert not (await ccv.full_pass(via="catch-up")).ok
    assert (await kinds_of(ccv))[4:] == [("source.failed", None)]
    for order_id in CCV_IDS:
        state = await state_of(ccv, order_id)
        assert state.status == "AwaitingPayment" and not state.not_found

    fake_ccv.always = None
    clock.now += 60
    assert (await ccv.full_pass(via="catch-up")).ok
    later = (await ccv.store.events.history())[5:]
    assert sorted((e.type, e.order_id) for e in later) == sorted(
        [("source.recovered", None)] + [("order.status_changed", i) for i in CCV_IDS],
        key=str,
    )
    statuses = {json.loads(e.body)["data"]["status"] for e in later if e.order_id is not None}
    assert statuses == {"Failed"}


async def test_a_gateway_404_in_the_daemon_fails_the_account_and_the_failed_is_seen(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Issue 10 item 4, as reported: a gateway answers 404 pages for a while, meanwhile every
    # order moves to Failed.
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "AwaitingPayment")
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        # A failing account is probed once per backoff period, from poll_interval on.
        ccv_extra='poll_interval = "1s"\nmin_interval = "0.5s"\nmax_interval = "1s"\n'
        'status_intervals = { AwaitingPayment = "0.5s" }',
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    env = cli_env(RECONCILER_RECEIVER_SECRET="receiver-secret-0123456789abcdef")
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS, env=env)).code == 0

    def seen(kind: str) -> list[dict[str, Any]]:
        return [e for e in read_events(tmp_path) if e["type"] == kind]

    async with daemon_here(cfg, env), aiohttp.ClientSession() as http:
        await poll_until(lambda: len(seen("order.discovered")) == 4, 20, "start-up discovery")
        fake_ccv.always = GATEWAY_404
        fake_ccv.orders = dict.fromkeys(CCV_IDS, "Failed")
        await poll_until(lambda: seen("source.failed"), 20, "source.failed")
        assert await healthz(http, port) == 503
        fake_ccv.always = None
        await poll_until(
            lambda: len(seen("order.status_changed")) == 4 and seen("source.recovered"),
            20,
            "every Failed seen, and the account back",
        )
    assert seen("order.not_found") == []
    assert len(seen("source.failed")) == len(seen("source.recovered")) == 1
    assert {e["data"]["status"] for e in seen("order.status_changed")} == {"Failed"}


async def test_a_fresh_order_never_found_is_reported_at_its_first_json_404(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    ccv, _, _ = ccv_reconciler
    await ccv.store.orders.untrack("ccv", "default", CCV_IDS[2:])
    fake_ccv.orders = {CCV_IDS[0]: "New"}
    assert (await ccv.full_pass(via="catch-up")).ok
    assert sorted(await kinds_of(ccv)) == [
        ("order.discovered", CCV_IDS[0]),
        ("order.not_found", CCV_IDS[1]),
    ]


async def test_a_gateway_page_labelled_json_is_no_not_found_even_for_a_fresh_order(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    # A mistyped id shows at once only on CCV's own 404; a page merely labelled JSON is a
    # gateway's, and says nothing about the order.
    ccv, _, _ = ccv_reconciler
    await ccv.store.orders.untrack("ccv", "default", CCV_IDS[1:])
    fake_ccv.replies[CCV_IDS[0]] = Reply(404, GATEWAY_404.body, "application/json")
    fake_ccv.replies[PROBE_ORDER_ID] = fake_ccv.replies[CCV_IDS[0]]  # the probe's too
    assert not (await ccv.full_pass(via="catch-up")).ok
    assert await kinds_of(ccv) == [("source.failed", None)]
    state = await state_of(ccv, CCV_IDS[0])
    assert (state.status, state.not_found) == (None, False)


async def test_a_found_order_is_reported_missing_only_when_confirmed_minutes_later(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock],
    fake_ccv: FakeCCV,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reconciler, _, clock = ccv_reconciler
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "AwaitingPayment")
    await reconciler.full_pass(via="catch-up")
    found = await kinds_of(reconciler)

    def failed_lines() -> list[tuple[str, str]]:
        return [
            (r.fields["order_id"], r.fields["reason"])  # type: ignore[attr-defined]
            for r in caplog.records
            if r.getMessage() == "order.check_failed"
        ]

    del fake_ccv.orders[CCV_IDS[0]]  # CCV's own JSON 404 from now on
    clock.now += 60
    report = await reconciler.full_pass(via="catch-up")
    assert report.lost == 1 and not report.failed_sources
    # Counted as failed (a catch-up exits 75) and said once, why: not in silence.
    assert report.failed == 1
    assert failed_lines() == [(CCV_IDS[0], "not_found_unconfirmed")]
    assert await kinds_of(reconciler) == found
    rows = await reconciler.store.orders.load([OrderKey("ccv", "default", CCV_IDS[0])])
    [row] = rows.values()
    # Still at the AwaitingPayment pin (2 minutes), not the daily not-found rhythm.
    assert row.status == "AwaitingPayment" and not row.not_found
    assert row.next_check_at - clock.now <= 120 * 1.1

    clock.now += 120  # asked again too soon to confirm
    await reconciler.full_pass(via="catch-up")
    assert await kinds_of(reconciler) == found
    assert len(failed_lines()) == 1  # not again at every check
    clock.now += NOT_FOUND_CONFIRM_S
    await reconciler.full_pass(via="catch-up")
    assert (await kinds_of(reconciler))[len(found) :] == [("order.not_found", CCV_IDS[0])]


async def test_an_unconfirmed_not_found_is_a_failed_check_in_status_orders_and_metrics(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    # A catch-up exits 75 for it: the operator must find the order that failed, as for a 403.
    reconciler, _, clock = ccv_reconciler
    metrics = Metrics()
    reconciler.writer.metrics = metrics
    value = metrics.registry.get_sample_value
    labels = {"source": "ccv", "account": "default"}
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "AwaitingPayment")
    await reconciler.full_pass(via="catch-up")
    answered_at = (await state_of(reconciler, CCV_IDS[0])).last_checked
    del fake_ccv.orders[CCV_IDS[0]]  # CCV's own JSON 404 from now on
    fake_ccv.replies[CCV_IDS[1]] = FORBIDDEN  # the failed check it must look like

    for n in (1, 2):
        clock.now += 60
        report = await reconciler.full_pass(via="catch-up")
        assert report.failed == 2
        assert await reconciler.store.orders.failing_counts() == {("ccv", "default"): 2}
        missing = await state_of(reconciler, CCV_IDS[0])
        assert (missing.failure_streak, missing.not_found) == (n, False)
        assert missing.last_checked == answered_at  # as the 403's: its last answer
        assert value("reconciler_checks_total", {**labels, "outcome": "failed"}) == 2 * n
        assert value("reconciler_checks_total", {**labels, "outcome": "not_found"}) is None
        reason = {**labels, "reason": "not_found_unconfirmed"}
        assert value("reconciler_check_failures_total", reason) == n

    clock.now += NOT_FOUND_CONFIRM_S  # confirmed: `order.not_found` once, no failure any more
    await reconciler.full_pass(via="catch-up")
    gone = await state_of(reconciler, CCV_IDS[0])
    assert (gone.failure_streak, gone.not_found) == (0, True)
    assert await reconciler.store.orders.failing_counts() == {("ccv", "default"): 1}
    assert value("reconciler_checks_total", {**labels, "outcome": "not_found"}) == 1
    assert value("reconciler_check_failures_total", reason) == 2
    assert [k for k, o in await kinds_of(reconciler) if k == "order.not_found"] == [
        "order.not_found"
    ]


async def test_metrics_count_a_batchs_checks_once_its_write_commits_whatever_they_answered(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    # A pass whose write failed (a full disk) had its answers and failures counted, and not its
    # "not found" (counted once the write has judged it): /metrics told of checks nothing
    # recorded, some of them. Now none, until a write commits them; then each once.
    reconciler, _, clock = ccv_reconciler
    metrics = Metrics()
    reconciler.writer.metrics = metrics
    # Enough answers for the write to need pages the database does not have.
    more = [f"5a1e0000-0000-4000-9000-{n:012d}" for n in range(200)]
    await reconciler.store.orders.track("ccv", "default", [(i, None) for i in more], clock.now)
    fake_ccv.orders = dict.fromkeys([CCV_IDS[0], *more], "Processing")  # CCV_IDS[2:]: 404
    fake_ccv.replies[CCV_IDS[1]] = FORBIDDEN
    conn = reconciler.store.conn
    pages = next(iter(await conn.execute_fetchall("PRAGMA page_count")))[0]
    await conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL: no page more
    with pytest.raises(StoreError, match="full"):
        await reconciler.full_pass(via="catch-up")
    assert len(fake_ccv.requests) == len(CCV_IDS) + len(more)  # every order was asked
    checks = metrics.registry.get_sample_value

    def counted() -> dict[str, float | None]:
        labels = {"source": "ccv", "account": "default"}
        return {
            outcome: checks("reconciler_checks_total", {**labels, "outcome": outcome})
            for outcome in ("ok", "failed", "not_found")
        }

    assert counted() == {"ok": None, "failed": None, "not_found": None}
    await conn.execute("PRAGMA max_page_count = 1000000")
    clock.now += 60
    await reconciler.full_pass(via="catch-up")
    assert counted() == {"ok": 1 + len(more), "failed": 1, "not_found": 2}


async def test_an_unconfirmed_not_found_shows_in_status_and_orders(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {CCV_IDS[0]: "Processing"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", CCV_IDS[0])).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    del fake_ccv.orders[CCV_IDS[0]]
    caught_up = await call_cli("--config", cfg, "catch-up")
    assert caught_up.code == 75 and "not_found_unconfirmed" in caught_up.stderr
    status = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    [account] = [a for a in status["accounts"] if a["source"] == "ccv"]
    assert account["check_failed"] == 1
    [order] = json.loads((await call_cli("--config", cfg, "orders", "--json")).stdout)
    assert (order["order_id"], order["failure_streak"]) == (CCV_IDS[0], 1)


async def test_a_wave_of_not_found_is_an_account_failure(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    reconciler, _, clock = ccv_reconciler
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    await reconciler.full_pass(via="catch-up")
    found = await kinds_of(reconciler)

    fake_ccv.orders = {}  # every order answers CCV's JSON 404: another environment's key?
    for _ in range(3):
        clock.now += NOT_FOUND_CONFIRM_S + 1
        report = await reconciler.full_pass(via="catch-up")
        assert report.failed_sources == {"ccv/default": "4 orders not found at once"}
    assert (await kinds_of(reconciler))[len(found) :] == [("source.failed", None)]

    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    clock.now += 60
    await reconciler.full_pass(via="catch-up")
    assert (await kinds_of(reconciler))[len(found) :] == [
        ("source.failed", None),
        ("source.recovered", None),
    ]


async def test_a_wave_of_not_found_is_not_hidden_behind_fresh_submits(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    # An outage answering CCV's 404 for everything, on a pass of 3 orders found before and 10
    # just submitted: the account fails, and no order found before is taken for lost.
    ccv, _, clock = ccv_reconciler
    store = ccv.store
    await store.orders.untrack("ccv", "default", CCV_IDS[3:])
    fake_ccv.orders = dict.fromkeys(CCV_IDS[:3], "New")
    await ccv.full_pass(via="catch-up")
    found = await kinds_of(ccv)
    fresh = [f"5a1e0000-0000-4000-9000-{n:012d}" for n in range(10)]
    async with store.transaction():
        for n, order_id in enumerate(fresh):
            submitted = store.orders.tracking_submitted(
                "ccv", "default", order_id, f"F{n}", clock.now
            )
            with submitted as track:
                await store.conn.execute(*track)
    fake_ccv.orders = {}
    for _ in range(2):
        clock.now += NOT_FOUND_CONFIRM_S + 1
        report = await ccv.full_pass(via="catch-up")
        assert report.failed_sources == {"ccv/default": "3 orders not found at once"}
    assert (await kinds_of(ccv))[len(found) :] == [("source.failed", None)]


async def test_submitted_orders_ccv_does_not_know_yet_fail_no_account(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    # Three submits on a new account while CCV lags: their first checks' CCV 404s are failed
    # checks (a catch-up exits 75), not "3 orders not found at once".
    ccv, _, clock = ccv_reconciler
    store = ccv.store
    await store.orders.untrack("ccv", "default", CCV_IDS)
    async with store.transaction():
        for n, order_id in enumerate(CCV_IDS[:3]):
            submitted = store.orders.tracking_submitted(
                "ccv", "default", order_id, f"R{n}", clock.now
            )
            with submitted as track:
                await store.conn.execute(*track)
    fake_ccv.orders = {}  # CCV's own JSON 404 for each
    clock.now += 5
    report = await ccv.full_pass(via="catch-up")
    assert (report.failed, report.lost, report.failed_sources) == (3, 0, {})
    assert await source_kinds(ccv) == []
    fake_ccv.orders = dict.fromkeys(CCV_IDS[:3], "New")
    clock.now += 60
    assert (await ccv.full_pass(via="catch-up")).ok
    assert [kind for kind, _ in await kinds_of(ccv)] == ["order.discovered"] * 3


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (html_page(200), "html page (http 200)"),
        (Reply(200, "OK", "text/plain"), "protocol (http 200)"),
        (
            Reply(200, '{"message": "Service is under maintenance"}', "application/json"),
            "protocol (http 200)",
        ),
    ],
    ids=["page", "text", "json-without-status"],
)
async def test_a_200_without_a_status_for_every_check_fails_the_account_in_the_daemon(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock],
    fake_ccv: FakeCCV,
    answer: Reply,
    reason: str,
) -> None:
    # A maintenance page, a login wall or a gateway in front of CCV answers 200 to everything,
    # the probe too: a due check (not a whole pass) must find the account failing, as a
    # catch-up does ("every check failed (protocol)"), not call it healthy.
    reconciler, _, _ = ccv_reconciler
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    await reconciler.check(CCV_IDS, via="poll")
    fake_ccv.always = answer
    report = await reconciler.check(CCV_IDS[:1], via="poll")
    assert report.failed_sources == {"ccv/default": reason}
    assert (await kinds_of(reconciler))[-1] == ("source.failed", None)


# --- item 5b: a pass in which every check failed ---------------------------------------------


async def test_every_ccnow_query_failing_is_an_account_failure(
    ccnow_reconciler: tuple[CCNowCoordinator, Config], fake_ccnow: FakeCCNow
) -> None:
    ccnow, _ = ccnow_reconciler
    fake_ccnow.orders = dict.fromkeys(CCNOW_IDS, "processing")
    assert (await ccnow.full_pass(via="catch-up")).ok
    fake_ccnow.order_errors = set(CCNOW_IDS)
    for _ in range(2):
        assert not (await ccnow.full_pass(via="catch-up")).ok
    assert await source_kinds(ccnow) == ["source.failed"]
    assert (await ccnow.store.sources.state("ccnow", "default")).failing

    # One order answering again is the account answering again.
    fake_ccnow.order_errors = set(CCNOW_IDS[1:])
    assert not (await ccnow.full_pass(via="catch-up")).ok
    assert await source_kinds(ccnow) == ["source.failed", "source.recovered"]


async def test_one_ccnow_error_line_fails_that_order_alone(
    ccnow_reconciler: tuple[CCNowCoordinator, Config], fake_ccnow: FakeCCNow
) -> None:
    ccnow, _ = ccnow_reconciler
    await ccnow.store.orders.untrack("ccnow", "default", CCNOW_IDS[2:])
    fake_ccnow.orders = {CCNOW_IDS[0]: "pending", CCNOW_IDS[1]: "processing"}
    fake_ccnow.order_errors = {CCNOW_IDS[1]}
    report = await ccnow.full_pass(via="catch-up")
    assert report.failed == 1 and not report.failed_sources
    assert [kind for kind, _ in await kinds_of(ccnow)] == ["order.discovered"]


async def test_every_ccv_check_failing_is_an_account_failure(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    ccv, _, _ = ccv_reconciler
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    fake_ccv.always = FORBIDDEN
    assert not (await ccv.full_pass(via="catch-up")).ok
    assert not (await ccv.full_pass(via="catch-up")).ok
    assert await kinds_of(ccv) == [("source.failed", None)]
    # Every order asked, once per pass, and the probe (a 403: the key refused) after the first;
    # the second pass is in the account's backoff.
    assert len(fake_ccv.requests) == 2 * len(CCV_IDS) + 1
    assert len(fake_ccv.requests_for(PROBE_ORDER_ID)) == 1


async def test_a_catch_up_in_which_every_check_failed_names_the_cause(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # A gateway that sends every status request to a login page: the account's failure says so.
    fake_ccv.always = Reply(302, "", headers={"Location": "https://login.example/"})
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 75
    (failed,) = [e for e in read_events(tmp_path) if e["type"] == "source.failed"]
    assert failed["data"]["reason"] == "every check failed (http_302)"
    status = await call_cli("--config", cfg, "status", "--json")
    assert json.loads(status.stdout)["accounts"][0]["last_error"] == failed["data"]["reason"]


async def test_a_catch_up_whose_only_order_gets_a_403_of_its_own_fails_that_order_alone(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # Probe 34 item 1: the only open order's own 403 failed the account at a catch-up
    # ("every check failed (http_403)", an error event, 75) though the probe, CCV's own JSON 404
    # for a made-up id, shows the key works, as the daemon and `check --online` find.
    only = CCV_IDS[0]
    fake_ccv.replies[only] = FORBIDDEN
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", only)).code == 0
    result = await call_cli("--config", cfg, "catch-up", "--source", "ccv")
    assert result.code == 75  # an order's check failed
    assert types(read_events(tmp_path)) == []
    assert '"order.check_failed"' in result.stderr and only in result.stderr
    assert '"failing_sources":[]' in result.stderr
    assert fake_ccv.requests_for(PROBE_ORDER_ID)
    status = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    assert status["accounts"][0]["last_error"] is None

    # The probe refused too (the key's rights cut): the account's failure, named as before.
    fake_ccv.replies[PROBE_ORDER_ID] = FORBIDDEN
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccv")).code == 75
    (failed,) = [e for e in read_events(tmp_path) if e["type"] == "source.failed"]
    assert failed["data"]["reason"] == "every check failed (http_403)"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [(Reply(500, "oops"), "http_500"), (GATEWAY_404, "gateway_404")],
    ids=["http_500", "gateway_404"],
)
async def test_a_catch_up_whose_every_order_fails_as_in_an_outage_fails_the_account(
    tmp_path: Path, fake_ccv: FakeCCV, reply: Reply, reason: str
) -> None:
    # Review 29c item 1: fewer open orders than the breaker's run, each answering 500 while the
    # probe (CCV's own JSON 404 for a made-up id) answered: the catch-up asked the probe and
    # failed nothing (no event, `failing_sources` []), so such an account never failed at all.
    for order_id in CCV_IDS:
        fake_ccv.replies[order_id] = reply
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    result = await call_cli("--config", cfg, "catch-up", "--source", "ccv")
    assert result.code == 75
    (failed,) = [e for e in read_events(tmp_path) if e["type"] == "source.failed"]
    assert failed["data"]["reason"] == f"every check failed ({reason})"
    assert not fake_ccv.requests_for(PROBE_ORDER_ID)  # its answer would change nothing
    status = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    assert status["accounts"][0]["last_error"] == failed["data"]["reason"]


async def test_a_catch_up_keeps_an_account_failing_on_its_checks_as_the_daemon_does(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    # Review 29c item 3: the key refused (the account failed), then restored while each order
    # gets a 403 of its own: each catch-up after the backoff asked the probe, which answered,
    # and dropped the checks' failure: the account stayed failing (`status`: every check failed
    # (http_403)) while the catch-up named no failing account and no order (`failing_sources`
    # [], no order.check_failed), exit 75 with no cause. The daemon's probe tick keeps it
    # failing (only a status or CCV's own word about an order ends it): so does the catch-up.
    ccv, _, clock = ccv_reconciler
    fake_ccv.always = FORBIDDEN
    failed = {"ccv/default": "every check failed (http_403)"}
    assert (await ccv.full_pass(via="catch-up")).failed_sources == failed
    fake_ccv.always = None
    for order_id in CCV_IDS:
        fake_ccv.replies[order_id] = FORBIDDEN
    for _ in range(2):
        clock.now += 2 * 3600  # past the backoff
        probes = len(fake_ccv.requests_for(PROBE_ORDER_ID))
        report = await ccv.full_pass(via="catch-up")
        assert len(fake_ccv.requests_for(PROBE_ORDER_ID)) == probes + 1  # it answered
        assert report.failed_sources == failed and report.failed == len(CCV_IDS)
        state = await ccv.store.sources.state("ccv", "default")
        assert state.failing and state.last_error == failed["ccv/default"]
        # The daemon's probe tick, on the same account, says the same.
        clock.now += 2 * 3600
        (*_, due) = await ccv.tick_due()
        assert due.report.failed_sources == failed
    assert await source_kinds(ccv) == ["source.failed"]

    # An order answering a status ends it, at the next catch-up.
    fake_ccv.orders = {CCV_IDS[0]: "New"}
    del fake_ccv.replies[CCV_IDS[0]]
    clock.now += 2 * 3600
    assert not (await ccv.full_pass(via="catch-up")).failed_sources
    assert await source_kinds(ccv) == ["source.failed", "source.recovered"]


# --- item 6: one health state per CCNow account ------------------------------------------------


async def test_ccnow_pending_list_failing_while_queries_answer_does_not_flap(
    ccnow_reconciler: tuple[CCNowCoordinator, Config], fake_ccnow: FakeCCNow
) -> None:
    reconciler, _ = ccnow_reconciler
    fake_ccnow.orders = dict.fromkeys(CCNOW_IDS, "processing")
    for _ in range(3):  # poll after poll: the list fails, the due queries answer
        fake_ccnow.script = [html_page()]
        assert (await reconciler.pending_list_pass(via="poll")).failed_sources
        report = await reconciler.check(CCNOW_IDS, via="poll")
        assert report.checked == 3 and report.failed == 0
    kinds = [e.type for e in await reconciler.store.events.history()]
    assert [k for k in kinds if k.startswith("source.")] == ["source.failed"]
    assert (await reconciler.store.sources.state("ccnow", "default")).failing

    await reconciler.pending_list_pass(via="poll")
    kinds = [e.type for e in await reconciler.store.events.history()]
    assert [k for k in kinds if k.startswith("source.")] == ["source.failed", "source.recovered"]


# --- item 8: the CCV probe ---------------------------------------------------------------------


async def test_check_online_accepts_a_400_for_the_probe(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(400, '{"message": "invalid id"}', "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    result = await call_cli("--config", cfg, "check", "--online")
    assert result.code == 0, result.stderr
    assert "ccv/default: ok" in result.stdout

    fake_ccv.replies[PROBE_ORDER_ID] = GATEWAY_404
    result = await call_cli("--config", cfg, "check", "--online")
    assert result.code == 75 and "gateway 404" in result.stderr
    result = await call_cli(
        "--config", cfg, "check", "--online", env=cli_env(RECONCILER_CCV_API_KEY="t_wrong-key-0")
    )
    assert result.code == 78


async def test_check_online_refuses_a_probe_answered_403_or_200_without_a_status(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    # README: 78 for credentials refused, a 401 or a 403.
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(403, '{"message": "Forbidden"}', "application/json")
    result = await call_cli("--config", cfg, "check", "--online")
    assert result.code == 78 and "http 403" in result.stderr, result.stderr
    # "OK" proves neither CCV nor the key: unavailable, not ok.
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(200, "OK", "text/plain")
    result = await call_cli("--config", cfg, "check", "--online")
    assert result.code == 75 and "protocol (http 200)" in result.stderr, result.stderr
    assert "ccv/default: ok" not in result.stdout


async def test_healthz_goes_green_on_a_probe_answered_400(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # CCV's own 400, in JSON as its error answers are; a plain one proves nothing (test_ccv.py).
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(
        400, '{"message": "invalid order id"}', "application/json"
    )
    port = free_port()
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        ccv_extra='poll_interval = "0.5s"',
        extra=f'[receiver]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n',
    )
    env = cli_env(RECONCILER_RECEIVER_SECRET="receiver-secret-0123456789abcdef")
    async with daemon_here(cfg, env), aiohttp.ClientSession() as http:
        # Past three poll intervals, only the probes' answers can keep the account green.
        await fake_ccv.wait_until(lambda: len(fake_ccv.requests_for(PROBE_ORDER_ID)) >= 4, 30)
        # Nothing to await for the account's health: ask /healthz until 200, within a bound.
        for _ in range(100):
            if (status := await healthz(http, port)) == 200:
                break
            await asyncio.sleep(0.1)
    assert status == 200
    assert fake_ccv.requests_for(PROBE_ORDER_ID)
    assert CCV_KEY not in (tmp_path / "daemon.log").read_text()


async def healthz(http: aiohttp.ClientSession, port: int) -> int | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return resp.status
    except aiohttp.ClientError:
        return None


# --- item 15: CCV Failed is not final; a differing externalReference is reported ---------------


async def test_a_ccv_order_completed_after_failed_is_seen(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock], fake_ccv: FakeCCV
) -> None:
    ccv, _, clock = ccv_reconciler
    await ccv.store.orders.untrack("ccv", "default", CCV_IDS[1:])
    fake_ccv.orders = {CCV_IDS[0]: "Failed"}
    assert (await ccv.full_pass(via="catch-up")).ok
    [failed] = await event_data(ccv)
    assert failed["status"] == "Failed" and failed["severity"] == "error"
    assert failed["end_state"] is False

    fake_ccv.orders[CCV_IDS[0]] = "Completed"  # a CCV employee took the action
    clock.now += 60
    assert (await ccv.full_pass(via="catch-up")).ok
    assert (await kinds_of(ccv))[1] == ("order.status_changed", CCV_IDS[0])
    completed = (await event_data(ccv))[1]
    assert (completed["previous_status"], completed["status"]) == ("Failed", "Completed")
    assert completed["end_state"] is True


async def test_a_differing_external_reference_is_reported_with_both_values(
    ccv_reconciler: tuple[CCVCoordinator, Config, Clock],
    fake_ccv: FakeCCV,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ccv, _, _ = ccv_reconciler
    await ccv.store.orders.untrack("ccv", "default", CCV_IDS[1:])
    await ccv.store.orders.track("ccv", "default", [(CCV_IDS[0], "ref-tracked")], 1.0)
    fake_ccv.orders = {CCV_IDS[0]: "New"}
    fake_ccv.refs = {CCV_IDS[0]: "ref-at-ccv"}
    caplog.set_level(logging.INFO, logger="reconciler")
    assert (await ccv.full_pass(via="catch-up")).ok
    [warning] = [r for r in caplog.records if r.getMessage() == "order.external_reference_differs"]
    assert warning.levelno == logging.WARNING
    found = warning.__dict__["fields"]
    assert (found["order_id"], found["tracked"], found["answered"]) == (
        CCV_IDS[0],
        "ref-tracked",
        "ref-at-ccv",
    )


def _check_failed_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["message"] == "order.check_failed"]


async def test_an_order_whose_checks_start_failing_is_logged_once(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    fake_ccv.replies[CCV_IDS[0]] = FORBIDDEN
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    first = await call_cli("--config", cfg, "catch-up")
    assert first.code == 75
    [line] = _check_failed_lines(first.stderr)
    assert line["level"] == "warning"
    assert (line["source"], line["account"], line["order_id"], line["reason"]) == (
        "ccv",
        "default",
        CCV_IDS[0],
        "http_403",
    )
    # The same run of failures: counted, not logged again.
    again = await call_cli("--config", cfg, "catch-up")
    assert again.code == 75 and _check_failed_lines(again.stderr) == []

    # Once it answered, a new failure is a new run, logged again.
    del fake_ccv.replies[CCV_IDS[0]]
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    fake_ccv.replies[CCV_IDS[0]] = FORBIDDEN
    assert len(_check_failed_lines((await call_cli("--config", cfg, "catch-up")).stderr)) == 1


async def test_orders_of_a_failing_account_are_its_source_failed_line_alone(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", *CCV_IDS)).code == 0
    assert (await call_cli("--config", cfg, "catch-up")).code == 0
    fake_ccv.always = FORBIDDEN
    failed = await call_cli("--config", cfg, "catch-up")
    assert failed.code == 75
    assert "source.failed" in failed.stderr and _check_failed_lines(failed.stderr) == []
