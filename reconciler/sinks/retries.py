"""What a failed delivery becomes: a retry at its time (`retry_min`, doubling with jitter, at
least a Retry-After, at most `retry_max`), or a dead letter once the event reached `max_age`.

`max_age` counts from the event's creation, or from its replay when `replay` queued it again,
so that a replayed event gets its retries like a new one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..config import SinkConfig
from ..json_text import iso_time
from ..logs import fields
from ..redact import SecretForms, mask
from ..store.errors import StoreLocked
from .base import OutboxEvent, RetryLater, SinkGone

log = logging.getLogger("reconciler.outbox")

T = TypeVar("T")
Said = TypeVar("Said", RetryLater, SinkGone)

# How long a sink's record waits for another process's write (a lock held past SQLite's busy
# timeout) before it fails as a store error: the lane then reads the store again a tick later,
# and the events not recorded are delivered again (at least once).
RECORD_WAIT_S = 300.0
# The pause between two tries of a record, on top of SQLite's own busy timeout.
RECORD_AGAIN_S = 0.1


def masked(result: Said, secrets: SecretForms | None) -> Said:
    """`result` with every secret of the config masked in its reason, before it is logged or
    recorded: a sink's reason may quote what it heard from outside (a program's stderr, a
    receiver's answer), and that may echo a password or a key."""
    if secrets is None:
        return result
    reason = mask(result.reason, secrets)
    return result if reason == result.reason else replace(result, reason=reason)


def disabled_hint(sink: str) -> str:
    """The `sink.disabled` line's way back: what the sink does not have, not the history."""
    return f"reconciler replay --sink {sink} --undelivered enables it again"


def log_disabled(sink: str, reason: str, since: float | None = None) -> None:
    """Say that a sink is disabled: `sink.disabled` (error) once, when its receiver said it is
    gone (`since` None); `sink.still_disabled` (warning) at each later start that finds it so.
    An alert on `sink.disabled` fires once per disabling, not at every start or catch-up."""
    hint = disabled_hint(sink)
    if since is None:
        log.error("sink.disabled", extra=fields(sink=sink, reason=reason, hint=hint))
        return
    values = fields(sink=sink, reason=reason, disabled_at=iso_time(since), hint=hint)
    log.warning("sink.still_disabled", extra=values)


@dataclass(frozen=True, slots=True)
class Failures:
    """Failed attempts of one batch as the outbox records them."""

    updates: list[tuple[int, str, float | None]]  # (seq, reason, next attempt; None: dead)
    dead: int  # events dead-lettered
    resume_at: float  # when the sink may be tried again (0: at once)
    # The outcome lines (level, message, fields), said once their record committed: a record
    # that fails says nothing, and one made again must not say it twice.
    lines: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def log(self) -> None:
        """Log each outcome line: after `updates` were recorded."""
        for level, message, values in self.lines:
            log.log(level, message, extra=fields(**values))


async def record_waiting(write: Callable[[], Awaitable[T]], stopping: Callable[[], bool]) -> T:
    """Run a store write recording what a sink said, and run it again while another process
    holds the database's write lock: that is a wait, not a failure, and the events it records
    must not be delivered again because their record had to wait. A stop (`stopping`), or a
    lock held for RECORD_WAIT_S, ends the wait with the StoreLocked error."""
    deadline = time.monotonic() + RECORD_WAIT_S
    while True:
        try:
            return await write()
        except StoreLocked:
            if stopping() or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(RECORD_AGAIN_S)


def asked_s(cfg: SinkConfig, result: RetryLater) -> float:
    """What a refusal's Retry-After asks to wait (0: none), as it is taken: at most the sink's
    `retry_max`, as CCNow's is at most an hour."""
    return min(result.retry_after_s or 0.0, cfg.retry_max_s)


def plan(
    cfg: SinkConfig,
    failed: Sequence[tuple[OutboxEvent, RetryLater]],
    started: Mapping[int, float],
    now: float,
    rng: random.Random,
) -> Failures:
    """Decide each failed event's next attempt, or its dead letter, with one line each to log
    once recorded. `started`: by seq, when the event's `max_age` began."""
    updates: list[tuple[int, str, float | None]] = []
    lines: list[tuple[int, str, dict[str, Any]]] = []
    dead = 0
    resume_at = 0.0
    for row, res in failed:
        delay = cfg.retry_min_s * 2 ** min(row.attempts, 30) * (1 + 0.25 * rng.random())
        # Capped after the jitter: `retry_max` is the longest wait the config promises (the
        # jitter after the cap made an 8 s one up to 10 s), a Retry-After's too: one of
        # 99999999999 s held the event and its order's later ones for all of `max_age`.
        delay = max(delay, asked_s(cfg, res), cfg.retry_min_s)
        delay = min(delay, cfg.retry_max_s)
        # The last attempt is made when the event reaches max_age (or retry_min after this one,
        # if later), not one retry period before it: only a failure at that age dead-letters it.
        deadline = started.get(row.seq, now) + cfg.max_age_s
        due = min(now + delay, max(deadline, now + cfg.retry_min_s))
        if now >= deadline:
            dead += 1
            updates.append((row.seq, res.reason, None))
            dead_letter = {
                "sink": cfg.name,
                "event_id": row.id,
                "event_type": row.type,
                "attempts": row.attempts + 1,
                "reason": res.reason,
            }
            lines.append((logging.ERROR, "sink.dead_letter", dead_letter))
            continue
        retry = {
            "sink": cfg.name,
            "event_id": row.id,
            "attempts": row.attempts + 1,
            "reason": res.reason,
            "retry_in_s": round(due - now, 3),
        }
        lines.append((logging.WARNING, "sink.retry", retry))
        resume_at = max(resume_at, due)
        updates.append((row.seq, res.reason, due))
    return Failures(updates, dead, resume_at, lines)


def down_pause(
    cfg: SinkConfig,
    streak: int,
    newly_down: bool,
    failed: Sequence[tuple[OutboxEvent, RetryLater]],
    resume_at: float,
    now: float,
) -> tuple[int, float]:
    """Return the down streak and until when a sink whose receiver looks down waits: longer
    each time in a row (retry_min doubling, at most retry_max), then it tries one event. Only
    a new event's refusal lengthens it (`newly_down`): a retry refused again may be a payload
    the receiver rejects for good. A Retry-After is waited for, up to retry_max, and never
    past the events' max_age (`resume_at`, the plan's)."""
    if newly_down:
        streak = min(streak + 1, 30)
    wait = min(cfg.retry_min_s * 2 ** (max(streak, 1) - 1), cfg.retry_max_s)
    asked = max((asked_s(cfg, r) for _, r in failed), default=0.0)
    asked = min(asked, max(resume_at - now, 0.0))
    return streak, now + max(wait, asked)
