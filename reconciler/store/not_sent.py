"""A person's word that CCV never got an uncertain submit (`ccv resolve --not-sent`).

Taken for an uncertain submission whose answer said nothing of an order: a lost one, a 3xx or
5xx, a 200 naming none and no `Location` (an HTML page a gateway answered with 200, `{"error":
...}`: not CCV's answer, it proves nothing). Refused where CCV said it has the order (`has_order`).
"""

from __future__ import annotations

from dataclasses import replace

from ..events import Event, submit_resolved_event
from .db import Store
from .submissions import FOLLOWED_ELSEWHERE, Submission, answered, find, uncertain


def has_order(sub: Submission) -> bool:
    """Whether CCV said it has the uncertain submission's order, so that a person's word that
    CCV never got the submit is refused: a notification for its reference came since it was
    recorded (`notified_at`), or CCV's 2xx named the order (one followed under another
    reference), pointed at it (a `Location`) or said it created it (`201 Created`, though
    naming no usable id). A 200 naming none proves nothing, as a lost answer."""
    if sub.notified_at is not None:
        return True
    return answered(sub) and (
        (sub.reason or "").startswith(FOLLOWED_ELSEWHERE)
        or sub.location is not None
        or sub.http_status == 201
    )


async def not_sent(
    store: Store, account: str, reference: str, now: float
) -> tuple[Submission | None, list[Event]]:
    """A person's word that CCV never got the uncertain submission of a reference: close it as
    `failed` (`not_sent`: the reference is free again) with its `order.submit_resolved` (`how`
    `not_sent`), in one transaction. Return the submission as it is then and the event; with
    none, nothing changed: it is not uncertain, or CCV said it has the order (`has_order`),
    and the submission is the reference's as `find` reads it."""
    async with store.transaction():
        # Through the index of live references: the writer is held meanwhile.
        sub = (await uncertain(store, account, [reference])).get(reference)
        if sub is not None and not has_order(sub):
            await store.conn.execute(
                "UPDATE submissions SET state = 'failed', reason = 'not_sent', closed_at = ? "
                "WHERE id = ? AND state = 'uncertain'",
                (now, sub.id),
            )
            event = submit_resolved_event(
                store.store_id,
                sub.id,
                account=account,
                reference=reference,
                uncertain_at=sub.closed_at,
                reason=sub.reason,
                order_id=None,
                how="not_sent",
                time=now,
                location=sub.location,
            )
            await store.events.add([event])
            return replace(sub, state="failed", reason="not_sent", closed_at=now), [event]
    return (sub if sub is not None else await find(store, account, reference)), []
