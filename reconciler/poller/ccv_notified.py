"""A CCV notification stands until a check of its order answers: CCV calls a notification URL
once and never again (NOTES.md), so one whose check failed (a 5xx after retries, a timeout, the
account's outage) or that a stop cut short is kept in the store (store/notified_orders.py) and
asked again, a poll interval after its failure and then less often as it ages, first when the
account answers again, and at the next start's catch-up, end states too. A notification by
external reference settles or is remembered against the reference's submissions
(store/notified.py), which outlive a stop. Both are recorded when the receiver takes the call,
before it answers 202 (`note`, `record_reference`), and the check comes later.

Each check holds the checks of notified orders it made (`holding`) until its own batches are
written: a check whose write failed leaves its notifications standing, another check settling
only what it wrote itself."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..logs import fields
from ..model import (
    NOT_FOUND_UNCONFIRMED,
    UNKEPT_ANSWERS,
    Observation,
    OrderKey,
    OrderState,
    Outcome,
)
from ..passes.report import PassReport
from ..store import notified_orders
from ..store.notified import notified

if TYPE_CHECKING:
    from .ccv import CCVCoordinator

log = logging.getLogger("reconciler.poller")


def answered(observation: Observation) -> bool:
    """Whether a check answered about its order: a status, CCV's own "not found", or CCV's
    answer in words no check keeps; a failure (5xx, timeout, 401) leaves the notification."""
    return (
        observation.outcome is not Outcome.FAILED
        or observation.reason in UNKEPT_ANSWERS
        or observation.reason == NOT_FOUND_UNCONFIRMED
    )


async def known(coordinator: CCVCoordinator) -> set[str]:
    """Return the account's notified orders not answered yet, read once per process: only this
    process writes them while it runs (the store's writer lock)."""
    if coordinator.notified_ids is None:
        coordinator.notified_ids = set(
            await notified_orders.pending(coordinator.store, "ccv", coordinator.account)
        )
    return coordinator.notified_ids


async def note(coordinator: CCVCoordinator, order_id: str, *, followed_only: bool = True) -> bool:
    """Keep a notification of an order (with `followed_only`, the default, of a followed one
    only: one untracked since the caller found it followed would stand for ever) before its
    check: it stands until one answers. Return whether it was kept."""
    ids = await known(coordinator)
    known_before = order_id in ids
    # Before the write: one cancelled (a stop) may have committed all the same, and a notified
    # order this process does not know of would never be settled by its checks.
    ids.add(order_id)
    # With the other records waiting for the writer meanwhile, in one transaction.
    kept = await coordinator.notes.note(order_id, coordinator.now(), followed_only=followed_only)
    if kept:
        # Again once committed: a check's `settle` meanwhile (this write waited for the writer)
        # may have taken it out, and read what stands before this write was there.
        ids.add(order_id)
    elif not known_before:
        # Not kept (followed no longer); one kept earlier went with the untrack (the store's
        # trigger), and one this process knew stays known: settling it takes nothing.
        ids.discard(order_id)
    return kept


@contextlib.contextmanager
def holding(coordinator: CCVCoordinator) -> Iterator[None]:
    """Give the check run in this block its own list of checks of notified orders (`seen`),
    which its `settle` alone takes: another check, concurrent or later, never settles a
    notification on an answer whose batch was not written (its write failed, or is to come)."""
    token = coordinator.notified_seen.set([])
    try:
        yield
    finally:
        coordinator.notified_seen.reset(token)


def seen(coordinator: CCVCoordinator, observation: Observation) -> None:
    """Hold a check of a notified order until its batch is written (`settle`)."""
    held = coordinator.notified_seen.get()
    ids = coordinator.notified_ids
    if held is not None and ids and observation.key.order_id in ids:
        held.append(observation)


async def settle(coordinator: CCVCoordinator) -> None:
    """After the checks held by `seen` were written: forget the notifications of the orders
    that answered, ask those that failed again a poll interval later, then less often as the
    notification ages (not at their own backoff, up to max_interval away, nor every poll
    interval for ever: an order CCV answers 403 or 500 for ever)."""
    held = coordinator.notified_seen.get()
    if held is None:
        return
    seen = held[:]
    held.clear()
    ids = await known(coordinator)
    if not ids or not seen:
        return
    asked = {o.key.order_id: o.asked for o in seen if o.key.order_id in ids and answered(o)}
    done = set(asked)
    failed = {o.key.order_id for o in seen if o.key.order_id in ids} - done
    if not done and not failed:
        return
    config = coordinator.config
    await notified_orders.settle(
        coordinator.store,
        "ccv",
        coordinator.account,
        answered=sorted(asked.items()),
        failed=sorted(failed),
        now=coordinator.now(),
        gap_s=(config.poll_interval_s, config.schedule.max_interval_s),
    )
    # A call that came after its question still stands (the store kept it): asked again.
    ids -= done
    ids |= set(await notified_orders.pending(coordinator.store, "ccv", coordinator.account))
    if done:
        log.info(
            "notification.confirmed",
            extra=fields(source="ccv", account=coordinator.account, orders=len(done)),
        )


async def due(coordinator: CCVCoordinator, *, every: bool = False) -> list[OrderState]:
    """Return the notified orders to ask now (with `every`, all of them: a catch-up), end
    states too, those no longer followed left out (a check's answer would be dropped)."""
    if not await known(coordinator):
        return []
    store, account = coordinator.store, coordinator.account
    ids = await notified_orders.pending(
        store, "ccv", account, due_by=None if every else coordinator.now()
    )
    keys = [OrderKey("ccv", account, order_id) for order_id in ids]
    states = await store.orders.load(keys)
    return [states[k] for k in keys if k in states]


async def check_reference(
    coordinator: CCVCoordinator, reference: str, *, recorded: bool = False
) -> PassReport | None:
    """A notification by external reference: check its orders now, or remember the reference
    until one is tracked (None). `recorded`: `record_reference` ran when the call came."""
    if not recorded:
        await record_reference(coordinator, reference)
    orders = await _orders_of(coordinator, reference)
    if not orders:
        return None
    return await coordinator.check([s.key.order_id for s in orders], via="notification")


async def _orders_of(coordinator: CCVCoordinator, reference: str) -> list[OrderState]:
    return [
        s
        for s in await coordinator.store.orders.by_reference(reference)
        if s.key.source == "ccv" and s.key.account == coordinator.account
    ]


async def record_reference(coordinator: CCVCoordinator, reference: str) -> None:
    """Record a notification by external reference: settle an uncertain submit of it, or
    remember it until its order is tracked, and keep it as a notification of each followed
    order carrying it until a check of that order answers (as `note`)."""
    store = coordinator.store
    orders = await _orders_of(coordinator, reference)
    # CCV knows the reference: an uncertain submit of it reached CCV. The notification names
    # no order; the one order carrying it now (not as an alias of what CCV renamed: that
    # is another order) is taken for the submitted one, of several none (a guess).
    # An order CCV canceled is not taken: its reference is free to submit again, and the
    # notification is of the new order far likelier (taken, the uncertain resubmit would
    # settle onto the canceled order, the new one never followed, and a third submit sent).
    carrying = sorted(
        s.key.order_id
        for s in orders
        if s.external_reference == reference and (s.status or "").casefold() != "canceled"
    )
    order_id = carrying[0] if len(carrying) == 1 else None
    # One transaction settles an uncertain submit and remembers the reference (where no
    # order is taken: the submitted one, tracked later, counts it at its first check): a
    # submit still waiting for CCV's answer is made uncertain before it (settled here) or
    # after it (settled by `make_uncertain`, which finds the reference remembered).
    ids = await known(coordinator)
    ids.update(s.key.order_id for s in orders)  # before and after the write: as in `note`
    done = await notified(
        store,
        coordinator.account,
        reference,
        order_id,
        coordinator.now(),
        remember=order_id is None,
        orders=[s.key.order_id for s in orders],
    )
    ids.update(s.key.order_id for s in orders)
    if done.events:
        coordinator.writer.committed(done.events)
        said = {"order_id": order_id, "carried_by": carrying}
        log.info(
            "ccv.submit_resolved",
            extra=fields(account=coordinator.account, external_reference=reference, **said),
        )
    if done.reason is not None:
        # CCV tells of an order of a reference whose latest submit failed (a person said
        # CCV never got it, CCV refused it, CCV was never reached): the submission is
        # settled (a new submit of the reference is refused), and what failed it was wrong.
        # A person's `--not-sent` on any failed submit of it is named: it freed the
        # reference for the later submit, and is the likely culprit.
        if done.not_sent:
            log.warning(
                "ccv.not_sent_contradicted",
                extra=fields(
                    account=coordinator.account, external_reference=reference, reason="not_sent"
                ),
            )
        if done.reason != "not_sent":
            log.warning(
                "ccv.submit_failed_contradicted",
                extra=fields(
                    account=coordinator.account,
                    external_reference=reference,
                    status=done.status,
                    reason=done.reason,
                ),
            )
    if done.remembered:
        log.info(
            "notification.remembered",
            extra=fields(account=coordinator.account, external_reference=reference),
        )
