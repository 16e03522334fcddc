"""An order as the interface shows it: `orders --json` and the integration API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .json_text import iso_time
from .model import NEVER, OrderState, settled_at, unwatched, watch_from


def _ts(value: float | None) -> str | None:
    return None if value is None or value == NEVER else iso_time(value)


def _due_at(s: OrderState, now: float) -> float:
    """When the order's next check is due. The store plans a new order's first check as 0, "at
    once": it has been due since it was tracked (`now` for a row that does not say when), not
    since 1970."""
    if s.next_check_at > 0:
        return s.next_check_at
    return s.tracked_at if s.tracked_at is not None else now


def watch_over(s: OrderState, watched: Mapping[tuple[str, str], float], now: float) -> bool:
    """Whether a settled order's watch has ended under the config running now (`watched`:
    Config.watch_settled): a check stored under a longer one is never made."""
    key = s.key
    since = settled_at(s.last_changed, s.tracked_at)
    settled_since = watch_from(watched, key.source, key.account, now)
    return unwatched(key.source, s.status, since, settled_since=settled_since)


def order_json(
    s: OrderState, *, watched: Mapping[tuple[str, str], float], now: float
) -> dict[str, Any]:
    """Return one snapshot row as a JSON object; `watched` (Config.watch_settled) and `now`
    decide whether a settled order's watch is over (`watch_over`): its stored next check is then
    never made, and shown as none wherever the row is shown."""
    ended = s.end_state or watch_over(s, watched, now)
    return {
        "source": s.key.source,
        "account": s.key.account,
        "order_id": s.key.order_id,
        "status": s.status,
        "external_reference": s.external_reference,
        "end_state": s.end_state,
        "not_found": s.not_found,
        "first_seen": _ts(s.first_seen),
        "last_changed": _ts(s.last_changed),
        "last_checked": _ts(s.last_checked),
        "next_check_at": None if ended else _ts(_due_at(s, now)),
        "failure_streak": s.failure_streak,
    }
