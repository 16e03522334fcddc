"""Cost that follows work, not size: what runs every tick, every scrape of /metrics, every
/healthz and every `reconciler status` reads indexes of the few rows concerned or counts kept
by the store, never a whole table; and the kept counts always equal a full count."""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.commands.status_report import gather_status
from reconciler.config import Config, load_config
from reconciler.daemon import Daemon
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.reconcile import Reconciler
from reconciler.runtime import Runtime
from reconciler.store import Store
from reconciler.store.counts import FULL_COUNT_SQL
from reconciler.systemd import Notifier
from tests.conftest import write_config
from tests.fake_providers import CCV_KEY, FakeCCV, Reply

# Partial indexes hold only the rows a query is about (due, stuck, failing, pending, dead):
# reading one whole costs what the work costs. Any other SCAN of these tables reads every row.
_PARTIAL = r"(orders_due|orders_stuck|orders_failing|deliveries_due|deliveries_dead)"
_WHOLE_TABLE = re.compile(
    rf"SCAN (orders|events|deliveries)\b(?! USING (COVERING )?INDEX {_PARTIAL}\b)"
    # every order of an account, through the key (source, account, order_id)
    r"|SEARCH orders USING (COVERING )?INDEX sqlite_autoindex_orders_1 "
    r"\(source=\? AND account=\?\)"
)
ORDERS = [f"0b7c1f3e-0000-4000-8000-{i:012d}" for i in range(6)]


def whole_table_reads(db: Path, statements: list[str]) -> dict[str, str]:
    """Return the plan of every statement that reads a whole table (or an account's orders)."""
    conn = sqlite3.connect(db)
    try:
        found = {}
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            plan = " | ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            if _WHOLE_TABLE.search(plan):
                found[sql] = plan
        return found
    finally:
        conn.close()


async def test_ticks_scrapes_health_and_status_read_no_whole_table(
    tmp_path: Path, fake_ccv: FakeCCV, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CCV_API_KEY", CCV_KEY)
    config = load_config(
        write_config(tmp_path, ccv=fake_ccv, extra='[alerts.stuck_after.ccv]\nNew = "1m"\n')
    )
    fake_ccv.orders = dict.fromkeys(ORDERS, "New")
    async with Runtime(config) as rt:
        daemon = Daemon(config, rt, Notifier(None))
        store = rt.store
        await store.orders.track("ccv", "default", [(o, None) for o in ORDERS], time.time())
        await rt.coordinators.ccv["default"].check(ORDERS, via="poll")
        fake_ccv.always = Reply(500)  # a failing account: status looks up when it began
        await rt.coordinators.ccv["default"].check(ORDERS[:1], via="poll")
        statements: list[str] = []
        await store.conn.set_trace_callback(statements.append)
        # A tick: the account's health, its due orders, the outbox's due deliveries; a poll.
        await store.sources.state("ccv", "default")
        await store.orders.due(
            "ccv", "default", time.time() + 86400, 64, settled_since=time.time() - 86400
        )
        await store.orders.with_status("ccv", "default", ["New"])  # as CCNow's pending list
        await rt.delivery.drain(0.5)
        await daemon.hub.refresh_metrics()
        await daemon.hub.health()
        await gather_status(config, store, time.time())

    assert len(statements) > 10
    assert whole_table_reads(tmp_path / "reconciler.db", statements) == {}


def _config(workdir: Path) -> Config:
    path = workdir / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{workdir / "reconciler.db"}"\n\n'
        '[[ccv]]\nname = "default"\nbase_url = "http://127.0.0.1:9"\napi_key = "unused"\n\n'
        '[[ccv]]\nname = "shop"\nbase_url = "http://127.0.0.1:9"\napi_key = "unused"\n'
    )
    return load_config(path)


# One write: ("track" | "untrack" | "check" | "discover", account, order indexes, statuses).
# A check is a batch of `Reconciler.apply` (status changes of known orders counted per batch),
# read through a page the pass holds when it asks for one; a discovery follows new orders too
# (the CCNow pending list: rows inserted by the batch).
_STATUSES = ["New", "Processing", "Completed", "Cancelled", "Failed"]
_WRITE = st.tuples(
    st.sampled_from(["track", "untrack", "check", "discover"]),
    st.sampled_from(["default", "shop"]),
    st.lists(st.integers(0, 11), max_size=8),
    st.lists(st.integers(0, len(_STATUSES) - 1), min_size=8, max_size=8),
    st.booleans(),
)
_Write = tuple[str, str, list[int], list[int], bool]
# Each kind of write on both accounts, paged or not, over orders and statuses that shift.
_EVERY_WRITE = [
    (
        kind,
        account,
        [(3 * n + k) % 12 for k in range(8)],
        [(n + k) % len(_STATUSES) for k in range(8)],
        paged,
    )
    for n, (kind, account, paged) in enumerate(
        itertools.product(
            ["track", "check", "discover", "untrack"], ["default", "shop"], [True, False]
        )
    )
]


async def _kept_and_full(workdir: Path, writes: list[_Write]) -> None:
    config = _config(workdir)
    store = await Store.open(config.store_path)
    try:
        reconciler = Reconciler(config, store)
        # Held across writes, as a pass holds its page: the store keeps it current or stale.
        pages = {a: await store.orders.page("ccv", a) for a in ("default", "shop")}
        for n, (kind, account, picks, statuses, paged) in enumerate(writes):
            ids = [f"A-{i}" for i in dict.fromkeys(picks)]
            if kind == "track":
                await store.orders.track("ccv", account, [(i, None) for i in ids], float(n))
                pages[account] = await store.orders.page("ccv", account)
            elif kind == "untrack":
                await store.orders.untrack("ccv", account, ids)
            else:  # found orders take their status; untracked ones are dropped unless discovered
                observations = [
                    Observation(OrderKey("ccv", account, i), Outcome.OK, _STATUSES[status])
                    for i, status in zip(ids, statuses, strict=False)
                ]
                page = pages[account] if paged else None
                await reconciler.apply(
                    observations, via="poll", discover=kind == "discover", page=page
                )
            kept = await store.orders.counts()
            full = {
                (r[0], r[1], r[2]): r[3] for r in await store.conn.execute_fetchall(FULL_COUNT_SQL)
            }
            assert kept == full, (n, writes[: n + 1])
    finally:
        await store.close()


# Each example opens a store (7 s of a loaded run at 60): 25 draws, and one example of every
# kind of write (_EVERY_WRITE).
@settings(max_examples=25, deadline=None)
@given(writes=st.lists(_WRITE, max_size=12))
@example(writes=_EVERY_WRITE)
def test_kept_counts_equal_a_full_count_after_any_writes(writes: list[_Write]) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(_kept_and_full(Path(workdir), writes))


async def test_a_batch_of_status_changes_writes_the_counts_once_per_status(
    tmp_path: Path,
) -> None:
    # A first catch-up changes every order's status: the counts must cost per batch what a
    # few rows cost, not two statements per order.
    config = _config(tmp_path)
    store = await Store.open(config.store_path)
    try:
        ids = [f"A-{i}" for i in range(300)]
        await store.orders.track("ccv", "default", [(i, None) for i in ids], 0.0)
        observations = [
            Observation(OrderKey("ccv", "default", oid), Outcome.OK, _STATUSES[i % 3])
            for i, oid in enumerate(ids)
        ]
        before = store.conn.total_changes  # rows written, triggers' included
        await Reconciler(config, store).apply(observations, via="catch-up")
        written = store.conn.total_changes - before
        assert await store.orders.counts() == {
            ("ccv", "default", "New"): 100,
            ("ccv", "default", "Processing"): 100,
            ("ccv", "default", "Completed"): 100,
        }
    finally:
        await store.close()
    # Each order's row, its event and its outbox row (one sink); then the counts: the 300
    # orders left '' (not checked yet) for three statuses, four rows written.
    assert written - 3 * len(ids) == 4


def _old_store(db: Path, version: int) -> sqlite3.Connection:
    """Return a connection to a store built by the migrations up to `version`."""
    from reconciler.store.migrations import MIGRATIONS, statements

    conn = sqlite3.connect(db, isolation_level=None)
    for script in MIGRATIONS[:version]:
        for sql in statements(script):
            conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_a_store_from_before_the_counts_gets_them_counted(tmp_path: Path) -> None:
    # Built by the migrations before the counts (6 and earlier), with orders in it.
    db = tmp_path / "reconciler.db"
    conn = _old_store(db, 6)
    conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
    conn.executemany(
        "INSERT INTO orders (source, account, order_id, status) VALUES ('ccv', 'default', ?, ?)",
        [("A-1", None), ("A-2", "New"), ("A-3", "New")],
    )
    conn.close()

    async def counts() -> dict[tuple[str, str, str | None], int]:
        store = await Store.open(db)
        try:
            return await store.orders.counts()
        finally:
            await store.close()

    assert asyncio.run(counts()) == {("ccv", "default", None): 1, ("ccv", "default", "New"): 2}


def test_a_store_with_the_per_order_trigger_loses_it_and_counts_stay_right(
    tmp_path: Path,
) -> None:
    # Built when a trigger counted every status change (migrations 7 and 8): that trigger must
    # go, or the changes a batch counts itself would be counted twice.
    db = tmp_path / "reconciler.db"
    conn = _old_store(db, 8)
    conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
    conn.execute(
        "INSERT INTO orders (source, account, order_id, status) VALUES ('ccv', 'default', ?, ?)",
        ("A-1", "New"),
    )
    conn.close()

    async def change_and_count() -> tuple[list[str], dict[tuple[str, str, str | None], int]]:
        config = _config(tmp_path)
        store = await Store.open(db)
        try:
            observation = Observation(OrderKey("ccv", "default", "A-1"), Outcome.OK, "Completed")
            await Reconciler(config, store).apply([observation], via="poll")
            rows = await store.conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
            )
            return [r[0] for r in rows], await store.orders.counts()
        finally:
            await store.close()

    triggers, kept = asyncio.run(change_and_count())
    assert "order_counts_update" not in triggers
    assert kept == {("ccv", "default", "Completed"): 1}
