"""A CCNow notification whose check got no answer keeps its order due (store/due_now.py), but
not one another check answered while it ran: a due pass whose query CCNow answered after the
notification came planned the order's next check from that answer, and pulling it back to now
cost one query more that could tell nothing new. An answer to a query sent before the
notification came may be older than the change CCNow told of: that order is still made due."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from reconciler.sources.errors import SourceUnavailable
from tests.poller.conftest import World, track

ORDER = "801-00-0001"


@pytest.mark.parametrize("asked_after", [True, False], ids=["asked-after", "asked-before"])
async def test_an_order_answered_while_the_notified_check_failed(
    world: World, asked_after: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client = world.ccnow_client
    client.statuses = {ORDER: "completed"}
    await track(world, "ccnow", ORDER)
    await world.ccnow.full_pass(via="catch-up")
    world.clock.now += 600.0
    sent_before = time.time() - 1.0  # a query of a due pass sent before the notification came

    client.hold = hold = asyncio.Event()
    notified = asyncio.create_task(world.ccnow.notified([ORDER]))
    await client.waiting.wait()  # the notification's query is on its way
    # Meanwhile a due pass's query answers, unchanged: its next check is planned a day ahead.
    client.asked_at = time.time() if asked_after else sent_before
    await world.ccnow.check([ORDER], via="poll")
    planned = (await world.order("ccnow", ORDER)).next_check_at
    assert planned > world.clock.now + 3600.0
    client.query_error = SourceUnavailable("maintenance")  # and the notification's fails
    hold.set()
    with caplog.at_level(logging.INFO, logger="reconciler.poller"):
        await notified

    kept = await world.order("ccnow", ORDER)
    said = [r.__dict__["fields"] for r in caplog.records if r.msg == "notification.kept_due"]
    if asked_after:
        assert kept.next_check_at == planned  # CCNow answered since the notification came
        assert said == []
    else:
        assert kept.next_check_at == world.clock.now  # that answer may predate the change
        assert said == [{"source": "ccnow", "account": "default", "orders": 1}]
