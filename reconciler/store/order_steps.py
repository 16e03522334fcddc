"""Orders whose next check was planned before the wall clock was stepped back (NTP stepping a
host back, a VM whose clock ran ahead): their check times are as far ahead as the step, and
they would wait that long on top of their interval (a 120 s order 3672 s after a 1 h step).

No check is planned further ahead than its bound and 10 % of jitter: the order's interval
(`interval_s`, the account's `max_interval` where none is kept), or `floor_s` where that is
more (`poller.clock_step`: the longest the planner sets whatever the order's interval, a failed
check's `min_interval`, a circuit breaker's postponement). One further ahead is planned again
at its interval from now, jittered as `schedule.plan` does, so that a step back costs at most
one interval.
"""

from __future__ import annotations

from collections.abc import Callable

from ..model import NEVER_SQL, Source
from .db import Store

# A planned check past its bound by less than this is no step (rounding).
_SLACK_S = 1.0

_AHEAD = (
    f"WHERE end_state = 0 AND next_check_at > :now AND next_check_at < {NEVER_SQL} "
    "AND source = :source AND account = :account "
    "AND next_check_at > :now + max(coalesce(interval_s, :longest), :floor) * 1.1 + :slack"
)
# Read first: a due read must not wait for another process's write lock when nothing moves.
_ANY = "SELECT 1 FROM orders INDEXED BY orders_due " + _AHEAD + " LIMIT 1"
_ROWS = "SELECT id, coalesce(interval_s, :longest) FROM orders INDEXED BY orders_due " + _AHEAD
_PLAN = "UPDATE orders SET next_check_at = ? WHERE id = ?"


async def pull_ahead(
    store: Store,
    source: Source,
    account: str,
    now: float,
    *,
    longest_s: float,
    floor_s: float,
    jitter: Callable[[], float],
) -> int:
    """Plan again, at their interval from `now` (`interval_s`, `longest_s` where none is kept)
    stretched by up to 10 % (`jitter()` in [0, 1), as `schedule.plan`'s), the account's open
    orders whose next check is further ahead than their bound (module docstring); return how
    many there were. Every open order not due is looked at: once at a start, and after a step
    back."""
    params = {"now": now, "source": source, "account": account}
    params |= {"longest": longest_s, "floor": floor_s, "slack": _SLACK_S}
    if not list(await store.conn.execute_fetchall(_ANY, params)):
        return 0
    async with store.transaction():
        rows = await store.conn.execute_fetchall(_ROWS, params)
        # Each its own jitter: orders planned together come due over a tenth of their
        # interval, not at one instant (a burst of requests to the provider).
        planned = [(now + float(every) * (1 + 0.1 * jitter()), row_id) for row_id, every in rows]
        await store.conn.executemany(_PLAN, planned)
    if planned:
        # A pass holding a page of these rows would write their old check times back.
        store.orders.drop_pages()
    return len(planned)
