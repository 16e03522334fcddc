"""The events that close CCNow order actions, built from the command and its order's snapshot
row (DESIGN.md, "Events": every order event carries the order's fields)."""

from __future__ import annotations

from reconciler.events import Event, action_event
from reconciler.model import OrderKey, OrderState
from reconciler.store import Store
from reconciler.store import commands as cmds


def order_of(c: cmds.Command) -> OrderKey:
    """The snapshot's key of a command's order."""
    return OrderKey("ccnow", c.account, c.order_id)


def event_of(
    store: Store,
    c: cmds.Command,
    state: str,
    answer: str | None,
    now: float,
    before: OrderState | None,
    after: OrderState | None,
) -> Event:
    """Return the `order.action_*` event of a command closed `state`; `before` and `after`:
    its order's snapshot row before and after it closed (None: not followed), the same row
    when the close changed nothing of it. An uncertain one's carries the command's own fields
    (`command_fields`): a person looks for it in CCNow's backroom by them."""
    return action_event(
        store.store_id,
        c.id,
        state,
        account=c.account,
        order_id=c.order_id,
        action=c.action,
        answer=answer,
        time=now,
        before=before,
        after=after,
        command=command_fields(c) if state == "uncertain" else None,
    )


def command_fields(c: cmds.Command) -> dict[str, object]:
    """A command's own fields, named as the API shows a command (`command_json`): its key, and
    what it asked of CCNow (a discount's amount, its notes, a tracking upload's carrier and
    number; null where the action takes none)."""
    return {
        "key": c.key,
        "amount": c.amount,
        "notes": c.notes,
        "trackname": c.trackname,
        "tracknumber": c.tracknumber,
    }
