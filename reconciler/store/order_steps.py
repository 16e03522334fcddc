"""Orders whose next check was planned before the wall clock was stepped back (NTP stepping a
host back, a VM whose clock ran ahead): their check times are as far ahead as the step, and
they would wait that long on top of their interval (a 120 s order 3672 s after a 1 h step).

No check is planned further ahead than its own interval and 10 % of jitter (`schedule.plan`;
`interval_s` is that interval, or the account's `max_interval` where none is kept); one further
ahead is planned again at its interval from now, so that a step back costs at most one
interval. (A circuit breaker's postponed order may so be asked before its poll interval ends.)
"""

from __future__ import annotations

from ..model import NEVER_SQL, Source
from .db import Store

# A planned check past its bound by less than this is no step (rounding, the 10 % jitter).
_SLACK_S = 1.0

_AHEAD = (
    f"WHERE end_state = 0 AND next_check_at > :now AND next_check_at < {NEVER_SQL} "
    "AND source = :source AND account = :account AND next_check_at > :now + {bound} * 1.1 + :slack"
).format(bound="coalesce(interval_s, :longest)")
# Read first: a due read must not wait for another process's write lock when nothing moves.
_ANY = "SELECT 1 FROM orders INDEXED BY orders_due " + _AHEAD + " LIMIT 1"
_PULL = (
    "UPDATE orders INDEXED BY orders_due SET next_check_at = :now + coalesce(interval_s, :longest) "
    + _AHEAD
)


async def pull_ahead(
    store: Store, source: Source, account: str, now: float, *, longest_s: float
) -> int:
    """Plan again, at their interval from `now`, the account's open orders whose next check is
    further ahead than their interval allows (`interval_s`, `longest_s` where none is kept);
    return how many there were. Every open order not due is looked at: once at a start, and
    after a step back."""
    params = {"now": now, "source": source, "account": account}
    params |= {"longest": longest_s, "slack": _SLACK_S}
    if not list(await store.conn.execute_fetchall(_ANY, params)):
        return 0
    async with store.transaction():
        cursor = await store.conn.execute(_PULL, params)
        pulled = cursor.rowcount
        await cursor.close()
    if pulled:
        # A pass holding a page of these rows would write their old check times back.
        store.orders.drop_pages()
    return max(pulled, 0)
