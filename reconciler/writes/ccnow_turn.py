"""CCNow order actions checked again when a queued command's turn comes: its order past pending
in the snapshot (an older command of the order, a ship, answered meanwhile; a ship made in
CCNow's backroom, seen by a poll) refuses it without asking CCNow, as it would have been when
recorded ("Checked first"), so that its outcome does not hang on whether it was recorded a
second before or after that answer. And a discount held behind an uncertain one of its order,
refused without a post (sent, one would discount twice)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.events import Event
from reconciler.model import OrderKey
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.store.turn_refusals import close_unposted
from reconciler.taken import TAKEN
from reconciler.writes.ccnow_events import event_of, order_of
from reconciler.writes.ccnow_form import local_refusal
from reconciler.writes.ccnow_outcome import log_each, second_discount
from reconciler.writes.ccnow_taken import Tally


def checked_at_turn(c: cmds.Command) -> bool:
    """Whether a queued command is checked against the snapshot at its turn: all but a ship or
    cancel posted before, and one an earlier post may have reached CCNow with (a tracking
    upload queued after a proxy's 503 too: ccnow_requeue.hidden_reached). Such a post may
    have put the order where it is (a ship behind a proxy's 503): sent again, its order's
    status, read after CCNow's `not pending`, tells (a tracking upload such a post may have
    added is a person's to settle: `uncertain`). A discount or tracking upload an earlier post
    was turned away with (a 429: nothing ran) is refused as one never posted is."""
    if c.maybe_reached_at is not None:
        return False
    return c.attempts == 0 or c.action not in TAKEN


async def past_pending(
    store: Store, commands: Sequence[cmds.Command]
) -> list[tuple[cmds.Command, str]]:
    """The commands checked at their turn (`checked_at_turn`) whose order is past pending in
    the snapshot, each with why it is refused (a refusal's words at record time)."""
    checked = [c for c in commands if checked_at_turn(c)]
    if not checked:
        return []
    states = await store.orders.load(OrderKey("ccnow", c.account, c.order_id) for c in checked)
    past: list[tuple[cmds.Command, str]] = []
    for c in checked:
        why = local_refusal(states.get(OrderKey("ccnow", c.account, c.order_id)))
        if why is not None:
            past.append((c, why))
    return past


async def refuse_past_pending(
    store: Store, commands: Sequence[cmds.Command], tally: Tally, *, now: float
) -> list[cmds.Command]:
    """Close `refused` (its `order.action_refused`) each command `past_pending` finds; return
    the others."""
    past = await past_pending(store, commands)
    if not past:
        return list(commands)
    refused: cmds.State = "refused"
    await _refuse(store, [(c, refused, why) for c, why in past], tally, now=now)
    gone = {c.id for c, _ in past}
    return [c for c in commands if c.id not in gone]


async def refuse_second(
    store: Store,
    waiting: Sequence[cmds.Command],
    ahead: Mapping[int, cmds.Command],
    tally: Tally,
    *,
    accounts: Sequence[str],
    now: float,
) -> bool:
    """Close `refused` the discounts held behind an uncertain one of their order (recorded
    beside an open one: by two requests at once, or an older release): sent, one would
    discount twice. Return whether there were any."""
    second = [(c, o) for c in waiting if (o := ahead.get(c.id)) and o.state == "uncertain"]
    if not second:
        return False
    refused: cmds.State = "refused"
    closes = [(c, refused, second_discount(o, accounts)) for c, o in second]
    await _refuse(store, closes, tally, now=now)
    return True


async def _refuse(
    store: Store,
    closes: Sequence[tuple[cmds.Command, cmds.State, str]],
    tally: Tally,
    *,
    now: float,
) -> None:
    """Close commands no post carries, each with its event, and log and count those closed."""
    words = {c.id: (state, why) for c, state, why in closes}

    async def events(closing: Sequence[cmds.Command]) -> list[Event]:
        # Read in the transaction that closes them; refused unposted, their orders stay as are.
        orders = await store.orders.load(order_of(c) for c in closing)
        return [
            event_of(store, c, *words[c.id], now, order := orders.get(order_of(c)), order)
            for c in closing
        ]

    # Claimed and closed in one commit, only while queued as loaded: another sender of this
    # process that found them too neither refuses them again (one event each) nor posts one,
    # and a process that dies meanwhile leaves none `sending` (the next start would take it
    # for one a post may have carried: a ship `succeeded`, a discount `uncertain`).
    closed = set(await close_unposted(store, closes, events, now))
    log_each([x for x in closes if x[0].id in closed])
    tally.refused += len(closed)
