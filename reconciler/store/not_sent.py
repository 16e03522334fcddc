"""A person's word on an uncertain submit: CCV never got it (`ccv resolve --not-sent`), or
CCV made its order (`ccv resolve --made`).

Taken for an uncertain submission whose answer said nothing of an order: a lost one, a 5xx, a
redirect other than a `303 See Other` with a `Location` (a gateway's login page), a 200 naming
none and no `Location` (an HTML page a gateway answered with 200, `{"error": ...}`: not CCV's
answer, it proves nothing). Refused where CCV said it has the order (`refusal`), among them an
answer of any status naming an order (a 409 `{"orderId": ...}`, "already submitted"; a 5xx with
an order id or a `Location` pointing at one; a 2xx whose body came whole before its framing
broke): its id is kept with the submission.
"""

from __future__ import annotations

from dataclasses import replace

from ..events import Event, submit_resolved_event
from .db import Store
from .submissions import (
    FOLLOWED_ELSEWHERE,
    UNUSABLE_ORDER_ID,
    Submission,
    find,
    resolve,
    uncertain,
)

# The `reason` of an answer that began but whose status line and headers could not be read
# (writes/once.py HeadUnread), and of one aiohttp refused with its headers for an encoding it
# cannot decode (kept with no status by earlier releases): CCV got the submit, and what it said
# of it is unknown, a `201 Created` or a `303 See Other` and its `Location` among what it may
# have said.
ANSWER_HEAD_UNREAD = "answer_head_unread"
UNDECODABLE_ANSWER = "undecodable answer"


def refusal(sub: Submission) -> str | None:
    """Why a person's word that CCV never got the uncertain submission is refused: CCV said it
    has the order (a notification for its reference came since it was recorded, `notified_at`,
    or its answer said so, `answer_made_it`). None: the word may close it."""
    if sub.notified_at is not None:
        return (
            f"CCV sent a notification for external reference {sub.external_reference} after "
            "its submit: it has an order of it"
        )
    made = answer_made_it(sub.http_status, sub.reason, sub.location)
    if sub.order_id is not None:
        # An answer naming its order, whatever its status (a 409 "already submitted", a 500
        # after CCV made it): that order exists at CCV.
        named = f"naming order {sub.order_id}"
        made = (
            f"HTTP {sub.http_status} {named}: it has the order"
            if made is None
            else f"{made} ({named})"
        )
    if made is None:
        return None
    return f"CCV answered the submit of external reference {sub.external_reference} with {made}"


def answer_made_it(status: int | None, reason: str | None, location: str | None) -> str | None:
    """What in CCV's answer to a submit says it made the order, or None when it proves nothing
    (a lost answer, a 5xx, a 200 naming none: an HTML page a gateway answered with): an answer
    that came, but whose status line and headers could not be read (it may have been a `201
    Created`: a person's word that CCV never got the submit is no answer to that); a 2xx
    naming the order (one followed under another reference, or under an id reconciler cannot
    use), pointing at it (a `Location`) or saying it created it (`201 Created`, though naming
    no usable id); or a `303 See Other` with a `Location`, a POST's "made, see there". A 302
    or 307 to a gateway's login page says nothing of an order. `location`: None where CCV gave
    none (or an empty one)."""
    if status is None:
        if reason in (ANSWER_HEAD_UNREAD, UNDECODABLE_ANSWER):
            return (
                f"an answer whose status line and headers could not be read ({reason}): "
                "it may have made the order"
            )
        return None
    if 200 <= status < 300:
        if (reason or "").startswith(FOLLOWED_ELSEWHERE):
            return f"HTTP {status} naming its order ({reason}): it has the order"
        if reason == UNUSABLE_ORDER_ID:
            return (
                f"HTTP {status} naming its order under an id reconciler cannot use "
                f"({reason}): it has the order"
            )
        if location is not None:
            return f"HTTP {status} and Location {_quoted(location)}: it has the order"
        if status == 201:
            return "HTTP 201 Created: it made the order"
    if status == 303 and location is not None:
        return f"HTTP 303 See Other and Location {_quoted(location)}: it made the order"
    return None


# The most of a Location a refusal quotes: the API passes the refusal back in a header
# (`Reconciler-Submission-Not-Sent-Refused`), which a client takes only up to 8 KiB, and a
# refusal left out would advise `--not-sent` for an order CCV made. The whole Location is kept
# with the submission.
QUOTED_LOCATION_CHARS = 512


def _quoted(location: str) -> str:
    """`location` as a refusal quotes it: its first QUOTED_LOCATION_CHARS, then `…`."""
    if len(location) <= QUOTED_LOCATION_CHARS:
        return location
    return location[:QUOTED_LOCATION_CHARS] + "\u2026"


async def not_sent(
    store: Store, account: str, reference: str, now: float
) -> tuple[Submission | None, list[Event]]:
    """A person's word that CCV never got the uncertain submission of a reference: close it as
    `failed` (`not_sent`: the reference is free again) with its `order.submit_resolved` (`how`
    `not_sent`), in one transaction. Return the submission as it is then and the event; with
    none, nothing changed: it is not uncertain, or CCV said it has the order (`refusal`),
    and the submission is the reference's as `find` reads it."""
    async with store.transaction():
        # Through the index of live references: the writer is held meanwhile.
        sub = (await uncertain(store, account, [reference])).get(reference)
        if sub is not None and refusal(sub) is None:
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


async def made(
    store: Store, account: str, reference: str, now: float
) -> tuple[Submission | None, list[Event]]:
    """A person's word that CCV made an order of the uncertain submission of a reference, one
    reconciler does not follow (`ccv resolve --made`: its id cannot be tracked, as an
    `unusable_order_id`'s): close it as `resolved` with its `order.submit_resolved` (`how`
    `made`); the reference stays taken (a new submit of it would make a second order). Return
    the submission as it is then and the event; with none, nothing was uncertain."""
    events = await resolve(store, account, reference, None, "made", now)
    return await find(store, account, reference), events
