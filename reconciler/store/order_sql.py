"""SQL that the statements of the orders table share: which orders nobody watches any more (the
twin of model.unwatched, for pages, due orders, their counts and catch-ups), the counts of stuck
and failing orders through their partial indexes, and an account's planned checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..model import NEVER_SQL, SETTLED, Source
from .order_rows import COLUMNS, FIRST_CHECK_AT
from .sql import marks

# Counted for /metrics and `status`; repeats the WHERE of its partial index (migration 5) word
# for word, which is what lets SQLite use it. Named: the index of all open orders (migration 9)
# has the same columns, and SQLite would count every open order through it. `stuck_counts`
# adds the limits of the config running now.
STUCK_SQL = (
    "SELECT source, account, count(*) FROM orders INDEXED BY orders_stuck "
    "WHERE stuck_version = version AND end_state = 0"
)

# An account's open orders whose next check is planned after `:now` (not never): those a clock
# stepped back moves (order_steps.shift_back), as `Orders.shift_checks_back` and its read.
PLANNED_SQL = (
    f"WHERE end_state = 0 AND next_check_at > :now AND next_check_at < {NEVER_SQL} "
    "AND source = :source AND account = :account"
)

# Orders whose last check failed, through the partial index of those rows (migration 11).
FAILING_SQL = (
    "SELECT source, account, count(*) FROM orders INDEXED BY orders_failing "
    "WHERE failure_streak > 0 GROUP BY source, account"
)

# Orders whose last check answered a status (no failure since, no "not found"): the recovery
# check of a failing account asks one of these first, so that it measures the provider, not
# one order's own trouble (poller/coordinator.py `_probe_due`); and only these are counted
# stuck, as schedule.stuck_event has it.
ANSWERED_SQL = (
    "failure_streak = 0 AND status IS NOT NULL AND not_found = 0 AND missing_since IS NULL"
)


def stuck_sql(now: float, limits: Mapping[tuple[str, str], float]) -> tuple[str, list[Any]]:
    """Return the count of stuck orders per (source, account) of `Orders.stuck_counts`, and its
    parameters: `limits` maps (source, status) to its `stuck_after`."""
    terms = " OR ".join("(source = ? AND status = ? AND last_changed <= ?)" for _ in limits)
    params = [p for (source, status), s in limits.items() for p in (source, status, now - s)]
    return f"{STUCK_SQL} AND {ANSWERED_SQL} AND ({terms}) GROUP BY source, account", params


def unwatched(source: Source, settled_since: float | None) -> tuple[str, tuple[Any, ...]]:
    """Return model.unwatched in SQL for one provider's orders, and its parameters: never NULL,
    so `NOT (...)` keeps every other order. None: no watch has ended (nothing is left out)."""
    words = SETTLED[source]
    sql = (
        f"(coalesce(status IN ({marks(len(words))}), 0) "
        "AND coalesce(last_changed, tracked_at, 0) <= ?)"
    )
    return sql, (*words, float("-inf") if settled_since is None else settled_since)


# An order a submit tracked (its answer its first sight, `order_rows.SUBMITTED`) that no check
# answered or failed yet: its first check goes out while its account rests (`Orders.due`).
SUBMITTED_UNCHECKED_SQL = "first_seen IS NOT NULL AND last_checked IS NULL AND failure_streak = 0"


@dataclass(frozen=True)
class CatchUpSince:
    """When the earliest catch-up of an account running in this process began: on the
    reconciler's clock (`tracked_at`, `next_check_at`), on the wall clock, which dates a request
    (`asked_at`: sources/ccv.py `sent_at`), and the last order row then (`Orders.last_id`). A
    due read beside it (`Orders.due`) returns only the orders it leaves to a due tick
    (poller/catch_ups.py says why)."""

    clock: float
    wall: float
    last_id: int


def due_sql(
    source: Source, settled_since: float, *, submitted: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """Return the SELECT of an account's due orders (`Orders.due`; `submitted`: only those of
    SUBMITTED_UNCHECKED_SQL), and its parameters after (now, source, account), before the
    limit."""
    # Every tick runs this. Without INDEXED BY, SQLite reads every order of the account
    # through the (source, account, order_id) key and sorts them: a million rows a tick.
    unwatched_sql, unwatched_params = unwatched(source, settled_since)
    sql = (
        f"SELECT {COLUMNS} FROM orders INDEXED BY orders_due "
        "WHERE end_state = 0 AND next_check_at <= ? "
        f"AND source = ? AND account = ? AND NOT {unwatched_sql} "
        f"{f'AND {SUBMITTED_UNCHECKED_SQL} ' if submitted else ''}ORDER BY next_check_at LIMIT ?"
    )
    return sql, unwatched_params


# The rows the range of orders planned since a catch-up began examines, in times a due read's
# limit (`catch_up_due_sql`).
PLANNED_SINCE_ROWS = 3


def catch_up_due_sql(
    source: Source, account: str, now: float, limit: int, settled_since: float, since: CatchUpSince
) -> tuple[str, tuple[Any, ...]]:
    """Return the SELECT of `Orders.due` beside a catch-up, and its parameters: up to `limit`
    of an account's due orders asked since it began (its answer, due again), failing with a
    retry planned since (a failed check keeps the last answer's `asked_at`) or tracked since."""
    # Two ranges of the due index. First the orders tracked since and never checked, planned
    # FIRST_CHECK_AT or 0 and added after its last row (the index's entries of one planned
    # time are in row order): none of the catch-up's own, however many are due, as it reads
    # no row past its last (`CatchUps.upto`). By row, not `tracked_at`: a `track` dates its
    # orders before it waits for the writer, and one committed after the catch-up began with
    # an earlier date was the pass's to skip and no tick's to ask. Then those
    # whose next check falls due since it began: the catch-up's own are there too, planned
    # before it and falling due while it runs, not reached yet (all of a long pass's, when it
    # outlasts their interval). Filtered whole, that range cost 88 ms a tick over 50,000 of
    # them; so only its earliest PLANNED_SINCE_ROWS times `limit` of the account are filtered.
    # (One range with the criterion alone walked every due order of the catch-up on every
    # tick: 0.1 s over 100,000.) Not read, left to a later tick or to the catch-up (which may
    # ask it): an order due behind more than that bound of the catch-up's falling due, one
    # tracked in the id of a row deleted since (the last rows untracked), one planned before
    # it began by a clock put back since.
    unwatched_sql, unwatched_params = unwatched(source, settled_since)
    select = f"SELECT {COLUMNS} FROM orders INDEXED BY orders_due WHERE end_state = 0 AND "
    account_sql = f"AND source = ? AND account = ? AND NOT {unwatched_sql}"
    sql = (
        f"{select}next_check_at IN ({FIRST_CHECK_AT}, 0) AND id > ? {account_sql} UNION ALL "
        f"SELECT {COLUMNS} FROM ({select}next_check_at >= ? AND next_check_at <= ? "
        f"{account_sql} ORDER BY next_check_at LIMIT ? * {PLANNED_SINCE_ROWS}) "
        "WHERE asked_at >= ? OR failure_streak > 0 OR tracked_at >= ? "
        "ORDER BY next_check_at LIMIT ?"
    )
    key = (source, account, *unwatched_params)
    after = max(since.clock, math.ulp(0.0))  # the first range's orders are not the second's
    first = (since.last_id, *key)
    return sql, (*first, after, now, *key, limit, since.wall, since.clock, limit)


def answered_sql(source: Source, settled_since: float) -> tuple[str, tuple[Any, ...]]:
    """Return the SELECT of an account's open orders whose last check answered a status
    (`Orders.answered`), and its parameters after (source, account), before the limit."""
    # Through the account's open orders in storage order, the index's own (no sort): by
    # next_check_at it walked the due orders of every account until this one's answered ones
    # (those of a failing account are few, or due late): half a second over 200,000 open
    # orders, every backoff period, holding the store's one connection.
    unwatched_sql, unwatched_params = unwatched(source, settled_since)
    sql = (
        f"SELECT {COLUMNS} FROM orders INDEXED BY orders_open "
        f"WHERE source = ? AND account = ? AND end_state = 0 AND NOT {unwatched_sql} "
        f"AND {ANSWERED_SQL} ORDER BY id LIMIT ?"
    )
    return sql, unwatched_params


def unwatched_any(
    now: float, watched: Mapping[tuple[str, str], float]
) -> tuple[str, tuple[Any, ...]]:
    """Return model.unwatched in SQL for the orders of every account, and its parameters:
    `watched` maps (source, account) to its `watch_settled`; nobody watches the settled orders
    of an account it does not name. Never NULL, as `unwatched`."""
    settled = " OR ".join(
        f"(source = ? AND status IN ({marks(len(words))}))" for words in SETTLED.values()
    )
    settled_params = [p for source, words in SETTLED.items() for p in (source, *words)]
    # The account's watch as one CASE over the few configured accounts, no join: the due
    # orders stay the one table read, through its partial index.
    cases = " ".join("WHEN source = ? AND account = ? THEN ?" for _ in watched)
    case_params = [
        p for (source, account), s in watched.items() for p in (source, account, now - s)
    ]
    since = f"CASE {cases} ELSE ? END" if watched else "?"
    sql = f"(coalesce({settled}, 0) AND coalesce(last_changed, tracked_at, 0) <= {since})"
    return sql, (*settled_params, *case_params, now)
