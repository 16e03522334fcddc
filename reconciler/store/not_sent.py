"""A person's word that CCV never got an uncertain submit (`ccv resolve --not-sent`).

Taken for every uncertain submission whose answer named no order: a lost one, a 3xx or 5xx, a
2xx naming none (an HTML page a gateway answered with 200, `{"error": ...}`: not CCV's answer,
it proves nothing). Refused for one whose answer named its order: CCV has that one.
"""

from __future__ import annotations

from dataclasses import replace

from ..events import Event, submit_resolved_event
from .db import Store
from .submissions import FOLLOWED_ELSEWHERE, Submission, answered, find, uncertain


def named_order(sub: Submission) -> bool:
    """Whether the uncertain submission's answer named its order (one followed under another
    reference): CCV has it, so a person's word that CCV never got the submit is refused. A 2xx
    naming none (an HTML page, `{"error": ...}`) proves nothing, as a lost answer."""
    return answered(sub) and (sub.reason or "").startswith(FOLLOWED_ELSEWHERE)


async def not_sent(
    store: Store, account: str, reference: str, now: float
) -> tuple[Submission | None, list[Event]]:
    """A person's word that CCV never got the uncertain submission of a reference: close it as
    `failed` (`not_sent`: the reference is free again) with its `order.submit_resolved` (`how`
    `not_sent`), in one transaction. Return the submission as it is then and the event; with
    none, nothing changed: it is not uncertain, or CCV's answer named its order (`named_order`),
    and the submission is the reference's as `find` reads it."""
    async with store.transaction():
        # Through the index of live references: the writer is held meanwhile.
        sub = (await uncertain(store, account, [reference])).get(reference)
        if sub is not None and not named_order(sub):
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
