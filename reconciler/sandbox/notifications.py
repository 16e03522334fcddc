"""The simulator's outgoing calls: CCV's one-shot, body-less status notifications and CCNow's
server notifications (order alerts)."""

from __future__ import annotations

import asyncio
import logging
import random
from urllib.parse import urlencode

import aiohttp

from .model import Order
from .options import SandboxOptions, SandboxStats, check_notification_url

log = logging.getLogger("reconciler.sandbox")

NOTIFICATION_TIMEOUT_S = 5.0
# stop() lets notifications in flight finish for this long, then cancels them.
STOP_GRACE_S = 1.0
_FORM = "application/x-www-form-urlencoded"


def ccnow_alert(order: Order) -> bytes:
    """Return the form body of a CCNow order alert about `order`'s new status.

    The layout of CCNow's Server Notification API is not documented; this one borrows the
    numbered fields of its Order Update API, so that one alert could name several orders.
    """
    return urlencode({"x_orderid_1": order.id, "x_status_1": order.status}).encode()


class Notifier:
    """Makes (or deliberately drops) the notification calls of status changes."""

    def __init__(self, options: SandboxOptions, stats: SandboxStats) -> None:
        self.options = options
        self.stats = stats
        self.ccnow_url = options.ccnow_notification_url
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def set_ccnow_url(self, url: str | None) -> None:
        """Send CCNow's order alerts to `url` from now on (None: send none)."""
        self.ccnow_url = None if url is None else check_notification_url(url, "CCNow alert URL")

    def order_changed(self, order: Order, at: float, rng: random.Random) -> None:
        """Notify as the provider would about `order`'s new status."""
        if order.source == "ccnow":
            if self.ccnow_url is not None:
                # Only a hint to the receiver, like CCV's: posted once, never dropped on purpose.
                self.stats.ccnow_notifications_sent += 1
                self._send(order.id, self.ccnow_url, ccnow_alert(order), _FORM)
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
        # Like CCV: one POST, no body, no retry; the answer does not matter.
        self._send(order.id, url, b"", None)

    def _send(self, order_id: str, url: str, body: bytes, content_type: str | None) -> None:
        task = asyncio.get_running_loop().create_task(self._post(order_id, url, body, content_type))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, order_id: str, url: str, body: bytes, content_type: str | None) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {} if content_type is None else {"Content-Type": content_type}
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=NOTIFICATION_TIMEOUT_S),
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
