"""The last pass, kept in the store's meta table so that `reconciler status` can show it from
another process: which pass, when, how long, and how it went."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, Protocol

from .db import Store

_KEY = "last_pass"


class PassCounts(Protocol):
    """What the store keeps of a pass's report (passes/report.PassReport): the store does not
    depend on the passes package, which depends on it."""

    @property
    def checked(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def events(self) -> int: ...
    @property
    def failed_sources(self) -> Collection[str]: ...


@dataclass(frozen=True, slots=True)
class LastPass:
    """A finished pass: a catch-up, or one of the daemon's scheduled passes."""

    name: str  # "catch-up", "ccnow/default pending list", "ccv/default due"
    started: float  # epoch seconds
    seconds: float
    checked: int
    failed: int
    events: int
    failing: tuple[str, ...]  # accounts that failed, "ccv/default"

    @property
    def outcome(self) -> Literal["ok", "failed"]:
        """ "ok" when every order answered and no account failed."""
        return "failed" if self.failed or self.failing else "ok"


async def remember_pass(
    store: Store, name: str, report: PassCounts, started: float, now: float
) -> None:
    """Record a finished pass (begun at `started`) for `reconciler status`, in its own small
    transaction."""
    value = {
        "name": name,
        "started": started,
        "seconds": round(max(now - started, 0.0), 3),
        "checked": report.checked,
        "failed": report.failed,
        "events": report.events,
        "failing": sorted(report.failed_sources),
    }
    async with store.transaction():
        await store.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_KEY, json.dumps(value))
        )


async def last_pass(store: Store) -> LastPass | None:
    """Return the last pass recorded, if any."""
    sql = "SELECT value FROM meta WHERE key = ?"
    rows = list(await store.conn.execute_fetchall(sql, (_KEY,)))
    if not rows:
        return None
    v = json.loads(rows[0][0])
    return LastPass(
        str(v["name"]),
        float(v["started"]),
        float(v["seconds"]),
        int(v["checked"]),
        int(v["failed"]),
        int(v["events"]),
        tuple(v["failing"]),
    )
