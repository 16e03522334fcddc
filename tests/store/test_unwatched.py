"""One rule for "settled, no longer watched" (model.unwatched): the schedule, a catch-up's reads
(`page`, `open_ids`), `open_count` (the warning about an account the config no longer names, the
daemon's idle accounts) and retention all hold the same orders so, on a real SQLite file."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

from reconciler.model import Source, settled_at, unwatched
from reconciler.store import Store
from reconciler.store.retention import prune

NOW = 1_800_000_000.0
DAY = 86400.0
WATCH = 180 * DAY
STATUSES: dict[Source, list[str | None]] = {
    # Each provider's settled words, an open word, no status yet, and the other's settled word.
    "ccv": ["Failed", "New", None, "completed"],
    "ccnow": ["completed", "refunded", "pending", None, "Failed"],
}
TIMES = [None, NOW - 400 * DAY, NOW - WATCH, NOW - WATCH + 1, NOW - DAY]


def _rows() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for source, statuses in STATUSES.items():
        grid = itertools.product(("kept", "gone"), statuses, TIMES, TIMES)
        for n, (account, status, changed, tracked) in enumerate(grid):
            rows.append((source, account, f"{source}-{n}", status, changed, tracked))
    return rows


async def _store(tmp_path: Path) -> Store:
    store = await Store.open(tmp_path / "reconciler.db")
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.executemany(
            "INSERT INTO orders (source, account, order_id, status, last_changed, tracked_at, "
            "first_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*row, row[4]) for row in _rows()],
        )
    conn.close()
    return store


def _watched(row: tuple[object, ...], settled_since: float) -> bool:
    source, _, _, status, changed, tracked = row
    since = settled_at(changed, tracked)  # type: ignore[arg-type]
    return not unwatched(source, status, since, settled_since=settled_since)  # type: ignore[arg-type]


async def test_a_catch_up_asks_the_orders_open_count_counts(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        for source, settled_since in itertools.product(STATUSES, (NOW - WATCH, NOW, None)):
            since = float("-inf") if settled_since is None else settled_since
            expected = sorted(
                str(r[2])
                for r in _rows()
                if r[0] == source and r[1] == "kept" and _watched(r, since)
            )
            ids, _ = await store.orders.open_ids(source, "kept", settled_since=settled_since)
            page = await store.orders.page(source, "kept", settled_since=settled_since)
            assert sorted(ids) == sorted(page.ids) == expected
            counted = await store.orders.open_count(source, "kept", settled_since=since)
            assert counted == len(expected)
    finally:
        await store.close()


async def test_retention_prunes_the_orders_no_longer_watched_nothing_else(
    tmp_path: Path,
) -> None:
    # "kept" is configured (its watch_settled), "gone" is not: nobody watches its orders.
    store = await _store(tmp_path)
    try:
        report = await prune(
            store,
            sinks=["log"],
            keep_s=100 * DAY,
            now=NOW,
            watched={("ccv", "kept"): WATCH, ("ccnow", "kept"): WATCH},
            chunk=7,
        )
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        left = {r[0] for r in conn.execute("SELECT order_id FROM orders")}
    conn.close()
    expected = {
        str(r[2])
        for r in _rows()
        if _watched(r, NOW - WATCH if r[1] == "kept" else NOW)
        or settled_at(r[4], r[5]) >= NOW - 100 * DAY  # type: ignore[arg-type]
    }
    assert left == expected
    assert report.orders == len(_rows()) - len(expected) > 0


async def test_retention_takes_the_orders_no_longer_watched_out_of_the_due_ones(
    tmp_path: Path,
) -> None:
    # Every order's check stored as due a minute ago (planned before the watch ended, or under
    # a longer one); retention keeps them all (a window of 1000 days).
    store = await _store(tmp_path)
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        conn.execute("UPDATE orders SET next_check_at = ?", (NOW - 60,))
    conn.close()
    watched = {("ccv", "kept"): WATCH, ("ccnow", "kept"): WATCH}
    try:
        await prune(store, sinks=["log"], keep_s=1000 * DAY, now=NOW, watched=watched, chunk=7)
        due = await store.orders.due_counts(NOW, now=NOW, watched=watched)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        planned = dict(conn.execute("SELECT order_id, next_check_at FROM orders").fetchall())
    conn.close()
    still = {str(r[2]) for r in _rows() if _watched(r, NOW - WATCH if r[1] == "kept" else NOW)}
    # The others are never checked again: no longer in the due index's range.
    assert {i for i, at in planned.items() if at == NOW - 60} == still
    assert {i for i, at in planned.items() if at == float("inf")} == set(planned) - still
    assert sum(due.values()) == len(still)
