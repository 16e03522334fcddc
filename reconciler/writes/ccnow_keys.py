"""CCNow order actions' idempotency keys: which command a key given now names.

A key `K` given for an order alone is kept as `K`, given for several orders as `K/ORDER`; a key
that itself ends in `/ORDER` is that order's too (`R/B` given for B alone is `R/B/B` among
others). So every key of an order that is one head followed by parts naming that order names
one command of it: the rule compares heads (`peeled`), whatever the count of parts or their
spelling (`K/396101142` is `K/396-10-1142`: a store written before keys were kept hyphenated
still holds such parts)."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.store import Store
from reconciler.store import commands as cmds
from reconciler.writes.ccnow_form import BadAction, peeled


async def made_before(
    store: Store, new: Sequence[cmds.NewCommand]
) -> dict[cmds.NewCommand, cmds.Command]:
    """Return the commands the keys of `new` made before, by the command asked for now; raise
    BadAction for a key whose command asks something else (exit 65, the API's 422)."""
    heads = sorted({peeled(c.key, c.order_id)[0] for c in new})
    made = await cmds.by_key_heads(store, new[0].account if new else "", heads)
    # Of two commands of one order and head, which a release before this one could make, the
    # first.
    by_head: dict[tuple[str, str], cmds.Command] = {}
    for m in sorted(made, key=lambda m: m.id):
        by_head.setdefault((m.order_id, peeled(m.key, m.order_id)[0]), m)
    by_key = {m.key: m for m in made}
    known: dict[cmds.NewCommand, cmds.Command] = {}
    for c in new:
        # This order's command under any form of the key first: `K` may since have been given
        # to another order alone, and that is not what this request repeats. Else the key as
        # given names its command, whatever it asks.
        head = peeled(c.key, c.order_id)[0]
        before = by_head.get((c.order_id, head)) or by_key.get(c.key)
        if before is None:
            continue
        if _asked(before) != _asked(c):
            # Handing back the earlier command would report an action that was never asked
            # for as done (and leave the one asked for unsent).
            raise BadAction(
                f"idempotency key {c.key!r} was given to another command (#{before.id}: "
                f"{before.action} {before.order_id}): a key names one command",
                "idempotency_key",
            )
        known[c] = before
    return known


def _asked(c: cmds.NewCommand | cmds.Command) -> tuple[object, ...]:
    """What a command asks of CCNow: the same key must ask the same."""
    return (c.order_id, c.action, c.notes, c.amount, c.trackname, c.tracknumber)
