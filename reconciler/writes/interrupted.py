"""The writes a stopped process left `sending`, settled by the next writer at its start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.writes.ccnow_actions import ActionSender
from reconciler.writes.submit import Submitter

if TYPE_CHECKING:
    from reconciler.runtime import Runtime


async def settle_interrupted_writes(rt: Runtime) -> int:
    """Settle the writes a stopped process left `sending`, with their events; return how many.
    Whether the provider got them is unknown: a CCV submit and a CCNow `adjust` become uncertain
    (never sent again), another CCNow action is queued again. Holding the writer lock, this
    process knows no other is sending them. Every writer calls it at its start (the daemon,
    `catch-up`, `ccnow`, `ccv submit`): a host that only runs catch-ups hears of them too."""
    if not await rt.interrupted_writes():
        return 0
    submitter = Submitter(
        rt.store,
        rt.session,
        accounts=rt.config.ccv,
        receiver=rt.config.receiver,
        on_commit=rt.delivery.committed,
    )
    actions = ActionSender(
        rt.store, rt.session, rt.reconciler, rt.config.ccnow, on_commit=rt.delivery.committed
    )
    return await submitter.settle_interrupted() + await actions.settle_interrupted()
