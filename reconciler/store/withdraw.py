"""Withdrawing queued CCNow actions: a person's word that one not yet sent must not go
(`ccnow resolve --not-sent`, the API's resolve with `"sent": false`), and `untrack`, which
stops following its order.

Only a `queued` command is withdrawn: none of its posts is out. Its claim for a post
(`commands.mark_sending`) and its withdrawal each change it only from `queued`, in a
transaction: whichever commits first wins, and a command being sent is never withdrawn (it
ends by CCNow's answer). It ends `refused`, with words saying it was withdrawn and an
`order.action_refused`: the contract's states name no other end, and a client already waits for
`refused` to mean "CCNow does not get this one". A command requeued after a post whose answer
was lost may have reached CCNow all the same: its words say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..events import action_event
from ..model import OrderKey
from .commands import Command, State, of_order
from .db import Store
from .unsettled import COMMANDS_OPEN

WITHDRAWN = "withdrawn"  # the first word of a withdrawn command's answer
BY_HAND, BY_UNTRACK = "by hand", "by untrack"  # how it was withdrawn, in its answer
_MAYBE_REACHED = (
    "; an earlier post of it may have reached CCNow (its answer was lost): "
    "look for it in CCNow's backroom"
)


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """What a withdrawal did: `withdrawn`, the commands closed (as they are now); `sending`,
    the order's commands it could not withdraw, their post out now."""

    withdrawn: list[Command]
    sending: list[Command]


def words(c: Command, by: str) -> str:
    """The answer a withdrawn command keeps: `by` says how it was withdrawn (`by hand`)."""
    maybe = _MAYBE_REACHED if c.maybe_reached_at is not None else ""
    return f"{WITHDRAWN} {by} before it was sent{maybe}"


async def withdraw_within(
    store: Store,
    account: str | None,
    order_ids: Sequence[str],
    *,
    by: str,
    now: float,
    ids: Sequence[int] | None = None,
) -> Withdrawn:
    """Inside the caller's transaction, close the queued commands of these orders (of
    `account`; None: of any) as `refused` with words saying so, each with its
    `order.action_refused`; `ids`: only these of them."""
    found: list[Command] = []
    sending: list[Command] = []
    for order_id in dict.fromkeys(order_ids):
        for c in await _of_order(store, account, order_id):
            if ids is not None and c.id not in ids:
                continue
            (found if c.state == "queued" else sending).append(c)
    if not found:
        return Withdrawn([], sending)
    closed = [replace(c, state="refused", answer=words(c, by), closed_at=now) for c in found]
    refused: State = "refused"
    await store.conn.executemany(
        "UPDATE commands SET state = ?, answer = ?, closed_at = ? WHERE id = ? "
        "AND state = 'queued'",
        [(refused, c.answer, now, c.id) for c in closed],
    )
    orders = await store.orders.load(OrderKey("ccnow", c.account, c.order_id) for c in closed)
    await store.events.add(
        [
            action_event(
                store.store_id,
                c.id,
                "refused",
                account=c.account,
                order_id=c.order_id,
                action=c.action,
                answer=c.answer,
                time=now,
                # Never sent: its order is as it was.
                before=(order := orders.get(OrderKey("ccnow", c.account, c.order_id))),
                after=order,
            )
            for c in closed
        ]
    )
    return Withdrawn(closed, sending)


async def _of_order(store: Store, account: str | None, order_id: str) -> list[Command]:
    """The order's queued and sending commands (of every account when None), oldest first."""
    if account is not None:
        return await of_order(store, account, order_id, ["queued", "sending"])
    rows = await store.conn.execute_fetchall(
        f"SELECT DISTINCT account FROM commands WHERE {COMMANDS_OPEN} "
        "AND state IN ('queued', 'sending') AND order_id = ?",
        (order_id,),
    )
    out: list[Command] = []
    for (name,) in rows:
        out += await of_order(store, str(name), order_id, ["queued", "sending"])
    return sorted(out, key=lambda c: c.id)


async def untrack(
    store: Store, account: str | None, order_ids: Sequence[str], *, by: str, now: float
) -> tuple[int, Withdrawn]:
    """Stop following CCNow orders and withdraw their queued commands, in one transaction:
    a command left queued would be sent later, and its answer would follow its order again.
    Return how many orders were followed, and what was withdrawn."""
    async with store.transaction():
        withdrawn = await withdraw_within(store, account, order_ids, by=by, now=now)
        removed = await store.orders.untrack_within("ccnow", account, order_ids)
    return removed, withdrawn
