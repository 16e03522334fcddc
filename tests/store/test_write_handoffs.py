"""A pass's write (store/orders.py `save`, store/events.py `add`) hands its statements to the
database thread at once, on a real SQLite file: while the event loop is busy with HTTP each
hand-off waits for the thread and then the loop to run again, and the writer's lock (and with it
every sink's read) is held meanwhile."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from reconciler.store.sql import run_statements
from tests.conftest import count_handoffs
from tests.fake_providers import CCV_KEY

# Statuses that differ from one write to the next, some ending the order: the batches take the
# statements of changed and ended rows and of references (the same rows in every size).
STATUSES = ("New", "Processing", "Completed")


def observations(first: int, n: int, status_of: int) -> list[Observation]:
    return [
        Observation(
            OrderKey("ccv", "a", f"O-{i}"),
            Outcome.OK,
            STATUSES[(i + status_of) % len(STATUSES)],
            f"ref-{i}" if i % 2 else None,
        )
        for i in range(first, first + n)
    ]


def config_with_store(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """Write a config of one CCV account and a store named `name`; return (config, store)."""
    path = tmp_path / f"{name}.toml"
    db = tmp_path / f"{name}.db"
    path.write_text(
        f'[store]\npath = "{db}"\n\n[[ccv]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\n'
        f'api_key = "{CCV_KEY}"\n'
    )
    return path, db


async def handoffs_of_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int
) -> tuple[int, int]:
    """Return the hand-offs of a first and a second write of `n` orders, and check the rows."""
    path, db = config_with_store(tmp_path, f"{n}")
    store = await Store.open(db)
    try:
        await store.orders.track("ccv", "a", [(f"O-{i}", None) for i in range(n)], 1.0)
        reconciler = Reconciler(load_config(path), store)
        # The page of orders a pass holds: the write reads its orders from it, as a pass does.
        page = await store.orders.page("ccv", "a")
        counts = []
        for status_of in (0, 1):
            with monkeypatch.context() as patch:
                handed = count_handoffs(patch, store)
                batch = observations(0, n, status_of)
                events = await reconciler.apply(batch, via="poll", page=page)
            assert events == n  # every order discovered, then changed: one event each
            counts.append(len(handed))
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 2 * n
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 2 * n
        statuses = dict(conn.execute("SELECT order_id, status FROM orders"))
        references = dict(conn.execute("SELECT order_id, external_reference FROM orders"))
    assert statuses == {o.key.order_id: o.status for o in observations(0, n, 1)}
    assert references == {f"O-{i}": f"ref-{i}" if i % 2 else None for i in range(n)}
    return counts[0], counts[1]


async def test_a_batch_costs_the_same_hand_offs_whatever_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 orders take one statement per kind of row; 2,777 take many (chunks of 1000, then
    # powers of two): the same number of hand-offs.
    small = await handoffs_of_a_batch(tmp_path, monkeypatch, 3)
    large = await handoffs_of_a_batch(tmp_path, monkeypatch, 2777)
    assert large == small
    # At most BEGIN, the page's check (PRAGMA data_version), the rows, the events with their
    # deliveries, COMMIT; the first write also reads the highest event seq.
    assert small[0] <= 6 and small[1] <= 5


async def handoffs_of_a_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int
) -> list[str]:
    """Return the names of what writing `n` orders a pass discovered (none of them followed
    before, as in a first CCNow pending list) handed to the database thread; check the rows."""
    path, db = config_with_store(tmp_path, f"d{n}")
    store = await Store.open(db)
    try:
        reconciler = Reconciler(load_config(path), store)
        with monkeypatch.context() as patch:
            handed = count_handoffs(patch, store)
            events = await reconciler.apply(observations(0, n, 0), via="poll", discover=True)
        assert events == n
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        statuses = dict(conn.execute("SELECT order_id, status FROM orders"))
        counted = conn.execute("SELECT sum(n) FROM order_counts").fetchone()[0]
    assert statuses == {o.key.order_id: o.status for o in observations(0, n, 0)}
    assert counted == n
    return [getattr(fn, "__name__", "") for fn in handed]


async def test_discovered_orders_are_written_by_the_statement_not_by_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An executemany steps once per row, and each step takes the GIL back from the event loop
    # (milliseconds while it is busy with HTTP), all under the writer's lock: new orders are
    # rows of multi-row statements, handed over with the rest of the batch's rows.
    small = await handoffs_of_a_discovery(tmp_path, monkeypatch, 4)
    large = await handoffs_of_a_discovery(tmp_path, monkeypatch, 1500)
    # (The orders are looked up 500 ids a read: the reads grow with the batch, not the writes.)
    writes = [[name for name in names if name != "_execute_fetchall"] for names in (small, large)]
    assert writes[0] == writes[1]
    assert "executemany" not in large


def test_a_statement_counts_the_rows_it_wrote_not_what_its_triggers_did(tmp_path: Path) -> None:
    # `events.add` tells a gap in the seqs (a skipped event) by these counts: a trigger's rows
    # (the orders' status counts are kept by triggers) must not make one look written.
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.executescript(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
            "CREATE TABLE log (v TEXT);"
            "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN"
            " INSERT INTO log VALUES (new.v); INSERT INTO log VALUES (new.v); END;"
        )
        insert = "INSERT INTO t (id, v) VALUES (?, ?), (?, ?) ON CONFLICT (id) DO NOTHING"
        assert run_statements(conn, [(insert, (1, "a", 2, "b"))]) == [2]
        assert run_statements(conn, [(insert, (2, "b", 3, "c")), ("DELETE FROM log", ())]) == [1, 6]
