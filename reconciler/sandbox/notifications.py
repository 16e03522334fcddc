"""The simulator's outgoing calls: CCV's one-shot, body-less status notifications."""

from __future__ import annotations

import asyncio
import logging
import random

import aiohttp

from .model import Order
from .options import SandboxOptions, SandboxStats

log = logging.getLogger("reconciler.sandbox")

NOTIFICATION_TIMEOUT_S = 5.0
# stop() lets notifications in flight finish for this long, then cancels them.
STOP_GRACE_S = 1.0


class Notifier:
    """Makes (or deliberately drops) the notification calls of status changes."""

    def __init__(self, options: SandboxOptions, stats: SandboxStats) -> None:
        self.options = options
        self.stats = stats
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def order_changed(self, order: Order, at: float, rng: random.Random) -> None:
        """Notify as CCV would about `order`'s new status (a share of calls is dropped)."""
        if order.source != "ccv":
            return
        url = order.notification_url
        if url is None or (order.notify_on and order.status not in order.notify_on):
            return
        if rng.random() < self.options.drop_notifications:
            self.stats.notifications_dropped += 1
            self.stats.dropped.append((at, order.id, order.status))
            log.debug(
                "sandbox.notification_dropped",
                extra={"fields": {"order_id": order.id, "status": order.status}},
            )
            return
        self.stats.notifications_sent += 1
        task = asyncio.get_running_loop().create_task(self._post(order.id, url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, order_id: str, url: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        # Like CCV: one POST, no body, no retry; the answer does not matter.
        try:
            async with self._session.post(
                url, data=b"", timeout=aiohttp.ClientTimeout(total=NOTIFICATION_TIMEOUT_S)
            ) as response:
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.debug(
                "sandbox.notification_failed",
                extra={"fields": {"order_id": order_id, "error": type(exc).__name__}},
            )
            return
        log.debug(
            "sandbox.notification_sent",
            extra={"fields": {"order_id": order_id, "http_status": status}},
        )

    async def close(self) -> None:
        """Let calls in flight finish for STOP_GRACE_S, cancel the rest, close the session."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_S)
            for leftover in pending:
                leftover.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()
