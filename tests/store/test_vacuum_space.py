"""The one-time VACUUM that lets an old store give space back (auto_vacuum) rewrites the whole
file: with less free space than the database's size beside it, it would fill the disk (a big
-wal left, exit 75, a restart loop). It is skipped then, with one warning, and tried again at
the next start; the store works without it."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest

from reconciler.store import Store
from reconciler.store.health import file_size
from reconciler.store.space import VACUUM_MARGIN_BYTES, make_space_returnable


def auto_vacuum(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])


async def old_store(path: Path) -> int:
    """A store as releases before retention left it (auto_vacuum NONE); return its size."""
    store = await Store.open(path)
    try:
        await store.orders.track(
            "ccv", "default", [(f"0b7c1f3e-0000-4000-8000-{n:012d}", None) for n in range(500)], 1
        )
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert auto_vacuum(path) == 0
    return path.stat().st_size


async def test_too_little_free_space_skips_the_conversion_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "reconciler.db"
    size = await old_store(db)
    asked: list[Path] = []

    def short(directory: Path) -> int:
        asked.append(directory)
        return size  # the file's size, without the margin the rewrite needs

    store = await Store.open(db)
    try:
        with caplog.at_level(logging.INFO, logger="reconciler"):
            await make_space_returnable(store, free_bytes=short)
        assert await store.orders.counts()  # the store works without it
    finally:
        await store.close()
    assert asked == [tmp_path]
    assert auto_vacuum(db) == 0
    [line] = [r for r in caplog.records if r.name.startswith("reconciler")]
    assert (line.getMessage(), line.levelno) == ("store.vacuum_skipped", logging.WARNING)
    said = line.__dict__["fields"]
    assert said["free_bytes"] == size and said["needed_bytes"] > size
    assert "next start" in said["hint"]

    # Space freed: the next start converts it.
    caplog.clear()
    store = await Store.open(db)
    try:
        with caplog.at_level(logging.INFO, logger="reconciler"):
            await make_space_returnable(store, free_bytes=lambda _: size + (1 << 30))
    finally:
        await store.close()
    assert auto_vacuum(db) == 2
    assert [r.getMessage() for r in caplog.records] == ["store.vacuumed"]


async def test_the_conversion_asks_room_for_two_copies_of_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # VACUUM copies the database into a temporary file (SQLITE_TMPDIR, /var/tmp or /tmp,
    # usually this file system), then writes it back through the -wal: a copy and a tenth
    # passed, and the rewrite filled the disk (SQLITE_FULL, a -wal the database's size left).
    db = tmp_path / "reconciler.db"
    await old_store(db)
    store = await Store.open(db)
    try:
        size = file_size(db)  # with its -wal
        one_copy = size + max(size // 10, VACUUM_MARGIN_BYTES)
        with caplog.at_level(logging.INFO, logger="reconciler"):
            await make_space_returnable(store, free_bytes=lambda _: one_copy + size // 2)
    finally:
        await store.close()
    assert auto_vacuum(db) == 0
    [line] = [r for r in caplog.records if r.name.startswith("reconciler")]
    assert line.getMessage() == "store.vacuum_skipped"
    assert line.__dict__["fields"]["needed_bytes"] >= 2 * size + VACUUM_MARGIN_BYTES


async def test_a_store_path_that_is_a_link_counts_the_wal_beside_its_target(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite keeps the -wal beside the file a link names, not beside the link: a big -wal left
    # by a killed catch-up must count, or the check passes a rewrite that fills the disk.
    real_dir = tmp_path / "var"
    real_dir.mkdir()
    db = real_dir / "reconciler.db"
    await old_store(db)
    link = tmp_path / "reconciler.db"
    link.symlink_to(db)
    store = await Store.open(link)
    try:
        await store.orders.track(
            "ccv", "default", [(f"1b7c1f3e-0000-4000-8000-{n:012d}", None) for n in range(2000)], 1
        )
        size = file_size(db)
        assert size > db.stat().st_size  # the -wal beside the target holds pages
        with caplog.at_level(logging.INFO, logger="reconciler"):
            await make_space_returnable(
                store, free_bytes=lambda _: 2 * db.stat().st_size + (16 << 20) + 1
            )
    finally:
        await store.close()
    [line] = [r for r in caplog.records if r.name.startswith("reconciler")]
    assert line.getMessage() == "store.vacuum_skipped"
    assert line.__dict__["fields"]["needed_bytes"] >= 2 * size + VACUUM_MARGIN_BYTES
