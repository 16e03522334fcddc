"""Helpers for statements that take many rows at once."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

# The hot writes take many rows in one statement (a multi-row VALUES list): one call into SQLite,
# and one step with the GIL released, per chunk of rows. An executemany steps once per row, and
# the database thread needs the GIL back after each step; while the event loop is busy with HTTP
# it waits for it every time (a batch of 500 rows took a hundred times longer that way).
ROWS_PER_STATEMENT = 1000  # under SQLite's default bound of 32766 parameters per statement
CHUNK = 500  # bound on bound parameters per IN (...) query


@functools.lru_cache(maxsize=32)
def values(rows: int, columns: int) -> str:
    """Return a VALUES list of `rows` rows of `columns` parameters."""
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def marks(n: int) -> str:
    """Return `n` comma-separated parameters for an IN (...) list."""
    return ", ".join("?" * n)


def chunks(items: Sequence[Sequence[Any]]) -> Iterator[tuple[int, list[Any]]]:
    """Yield (rows, flat parameters) for each chunk of at most ROWS_PER_STATEMENT rows."""
    for i in range(0, len(items), ROWS_PER_STATEMENT):
        chunk = items[i : i + ROWS_PER_STATEMENT]
        yield len(chunk), list(itertools.chain.from_iterable(chunk))


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Return the runs of consecutive numbers of `seqs` (in any order) as (first, last)."""
    out: list[tuple[int, int]] = []
    ordered = sorted(set(seqs))
    first = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            out.append((ordered[first], ordered[i - 1]))
            first = i
    return out
