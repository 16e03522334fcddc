"""A burst of notifications for CCV orders that each fail alone (a 403 of their own) asks the
probe once: checks that end while a probe is in flight, or begin before its answer came, share
that answer. A check that begins after it asks again, so a later outage is still found."""

from __future__ import annotations

import asyncio
import json

from reconciler.poller.ccv import CCVCoordinator
from reconciler.sources.ccv import PROBE_ORDER_ID
from tests.fake_providers import FakeCCV, Reply

FORBIDDEN = Reply(403, json.dumps({"message": "Forbidden"}), "application/json")
ORDERS = [f"5a1e0000-0000-4000-8000-{n:012d}" for n in range(1, 49)]


def asked_orders(fake: FakeCCV) -> int:
    return sum(1 for seen in fake.requests if seen.order_id != PROBE_ORDER_ID)


async def forbidden_orders(ccv: CCVCoordinator, fake: FakeCCV, order_ids: list[str]) -> None:
    await ccv.store.orders.track("ccv", "default", [(i, None) for i in order_ids], 1.0)
    for order_id in order_ids:
        fake.replies[order_id] = FORBIDDEN


async def test_a_burst_of_failing_notifications_costs_one_probe(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    await forbidden_orders(ccv, fake_ccv, ORDERS)
    # The probe's answer is held until every check has been sent: before, each check whose
    # order failed sent a probe of its own, 48 for 48 notifications.
    fake_ccv.answer_late = lambda seen: seen.order_id == PROBE_ORDER_ID
    checks = [
        asyncio.ensure_future(ccv.check([order_id], via="notification")) for order_id in ORDERS
    ]
    await fake_ccv.wait_until(
        lambda: (
            asked_orders(fake_ccv) == len(ORDERS) and bool(fake_ccv.requests_for(PROBE_ORDER_ID))
        )
    )
    fake_ccv.release.set()
    reports = await asyncio.gather(*checks)
    assert len(fake_ccv.requests_for(PROBE_ORDER_ID)) == 1
    # Every order failed on its own; the account answered, so it is not failing.
    assert [(r.checked, r.failed, r.failed_sources) for r in reports] == [(1, 1, {})] * 48
    assert not (await ccv.store.sources.state("ccv", "default")).failing


async def test_a_check_that_begins_after_the_probe_answered_probes_again(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    await forbidden_orders(ccv, fake_ccv, ORDERS[:2])
    await ccv.check([ORDERS[0]], via="notification")
    # Meanwhile a gateway took CCV's place: the next check's probe must see it.
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(404, "<html>Not Found</html>", "text/html")
    report = await ccv.check([ORDERS[1]], via="notification")
    assert len(fake_ccv.requests_for(PROBE_ORDER_ID)) == 2
    assert report.failed_sources == {"ccv/default": "gateway 404"}
    assert (await ccv.store.sources.state("ccv", "default")).failing


async def test_a_check_cancelled_while_it_probes_leaves_the_others_an_answer(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    await forbidden_orders(ccv, fake_ccv, ORDERS[:2])
    fake_ccv.answer_late = lambda seen: seen.order_id == PROBE_ORDER_ID
    first = asyncio.ensure_future(ccv.check([ORDERS[0]], via="notification"))
    await fake_ccv.wait_until(lambda: bool(fake_ccv.requests_for(PROBE_ORDER_ID)))
    second = asyncio.ensure_future(ccv.check([ORDERS[1]], via="notification"))
    await fake_ccv.wait_until(lambda: bool(fake_ccv.requests_for(ORDERS[1])))
    # A stop cuts the first check short while the second may be waiting for its probe.
    first.cancel()
    fake_ccv.answer_late = None
    fake_ccv.release.set()
    report = await asyncio.wait_for(second, 5)
    assert first.cancelled()
    assert (report.checked, report.failed, report.failed_sources) == (1, 1, {})
    assert not (await ccv.store.sources.state("ccv", "default")).failing
