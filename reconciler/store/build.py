"""The SQLite library a writer needs: its version, and how many parameters a statement binds."""

from __future__ import annotations

import contextlib
import sqlite3
import sys

from . import order_rows
from .errors import StoreError


def check_sqlite() -> None:
    """Raise StoreError unless the SQLite library runs every statement the store prepares."""
    # Batches are written with UPDATE ... FROM, new in SQLite 3.33.
    if sqlite3.sqlite_version_info < (3, 33, 0):
        raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: 3.33 or newer is needed")
    # A build may bind fewer parameters than the default (32766 since 3.32): found here, not
    # half-way through a first catch-up's write.
    with contextlib.closing(sqlite3.connect(":memory:")) as probe:
        check_parameter_limit(probe)


def check_parameter_limit(conn: sqlite3.Connection) -> None:
    """Raise StoreError unless `conn` binds as many parameters to one statement as the widest
    statement the store prepares (a chunk of whole `orders` rows) needs."""
    needed = order_rows.WIDEST_STATEMENT
    if sys.version_info >= (3, 11):
        # Asked of SQLite: binding that many parameters costs every writer's start 5 M
        # instructions.
        enough = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) >= needed
    else:
        try:
            # Zeros: sqlite3 binds a None through its adapter lookup (60 M instructions for these).
            conn.execute(f"SELECT ?{needed}", (0,) * needed)
            enough = True
        except sqlite3.Error:
            enough = False
    if not enough:
        raise StoreError(
            f"SQLite {sqlite3.sqlite_version} binds fewer than {needed} parameters to a "
            "statement (its SQLITE_MAX_VARIABLE_NUMBER): use a build with the default, 32766"
        )
