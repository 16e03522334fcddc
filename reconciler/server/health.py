"""What /healthz reports: the health of every provider account, the outbox and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..json_text import iso_time
from ..schedule import rest_ahead


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """Health of one provider account as the daemon sees it; times are epoch seconds."""

    source: str
    account: str
    last_success: float | None
    failure_streak: int
    failing: bool
    interval_s: float
    # Until when it rests at its provider's word (a Retry-After, schedule.rest_until): as the
    # store records it or the daemon holds it, the later; None: no rest
    rest_until: float | None = None

    def healthy(self, now: float) -> bool:
        """Return whether the source is not failing and answered within 3 poll intervals."""
        return (
            not self.failing
            and self.last_success is not None
            and now - self.last_success <= 3 * self.interval_s
        )


@dataclass(frozen=True, slots=True)
class Health:
    """What /healthz reports: every source, the undelivered events per sink, and the store
    (failing from a failed statement, such as a full disk, until the next committed write)."""

    sources: tuple[SourceHealth, ...]
    outbox: dict[str, int] = field(default_factory=dict)
    store_failing_since: float | None = None
    store_error: str | None = None


def health_document(health: Health, now: float) -> tuple[dict[str, Any], bool]:
    """Return the /healthz JSON body and whether everything is healthy at `now`."""
    sources = [
        {
            "source": s.source,
            "account": s.account,
            "last_success": _iso(s.last_success),
            "failure_streak": s.failure_streak,
            "failing": s.failing,
            "healthy": s.healthy(now),
            "resting_until": _iso(rest_ahead(s.rest_until, now=now)),
        }
        for s in health.sources
    ]
    since = health.store_failing_since
    store = {
        "healthy": since is None,
        "failing_since": _iso(since),
        "error": health.store_error,
    }
    ok = all(entry["healthy"] for entry in sources) and since is None
    document = {
        "status": "ok" if ok else "unhealthy",
        "sources": sources,
        "store": store,
        "outbox": health.outbox,
    }
    return document, ok


def _iso(value: float | None) -> str | None:
    return None if value is None else iso_time(value)
