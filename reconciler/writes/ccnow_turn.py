"""CCNow order actions checked again when a queued command's turn comes: its order past pending
in the snapshot (an older command of the order, a ship, answered meanwhile) refuses it without
asking CCNow, as it would have been when recorded ("Checked first"), so that its outcome does
not hang on whether it was recorded a second before or after that answer."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.model import OrderKey
from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_form import local_refusal
from reconciler.writes.ccnow_outcome import close_as
from reconciler.writes.ccnow_taken import Tally


async def refuse_past_pending(
    store: Store, commands: Sequence[cmds.Command], tally: Tally, *, now: float
) -> list[cmds.Command]:
    """Close `refused` (its `order.action_refused`, the words of a refusal at record time) each
    command never posted whose order is past pending in the snapshot; return the others. One
    posted before is sent again whatever the snapshot says: that post may have put the order
    where it is (a ship behind a proxy's 503), which its order's status, read after CCNow's
    `not pending`, tells."""
    never = [c for c in commands if c.attempts == 0 and c.maybe_reached_at is None]
    if not never:
        return list(commands)
    states = await store.orders.load(OrderKey("ccnow", c.account, c.order_id) for c in never)
    past: list[tuple[cmds.Command, str]] = []
    for c in never:
        why = local_refusal(states.get(OrderKey("ccnow", c.account, c.order_id)))
        if why is not None:
            past.append((c, why))
    if not past:
        return list(commands)
    # Claimed first, as a post claims its commands: another sender of this process that found
    # them too neither refuses them again (one event each) nor posts one.
    claimed = set(await cmds.mark_sending(store, [c.id for c, _ in past]))
    refused: cmds.State = "refused"
    mine = [(c, refused, why) for c, why in past if c.id in claimed]
    if mine:
        await close_as(store, mine, now=now)
        tally.refused += len(mine)
    gone = {c.id for c, _ in past}
    return [c for c in commands if c.id not in gone]
