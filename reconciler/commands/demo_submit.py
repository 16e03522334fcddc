"""The demo's integrator: submits a few CCV orders through reconciler's integration API, as an
application would, so that the feed shows the whole way of a new order: submit, notification,
check, event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

import aiohttp

from ..events import Event
from ..json_text import iso_time
from ..writes.submit_outcome import REFERENCE_HEADER, own_from_header

SUBMITS = 3
FIRST_SUBMIT_S = 1.0
# Without --seconds the demo runs until Ctrl-C: submits come this far apart.
SUBMIT_EVERY_S = 5.0
# The listener may still be starting when the first submit is due; a refused connection sent
# nothing, so trying again is safe (unlike a submit whose answer was lost).
CONNECT_ATTEMPTS = 20
CONNECT_RETRY_S = 0.25
REQUEST_TIMEOUT_S = 10.0
# An order body as the order configurator makes it is long; CCV's simulator needs an object.
DEMO_ORDER: Final[Mapping[str, object]] = {"shoppingCart": {"salesPackages": ()}}


def submit_delays(
    seconds: float | None, count: int = SUBMITS, every_s: float = SUBMIT_EVERY_S
) -> list[float]:
    """Return when (seconds after the start) each submit goes, spread over the demo: `every_s`
    apart, closer where --seconds leaves no room for that."""
    every = every_s if seconds is None else min(every_s, seconds / (count + 1))
    return [FIRST_SUBMIT_S + i * every for i in range(count)]


@dataclass
class Submitted:
    """What the demo's submits gave: the new orders' ids, and the answers that were not 2xx."""

    order_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class DemoIntegrator:
    """Submits the demo's CCV orders through the API and prints one feed line per submit."""

    def __init__(self, api_url: str, token: str, out: TextIO) -> None:
        self.api_url = api_url
        self.token = token
        self.out = out
        self.result = Submitted()

    async def run(self, delays: Sequence[float], stopping: asyncio.Event) -> None:
        """Submit one order at each delay (seconds from now), until done or `stopping` is set.

        A submit under way when `stopping` is set is let finish: cancelled, the order it made
        would be tracked by the daemon and missing from the summary's count.
        """
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            for delay in delays:
                with contextlib.suppress(asyncio.TimeoutError):
                    wait = max(0.0, started + delay - time.monotonic())
                    await asyncio.wait_for(stopping.wait(), wait)
                if stopping.is_set():
                    return
                await self.submit(http, stopping)

    async def submit(self, http: aiohttp.ClientSession, stopping: asyncio.Event) -> None:
        """POST one submit-order body to the API; note what came back."""
        body = {"notifyCustomerByEmail": False, "order": DEMO_ORDER}
        for _ in range(CONNECT_ATTEMPTS):
            try:
                async with http.post(f"{self.api_url}/api/v1/ccv/orders", json=body) as resp:
                    answer = await resp.read()
                    self.answered(resp.status, answer, resp.headers)
                    return
            except aiohttp.ClientConnectorError:
                if stopping.is_set():
                    return  # nothing was sent
                await asyncio.sleep(CONNECT_RETRY_S)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self.note(f"no answer ({type(exc).__name__})")
                return
        self.note("the integration API did not accept a connection")

    def answered(self, status: int, answer: bytes, headers: Mapping[str, str]) -> None:
        """Print the submit's feed line and remember the order it made."""
        reference = own_from_header(headers.get(REFERENCE_HEADER, "?"))
        order_id = headers.get("Reconciler-Order-Id")
        if 200 <= status < 300 and order_id:
            self.result.order_ids.append(order_id)
            self.line(
                f"ccv   {order_id[:13]:<13} submitted through the API: HTTP {status}, "
                f"tracked at once, notifications to reconciler  (ref {reference})"
            )
            return
        try:
            error = json.loads(answer).get("error", "")
        except (ValueError, AttributeError):
            error = ""
        self.note(f"HTTP {status} {error}".strip() + f"  (ref {reference})")

    def summary(self, events: Sequence[Event]) -> str:
        """Return the summary's line about the submitted orders and what the feed showed of them."""
        submitted = set(self.result.order_ids)
        checked = {e.order_id for e in events if e.order_id in submitted}
        notified = {
            e.order_id
            for e in events
            if e.order_id in submitted and e.data.get("via") == "notification"
        }
        failed = f", {len(self.result.failures)} failed" if self.result.failures else ""
        return (
            f"  submitted through the API: {len(submitted)}{failed}; {len(checked)} checked "
            f"by reconciler, {len(notified)} with a change seen after CCV's notification\n"
        )

    def note(self, problem: str) -> None:
        self.result.failures.append(problem)
        self.line(f"ccv   submit through the API failed: {problem}")

    def line(self, what: str) -> None:
        when = iso_time(time.time())[11:19]
        self.out.write(f"{when}  {'ccv.submit':<21} {what}\n")
        self.out.flush()
