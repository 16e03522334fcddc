"""The `orders` table's columns, in one order: the statements that read and write whole rows,
and the conversions between a row and an OrderState. Only this module knows the positions."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

from ..model import OrderKey, OrderState
from .sql import ROWS_PER_STATEMENT, values

COLUMNS = (
    "source, account, order_id, status, external_reference, first_seen, last_changed, "
    "last_checked, end_state, not_found, failure_streak, version, next_check_at, interval_s, "
    "stuck_version, tracked_at, missing_since, asked_at"
)
_NAMES = tuple(COLUMNS.replace(" ", "").split(","))
# The parameters of the widest statement the store prepares: a chunk of whole rows (`upsert`).
WIDEST_STATEMENT = ROWS_PER_STATEMENT * len(_NAMES)


def upsert(rows: int) -> str:
    """Return the statement writing `rows` whole rows, inserted or replacing the same order's."""
    return (
        f"INSERT INTO orders ({COLUMNS}) VALUES {values(rows, len(_NAMES))} "
        "ON CONFLICT (source, account, order_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _NAMES[3:])
    )


# `track`'s: a new order, or the reference given to a known one. Only a reference that changes
# is written, so that the statement's count is of the orders new or changed
# (`orders.tracked`'s `new_or_updated`), not of every one given again.
TRACK = (
    "INSERT INTO orders (source, account, order_id, external_reference, tracked_at, "
    "next_check_at) VALUES (?, ?, ?, ?, ?, 0) "
    "ON CONFLICT (source, account, order_id) DO UPDATE SET external_reference = "
    "excluded.external_reference WHERE excluded.external_reference IS NOT NULL "
    "AND excluded.external_reference IS NOT orders.external_reference"
)
# When a submitted order's first check is planned: due at once, as a tracked order's (0), but
# apart from those, so that a resting account's tick finds it (`submissions.unchecked`) through
# the due index without walking every order tracked and never checked (a bulk import's).
FIRST_CHECK_AT = -1.0
# A submit's: the order CCV's answer named, with that answer as its first sight (`first_seen`:
# a "not found" soon after waits to be confirmed, diff.py), also for one tracked before (its
# first check then planned as a submitted order's, while no check was made of it).
SUBMITTED = (
    "INSERT INTO orders (source, account, order_id, external_reference, tracked_at, "
    f"first_seen, next_check_at) VALUES (?, ?, ?, ?, ?, ?, {FIRST_CHECK_AT}) "
    "ON CONFLICT (source, account, order_id) DO UPDATE SET external_reference = "
    "coalesce(excluded.external_reference, orders.external_reference), "
    "first_seen = coalesce(orders.first_seen, excluded.first_seen), "
    "next_check_at = CASE WHEN orders.last_checked IS NULL AND orders.failure_streak = 0 "
    "THEN min(orders.next_check_at, excluded.next_check_at) ELSE orders.next_check_at END"
)

# Known orders are written back by rowid. Columns an update never changes (the key, tracked_at)
# are left out, and the external reference, which seldom changes, has a statement of its own
# that skips the rows where it did not: the index on it stays untouched.
UPDATED = tuple(c for c in _NAMES[3:] if c not in ("external_reference", "tracked_at"))

# SQLite rewrites, or at least re-evaluates for the old and the new row, every index that names
# a column an UPDATE sets, whatever its value: the partial indexes of open orders (end_state),
# of ended ones (end_state, last_changed) and of stuck ones (end_state, version,
# stuck_version). So a row is written back by the statement of its shape, which sets only what
# can have changed: ENDS (it enters or leaves an end state: every column), CHANGED (anything but
# end_state), CHECKED (end_state and those three as they were: none of them set).
ENDS, CHANGED, CHECKED = 0, 1, 2
_MARKS = ("last_changed", "version", "stuck_version")
_SHAPES = (
    UPDATED,
    tuple(c for c in UPDATED if c != "end_state"),
    tuple(c for c in UPDATED if c != "end_state" and c not in _MARKS),
)
# sqlite3 (CPython 3.11) binds None through its adapter lookup, which raises and clears an
# AttributeError for each: about 3 k instructions a value, on the database thread and holding
# the GIL, so that the event loop waits. An order reported neither stuck nor missing, nearly
# every one, has both of these NULL: its row goes in the statement of its shape that writes
# them as NULL in its text (shape + CLEAR) instead of binding two Nones.
CLEAR = len(_SHAPES)
_CLEARED = ("stuck_version", "missing_since")
# By shape (ENDS ... CHECKED + CLEAR): the columns bound, and those written as NULL.
_SET = (*_SHAPES, *(tuple(c for c in cols if c not in _CLEARED) for cols in _SHAPES))
_NULL = (*(() for _ in _SHAPES), *(tuple(c for c in _CLEARED if c in cols) for cols in _SHAPES))
SHAPES = len(_SET)
_PICK = tuple(operator.itemgetter(*(_NAMES.index(c) for c in cols)) for cols in _SET)


Plan = tuple[float | None, float]  # (interval, next check time) replacing a state's own
# An `orders` row in COLUMNS order (one read keeps its id after them); never leaves this module.
Row = Sequence[Any]


def order_update(rows: int, shape: int) -> str:
    """Return the statement writing back `rows` rows of a shape (ENDS, CHANGED, CHECKED, each
    + CLEAR or not)."""
    columns = _SET[shape]
    n = len(columns)
    return (
        "UPDATE orders SET "
        + ", ".join(
            [f"{c} = v.column{i}" for i, c in enumerate(columns, 1)]
            + [f"{c} = NULL" for c in _NULL[shape]]
        )
        + f" FROM (VALUES {values(rows, n + 1)}) AS v WHERE orders.id = v.column{n + 1}"
    )


def shape(before: OrderState, after: OrderState) -> int:
    """Return what writing `after` over `before` may change: ENDS, CHANGED or CHECKED, + CLEAR
    when `after` is neither stuck nor missing (`_CLEARED`)."""
    clear = CLEAR if after.stuck_version is None and after.missing_since is None else 0
    if before.end_state != after.end_state:
        return ENDS + clear
    if (
        before.version != after.version
        or before.last_changed != after.last_changed
        or before.stuck_version != after.stuck_version
    ):
        return CHANGED + clear
    return CHECKED + clear


def reference_update(rows: int) -> str:
    return (
        f"UPDATE orders SET external_reference = v.column2 FROM (VALUES {values(rows, 2)}) AS v "
        "WHERE orders.id = v.column1 AND orders.external_reference IS NOT v.column2"
    )


def state(row: Sequence[Any]) -> OrderState:
    # Positional, in field order (the columns follow it after the key): this runs for every
    # order a pass checks, and keywords cost twice as much.
    return OrderState(
        OrderKey(row[0], row[1], row[2]),
        row[3],  # status
        row[4],  # external_reference
        row[5],  # first_seen
        row[6],  # last_changed
        row[7],  # last_checked
        bool(row[8]),  # end_state
        bool(row[9]),  # not_found
        row[10],  # failure_streak
        row[11],  # version
        row[12],  # next_check_at
        row[13],  # interval_s
        row[14],  # stuck_version
        row[15],  # tracked_at
        row[16],  # missing_since
        row[17],  # asked_at
    )


def row(s: OrderState, plan: Plan | None) -> Row:
    """Return the `orders` row of a snapshot state; `plan` replaces the state's own schedule."""
    interval_s, next_check_at = plan if plan is not None else (s.interval_s, s.next_check_at)
    return (
        s.key.source,
        s.key.account,
        s.key.order_id,
        s.status,
        s.external_reference,
        s.first_seen,
        s.last_changed,
        s.last_checked,
        int(s.end_state),
        int(s.not_found),
        s.failure_streak,
        s.version,
        next_check_at,
        interval_s,
        s.stuck_version,
        s.tracked_at,
        s.missing_since,
        s.asked_at,
    )


def kept(rows: Sequence[Row]) -> dict[tuple[str, str, str], tuple[int, Row]]:
    """Return rows read as `SELECT {COLUMNS}, id` by key, as (rowid, row); a row keeps its id
    at its end (`state` reads the columns before it), a copy without it would cost a tuple per
    order of a page."""
    n = len(_NAMES)
    return {(r[0], r[1], r[2]): (r[n], r) for r in rows}


def collect(
    rows: Iterable[Sequence[Any]], found: dict[OrderKey, OrderState], rowids: dict[Any, int]
) -> None:
    """Put rows read as `SELECT {COLUMNS}, id` into `found` as states and their rowids into
    `rowids` (one call per chunk read: this runs for every order a batch loads)."""
    n = len(_NAMES)
    for r in rows:
        s = state(r)
        found[s.key] = s
        rowids[s.key] = r[n]


def known_row(
    s: OrderState, plan: Plan | None, rowid: int, shape: int
) -> tuple[Row, tuple[Any, ...]]:
    """Return the row of a state written back by rowid, and its parameters of `order_update`
    of its shape (`shape`)."""
    r = row(s, plan)
    return r, (*_PICK[shape](r), rowid)
