"""A failing CCV account's recovery check (one order per backoff period) asks an order whose last
check answered before one that fails on its own (an unusable status or reference): CCV answers
again, and the first check after the outage recovers the account, though most of its orders
fail alone and are due sooner (README, "Isolation")."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.poller.ccv import CCVCoordinator
from reconciler.poller.coordinators import Coordinators
from reconciler.reconcile import Reconciler
from reconciler.sources.ccv import PROBE_ORDER_ID
from reconciler.sources.http import Gates
from reconciler.store import Store
from tests.conftest import Clock, write_config
from tests.fake_providers import CCV_KEY, FakeCCV, html_page

HEALTHY = [f"OK-{n}" for n in range(6)]
BAD_STATUS = [f"BAD-STATUS-{n}" for n in range(5)]  # "Proc\u2028essing": unusable_status
BAD_REFERENCE = [f"BAD-REF-{n}" for n in range(4)]  # "ref\u2028x": unusable_reference
POLL_S = 10.0
STEP_S = 2.5  # the due tick's period (min_interval / 2)


@pytest.fixture
async def ccv(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CCVCoordinator, Clock]]:
    """A CCV account over the real client and the loopback fake: 15 orders, 9 failing alone
    every check (due every min_interval), 6 answering (`Processing`: every 10 minutes, longer
    than a backoff period, as at a poll_interval of minutes)."""
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    extra = (
        f'poll_interval = "{POLL_S:.0f}s"\nmin_interval = "5s"\nmax_interval = "20m"\n'
        'status_intervals = { Processing = "10m" }'
    )
    config = load_config(write_config(tmp_path, ccv=fake_ccv, ccv_extra=extra))
    store = await Store.open(tmp_path / "reconciler.db")
    clock = Clock()
    fake_ccv.orders = {
        **dict.fromkeys(HEALTHY, "Processing"),
        **dict.fromkeys(BAD_STATUS, "Proc\u2028essing"),
        **dict.fromkeys(BAD_REFERENCE, "New"),
    }
    fake_ccv.refs = dict.fromkeys(BAD_REFERENCE, "ref\u2028x")
    ids = HEALTHY + BAD_STATUS + BAD_REFERENCE
    try:
        async with aiohttp.ClientSession() as session:
            writer = Reconciler(config, store, clock=clock)
            coordinator = Coordinators.build(config, writer, session, Gates()).ccv["default"]
            await store.orders.track("ccv", "default", [(i, None) for i in ids], clock.now)
            await coordinator.full_pass(via="catch-up")
            yield coordinator, clock
    finally:
        await store.close()


async def tick(coordinator: CCVCoordinator, clock: Clock, step: int) -> None:
    """Move the clock one due tick and tick as the scheduler does (the heartbeat every poll)."""
    clock.now += STEP_S
    await coordinator.tick_due()
    if step % int(POLL_S / STEP_S) == 0:
        await coordinator.heartbeat()


async def kinds(coordinator: CCVCoordinator) -> list[str]:
    return [e.type for e in await coordinator.store.events.history() if e.order_id is None]


def _inf(sql: str) -> str:
    return re.sub(r"\bInf\b", "9e999", sql)


async def outage(coordinator: CCVCoordinator, clock: Clock, fake_ccv: FakeCCV) -> int:
    """Run the account as it answers, then a gateway's page until a due tick fails it; CCV
    answers again from then on. Return the tick's step."""
    for step in range(1, 13):  # half a minute: the troubled orders fail alone, again and again
        await tick(coordinator, clock, step)
    assert await kinds(coordinator) == []  # the probe answers beside them: CCV answers
    troubled = await coordinator.store.orders.failing_counts()
    assert troubled == {("ccv", "default"): len(BAD_STATUS) + len(BAD_REFERENCE)}

    # A gateway's page until a due tick finds it (the troubled orders are due every 5 s).
    fake_ccv.always = html_page(502)
    for step in range(1, 5):
        await tick(coordinator, clock, step)
        if await kinds(coordinator):
            break
    assert await kinds(coordinator) == ["source.failed"]
    fake_ccv.always = None  # CCV answers again
    return step


async def test_the_first_recovery_check_after_a_short_outage_asks_an_answering_order(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV
) -> None:
    coordinator, clock = ccv
    found = await outage(coordinator, clock, fake_ccv)
    asked = len(fake_ccv.requests)
    for step in range(found + 1, found + int(POLL_S / STEP_S) + 1):  # the backoff period
        await tick(coordinator, clock, step)
    assert await kinds(coordinator) == ["source.failed", "source.recovered"]
    # One order asked, as before: an answering one, though not due for minutes.
    checked = [r.order_id for r in fake_ccv.requests[asked:] if r.order_id != PROBE_ORDER_ID]
    assert len(checked) == 1 and checked[0] in HEALTHY
    assert not (await coordinator.store.sources.state("ccv", "default")).failing


async def test_the_recovery_check_reads_the_accounts_answered_orders_not_every_due_order(
    ccv: tuple[CCVCoordinator, Clock], fake_ccv: FakeCCV, tmp_path: Path
) -> None:
    # By next_check_at, the answered orders of a failing account (few, or due late) were found
    # after the due orders of every account: half a second over 200,000 open orders, every
    # backoff period, holding the store's one connection.
    coordinator, clock = ccv
    found = await outage(coordinator, clock, fake_ccv)
    statements: list[str] = []
    await coordinator.store.conn.set_trace_callback(statements.append)
    for step in range(found + 1, found + 2 * int(POLL_S / STEP_S)):  # until the recovery
        await tick(coordinator, clock, step)
        if len(await kinds(coordinator)) > 1:
            break
    traced = list(statements)  # what follows is the test's own
    assert await kinds(coordinator) == ["source.failed", "source.recovered"]

    conn = sqlite3.connect(tmp_path / "reconciler.db")
    try:
        plans = {
            # SQLite writes an infinite parameter as a word it does not read back.
            sql: " | ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {_inf(sql)}"))
            for sql in traced
            if sql.lstrip().upper().startswith("SELECT") and "FROM orders" in sql
        }
    finally:
        conn.close()
    # The answered orders through the account's open orders, in the index's order (no sort),
    # and no walk of the due orders: an answered one came back.
    read = [p for sql, p in plans.items() if "status IS NOT NULL" in sql]
    assert read == ["SEARCH orders USING INDEX orders_open (source=? AND account=?)"]
    # The resting ticks read the orders a submit just tracked (poller/first_checks.py) through
    # the due index, but only the range of those (next_check_at -1, `FIRST_CHECK_AT`), not
    # every due order nor every one tracked and never checked (next_check_at 0).
    walks = {sql: p for sql, p in plans.items() if "orders_due" in p}
    assert all("next_check_at <= -1.0 " in sql and "first_seen IS NOT NULL" in sql for sql in walks)
