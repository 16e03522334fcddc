"""Orders whose next check was planned before the wall clock was stepped back (NTP stepping a
host back, a VM whose clock ran ahead): their check times are as far ahead as the step, and
they would wait that long on top of their interval (a 120 s order 3672 s after a 1 h step).

A step a running daemon sees has a size (`poller.clock_step`: against the clock never stepped):
`shift_back` moves every check planned before it back by that much, no earlier than now, each
keeping its jitter. A start cannot know the size of a step before it, nor when each check was
planned: `pull_ahead` plans again those further ahead than their bound and 10 % of jitter, the
order's interval (`interval_s`, the account's `max_interval` where none is kept), or `floor_s`
where that is more (the longest the planner sets whatever the order's interval, a failed
check's `min_interval`, a circuit breaker's postponement), at their interval from now (a failed
one's at least `retry_s`, as `schedule.plan` retries it), jittered as `plan` does: so a step
back before a start costs at most one interval.
"""

from __future__ import annotations

from collections.abc import Callable

from ..model import NEVER_SQL, Source
from .db import Store
from .order_sql import PLANNED_SQL

# A planned check past its bound by less than this is no step (rounding).
_SLACK_S = 1.0

_AHEAD = (
    f"WHERE end_state = 0 AND next_check_at > :now AND next_check_at < {NEVER_SQL} "
    "AND source = :source AND account = :account "
    "AND next_check_at > :now + max(coalesce(interval_s, :longest), :floor) * 1.1 + :slack"
)
# Read first: a due read must not wait for another process's write lock when nothing moves.
_ANY = "SELECT 1 FROM orders INDEXED BY orders_due " + _AHEAD + " LIMIT 1"
_ROWS = (
    "SELECT id, CASE WHEN failure_streak > 0 THEN max(coalesce(interval_s, :longest), :retry) "
    "ELSE coalesce(interval_s, :longest) END FROM orders INDEXED BY orders_due " + _AHEAD
)


async def pull_ahead(
    store: Store,
    source: Source,
    account: str,
    now: float,
    *,
    longest_s: float,
    floor_s: float,
    retry_s: float,
    jitter: Callable[[], float],
) -> int:
    """Plan again, at their interval from `now` (`interval_s`, `longest_s` where none is kept;
    a failing order's at least `retry_s`) stretched by up to 10 % (`jitter()` in [0, 1), as
    `schedule.plan`'s), the account's open orders whose next check is further ahead than their
    bound (module docstring); return how many there were. Every open order not due is looked
    at, once at a start."""
    params = {"now": now, "source": source, "account": account}
    params |= {"longest": longest_s, "floor": floor_s, "retry": retry_s, "slack": _SLACK_S}
    if not list(await store.conn.execute_fetchall(_ANY, params)):
        return 0
    async with store.transaction():
        rows = await store.conn.execute_fetchall(_ROWS, params)
        # Each its own jitter: orders planned together come due over a tenth of their
        # interval, not at one instant (a burst of requests to the provider).
        planned = [(now + float(every) * (1 + 0.1 * jitter()), row_id) for row_id, every in rows]
        await store.orders.plan_checks(source, account, planned)
    return len(planned)


_ANY_PLANNED = f"SELECT 1 FROM orders INDEXED BY orders_due {PLANNED_SQL} LIMIT 1"


async def shift_back(store: Store, source: Source, account: str, now: float, step_s: float) -> int:
    """Move the account's planned checks (open orders not due at `now`) `step_s` earlier, no
    earlier than `now`; return how many moved. One due before the step is due now, as it
    would have been; the others keep their jitter. (One planned after the step and before the
    read that saw it is asked up to `step_s` early.)"""
    params = {"now": now, "source": source, "account": account}
    if not list(await store.conn.execute_fetchall(_ANY_PLANNED, params)):
        return 0
    async with store.transaction():
        return await store.orders.shift_checks_back(source, account, now, step_s)
