"""An account's coordinator driven as the daemon's scheduler drives it, on a test's clock, and
the account's own events (`source.failed` / `source.recovered`) it left."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.poller.ccnow import CCNowCoordinator
    from reconciler.poller.ccv import CCVCoordinator
    from tests.conftest import Clock

# The daemon ticks every 0.5 s; a failing order waits out its backoff the same at 3 s a tick.
STEP_S = 3


async def run_daemon(coordinator: CCVCoordinator, clock: Clock, seconds: int) -> None:
    """The scheduler's due ticks and heartbeat, one every STEP_S."""
    for _ in range(seconds // STEP_S):
        clock.now += STEP_S
        await coordinator.tick_due()
        await coordinator.heartbeat()


async def account_events(coordinator: CCNowCoordinator | CCVCoordinator) -> list[str]:
    """The types of the account's events (no order's), oldest first."""
    history = await coordinator.store.events.history()
    return [str(e.type) for e in history if e.order_id is None]
