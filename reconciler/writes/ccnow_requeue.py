"""Queuing a CCNow post's commands again after a failure that is no answer about them (never
sent, turned away, an answer lost), with its one warning line."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.config import CCNowConfig
from reconciler.logs import fields
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_outcome import RETRY_MAX_S, retry_delay
from reconciler.writes.ccnow_taken import Tally

__all__ = ["not_before", "requeue"]

# The actions' logger: the line is logged under the name operators filter on.
log = logging.getLogger("reconciler.writes.ccnow_actions")


def not_before(wait: float | None) -> float:
    """The delay of commands due again at once, but not before an answer's Retry-After asks
    (`wait`, seconds; an hour at most): not its doubling, which would make a short one long."""
    return min(wait or 0.0, RETRY_MAX_S)


async def requeue(
    store: Store,
    now: float,
    cfg: CCNowConfig,
    batch: Sequence[cmds.Command],
    why: str,
    tally: Tally,
    *,
    lost: bool = False,
    delay: float | None = None,
    wait: float | None = None,
) -> None:
    """Queue a batch again after a failure that is no answer about its commands (their day and
    its three-day bound start again), due after `delay` (by default: doubling per attempt, or
    what its answer's Retry-After asked, `wait` seconds, when longer; an hour at most);
    `lost`: its answer was lost, so the post may have reached CCNow."""
    ids = [c.id for c in batch]
    delay = retry_delay(batch, wait) if delay is None else delay
    at = now if lost else None
    await cmds.requeue(store, ids, next_attempt_at=now + delay, why=why, reached_at=at)
    tally.queued += len(batch)
    log.warning(
        "ccnow.action_retry_later",
        extra=fields(account=cfg.name, commands=len(batch), reason=why, retry_in_s=delay),
    )
