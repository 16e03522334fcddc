"""A check asked before a notification's check and answered after it changes nothing
(diff.stale): an account's passes against a fake CCV on 127.0.0.1 that holds an answer made when
its request arrived."""

from __future__ import annotations

import asyncio
import json

from reconciler.model import OrderKey
from reconciler.poller.ccv import CCVCoordinator
from reconciler.store import Store
from tests.fake_providers import FakeCCV, Seen

CCV_ORDER = "5a1e0000-0000-4000-8000-00000000000a"


async def test_a_pass_answer_older_than_a_notifications_check_changes_nothing(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    # A catch-up asks the order; CCV's notification comes, its check asks and answers the new
    # status; then the catch-up's answer comes, made before the change.
    store: Store = ccv.store
    key = OrderKey("ccv", "default", CCV_ORDER)
    fake_ccv.orders = {CCV_ORDER: "New"}
    await store.orders.track("ccv", "default", [(CCV_ORDER, None)], ccv.now())
    assert (await ccv.full_pass(via="catch-up")).ok

    held: list[Seen] = []

    def first_ask(seen: Seen) -> bool:
        if held or seen.order_id != CCV_ORDER:
            return False
        held.append(seen)
        return True

    fake_ccv.answer_late = first_ask
    catch_up = asyncio.ensure_future(ccv.full_pass(via="catch-up"))
    await fake_ccv.wait_until(lambda: bool(held))
    fake_ccv.orders[CCV_ORDER] = "FulfillmentInProgress"
    notified = await ccv.check([CCV_ORDER], via="notification")
    assert (notified.checked, notified.events) == (1, 1)
    fake_ccv.release.set()  # the catch-up's answer: "New", as when it arrived
    report = await catch_up

    # The catch-up counts the check as done (nothing failed), and changed nothing.
    assert (report.checked, report.failed, report.events) == (1, 0, 0)
    [state] = (await store.orders.load([key])).values()
    assert state.status == "FulfillmentInProgress"
    history = [
        (e.type, json.loads(e.body)["data"]["status"], json.loads(e.body)["data"]["via"])
        for e in await store.events.history()
    ]
    assert history == [
        ("order.discovered", "New", "catch-up"),
        ("order.status_changed", "FulfillmentInProgress", "notification"),
    ]
    # The next pass asks again and finds nothing new.
    assert (await ccv.full_pass(via="catch-up")).events == 0
