"""Benchmark: diff and persist N observations (10 % changes), against raw sqlite3.executemany.

The reconciler side is the real write path, `Reconciler.apply` in batches of `BATCH_ROWS`: load
snapshot, diff, schedule, write orders, events (the history) and outbox rows, one transaction
per batch. The baseline is plain sqlite3 in the same process with the same PRAGMAs (read from the
store's connection), upserting exactly the order rows the store wrote (same table and indexes)
and inserting the changes into a simple history table, one transaction per batch of the same
size. Both start from copies of one seeded store. Ratio = baseline time / store time.

    python bench/store.py [--orders 100000] [--changes 0.1] [--repeat 3] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.config import Config, load_config
from reconciler.model import Observation, OrderKey, Outcome
from reconciler.passes.batcher import BATCH_ROWS
from reconciler.reconcile import Reconciler
from reconciler.store import Store
from reconciler.store.order_rows import COLUMNS, upsert  # the baseline runs the store's own UPSERT

TARGET = 0.5
ACCOUNT = "default"
SEED_STATUS = "Processing"
CHANGED_STATUS = "Incomplete"
# Settings the baseline copies from the store's connection, so that it is never tuned differently.
PRAGMAS = (
    "journal_mode",
    "synchronous",
    "cache_size",
    "wal_autocheckpoint",
    "mmap_size",
    "temp_store",
    "foreign_keys",
)


def write_config(workdir: Path) -> Config:
    """Return a real config (loader defaults for schedules and alerts); nothing is contacted."""
    path = workdir / "reconciler.toml"
    path.write_text(
        f'[store]\npath = "{workdir / "seed.db"}"\n\n'
        '[ccv]\nbase_url = "http://127.0.0.1:9"\napi_key = "bench-unused"\n'
    )
    return load_config(path)


def order_ids(n: int) -> list[str]:
    """Return n CCV-shaped order ids."""
    return [f"0b7c1f3e-0000-4000-8000-{i:012d}" for i in range(n)]


def observations(ids: Sequence[str], changed: set[str]) -> list[Observation]:
    """Return one OK observation per order: the seed status, or the new one for `changed`."""
    return [
        Observation(
            OrderKey("ccv", ACCOUNT, oid),
            Outcome.OK,
            status=CHANGED_STATUS if oid in changed else SEED_STATUS,
        )
        for oid in ids
    ]


async def seed(config: Config, ids: Sequence[str]) -> None:
    """Track every order and record its first status (one apply), untimed."""
    store = await Store.open(config.store_path)
    try:
        await store.orders.track("ccv", ACCOUNT, [(oid, None) for oid in ids], time.time())
        await Reconciler(config, store).apply(observations(ids, set()), via="poll")
    finally:
        await store.close()


async def time_store(
    config: Config, db: Path, batch: Sequence[Observation], changes: int
) -> tuple[float, dict[str, Any]]:
    """Return the seconds `Reconciler.apply` takes over `batch`, BATCH_ROWS at a time, and the
    store connection's PRAGMA settings."""
    store = await Store.open(db)
    try:
        pragmas = {name: await _scalar(store, f"PRAGMA {name}") for name in PRAGMAS}
        events_before = await _scalar(store, "SELECT count(*) FROM events")
        reconciler = Reconciler(config, store)
        started = time.perf_counter()
        for i in range(0, len(batch), BATCH_ROWS):
            await reconciler.apply(batch[i : i + BATCH_ROWS], via="poll")
        elapsed = time.perf_counter() - started
        events = await _scalar(store, "SELECT count(*) FROM events") - events_before
    finally:
        await store.close()
    if events != changes:
        raise SystemExit(f"expected {changes} status_changed events, the store has {events}")
    return elapsed, pragmas


async def _scalar(store: Store, sql: str) -> Any:
    async with store.conn.execute(sql) as cur:
        row = await cur.fetchone()
    assert row is not None
    return row[0]


def written_rows(db: Path) -> list[tuple[Any, ...]]:
    """Return the order rows a store holds, in the order the benchmark applied them."""
    conn = sqlite3.connect(db)
    try:
        # The columns the store's own upsert writes (a column added is read here too).
        return conn.execute(f"SELECT {COLUMNS} FROM orders ORDER BY order_id").fetchall()
    finally:
        conn.close()


def time_baseline(
    db: Path, rows: Sequence[tuple[Any, ...]], changed: set[str], pragmas: dict[str, Any]
) -> float:
    """Return the seconds raw executemany takes to write the same rows and the changes."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for name, value in pragmas.items():  # names from PRAGMAS, values from SQLite itself
            conn.execute(f"PRAGMA {name} = {value}")
        conn.execute(
            "CREATE TABLE history (id INTEGER PRIMARY KEY, source TEXT, account TEXT, "
            "order_id TEXT, status TEXT, at REAL)"
        )
        started = time.perf_counter()
        for i in range(0, len(rows), BATCH_ROWS):
            chunk = rows[i : i + BATCH_ROWS]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(upsert(1), chunk)
            conn.executemany(
                "INSERT INTO history (source, account, order_id, status, at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r[0], r[1], r[2], r[3], r[7]) for r in chunk if r[2] in changed],
            )
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def main() -> int:
    """Run the benchmark and print its summary line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--changes", type=float, default=0.1, help="share of orders that change")
    p.add_argument("--repeat", type=int, default=3, help="runs of each side; medians are shown")
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be at least 1")

    ids = order_ids(args.orders)
    changed = set(random.Random(1).sample(ids, round(args.orders * args.changes)))
    batch = observations(ids, changed)
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    try:
        config = write_config(workdir)
        started = time.perf_counter()
        asyncio.run(seed(config, ids))
        print(f"seeded {len(ids)} orders in {time.perf_counter() - started:.1f}s", flush=True)
        ours: list[float] = []
        theirs: list[float] = []
        for n in range(1, args.repeat + 1):
            # Every run starts from a copy of the same seeded store (closed, so no WAL left).
            ours_db, theirs_db = workdir / f"store-{n}.db", workdir / f"baseline-{n}.db"
            shutil.copyfile(config.store_path, ours_db)
            shutil.copyfile(config.store_path, theirs_db)
            seconds, pragmas = asyncio.run(time_store(config, ours_db, batch, len(changed)))
            ours.append(seconds)
            # The baseline writes exactly the rows the store wrote (same schedule jitter).
            theirs.append(time_baseline(theirs_db, written_rows(ours_db), changed, pragmas))
            ours_db.unlink()
            theirs_db.unlink()
            print(f"run {n}: store={ours[-1]:.2f}s baseline={theirs[-1]:.2f}s", flush=True)
        print("pragmas: " + " ".join(f"{k}={v}" for k, v in pragmas.items()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    ratio = theirs_s / ours_s
    missed = ratio < TARGET
    print(
        f"store: observations={len(batch)} changes={len(changed)} batch={BATCH_ROWS} "
        f"store={ours_s:.2f}s baseline={theirs_s:.2f}s ratio={ratio:.2f} (target >= {TARGET})"
        + (" MISSED" if missed else "")
    )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
