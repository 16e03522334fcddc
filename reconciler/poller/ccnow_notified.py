"""A CCNow server notification: a hint that makes a poll happen now. The pending list is polled
and the orders it named are queried; one whose check got no answer (the account failing or
resting, a maintenance answer, its own post failing) is made due now in the store
(store/due_now.py): CCNow tells once, and else a settled order's change waited for its planned
check, up to `settled_interval` away. The first due checks once CCNow answers again ask it, and
a restart's catch-up asks it too. Followed orders only: no hint follows an order CCNow did not
answer for."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..logs import fields
from ..model import ORDER_ERROR, UNKEPT_ANSWERS, Observation, OrderKey, Outcome
from ..passes.report import PassReport
from ..store.due_now import make_due
from .ccnow_list import followed

if TYPE_CHECKING:
    from .ccnow import CCNowCoordinator

log = logging.getLogger("reconciler.poller")


def answered(observation: Observation) -> bool:
    """Whether CCNow said something of the order: a status, its "not found", an error line of
    the order's own, or words no check keeps; a failed post or timeout is no answer."""
    return observation.outcome is not Outcome.FAILED or observation.reason in (
        ORDER_ERROR,
        *UNKEPT_ANSWERS,
    )


async def notified(
    coordinator: CCNowCoordinator, order_ids: Sequence[str], mentioned: Sequence[str]
) -> PassReport:
    """Poll the pending list and query the ids the notification named, and those it only
    mentioned (an amount, a note) whose orders are followed already; keep those no answer
    came for as due."""
    came = time.time()  # on the clock of the answers' `asked`: one asked since is newer
    seen: set[str] = set()
    report = await coordinator.pending_list_pass(via="notification", seen=seen)
    # An order the poll answered is not asked again: a second, unchanged look would count
    # as a check that found nothing new and double the interval its change had just reset.
    named = [i for i in order_ids if i not in seen]
    said: list[Observation] = []
    if named:
        # The notification came with the account's token, and named these in a field for an
        # order (or as its whole body): each is queried, followed or not, and one CCNow knows
        # is followed from now on. The receiver bounds the ids per notification and account.
        report.add(await coordinator.check(named, via="notification", discover=True, said=said))
    others = [i for i in mentioned if i not in seen and i not in named]
    asked: list[str] = []
    if others:
        # CCNow documents no layout for its post: nine digits elsewhere may be an amount, so
        # they only hurry the check of an order followed already, never follow one.
        asked = await _followed(coordinator, others)
        if dropped := len(others) - len(asked):
            # Counted, not named: an amount's or a note's digits name no order of anyone's.
            hint = "reconciler track ccnow ID follows an order"
            said_ = fields(
                source="ccnow", account=coordinator.account, mentioned=dropped, hint=hint
            )
            log.info("notification.not_followed", extra=said_)
        if asked:
            report.add(await coordinator.check(asked, via="notification", said=said))
    await _keep_unanswered(coordinator, [*named, *asked], said, came)
    return report


async def _followed(coordinator: CCNowCoordinator, ids: Sequence[str]) -> list[str]:
    """Return those of `ids` whose orders are followed (tracked, not ended, still watched)."""
    keys = [OrderKey("ccnow", coordinator.account, i) for i in ids]
    states = await coordinator.store.orders.load(keys)
    since = coordinator.settled_since()
    return [k.order_id for k in keys if followed(states.get(k), since)]


async def _keep_unanswered(
    coordinator: CCNowCoordinator, ids: Sequence[str], said: Sequence[Observation], came: float
) -> None:
    """Make the followed orders among `ids` that no answer came for due now (never later), but
    those another check answered meanwhile, asked since the notification came (`came`)."""
    heard = {o.key.order_id for o in said if answered(o)}
    left = [i for i in ids if i not in heard]
    due = await _followed(coordinator, left) if left else []
    if not due:
        return
    meanwhile = (came, time.time())
    now = coordinator.now()
    kept = await make_due(
        coordinator.store, "ccnow", coordinator.account, due, now, unless_asked_within=meanwhile
    )
    if not kept:
        return
    said_ = fields(source="ccnow", account=coordinator.account, orders=kept)
    log.info("notification.kept_due", extra=said_)
