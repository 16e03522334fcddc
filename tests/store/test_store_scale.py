"""Cost that follows work, not size: a catch-up and the retention prune at its end read the open
orders and the orders to delete through indexes of those rows, never the ended orders of a year
that stay (a million rows after a year of business: seconds on every catch-up)."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.runtime import Runtime
from reconciler.store import Store
from tests.conftest import write_config
from tests.fake_providers import CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV

DAY = 86400.0
CCV_OPEN = [f"0be11a00-0000-4000-8000-{i:012d}" for i in range(20)]
CCNOW_OPEN = [f"396-10-{1000 + i}" for i in range(20)]
PRUNED = 10  # ended orders older than the retention window, in every store
# Reading an ordered range of rows by rowid, or an account's orders through its key: both
# read the ended orders as well as the open ones.
_ALL_ORDERS = re.compile(
    r"SCAN orders\b(?! USING (COVERING )?INDEX orders_)"
    r"|SEARCH orders USING INTEGER PRIMARY KEY \(rowid[<>]"
    r"|SEARCH orders USING (COVERING )?INDEX sqlite_autoindex_orders_1 "
    r"\(source=\? AND account=\?(\)| AND order_id[<>])"
)


def _add_ended_orders(db: Path, count: int, now: float) -> None:
    """Add ended orders of both sources, as a year of business leaves them; PRUNED of each
    ended before the retention window."""
    rows = []
    for source, status in (("ccv", "Completed"), ("ccnow", "canceled")):
        for i in range(count):
            at = now - (500 if i < PRUNED else 30) * DAY
            rows.append((source, f"{source}-ended-{i}", status, at, at, at, at))
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        # Ended orders before the open ones, in storage order, as they are after a year.
        conn.executemany(
            "INSERT INTO orders (source, account, order_id, status, first_seen, last_changed, "
            "last_checked, tracked_at, end_state, next_check_at) "
            "VALUES (?, 'default', ?, ?, ?, ?, ?, ?, 1, 9e999)",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _catch_up_steps(
    workdir: Path, ended: int, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> tuple[int, list[str], int]:
    """Run what `reconciler catch-up` runs on a store of `ended` ended orders per source; return
    the SQLite VM steps it took (in thousands), its statements and the orders pruned."""
    workdir.mkdir()
    config = load_config(write_config(workdir, ccv=fake_ccv, ccnow=fake_ccnow))
    now = time.time()
    store = await Store.open(config.store_path)
    await store.close()
    _add_ended_orders(config.store_path, ended, now)
    statements: list[str] = []
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    async with Runtime(config) as rt:
        await rt.store.orders.track("ccv", "default", [(o, None) for o in CCV_OPEN], now)
        await rt.store.orders.track("ccnow", "default", [(o, None) for o in CCNOW_OPEN], now)
        await rt.store.conn.set_trace_callback(statements.append)
        await rt.store.conn.set_progress_handler(step, 1000)
        report = await rt.coordinators.catch_up()
        await rt.delivery.drain(5.0)
        await rt.prune()
        taken, run = steps, list(statements)  # what follows is the test's own
        left = next(iter(await rt.store.conn.execute_fetchall("SELECT count(*) FROM orders")))
    assert (report.checked, report.failed) == (len(CCV_OPEN) + len(CCNOW_OPEN), 0)
    pruned = 2 * ended + len(CCV_OPEN) + len(CCNOW_OPEN) - int(left[0])
    return taken, run, pruned


def _orders_read_whole(db: Path, statements: list[str]) -> dict[str, str]:
    """Return the plan of every statement that reads the ended orders along with the rest."""
    conn = sqlite3.connect(db)
    try:
        found = {}
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH", "DELETE", "UPDATE")):
                continue
            plan = " | ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            if _ALL_ORDERS.search(plan):
                found[sql] = plan
        return found
    finally:
        conn.close()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    monkeypatch.setenv("RECONCILER_CCNOW_PASSWORD", CCNOW_PASSWORD)


@pytest.mark.usefixtures("credentials")
async def test_a_catch_up_reads_no_ended_order_that_stays(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_OPEN, "Processing")
    fake_ccnow.orders = dict.fromkeys(CCNOW_OPEN, "processing")
    _, statements, pruned = await _catch_up_steps(tmp_path / "s", 200, fake_ccv, fake_ccnow)

    assert pruned == 2 * PRUNED  # retention ran, and found what it had to delete
    assert _orders_read_whole(tmp_path / "s" / "reconciler.db", statements) == {}


@pytest.mark.usefixtures("credentials")
async def test_a_catch_up_costs_the_same_beside_fifty_times_more_ended_orders(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    fake_ccv.orders = dict.fromkeys(CCV_OPEN, "Processing")
    fake_ccnow.orders = dict.fromkeys(CCNOW_OPEN, "processing")
    small, _, _ = await _catch_up_steps(tmp_path / "small", 400, fake_ccv, fake_ccnow)
    large, _, pruned = await _catch_up_steps(tmp_path / "large", 20_000, fake_ccv, fake_ccnow)

    assert pruned == 2 * PRUNED
    # The same work, the same SQLite steps, give or take the depth of a larger b-tree.
    assert large <= 1.5 * small, (small, large)
