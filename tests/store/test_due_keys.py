"""The outbox's read hands a notification's events first (store/priority.py), and never one
before an earlier pending event of its ordering key: an `order.submit_resolved` a notification
settled goes after the `order.submit_uncertain` of its reference (store/ordering.py)."""

from __future__ import annotations

from pathlib import Path

from reconciler.events import Event, submit_resolved_event, submit_uncertain_event
from reconciler.model import EventType
from reconciler.store import Store

ORDER = "9a8b7c6d-0000-4000-8000-0000000000aa"
OTHER = "9a8b7c6d-0000-4000-8000-0000000000bb"
REF = "ref-000042"


def discovered(order_id: str, at: float) -> Event:
    data = {"source": "ccv", "account": "default", "order_id": order_id, "status": "New"}
    return Event(
        f"o-{order_id}", EventType.DISCOVERED, at, "ccv", "default", order_id, "info", data
    )


async def test_an_urgent_submit_resolved_goes_after_its_pending_submit_uncertain(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "reconciler.db", sinks=("hooks",))
    now = 1_000_000.0
    uncertain = submit_uncertain_event(
        "store", 7, account="default", reference=REF, time=now, reason="timeout"
    )
    resolved = submit_resolved_event(
        "store",
        7,
        account="default",
        reference=REF,
        uncertain_at=now,
        reason="timeout",
        order_id=ORDER,
        how="notification",
        time=now + 1,
    )
    try:
        for events, urgent in (
            ([discovered(OTHER, now)], False),
            ([uncertain], False),
            ([discovered(ORDER, now + 1), resolved], True),
        ):
            async with store.transaction():
                await store.events.add(events, urgent=urgent)
        due = await store.outbox.due("hooks", now + 2, 50)
    finally:
        await store.close()
    got = [(e.type, e.order_id) for e in due.rows]
    # The notification's events first, with the uncertain event of its reference, pending
    # before it (before: the resolution led, its uncertain one came last).
    assert got == [
        (EventType.SUBMIT_UNCERTAIN.value, None),
        (EventType.DISCOVERED.value, ORDER),
        (EventType.SUBMIT_RESOLVED.value, ORDER),
        (EventType.DISCOVERED.value, OTHER),
    ]
