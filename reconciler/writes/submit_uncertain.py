"""A CCV submission made `uncertain`, with its `order.submit_uncertain`: CCV's answer was lost,
one it gave cannot be followed, or a process stopped while it was out (writes/interrupted.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.events import submit_uncertain_event
from reconciler.logs import fields
from reconciler.store import Store
from reconciler.store import submissions as subs

log = logging.getLogger("reconciler.writes.submit")


async def make_uncertain(
    store: Store,
    account: str,
    submissions: Sequence[tuple[int, str]],
    reason: str,
    *,
    now: float,
    http_status: int | None = None,
    location: str | None = None,
    order_id: str | None = None,
) -> set[str]:
    """Mark submissions (id, reference) uncertain with one `order.submit_uncertain` each; one
    whose reference a notification named while it waited for CCV's answer is settled at once,
    with its `order.submit_resolved` (not one CCV answered with a 2xx: `subs.answered`).
    Return the references so settled."""
    events = [
        submit_uncertain_event(
            store.store_id,
            sub_id,
            account=account,
            reference=ref,
            time=now,
            reason=reason,
            location=location,
            order_id=order_id,
        )
        for sub_id, ref in submissions
    ]
    ids = [s for s, _ in submissions]
    resolved = await subs.make_uncertain(
        store,
        account,
        ids,
        events,
        reason=reason,
        now=now,
        http_status=http_status,
        location=location,
        order_id=order_id,
    )
    for event in resolved:
        log.info(
            "ccv.submit_resolved",
            extra=fields(
                account=account,
                external_reference=event.data["external_reference"],
                how="notification",
            ),
        )
    return {str(event.data["external_reference"]) for event in resolved}
