"""Withdrawing CCNow actions: a person's word that one not yet sent must not go (`ccnow
resolve --not-sent`, the API's resolve with `"sent": false`), and `untrack`, which stops
following its order.

A `queued` command is withdrawn at once: none of its posts is out. Its claim for a post
(`commands.mark_sending`) and its withdrawal each change it only from `queued`, in a
transaction: whichever commits first wins. One `sending` cannot be taken back from the post in
flight: its withdrawal is recorded on it (`withdraw_asked`, committed with the word). CCNow's
definite answer to that post still ends it as the answer says (done, refused); a post that ends
without one (a line saying CCNow is down, a lost answer, a refused connection, a 429 or 503, a
stop) closes it withdrawn where it would have queued it again (store/requeue.py), and so does
the next writer's start for one a stopped process left `sending`; a retry within that post is
not made (`asked`). Nor does that post's answer follow its order again once untracked, whatever
was asked first (`by_untrack`: an untrack after a word by hand is recorded beside it). An
`adjust` whose answer was lost becomes `uncertain` as any other does: CCNow may have applied it.

A withdrawn command ends `refused`, with words saying it was withdrawn and an
`order.action_refused` carrying `withdrawn: true` and `maybe_reached`: whether a post of it
may have reached CCNow (its answer lost, or one that may follow CCNow running it, a proxy's
503; its process stopped while it was out), whatever its action: nothing reads its order's
status again to tell. It says no only where no post of it may have run: no connection made, a
stop before it, an answer saying nothing ran (a 429, CCNow's `down`). Not `uncertain`: that
state waits for a person's word, and this one was given; it holds an order's
later discounts back and asks for a `ccnow resolve` an untracked order would never get. A
client already waits for `refused` to mean "reconciler does not send this one"; `maybe_reached`
says when CCNow's backroom should be looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..events import action_event
from ..model import OrderKey
from .commands import Command, State, get, of_order
from .db import Store
from .unsettled import COMMANDS_OPEN

WITHDRAWN = "withdrawn"  # the first word of a withdrawn command's answer
BY_HAND, BY_UNTRACK = "by hand", "by untrack"  # how it was withdrawn, in its answer
# What a withdrawal says of a command being sent (the command line, the API's words)
ASKED = (
    "being sent to CCNow now: withdrawn unless CCNow's answer to its post says it was taken "
    "or refused"
)
_MAYBE_REACHED = (
    "; an earlier post of it may have reached CCNow (its answer was lost, or may hide that "
    "CCNow ran it): "
    "look for it in CCNow's backroom"
)
_NOT_ACTED = "not acted on by CCNow"  # of one whose post was turned away (a 429)
# The same of one withdrawn while it was being sent: that post, or an earlier one.
_SENT_MAYBE_REACHED = (
    "; a post of it may have reached CCNow (no answer said it was not run): "
    "look for it in CCNow's backroom"
)


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """What a withdrawal did: `withdrawn`, the commands closed (as they are now); `sending`,
    the order's commands being sent, their withdrawal recorded (`ASKED`)."""

    withdrawn: list[Command]
    sending: list[Command]


def words(c: Command, by: str, *, sent: bool | None = None) -> str:
    """The answer a withdrawn command keeps: `by` says how it was withdrawn (`by hand`);
    `sent`: whether its post was out then (None: whether it is `sending`)."""
    reached = c.maybe_reached_at is not None
    # A post turned away (a 429) was sent, and CCNow did not act on it: said so, not "before
    # it was sent", where no post of it may have reached CCNow.
    turned = None if reached or c.turned_away is None else f"turned away ({c.turned_away})"
    if c.state == "sending" if sent is None else sent:
        if turned is not None:
            return f"{WITHDRAWN} {by} while it was being sent: its post was {turned}, {_NOT_ACTED}"
        maybe = _SENT_MAYBE_REACHED if reached else ""
        return f"{WITHDRAWN} {by} while it was being sent (CCNow's answer settled nothing){maybe}"
    if turned is not None:
        return f"{WITHDRAWN} {by} before it was sent again: a post of it was {turned}, {_NOT_ACTED}"
    return f"{WITHDRAWN} {by} before it was sent{_MAYBE_REACHED if reached else ''}"


def _hidden_reached(c: Command) -> Command:
    """A command as withdrawn: an earlier post whose answer may hide that CCNow ran it (a
    proxy's 503, `Command.hidden_at`) may have reached CCNow, whatever its action: a ship or
    cancel queued so is settled by its order's status, which nothing reads once withdrawn."""
    return replace(c, maybe_reached_at=c.maybe_reached_at or c.hidden_at)


def by_untrack(asked: str | None) -> bool:
    """Whether a withdrawal asked (`withdraw_asked`) holds an untrack: its post's answer does
    not follow the order again."""
    return asked is not None and asked.endswith(BY_UNTRACK)


def _asked(first: str | None, by: str) -> str:
    """The word recorded on a command being sent when `by` is asked after `first`: the first
    (the answer names it), with an untrack after a word by hand beside it (`by hand, then by
    untrack`): the untrack holds the order back all the same."""
    if first is None:
        return by
    if by == BY_UNTRACK and not by_untrack(first):
        return f"{first}, then {BY_UNTRACK}"
    return first


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
    `order.action_refused`, and record the withdrawal on those being sent; `ids`: only these
    of them."""
    found: list[Command] = []
    sending: list[Command] = []
    for order_id in dict.fromkeys(order_ids):
        for c in await _of_order(store, account, order_id):
            if ids is not None and c.id not in ids:
                continue
            (found if c.state == "queued" else sending).append(c)
    # Read in this transaction: the first word asked is kept, an untrack beside it.
    sending = [replace(c, withdraw_asked=_asked(c.withdraw_asked, by)) for c in sending]
    await store.conn.executemany(
        "UPDATE commands SET withdraw_asked = ? WHERE id = ? AND state = 'sending'",
        [(c.withdraw_asked, c.id) for c in sending],
    )
    found = [_hidden_reached(c) for c in found]
    closed = [replace(c, state="refused", answer=words(c, by), closed_at=now) for c in found]
    await _close(store, closed, now, "AND state = 'queued'")
    return Withdrawn(closed, sending)


async def close_asked_within(
    store: Store,
    ids: Sequence[int],
    *,
    now: float,
    reached_at: float | None = None,
    sent: bool = True,
    turned: str | None = None,
) -> list[Command]:
    """Inside the caller's transaction, close withdrawn those of `ids` being sent whose
    withdrawal was asked, their post ended without CCNow's answer about them (`reached_at`: it
    may have reached CCNow; not `sent`: it never left, the stop came first; `turned`: the
    status that turned it away, `Command.turned_away`); return them, closed."""
    asked = [c for c in await get(store, ids) if c.state == "sending" and c.withdraw_asked]
    closed = []
    for c in asked:
        c = _hidden_reached(c)
        c = replace(c, maybe_reached_at=c.maybe_reached_at or reached_at)
        # The post that ended named as it ended: an earlier post's 429 is not this one's
        # answer. One that never left names the last post that did.
        c = replace(c, turned_away=turned if sent else turned or c.turned_away)
        answer = words(c, c.withdraw_asked or BY_HAND, sent=sent)
        closed.append(replace(c, state="refused", answer=answer, closed_at=now))
    await _close(store, closed, now, "AND state = 'sending'")
    return closed


async def _close(store: Store, closed: Sequence[Command], now: float, only: str) -> None:
    """Store withdrawn commands (`only`: the state each must still be in) and their
    `order.action_refused`."""
    if not closed:
        return
    refused: State = "refused"
    await store.conn.executemany(
        "UPDATE commands SET state = ?, answer = ?, closed_at = ?, maybe_reached_at = ? "
        f"WHERE id = ? {only}",
        [(refused, c.answer, now, c.maybe_reached_at, c.id) for c in closed],
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
                # Not taken by CCNow (or not known to be): its order is as it was.
                before=(order := orders.get(OrderKey("ccnow", c.account, c.order_id))),
                after=order,
                command={"withdrawn": True, "maybe_reached": c.maybe_reached_at is not None},
            )
            for c in closed
        ]
    )


async def asked(store: Store, ids: Sequence[int]) -> bool:
    """Whether a withdrawal was asked of one of these commands while it is being sent: a retry
    within its post must not post it again (writes/ccnow_send.py gives the post up, and the
    failure closes it withdrawn)."""
    return any(c.state == "sending" and c.withdraw_asked for c in await get(store, ids))


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
    """Stop following CCNow orders and withdraw their queued commands (and those being sent,
    once their post ends without CCNow's definite answer), in one transaction: a command left
    queued would be sent later, and its answer would follow its order again. Return how many
    orders were followed, and what was withdrawn."""
    async with store.transaction():
        withdrawn = await withdraw_within(store, account, order_ids, by=by, now=now)
        removed = await store.orders.untrack_within("ccnow", account, order_ids)
    return removed, withdrawn
