"""A CCV notification for an external reference, against the `submissions` of it: it settles
an uncertain one, or the latest failed one when none is live (CCV has an order of it after
all), or is remembered on a live one still open."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..events import Event
from .db import Store
from .notified_orders import upsert
from .submissions import answered, find, resolve_row


@dataclass(frozen=True, slots=True)
class Notified:
    """A notification's `order.submit_resolved` events, whether it remembered the reference,
    and, where it settled a failed submission (that refusal, or a person's word, was wrong),
    that one's `reason` and `status` (its HTTP status; None: CCV was never reached or a person
    closed it), and whether a person's `--not-sent` closed any failed submit of the reference
    (`not_sent`: that word was wrong too, though a later submit failed after it)."""

    events: list[Event]
    remembered: bool
    reason: str | None = None
    status: int | None = None
    not_sent: bool = False


async def notified(
    store: Store,
    account: str,
    reference: str,
    order_id: str | None,
    now: float,
    *,
    remember: bool,
    orders: Collection[str] = (),
) -> Notified:
    """A CCV notification for a reference, in one transaction: settle its uncertain submission,
    or its latest failed one with none live, whatever failed it (a 4xx, nothing sent, a
    person's word: CCV has an order of it, and a new submit of it is refused from then on);
    remember the reference when `remember` says so or while one of it waits for CCV's answer
    (`make_uncertain` then settles that one); and keep it as a notification of each of `orders`
    (notified_orders.py) still followed, until a check of it answers."""
    async with store.transaction(urgent=True):
        await upsert(store, "ccv", account, orders, now, followed_only=True)
        # The live row read once (uncertain: settled; `sending`: remembered), else the latest
        # failed one (settled: freed, the reference would be submitted again, a second order).
        sub = await find(store, account, reference)
        live = sub if sub is not None and sub.state != "failed" else None
        failed = sub if live is None else None
        events: list[Event] = []
        said_not_sent = False
        if failed is not None:
            events = [await resolve_row(store, failed, order_id, "notification", now)]
            await store.events.add(events)
            # With none live, every row of the reference is a failed one (one live at most):
            # a person's `--not-sent` on any of them freed it for the submit that failed since.
            rows = await store.conn.execute_fetchall(
                "SELECT 1 FROM submissions WHERE account = ? AND external_reference = ? "
                "AND state = 'failed' AND reason = 'not_sent' LIMIT 1",
                (account, reference),
            )
            said_not_sent = failed.reason == "not_sent" or bool(rows)
        elif live is not None and live.state == "uncertain" and not answered(live):
            events = [await resolve_row(store, live, order_id, "notification", now)]
            await store.events.add(events)
        elif (
            live is not None and live.state in ("sending", "uncertain") and live.notified_at is None
        ):
            # Kept on the row, not only among the remembered references (which expire): once
            # CCV told of the reference, a person's word that it never got the submit is wrong.
            # The first notification's time only: CCV's retries write nothing more.
            await store.conn.execute(
                "UPDATE submissions SET notified_at = ? WHERE id = ?",
                (now, live.id),
            )
        remember = remember or (live is not None and live.state == "sending")
        if remember:
            await store.sources.remember_within(account, reference, now)
    if failed is None:
        return Notified(events, remember)
    return Notified(events, remember, failed.reason, failed.http_status, said_not_sent)
