"""The daemon's catch-up pass asks the open orders there were when it began, and leaves those
tracked since to the due ticks beside it: it read every page up to the last, those tracked
meanwhile too, and the tick asked them as well (twice each). The `catch-up` command, beside which
no tick runs, still asks every order its pages reach."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import BATCH_ROWS
from tests.fake_providers import FakeCCV
from tests.poller.test_ccv_due_tick_during_catch_up import LATE, coordinators

MANY = [f"5a1e0000-0000-4000-8001-{n:012d}" for n in range(450)]
PAGE = 200  # three pages: LATE, tracked while the first is asked, lands in the last


async def _tracked_during_the_pass(
    built: Coordinators, fake_ccv: FakeCCV, *, tick: bool, dated_before: bool = False
) -> asyncio.Future[object]:
    """Start the pass with MANY tracked, track LATE while its first page is asked (a due tick
    beside it then, with `tick`), and return the pass; its first page is answered on release."""
    ccv = built.ccv["default"]
    ccv.page_orders = PAGE
    store = ccv.store
    fake_ccv.orders = dict.fromkeys([*MANY, LATE], "New")
    await store.orders.track("ccv", "default", [(i, None) for i in MANY], ccv.now())
    fake_ccv.answer_late = lambda seen: seen.order_id == MANY[PAGE - 1]  # the first page held
    dated = ccv.now()  # `track` dates its orders before it waits for the writer
    passing: asyncio.Future[object] = asyncio.ensure_future(
        built.startup_pass() if tick else built.catch_up()
    )
    await fake_ccv.wait_until(lambda: len(fake_ccv.requests) >= PAGE)
    await store.orders.track("ccv", "default", [(LATE, None)], dated if dated_before else ccv.now())
    if tick:
        assert [t.report.checked for t in await ccv.tick_due()] == [1]  # LATE, within seconds
    return passing


async def test_the_daemons_catch_up_leaves_an_order_tracked_since_to_the_tick(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    async with coordinators(tmp_path, fake_ccv, 10_000, concurrency=2) as built:
        passing = await _tracked_during_the_pass(built, fake_ccv, tick=True)
        fake_ccv.release.set()
        await passing
    assert len(fake_ccv.requests_for(LATE)) == 1
    assert all(len(fake_ccv.requests_for(i)) == 1 for i in MANY)


async def test_an_order_dated_before_the_pass_but_written_after_it_began_is_the_ticks(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # A bulk `track` that waited for the writer while the daemon's pass began: past the pass's
    # last row, so no page of it asks the order, and the tick must.
    async with coordinators(tmp_path, fake_ccv, 10_000, concurrency=2) as built:
        passing = await _tracked_during_the_pass(built, fake_ccv, tick=True, dated_before=True)
        fake_ccv.release.set()
        await passing
    assert len(fake_ccv.requests_for(LATE)) == 1


async def test_the_catch_up_command_asks_an_order_tracked_before_its_last_page(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    async with coordinators(tmp_path, fake_ccv, BATCH_ROWS, concurrency=2) as built:
        passing = await _tracked_during_the_pass(built, fake_ccv, tick=False)
        fake_ccv.release.set()
        await passing
    assert len(fake_ccv.requests_for(LATE)) == 1
    assert all(len(fake_ccv.requests_for(i)) == 1 for i in MANY)
