"""The writes a stopped process left `sending`, and those a database that went back left open,
settled by the next writer at its start."""

from __future__ import annotations

import time
from collections.abc import Callable

from reconciler.store import Store, rewound
from reconciler.store import commands as cmds
from reconciler.store import submissions as subs
from reconciler.store.requeue import requeue


async def settle_interrupted(store: Store, *, on_commit: Callable[[], None] = lambda: None) -> None:
    """Settle the writes a stopped process left `sending`. Every writer's Runtime calls it at
    its start (the daemon, `catch-up`, `replay`, `ccnow`, `ccv submit`), so a host that only
    runs catch-ups hears of them too. Whether the provider got them is unknown: a CCV submit
    and a CCNow `adjust` become uncertain (never sent again), another CCNow action is queued
    again. The caller holds the writer lock, so no other process is sending them. Asks no
    provider: `track`, which holds no credentials, settles them too before it settles a submit
    by its reference. `on_commit` hears of the events it stored."""
    now = time.time()
    made = await _settle_rewound(store, now)
    left = await subs.interrupted(store)
    sending = await cmds.in_state(store, "sending")
    from reconciler.writes import ccnow_outcome, submit_uncertain

    by_account: dict[str, list[tuple[int, str]]] = {}
    for s in left:
        by_account.setdefault(s.account, []).append((s.id, s.external_reference))
    for account, items in by_account.items():
        await submit_uncertain.make_uncertain(store, account, items, "interrupted", now=now)
    withdrawn = []
    if again := [c.id for c in sending if c.action != "adjust"]:
        # Stopped while its post was out: the post may have reached CCNow. One whose
        # withdrawal was asked meanwhile is closed withdrawn instead (store/withdraw.py).
        why, at = "interrupted", 0.0
        withdrawn = await requeue(
            store, again, next_attempt_at=at, why=why, now=now, reached_at=now
        )
    if adjusts := [c for c in sending if c.action == "adjust"]:
        await ccnow_outcome.make_uncertain(store, adjusts, "interrupted", now=now)
    if made or left or adjusts or withdrawn:
        on_commit()


async def _settle_rewound(store: Store, now: float) -> bool:
    """Settle the CCNow actions a database that went back left open (store/rewound.py): the
    process whose history was lost may have sent them. A discount becomes uncertain (sent
    again, it could be taken twice); another action is sent as one that may have reached
    CCNow (a ship or cancel CCNow then refuses as not pending reads its order's status, a
    tracking upload it refuses waits for a person). Return whether a discount became
    uncertain (an event each)."""
    found = await rewound.left_open(store)
    if found is None:
        return False
    through, open_ = found
    adjusts = [c for c in open_ if c.action == "adjust"]
    if adjusts:
        from reconciler.writes import ccnow_outcome

        await ccnow_outcome.make_uncertain(store, adjusts, rewound.WHY, now=now)
    await rewound.settled(store, through, now)
    return bool(adjusts)
