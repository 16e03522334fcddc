"""A wrong statement (SQLITE_ERROR: no such table, a syntax error) is a bug, raised as it is;
a file that cannot be used (locked, read-only, not a database) is the store's StoreError. On
Python 3.10 as on 3.11: 3.10's sqlite3 errors carry no result code name, and every
OperationalError there read as a file that cannot be used."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from reconciler.store import Store
from reconciler.store.health import is_unusable


def _raised(work: Callable[[], object]) -> sqlite3.Error:
    try:
        work()
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("no error")


def _boom() -> None:
    raise ValueError("boom")


def test_sqlites_own_errors_are_told_apart_by_what_they_say_of_the_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE t (a PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.create_function("boom", 0, _boom)
        wrong = [
            _raised(lambda: conn.execute("SELEC 1")),
            _raised(lambda: conn.execute("SELECT * FROM nope")),
            _raised(lambda: conn.execute("SELECT nope FROM t")),
            _raised(lambda: conn.execute("SELECT boom()").fetchall()),
            _raised(lambda: conn.execute("INSERT INTO t VALUES (1)")),  # a constraint
        ]
        conn.execute("BEGIN IMMEDIATE")
        wrong.append(_raised(lambda: conn.execute("BEGIN")))
        with closing(sqlite3.connect(db, timeout=0, isolation_level=None)) as other:
            busy = _raised(lambda: other.execute("BEGIN IMMEDIATE"))
        conn.execute("ROLLBACK")
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as read_only:
        denied = _raised(lambda: read_only.execute("INSERT INTO t VALUES (2)"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"x" * 4096)
    with closing(sqlite3.connect(junk)) as not_ours:
        not_a_db = _raised(lambda: not_ours.execute("SELECT * FROM sqlite_master"))
    cannot_open = _raised(lambda: sqlite3.connect(tmp_path / "no-such-dir" / "x.db"))
    assert [is_unusable(e) for e in wrong] == [False] * len(wrong), wrong
    unusable = [busy, denied, not_a_db, cannot_open]
    assert [is_unusable(e) for e in unusable] == [True] * len(unusable), unusable


async def test_a_wrong_statement_in_a_write_is_raised_and_the_store_stays_healthy(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "reconciler.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            async with store.transaction():
                await store.conn.execute("SELECT * FROM nope")
        assert not store.health.failing
    finally:
        await store.close()


def test_a_damaged_text_and_a_file_that_cannot_be_opened_are_unusable(tmp_path: Path) -> None:
    # Text that is not UTF-8 is no statement's fault (the store writes Python strings): damage,
    # which Python itself raises, with no result code name on 3.11 either (it counted as
    # unusable there until 3.10's words were matched). A file ATTACH or VACUUM INTO cannot open
    # is SQLITE_CANTOPEN, told in other words than the main file's.
    with closing(sqlite3.connect(tmp_path / "x.db", isolation_level=None)) as conn:
        conn.execute("CREATE TABLE t (a TEXT)")
        conn.execute("INSERT INTO t VALUES (CAST(x'ff41' AS TEXT))")
        damaged = _raised(lambda: conn.execute("SELECT a FROM t").fetchall())
        elsewhere = tmp_path / "no-such-dir" / "y.db"
        cannot_attach = _raised(lambda: conn.execute("ATTACH ? AS other", (str(elsewhere),)))
        cannot_vacuum = _raised(lambda: conn.execute("VACUUM INTO ?", (str(elsewhere),)))
    unusable = [damaged, cannot_attach, cannot_vacuum]
    assert [is_unusable(e) for e in unusable] == [True] * len(unusable), unusable
