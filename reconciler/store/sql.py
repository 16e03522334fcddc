"""Helpers for statements that take many rows at once."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")

Statement = tuple[str, Sequence[Any]]

# The hot writes take many rows in one statement (a multi-row VALUES list): one call into SQLite,
# and one step with the GIL released, per chunk of rows. An executemany steps once per row, and
# the database thread needs the GIL back after each step; while the event loop is busy with HTTP
# it waits for it every time (a batch of 500 rows took a hundred times longer that way).
# Under SQLite's default bound of 32766 parameters a statement (build.py checks the build's).
ROWS_PER_STATEMENT = 1000
CHUNK = 500  # bound on bound parameters per IN (...) query


def values(rows: int, columns: int) -> str:
    """Return a VALUES list of `rows` rows of `columns` parameters."""
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def marks(n: int) -> str:
    """Return `n` comma-separated parameters for an IN (...) list."""
    return ", ".join("?" * n)


def chunks(items: Sequence[Sequence[Any]]) -> Iterator[tuple[int, list[Any]]]:
    """Yield (rows, flat parameters) for each chunk, in order: chunks of ROWS_PER_STATEMENT
    rows, then what is left in chunks of powers of two (497 rows: 256, 128, 64, 32, 16, 1)."""
    # A statement's text depends on its number of rows. SQLite parses a text once (the
    # connection keeps the statements it prepared), and parsing a long VALUES list costs about
    # as much as running it: with any number of rows, every batch parsed its statements anew.
    i = 0
    while i < len(items):
        left = len(items) - i
        size = ROWS_PER_STATEMENT if left >= ROWS_PER_STATEMENT else 1 << (left.bit_length() - 1)
        yield size, list(itertools.chain.from_iterable(items[i : i + size]))
        i += size


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Return the runs of consecutive numbers of `seqs` (in any order) as (first, last)."""
    out: list[tuple[int, int]] = []
    ordered = sorted(set(seqs))
    if ordered and ordered[-1] - ordered[0] == len(ordered) - 1:
        return [(ordered[0], ordered[-1])]  # a catch-up's batch: no walk over its seqs
    first = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            out.append((ordered[first], ordered[i - 1]))
            first = i
    return out


async def on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(sqlite3_connection, *args)` on the connection's thread, in one hand-off: several
    statements, and the Python that works on their rows, at the cost of one wake-up each way."""
    # aiosqlite's own methods queue their work with `_execute`: a private method, used here
    # only (tests/store/test_oneshot.py and test_due.py fail if it changes).
    result: T = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return result


def run_statements(conn: sqlite3.Connection, statements: Sequence[Statement]) -> list[int]:
    """Run statements in order on the database thread (inside the caller's transaction); return
    the rows each inserted, updated or deleted (its `rowcount`: a trigger's changes are not
    counted). Run through `on_thread`, a pass's write is one hand-off instead of one per
    statement: while the event loop is busy with HTTP each hand-off waited for the thread and
    then the loop to run again, milliseconds each, and held the writer's lock, and with it the
    sinks' reads, that long. A read that goes to the connection without the lock (a scheduler
    tick, /metrics) now queues behind the whole hand-off instead of one statement: tens of
    milliseconds at most for a full batch."""
    return [conn.execute(sql, parameters).rowcount for sql, parameters in statements]
