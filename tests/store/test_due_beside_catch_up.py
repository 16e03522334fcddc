"""A due read beside a running catch-up (`Orders.due` with `catch_up`) returns the due orders
the catch-up leaves to a tick, and only those, up to its limit: never the catch-up's own, however
many of them are due (a read of the earliest due then filtered found those alone, and the tick
asked nothing). Real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from reconciler.store import Store
from reconciler.store.order_sql import CatchUpSince

BEGAN = 1_800_000_000.0  # when the catch-up began, on both clocks
NOW = BEGAN + 60
COLUMNS = (
    "account, order_id, status, tracked_at, first_seen, last_checked, asked_at, failure_streak, "
    "next_check_at, end_state"
)
Row = tuple[str, str, str | None, float, float | None, float | None, float | None, int, float, int]


def _insert(db: Path, rows: list[Row]) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            f"INSERT INTO orders (source, {COLUMNS}) VALUES ('ccv', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()


def _backlog(count: int) -> list[Row]:
    """The catch-up's own due orders: half never checked, half checked and overdue."""
    before = BEGAN - 3600
    return [
        ("a", f"own-{n}", None, before, None, None, None, 0, 0.0, 0)
        if n % 2
        else ("a", f"own-{n}", "New", before, before, before, before, 0, BEGAN - 100, 0)
        for n in range(count)
    ]


def _falling_due(count: int) -> list[Row]:
    """The catch-up's orders checked before it, their next check falling due while it runs,
    after the orders it leaves to a tick (the pass has not reached them)."""
    before = BEGAN - 3600
    return [
        ("a", f"falls-due-{n}", "New", before, before, before, before, 0, BEGAN + 41 + n / count, 0)
        for n in range(count)
    ]


async def _began(db: Path, backlog: int, falling_due: int = 0) -> tuple[Store, CatchUpSince]:
    store = await Store.open(db)
    before = BEGAN - 3600
    _insert(
        db,
        [
            *_backlog(backlog),
            *_falling_due(falling_due),
            # Failing from before it: a retry planned before it is its own to ask; one planned
            # after it began is a tick's too (no failure's time tells them apart).
            ("a", "failing-before", "New", before, before, before, before, 2, BEGAN - 50, 0),
            ("a", "retry-after", "New", before, before, before, before, 2, BEGAN + 10, 0),
            ("a", "submitted-before", None, before, before, None, None, 0, -1.0, 0),
        ],
    )
    since = CatchUpSince(BEGAN, BEGAN, await store.orders.last_id())
    _insert(
        db,
        [
            ("a", "tracked-since", None, BEGAN + 5, None, None, None, 0, 0.0, 0),
            ("a", "submitted-since", None, BEGAN + 6, BEGAN + 6, None, None, 0, -1.0, 0),
            ("a", "asked-since", "New", before, before, BEGAN + 20, BEGAN + 20, 0, BEGAN + 30, 0),
            ("a", "failed-since", "New", before, before, before, before, 1, BEGAN + 40, 0),
            ("a", "asked-not-due", "New", before, before, BEGAN + 20, BEGAN + 20, 0, NOW + 1, 0),
            ("b", "other-account", None, BEGAN + 5, None, None, None, 0, 0.0, 0),
            ("a", "ended-since", "Completed", BEGAN + 5, None, BEGAN + 7, BEGAN + 7, 0, 0.0, 1),
        ],
    )
    return store, since


async def _ids(store: Store, limit: int, since: CatchUpSince | None) -> list[str]:
    due = await store.orders.due("ccv", "a", NOW, limit, BEGAN - 1e9, catch_up=since)
    return [s.key.order_id for s in due]


async def test_a_due_read_beside_a_catch_up_returns_what_it_leaves_to_a_tick(
    tmp_path: Path,
) -> None:
    store, since = await _began(tmp_path / "reconciler.db", 500)
    try:
        leaves = ["submitted-since", "tracked-since", "retry-after", "asked-since", "failed-since"]
        assert await _ids(store, 100, since) == leaves
        assert await _ids(store, 2, since) == leaves[:2]
        # No catch-up: the earliest due, the catch-up's own among them, as before.
        assert await _ids(store, 3, None) == ["submitted-before", "submitted-since", "own-1"]
    finally:
        await store.close()


async def _steps(db: Path, backlog: int, falling_due: int = 0, limit: int = 1000) -> int:
    """Return the SQLite VM steps (in hundreds) of one due read beside a catch-up."""
    store, since = await _began(db, backlog, falling_due)
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    try:
        await store.conn.set_progress_handler(step, 100)
        assert len(await _ids(store, limit, since)) == 5
        return steps  # the read's alone
    finally:
        await store.close()


async def test_a_due_read_beside_a_catch_up_costs_the_same_beside_its_backlog(
    tmp_path: Path,
) -> None:
    small = await _steps(tmp_path / "small.db", 1_000)
    large = await _steps(tmp_path / "large.db", 40_000)
    # The orders it returns, not the catch-up's due ones (read whole: 40 times the steps).
    assert large <= 1.5 * small + 2, (small, large)


async def test_a_due_read_beside_a_catch_up_examines_a_bounded_part_of_its_orders_falling_due(
    tmp_path: Path,
) -> None:
    """Orders the catch-up has not reached whose next check, planned before it began, falls due
    while it runs: the range of orders planned since holds them, and a read walked every one,
    each tick (88 ms over 50,000). It examines a few times its limit of them."""
    small = await _steps(tmp_path / "small.db", 1_000, falling_due=100, limit=10)
    large = await _steps(tmp_path / "large.db", 1_000, falling_due=40_000, limit=10)
    assert large <= 1.5 * small + 2, (small, large)


async def test_an_order_behind_the_bound_of_those_falling_due_waits(tmp_path: Path) -> None:
    """A tick reads what the catch-up leaves to it among the earliest orders of the range
    planned since, a few times its limit: one behind more of the catch-up's falling due waits
    for a later tick (or the catch-up), as README "The schedule" says."""
    db = tmp_path / "reconciler.db"
    store, since = await _began(db, 10)
    try:
        before = BEGAN - 3600
        late = ("a", "asked-behind", "New", before, before, BEGAN + 20, BEGAN + 20, 0, NOW - 1, 0)
        _insert(db, [*_falling_due(100), late])
        assert "asked-behind" not in await _ids(store, 10, since)
        assert "asked-behind" in await _ids(store, 100, since)
    finally:
        await store.close()
