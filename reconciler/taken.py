"""The rules of CCNow ships and cancels CCNow answered as taken, pure: whether a read that
moved an order back contradicts the last of them (reconcile.py), whether a close leaves its
order before the action (writes/ccnow_close.py), and the `order.action_unconfirmed` naming such
an action, once per command and close. The store only reads what they are applied to
(store/taken.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final

from .diff import BEFORE_ACTION
from .events import Event, action_event, event_id
from .model import OrderState, Via

if TYPE_CHECKING:  # its type alone: a pure module loads no store
    from .store.commands import Command

# What CCNow answers when a ship or cancel took: the queue state it put the order in, or (for
# an order the lifecycle moved on quickly) where that queue leads.
TAKEN: Final[Mapping[str, tuple[str, str]]] = {
    "ship": ("mark_shipped", "completed"),
    "cancel": ("mark_canceled", "canceled"),
}


def contradicted(taken: Command, before: OrderState) -> bool:
    """Whether a read that moved an order back (`before`: its row before that read) contradicts
    `taken`, its latest ship or cancel answered as taken: unless a read applied after the
    command closed said what the action leads to (it took, and CCNow's backroom moved the order
    back later).

    The read itself is newer than the answer: one sent before the answer came is skipped as
    older news than the answer the row holds (diff.stale), and one sent after it came, even
    before the command closed, is after CCNow ran the action. Its time is not compared again
    (a wall clock put back after the close would hide a contradiction).

    A read confirmed the action when the status the row holds, which only a status line sets
    (a query's, a pending list's, a `track`'s, the action's own), is one the action leads to,
    and that line was applied after the close (`last_checked`, the
    time of the write that applied it: a "not found" since, confirmed or not, leaves both as
    they were). The command closed in the write that applied its own answer's line, and its
    `closed_at` is that write's time (writes/ccnow_close.py): the line is never taken for a
    read after it, whatever the wall clock did between the answer and the close. A confirming
    read applied before the close, or after it under a clock put back since, is not seen, and
    the action is named: a warning too many, never a ship that did not take going unseen."""
    closed, checked = taken.closed_at, before.last_checked
    confirmed = (
        closed is not None
        and checked is not None
        and checked > closed
        and before.status in TAKEN.get(taken.action, ())
    )
    return not confirmed


def unheld(taken: Command, after: OrderState | None) -> bool:
    """Whether a ship or cancel closing as taken left its order's row (`after`, as the close's
    write made it) at a status before the action: a query applied before the close, sent after
    the answer came (or while the post waited for it, saying a hold: it may be after CCNow ran
    the action), said so, and the answer's line was older news than it (diff.stale). No later
    read moves that order back: the close itself contradicts the action.

    Only a query's status: a pending list's line is no news while the post is out (diff,
    `acting`), and a "not found" since the last status (`missing_since`, unconfirmed: the row
    keeps its status) confirms nothing, though it made the answer's line older news. Such an
    order is checked again within minutes (schedule.plan) and reads where the action left it."""
    return (
        taken.action in TAKEN
        and after is not None
        and not after.not_found
        and after.missing_since is None
        and after.status in BEFORE_ACTION
    )


def unconfirmed_event(
    store_id: str,
    c: Command,
    *,
    closed_at: float | None,
    before: OrderState | None,
    after: OrderState | None,
    now: float,
    via: Via,
) -> Event:
    """The `order.action_unconfirmed` of a ship or cancel (`c`, closed at `closed_at`): once
    per command, its id names it (however many reads contradict it, by the close or later)."""
    event = action_event(
        store_id,
        c.id,
        "unconfirmed",
        account=c.account,
        order_id=c.order_id,
        action=c.action,
        answer=c.answer,
        time=now,
        before=before,
        after=after,
        via=via,
    )
    return event._replace(id=_unconfirmed_id(store_id, c, closed_at))


def unconfirmed_ids(store_id: str, commands: Iterable[Command]) -> dict[str, int]:
    """Return, of those of `commands` done as taken (ships and cancels that succeeded), the
    id their `order.action_unconfirmed` would have, by the command's id and close time: the
    event, by the close or a read since, is looked up by it (store/taken.named)."""
    return {
        _unconfirmed_id(store_id, c, c.closed_at): c.id
        for c in commands
        if c.state == "succeeded" and c.action in TAKEN
    }


def _unconfirmed_id(store_id: str, c: Command, closed_at: float | None) -> str:
    """The id of a command's `order.action_unconfirmed`: one per command and close."""
    return event_id(store_id, "ccnow-action-unconfirmed", c.id, c.order_id, closed_at)
