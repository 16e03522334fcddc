"""A check asked before a notification's check and answered after it changes nothing
(diff.stale), and an answer is as of the attempt that brought it: an account's passes against a
fake CCV on 127.0.0.1 that holds an answer made when its request arrived (a 503 among them)."""

from __future__ import annotations

import asyncio
import json

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.poller.ccv import CCVCoordinator
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from tests.fake_providers import FakeCCV, Reply, Seen

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


async def test_a_pass_write_that_waits_for_the_writer_judges_by_the_time_it_writes(
    ccv: CCVCoordinator,
) -> None:
    # A pass's batch waits for the writer (the previous batch, a sink's record); meanwhile a
    # notification's check is asked, answered and, urgent, written first. The batch's answer
    # is older than what it now finds: it changes nothing. (Its time was read before the wait,
    # so the fresher time looked like a clock put back: "FulfillmentInProgress -> New".)
    key = OrderKey("ccv", "default", CCV_ORDER)
    now = [1000.0]
    store: Store = ccv.store
    reconciler = Reconciler(ccv.writer.config, store, clock=lambda: now[0])
    await store.orders.track("ccv", "default", [(CCV_ORDER, None)], 1.0)
    await reconciler.apply([Observation(key, Outcome.OK, "New", asked=999.0)], via="catch-up")

    release = asyncio.Event()
    holding = asyncio.Event()

    async def another_writer() -> None:
        async with store.transaction():
            holding.set()
            await release.wait()

    writer = asyncio.ensure_future(another_writer())
    await holding.wait()
    older = Observation(key, Outcome.OK, "New", asked=1010.0)
    batch = asyncio.ensure_future(reconciler.apply([older], via="catch-up"))
    await asyncio.sleep(0)  # the batch starts and waits for the writer
    now[0] = 1030.0
    newer = Observation(key, Outcome.OK, "FulfillmentInProgress", asked=1020.0)
    notified = asyncio.ensure_future(reconciler.apply([newer], via="notification"))
    await asyncio.sleep(0)  # the notification waits for the writer too, ahead of the batch
    release.set()
    await asyncio.gather(writer, notified, batch)

    [state] = (await store.orders.load([key])).values()
    assert (state.status, state.asked_at) == ("FulfillmentInProgress", 1020.0)
    changes = [json.loads(e.body)["data"]["status"] for e in await store.events.history()]
    assert changes == ["New", "FulfillmentInProgress"]


async def test_an_answer_a_retry_brought_is_as_of_the_retry(
    ccv: CCVCoordinator, fake_ccv: FakeCCV
) -> None:
    # A catch-up's check is turned away (503); meanwhile a notification's check reads "New"
    # (true then), and the order moves on; the retry reads "FulfillmentInProgress". Dated by its
    # first attempt, that answer looked older than the notification's and was dropped: the
    # order stayed "New" until its next check.
    store: Store = ccv.store
    key = OrderKey("ccv", "default", CCV_ORDER)
    fake_ccv.orders = {CCV_ORDER: "New"}
    await store.orders.track("ccv", "default", [(CCV_ORDER, None)], ccv.now())
    assert (await ccv.full_pass(via="catch-up")).ok

    # The 503 is held until the notification's check is answered, then retried at once: the
    # window between the two attempts is the test's, not a Retry-After that a slow machine
    # could outlast.
    fake_ccv.script_for[CCV_ORDER] = [Reply(503, headers={"Retry-After": "0"})]
    turned_away: list[Seen] = []

    def first_ask(seen: Seen) -> bool:
        if turned_away or seen.order_id != CCV_ORDER:
            return False
        turned_away.append(seen)
        return True

    fake_ccv.answer_late = first_ask
    catch_up = asyncio.ensure_future(ccv.full_pass(via="catch-up"))
    await fake_ccv.wait_until(lambda: bool(turned_away))
    notified = await ccv.check([CCV_ORDER], via="notification")
    assert (notified.checked, notified.events) == (1, 0)
    fake_ccv.orders[CCV_ORDER] = "FulfillmentInProgress"
    fake_ccv.release.set()  # the 503; the retry follows it
    report = await catch_up

    assert (report.checked, report.failed, report.events) == (1, 0, 1)
    [state] = (await store.orders.load([key])).values()
    assert state.status == "FulfillmentInProgress"
    history = [
        (json.loads(e.body)["data"]["status"], json.loads(e.body)["data"]["via"])
        for e in await store.events.history()
    ]
    assert history == [("New", "catch-up"), ("FulfillmentInProgress", "catch-up")]
