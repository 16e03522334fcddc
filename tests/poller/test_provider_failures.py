"""Invariant 2, no false events, through the real clients: a failed or unparseable answer
changes nothing in the snapshot and fails the account once, not once per pass."""

from __future__ import annotations

import json
from typing import Any

from reconciler.model import OrderKey
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinator import Coordinator
from tests.fake_providers import FakeCCNow, FakeCCV, Reply, html_page

CCV_IDS = [f"0b7c1f3e-0000-4000-8000-{n:012d}" for n in range(1, 6)]


async def kinds(coordinator: Coordinator[Any]) -> list[str]:
    return [e.type for e in await coordinator.store.events.history()]


async def test_ccnow_failures_change_nothing_and_fail_the_account_once(
    ccnow: CCNowCoordinator, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {"396-10-1142": "pending"}
    assert (await ccnow.full_pass(via="catch-up")).ok
    fake_ccnow.orders = {}  # would read as "no pending orders" if a failure were misread
    for reply in (
        Reply(200, "error_message system down for maintenance\n"),
        html_page(),
        Reply(500, "Internal Server Error"),
        Reply(200, ""),
    ):
        fake_ccnow.always = reply
        report = await ccnow.full_pass(via="catch-up")
        assert report.failed_sources, reply  # `catch-up` exits 75
    assert await kinds(ccnow) == ["order.discovered", "source.failed"]  # once, not per pass
    key = OrderKey("ccnow", "default", "396-10-1142")
    assert (await ccnow.store.orders.load([key]))[key].status == "pending"

    fake_ccnow.always = None
    fake_ccnow.orders = {"396-10-1142": "pending"}
    assert (await ccnow.full_pass(via="catch-up")).ok
    assert await kinds(ccnow) == ["order.discovered", "source.failed", "source.recovered"]


async def test_ccv_server_errors_are_failed_checks_without_events(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    await ccv.store.orders.track("ccv", "default", [(i, None) for i in CCV_IDS], 1.0)
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    assert (await ccv.full_pass(via="catch-up")).ok
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "Completed")
    for reply in (Reply(500, "oops"), html_page(), Reply(503, "", headers={"Retry-After": "0"})):
        fake_ccv.always = reply
        assert not (await ccv.full_pass(via="catch-up")).ok  # `catch-up` exits 75
    assert set(await kinds(ccv)) == {"order.discovered", "source.failed"}


async def test_not_found_is_reported_once(ccv: CCVCoordinator) -> None:
    await ccv.store.orders.track("ccv", "default", [("missing-order-1", None)], 1.0)
    assert (await ccv.full_pass(via="catch-up")).ok
    assert (await ccv.full_pass(via="catch-up")).ok
    assert await kinds(ccv) == ["order.not_found"]


async def test_ccnow_queries_never_exceed_batch_size(
    ccnow: CCNowCoordinator, fake_ccnow: FakeCCNow
) -> None:
    ids = [f"{400 + n // 100:03d}-{n % 100:02d}-1000" for n in range(60)]
    fake_ccnow.orders = dict.fromkeys(ids, "processing")
    await ccnow.store.orders.track("ccnow", "default", [(i, None) for i in ids], 1.0)
    assert (await ccnow.full_pass(via="catch-up")).ok
    assert 0 < fake_ccnow.max_batch <= 25
    assert len(await kinds(ccnow)) == 60


async def test_an_unknown_ccnow_message_is_a_source_failure_not_an_empty_list(
    ccnow: CCNowCoordinator, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {"396-10-1142": "pending"}
    assert (await ccnow.full_pass(via="catch-up")).ok
    fake_ccnow.always = Reply(200, "message account_locked\n")
    assert not (await ccnow.full_pass(via="catch-up")).ok  # `catch-up` exits 75
    failed = [e for e in await ccnow.store.events.history() if e.type == "source.failed"]
    assert len(failed) == 1
    assert "message: account_locked" in json.dumps(json.loads(failed[0].body)["data"])
    key = OrderKey("ccnow", "default", "396-10-1142")
    assert (await ccnow.store.orders.load([key]))[key].status == "pending"


async def test_an_order_ccnow_does_not_know_is_reported_once_and_not_a_failure(
    ccnow: CCNowCoordinator, fake_ccnow: FakeCCNow
) -> None:
    fake_ccnow.orders = {"396-10-1142": "processing"}
    await ccnow.store.orders.track(
        "ccnow", "default", [("396-10-1142", None), ("999-00-0001", None)], 1.0
    )
    for _ in range(2):
        assert (await ccnow.full_pass(via="catch-up")).ok
    events = [(e.type, e.order_id) for e in await ccnow.store.events.history()]
    assert sorted(events) == [
        ("order.discovered", "396-10-1142"),
        ("order.not_found", "999-00-0001"),
    ]
    key = OrderKey("ccnow", "default", "999-00-0001")
    assert (await ccnow.store.orders.load([key]))[key].not_found
