"""An order as the interface shows it: `orders --json` and the integration API."""

from __future__ import annotations

from typing import Any

from .json_text import iso_time
from .model import OrderState


def _ts(value: float | None) -> str | None:
    return None if value is None or value == float("inf") else iso_time(value)


def order_json(s: OrderState) -> dict[str, Any]:
    """Return one snapshot row as a JSON object."""
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
        "next_check_at": _ts(s.next_check_at) if not s.end_state else None,
        "failure_streak": s.failure_streak,
    }
