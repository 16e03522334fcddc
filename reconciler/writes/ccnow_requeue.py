"""Queuing a CCNow post's commands again after a failure that is no answer about them (never
sent, turned away, an answer lost), with its one warning line."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.config import CCNowConfig
from reconciler.logs import fields
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.requeue import requeue_within
from reconciler.writes.ccnow_outcome import RETRY_MAX_S, retry_delay
from reconciler.writes.ccnow_taken import Tally

__all__ = ("NAMED_AT_MOST", "hidden_reached", "naming", "not_before", "requeue")

# The actions' logger: the line is logged under the name operators filter on.
log = logging.getLogger("reconciler.writes.ccnow_actions")


# How many of a post's orders and commands its line names: which ones wait, without a line
# as long as the post (a batch of 100).
NAMED_AT_MOST = 5


def naming(batch: Sequence[cmds.Command]) -> dict[str, object]:
    """A post's commands as a log line names them: how many, and the first orders and ids."""
    first = batch[:NAMED_AT_MOST]
    ids = {"order_ids": [c.order_id for c in first], "command_ids": [c.id for c in first]}
    return {"commands": len(batch), **ids}


def hidden_reached(batch: Sequence[cmds.Command]) -> set[int]:
    """Those of a batch queued again after an attempt whose answer may hide that CCNow ran it
    (a 503 without CCNow's words: a proxy's, after CCNow got it and was slow) that keep that
    it may have reached CCNow with them: the tracking uploads. CCNow refusing the next post
    (`order not pending`) then leaves one `uncertain`, as after a lost answer: no status read
    can tell whether it was added. A ship or cancel keeps nothing: its order's status tells
    (but one closed withdrawn instead keeps it: store/requeue.requeue_within's `hidden_at`)."""
    return {c.id for c in batch if c.action == "track"}


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
    hidden: bool = False,
    sent: bool = True,
    turned: str | None = None,
) -> None:
    """Queue a batch again after a failure that is no answer about its commands (their day and
    its three-day bound start again), due after `delay` (by default: doubling per attempt, or
    what its answer's Retry-After asked, `wait` seconds, when longer; an hour at most);
    `lost`: its answer was lost, so the post may have reached CCNow; `hidden`: an attempt's
    answer may hide that it ran (`hidden_reached`); not `sent`: no connection was made;
    `turned`: the status that turned it away before CCNow acted on it (a 429)."""
    delay = retry_delay(batch, wait) if delay is None else delay
    reached = {c.id for c in batch} if lost else hidden_reached(batch) if hidden else set()
    rows: list[tuple[int, str, float | None, float | None]] = [
        (c.id, why, None, None) for c in batch
    ]
    at = now + delay
    async with store.transaction():
        kept = [r for r in rows if r[0] not in reached]
        hidden_at = now if hidden else None
        closed = await requeue_within(
            *(store, kept),
            next_attempt_at=at,
            now=now,
            hidden_at=hidden_at,
            sent=sent,
            turned=turned,
        )
        marked = [r for r in rows if r[0] in reached]
        closed += await requeue_within(store, marked, next_attempt_at=at, now=now, reached_at=now)
    # Those withdrawn while their post was out are not queued: refused (store/withdraw.py).
    tally.queued += len(batch) - len(closed)
    tally.refused += len(closed)
    if closed:
        ids = [c.id for c in closed]
        log.warning("ccnow.action_withdrawn", extra=fields(account=cfg.name, commands=ids))
    if len(batch) > len(closed):
        gone = {c.id for c in closed}
        waits = naming([c for c in batch if c.id not in gone])
        log.warning(
            "ccnow.action_retry_later",
            extra=fields(account=cfg.name, **waits, reason=why, retry_in_s=delay),
        )
