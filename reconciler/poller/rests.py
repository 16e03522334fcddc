"""An account resting at its provider's word (sources/rest.py: a 429 or 503 whose Retry-After
asks longer than a request's retries wait): recorded in its health record after a pass, or as
a process ends (Coordinators.record_rests: a `ccnow` command line's status read), so that a
restart and a `catch-up` honour it too, and said in one `source.resting` line; a catch-up
within it asks nothing, the account in its report's failing sources (exit 75)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..json_text import iso_time
from ..logs import fields
from ..passes.report import PassReport
from ..schedule import held_rest

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = logging.getLogger("reconciler.poller")


async def record_rest(coordinator: Coordinator[Any]) -> bool:
    """Record and log the rest its clients' requests were asked since the last time, if any;
    return whether there was one."""
    until = coordinator.rest.take()
    if until is None:
        return False
    store, source, account = coordinator.store, coordinator.source, coordinator.account
    async with store.transaction():
        state = await store.sources.state(source, account)
        # One ending beyond the bound (recorded while the clock was ahead) is none.
        recorded = held_rest(state.rest_until, now=coordinator.now())
        if recorded is None or recorded < until:
            await store.sources.save(replace(state, rest_until=until))
    _said(coordinator, until)
    return True


async def catch_up_pass(coordinator: Coordinator[Any]) -> PassReport:
    """The account's catch-up pass (`full_pass`), or, while it rests, one that asks nothing."""
    rested = await rested_pass(coordinator)
    return await coordinator.full_pass(via="catch-up") if rested is None else rested


async def rested_pass(coordinator: Coordinator[Any]) -> PassReport | None:
    """Return the report of a pass that asks nothing because the account rests, or None when
    it does not: the account could not be read, its report says (a catch-up exits 75)."""
    state = await coordinator.store.sources.state(coordinator.source, coordinator.account)
    coordinator.rest.hold(state.rest_until)
    kept = coordinator.rest.failure()
    if kept is None:
        return None
    report = PassReport()
    report.failed_sources[coordinator.name] = str(kept)
    _said(coordinator, kept.until)  # this process's one line about it
    return report


def _said(coordinator: Coordinator[Any], until: float) -> None:
    seconds = round(until - coordinator.now(), 3)
    log.warning(
        "source.resting",
        extra=fields(
            source=coordinator.source,
            account=coordinator.account,
            until=iso_time(until),
            seconds=seconds,
        ),
    )
