"""The page of orders a pass holds (store/orders.py), on a real SQLite file: a pass reads its
own page, every write of this process keeps the pages current, and a page that might be wrong
(after untrack, track, a rolled-back batch) is never read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import Config, load_config
from reconciler.model import Observation, OrderKey, OrderState, Outcome
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from reconciler.store.live_pages import Page
from reconciler.store.order_steps import pull_ahead, shift_back
from tests.fake_providers import CCV_KEY


def config_for(tmp_path: Path) -> Config:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "reconciler.db"}"\n\n'
        '[[ccv]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\n'
        f'api_key = "{CCV_KEY}"\n\n'
        '[[ccv]]\nname = "b"\nbase_url = "http://127.0.0.1:9"\n'
        f'api_key = "{CCV_KEY}"\n'
    )
    return load_config(path)


def ok(account: str, order_id: str, status: str, ref: str | None = None) -> Observation:
    return Observation(OrderKey("ccv", account, order_id), Outcome.OK, status, ref)


def row(tmp_path: Path, order_id: str) -> tuple[object, ...] | None:
    """The order's row as another process reads it."""
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        found = conn.execute(
            "SELECT status, external_reference, version FROM orders WHERE order_id = ?",
            (order_id,),
        ).fetchone()
        return tuple(found) if found is not None else None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "reconciler.db")
    try:
        await opened.orders.track("ccv", "a", [("A-1", None), ("A-2", None)], 1.0)
        await opened.orders.track("ccv", "b", [("B-1", None)], 1.0)
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def reconciler(tmp_path: Path, store: Store) -> Reconciler:
    return Reconciler(config_for(tmp_path), store)


async def load(store: Store, order_id: str, page: Page | None) -> OrderState | None:
    key = OrderKey("ccv", "a", order_id)
    return (await store.orders.load([key], page)).get(key)


async def test_each_pass_holds_its_own_page(store: Store, reconciler: Reconciler) -> None:
    page_a = await store.orders.page("ccv", "a")
    page_b = await store.orders.page("ccv", "b")
    assert (page_a.ids, page_b.ids) == (["A-1", "A-2"], ["B-1"])

    # Pass b's page holds nothing of account a; pass a's page was not replaced by it.
    assert await store.orders.load([OrderKey("ccv", "a", "A-1")], page_b) != {}
    await reconciler.apply([ok("b", "B-1", "New")], via="poll", page=page_b)
    await reconciler.apply([ok("a", "A-1", "New")], via="poll", page=page_a)
    await reconciler.apply([ok("a", "A-1", "Processing")], via="poll", page=page_a)
    assert row(Path(store.path).parent, "A-1") == ("Processing", None, 2)
    assert row(Path(store.path).parent, "B-1") == ("New", None, 1)


async def test_a_write_outside_the_pass_keeps_its_page_current(
    store: Store, reconciler: Reconciler
) -> None:
    page = await store.orders.page("ccv", "a")
    # A notification's check of A-1 while the pass runs: no page of its own.
    await reconciler.apply([ok("a", "A-1", "New", "ref-1")], via="notification")
    state = await load(store, "A-1", page)
    assert state is not None and (state.status, state.version) == ("New", 1)

    # The pass's own answer for A-1 then changes nothing: no second event for the same change.
    assert await reconciler.apply([ok("a", "A-1", "New", "ref-1")], via="poll", page=page) == 0
    assert row(Path(store.path).parent, "A-1") == ("New", "ref-1", 1)


async def test_a_page_read_before_untrack_does_not_bring_the_order_back(
    store: Store, reconciler: Reconciler
) -> None:
    page = await store.orders.page("ccv", "a")
    assert await store.orders.untrack("ccv", "a", ["A-1"]) == 1
    assert await load(store, "A-1", page) is None

    # The pass's answer for A-1 arrives after the untrack: the untrack wins.
    assert await reconciler.apply([ok("a", "A-1", "New")], via="poll", page=page) == 0
    assert row(Path(store.path).parent, "A-1") is None


async def test_a_page_read_before_track_sees_the_new_reference(
    store: Store, reconciler: Reconciler
) -> None:
    page = await store.orders.page("ccv", "a")
    await store.orders.track("ccv", "a", [("A-2", "ref-2")], 2.0)
    await reconciler.apply([ok("a", "A-2", "New")], via="poll", page=page)
    assert row(Path(store.path).parent, "A-2") == ("New", "ref-2", 1)
    [event] = await store.events.history()
    assert json.loads(event.body)["data"]["external_reference"] == "ref-2"


async def test_a_rolled_back_batch_leaves_no_trace_in_the_page(
    store: Store, reconciler: Reconciler
) -> None:
    page = await store.orders.page("ccv", "a")

    async def fail(rows: object, written: float) -> list[object]:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(Exception, match="disk I/O error"):
        await reconciler.apply(
            [ok("a", "A-1", "New")],
            via="poll",
            page=page,
            within=fail,  # type: ignore[arg-type]
        )
    state = await load(store, "A-1", page)
    assert state is not None and (state.status, state.version) == (None, 0)

    # Found again by the next check, it is one change with one event, as if the first never was.
    assert await reconciler.apply([ok("a", "A-1", "New")], via="poll", page=page) == 1
    assert row(Path(store.path).parent, "A-1") == ("New", None, 1)


async def test_an_order_not_followed_yet_is_written_when_discovered(
    store: Store, reconciler: Reconciler
) -> None:
    page = await store.orders.page("ccv", "a")
    assert await reconciler.apply([ok("a", "A-9", "New")], via="poll", page=page) == 0
    assert row(Path(store.path).parent, "A-9") is None  # not followed: dropped
    assert await reconciler.apply([ok("a", "A-9", "New")], via="poll", discover=True) == 1
    assert row(Path(store.path).parent, "A-9") == ("New", None, 1)


async def test_a_batch_of_an_earlier_page_reads_what_another_process_wrote_since(
    store: Store, reconciler: Reconciler, tmp_path: Path
) -> None:
    first = await store.orders.page("ccv", "a", limit=1)
    with sqlite3.connect(tmp_path / "reconciler.db") as other:
        other.execute("UPDATE orders SET status = 'Processing', version = 1 WHERE order_id = 'A-1'")
    second = await store.orders.page("ccv", "a", after=first.after, limit=1)

    # Read again, A-1 is the other process's row: New is a change from Processing.
    assert await reconciler.apply([ok("a", "A-1", "New")], via="poll", page=second) == 1
    [event] = await store.events.history()
    assert json.loads(event.body)["data"]["previous_status"] == "Processing"


def order_writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("UPDATE orders SET status")]


async def test_a_batch_sets_the_indexed_columns_only_of_the_orders_they_change_for(
    store: Store, reconciler: Reconciler
) -> None:
    # SQLite rewrites an index for every row whose UPDATE sets one of its columns, whatever the
    # value: the open orders' index (end_state), the stuck ones' (version, stuck_version) and the
    # ended ones' (last_changed) are left alone where those did not change.
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)

    await reconciler.apply([ok("a", "A-1", "New"), ok("a", "A-2", "New")], via="poll")
    [changed] = order_writes(statements)
    assert " version =" in changed and "end_state =" not in changed

    statements.clear()
    await reconciler.apply([ok("a", "A-1", "New"), ok("a", "A-2", "Completed")], via="poll")
    ends, checked = order_writes(statements)
    assert " version =" not in checked and "last_changed =" not in checked
    assert "end_state =" not in checked and "end_state =" in ends

    with sqlite3.connect(Path(store.path)) as conn:
        rows = conn.execute(
            "SELECT order_id, status, version, end_state, last_checked IS NOT NULL FROM orders "
            "WHERE account = 'a' ORDER BY order_id"
        ).fetchall()
    assert rows == [("A-1", "New", 1, 0, 1), ("A-2", "Completed", 2, 1, 1)]
    assert (await store.orders.page("ccv", "a")).ids == ["A-1"]


async def test_the_stuck_and_missing_marks_are_written_as_null_in_the_text_when_clear(
    store: Store, tmp_path: Path
) -> None:
    # sqlite3 binds a None through its adapter lookup (a raised and cleared AttributeError,
    # the GIL held): an order neither stuck nor missing, nearly every one, has its two marks
    # written as NULL by the statement's text. Set, cleared by a change, set and cleared by a
    # check: each write leaves what it was given.
    key = OrderKey("ccv", "a", "A-1")
    statements: list[str] = []
    await store.conn.set_trace_callback(statements.append)

    async def write(**changes: Any) -> tuple[object, ...]:
        loaded = await store.orders.load([key])
        async with store.transaction():
            await store.orders.save(loaded, [(loaded[key]._replace(**changes), None)])
        with sqlite3.connect(tmp_path / "reconciler.db") as conn:
            return tuple(
                conn.execute(
                    "SELECT status, version, stuck_version, missing_since FROM orders "
                    "WHERE order_id = 'A-1'"
                ).fetchone()
            )

    marked = await write(status="New", version=1, stuck_version=1, missing_since=5.0)
    assert marked == ("New", 1, 1, 5.0)
    assert "= NULL" not in order_writes(statements)[-1]
    cleared = await write(status="Completed", version=2, stuck_version=None, missing_since=None)
    assert cleared == ("Completed", 2, None, None)
    assert "stuck_version = NULL, missing_since = NULL" in order_writes(statements)[-1]
    assert await write(missing_since=7.0) == ("Completed", 2, None, 7.0)
    assert await write(missing_since=None) == ("Completed", 2, None, None)
    checked = order_writes(statements)[-1]
    assert "missing_since = NULL" in checked and "stuck_version" not in checked


WRITES: dict[str, Callable[[Store], Awaitable[object]]] = {
    "postpone": lambda s: postpone(s),
    "forget_failures": lambda s: forget_failures(s),
    "shift_back": lambda s: shift_back(s, "ccv", "b", 1000.0, 100.0),
    "pull_ahead": lambda s: pull_ahead(
        s, "ccv", "b", 1000.0, longest_s=60.0, floor_s=1.0, retry_s=1.0, jitter=lambda: 0.0
    ),
}


async def postpone(store: Store) -> None:
    async with store.transaction():
        await store.orders.postpone("ccv", "b", [("B-1", 9000.0)])


async def forget_failures(store: Store) -> None:
    async with store.transaction():
        await store.orders.forget_failures("ccv", "b")


@pytest.mark.parametrize("write", WRITES)
async def test_a_write_of_one_accounts_schedule_leaves_the_other_accounts_pages(
    store: Store, write: str
) -> None:
    # Each page holds the rows of its own account: the others stay current (read from memory).
    async with store.transaction():
        await store.conn.execute("UPDATE orders SET next_check_at = 5000.0, failure_streak = 1")
    page_a = await store.orders.page("ccv", "a")
    page_b = await store.orders.page("ccv", "b")
    await WRITES[write](store)
    assert not page_b.rows  # it held B-1's old row
    assert page_a.rows
