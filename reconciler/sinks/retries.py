"""What a failed delivery becomes: a retry at its time (`retry_min`, doubling with jitter, at
most `retry_max`, at least a Retry-After), or a dead letter once the event reached `max_age`.

`max_age` counts from the event's creation, or from its replay when `replay` queued it again,
so that a replayed event gets its retries like a new one.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import SinkConfig
from ..logs import fields
from .base import OutboxEvent, RetryLater

log = logging.getLogger("reconciler.outbox")


def disabled_hint(sink: str) -> str:
    """The `sink.disabled` line's way back: what the sink does not have, not the history."""
    return f"reconciler replay --sink {sink} --undelivered enables it again"


@dataclass(frozen=True, slots=True)
class Failures:
    """Failed attempts of one batch as the outbox records them."""

    updates: list[tuple[int, str, float | None]]  # (seq, reason, next attempt; None: dead)
    dead: int  # events dead-lettered
    resume_at: float  # when the sink may be tried again (0: at once)


def plan(
    cfg: SinkConfig,
    failed: Sequence[tuple[OutboxEvent, RetryLater]],
    started: Mapping[int, float],
    now: float,
    rng: random.Random,
) -> Failures:
    """Decide each failed event's next attempt, or its dead letter, logging one line each.
    `started`: by seq, when the event's `max_age` began."""
    updates: list[tuple[int, str, float | None]] = []
    dead = 0
    resume_at = 0.0
    for row, res in failed:
        delay = cfg.retry_min_s * 2 ** min(row.attempts, 30) * (1 + 0.25 * rng.random())
        # Capped after the jitter: `retry_max` is the longest wait the config promises (the
        # jitter after the cap made an 8 s one up to 10 s). Only a Retry-After waits longer.
        delay = min(delay, cfg.retry_max_s)
        if res.retry_after_s is not None:
            delay = max(delay, res.retry_after_s)
        delay = max(delay, cfg.retry_min_s)
        # The last attempt is made when the event reaches max_age (or retry_min after this one,
        # if later), not one retry period before it: only a failure at that age dead-letters it.
        deadline = started.get(row.seq, now) + cfg.max_age_s
        due = min(now + delay, max(deadline, now + cfg.retry_min_s))
        if now >= deadline:
            dead += 1
            updates.append((row.seq, res.reason, None))
            log.error(
                "sink.dead_letter",
                extra=fields(
                    sink=cfg.name,
                    event_id=row.id,
                    event_type=row.type,
                    attempts=row.attempts + 1,
                    reason=res.reason,
                ),
            )
            continue
        log.warning(
            "sink.retry",
            extra=fields(
                sink=cfg.name,
                event_id=row.id,
                attempts=row.attempts + 1,
                reason=res.reason,
                retry_in_s=round(due - now, 3),
            ),
        )
        resume_at = max(resume_at, due)
        updates.append((row.seq, res.reason, due))
    return Failures(updates, dead, resume_at)


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
    the receiver rejects for good. A Retry-After is waited for, but never past the events'
    max_age (`resume_at`, the plan's)."""
    if newly_down:
        streak = min(streak + 1, 30)
    wait = min(cfg.retry_min_s * 2 ** (max(streak, 1) - 1), cfg.retry_max_s)
    asked = max((r.retry_after_s or 0.0 for _, r in failed), default=0.0)
    asked = min(asked, max(resume_at - now, 0.0))
    return streak, now + max(wait, asked)
