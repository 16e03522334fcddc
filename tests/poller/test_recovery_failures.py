"""The pass in which an account answers again, through the real clients and the loopback fakes:
an order that still fails then fails on its own in that very pass (`order.check_failed`, one
failure in `status`), not a pass later; the outage's failures are forgotten."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from reconciler.model import OrderKey, Source
from reconciler.poller.ccnow import CCNowCoordinator
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinator import Coordinator
from tests.fake_providers import FakeCCNow, FakeCCV, Reply

CCV_IDS = [f"0b7c1f3e-0000-4000-8000-{n:012d}" for n in range(1, 7)]
CCNOW_IDS = [f"396-10-{1140 + n}" for n in range(4)]


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the order ids of the `order.check_failed` lines so far."""
    lines = [r for r in caplog.records if r.getMessage() == "order.check_failed"]
    return sorted(r.__dict__["fields"]["order_id"] for r in lines)


async def kinds(coordinator: Coordinator[Any]) -> list[str]:
    return [e.type for e in await coordinator.store.events.history()]


async def streaks(coordinator: Coordinator[Any], source: Source, ids: list[str]) -> list[int]:
    keys = [OrderKey(source, "default", i) for i in ids]
    states = await coordinator.store.orders.load(keys)
    return [states[k].failure_streak for k in keys]


async def test_ccv_orders_still_failing_when_the_account_answers_again_fail_in_that_pass(
    ccv: CCVCoordinator, fake_ccv: FakeCCV, caplog: pytest.LogCaptureFixture
) -> None:
    await ccv.store.orders.track("ccv", "default", [(i, None) for i in CCV_IDS], 1.0)
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    assert (await ccv.full_pass(via="catch-up")).ok
    caplog.set_level(logging.WARNING, logger="reconciler")
    # CCV down: every check fails, the account's source.failed says so, no order's line.
    fake_ccv.always = Reply(503, "")
    assert (await ccv.full_pass(via="catch-up")).failed_sources
    assert (await kinds(ccv))[-1] == "source.failed" and logged(caplog) == []
    assert await streaks(ccv, "ccv", CCV_IDS) == [1] * 6

    # It answers again, but for three orders of their own.
    fake_ccv.always = None
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "FulfillmentDone")
    still = CCV_IDS[:3]
    fake_ccv.replies = {
        still[0]: Reply(503, ""),
        still[1]: Reply(503, ""),
        still[2]: Reply(502, ""),
    }
    report = await ccv.full_pass(via="catch-up")
    assert report.failed == 3 and not report.failed_sources  # `catch-up` exits 75
    assert (await kinds(ccv))[-1] == "source.recovered"
    assert logged(caplog) == still  # in this pass, not the next one
    assert await streaks(ccv, "ccv", CCV_IDS) == [1, 1, 1, 0, 0, 0]
    assert await ccv.store.orders.failing_counts() == {("ccv", "default"): 3}  # `status`

    # They go on failing: counted, not logged again.
    assert (await ccv.full_pass(via="catch-up")).failed == 3
    assert logged(caplog) == still
    assert await streaks(ccv, "ccv", still) == [2, 2, 2]


async def test_ccnow_orders_still_failing_when_the_account_answers_again_fail_in_that_pass(
    ccnow: CCNowCoordinator, fake_ccnow: FakeCCNow, caplog: pytest.LogCaptureFixture
) -> None:
    await ccnow.store.orders.track("ccnow", "default", [(i, None) for i in CCNOW_IDS], 1.0)
    fake_ccnow.orders = dict.fromkeys(CCNOW_IDS, "processing")
    assert (await ccnow.full_pass(via="catch-up")).ok
    caplog.set_level(logging.WARNING, logger="reconciler")
    # An error line for every order: the account's checks fail.
    fake_ccnow.order_errors = set(CCNOW_IDS)
    assert (await ccnow.full_pass(via="catch-up")).failed_sources
    assert (await kinds(ccnow))[-1] == "source.failed" and logged(caplog) == []
    assert await streaks(ccnow, "ccnow", CCNOW_IDS) == [1] * 4

    fake_ccnow.order_errors = {CCNOW_IDS[0]}
    report = await ccnow.full_pass(via="catch-up")
    assert report.failed == 1 and not report.failed_sources
    assert (await kinds(ccnow))[-1] == "source.recovered"
    assert logged(caplog) == [CCNOW_IDS[0]]
    assert await streaks(ccnow, "ccnow", CCNOW_IDS) == [1, 0, 0, 0]


async def test_a_recovering_pass_holds_a_bounded_number_of_outage_failures(
    ccv: CCVCoordinator,
    fake_ccv: FakeCCV,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the outage failures a pass holds (a batch's worth: the reconciler's batch_rows, 2
    here) an order's failure is forgotten with the outage's and counted a pass later, as before
    117dbb2."""
    # Set after the reconciler was made, as tests/store/test_retention.py does: the bound
    # follows it (a copy made at the start did not).
    ccv.writer.batch_rows = 2
    await ccv.store.orders.track("ccv", "default", [(i, None) for i in CCV_IDS], 1.0)
    fake_ccv.orders = dict.fromkeys(CCV_IDS, "New")
    assert (await ccv.full_pass(via="catch-up")).ok
    caplog.set_level(logging.WARNING, logger="reconciler")
    fake_ccv.always = Reply(503, "")
    assert (await ccv.full_pass(via="catch-up")).failed_sources

    fake_ccv.always = None
    still = CCV_IDS[:3]
    fake_ccv.replies = dict.fromkeys(still, Reply(503, ""))
    assert (await ccv.full_pass(via="catch-up")).failed == 3
    assert (await kinds(ccv))[-1] == "source.recovered"
    held = logged(caplog)
    assert len(held) == 2 and set(held) < set(still)  # the first two answers, whichever
    assert sorted(await streaks(ccv, "ccv", still)) == [0, 1, 1]

    # The third fails on its own in the next pass.
    assert (await ccv.full_pass(via="catch-up")).failed == 3
    assert logged(caplog) == still
    assert sorted(await streaks(ccv, "ccv", still)) == [1, 2, 2]
