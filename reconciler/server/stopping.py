"""A listener's stop as both listeners (the receiver and the integration API) make it.

From the stop's first step no connection is taken, while the connections taken before it (idle,
kept alive, a request head half sent) stay open until the rest of the stop is done: a request on
one is answered `503 {"error": "stopping"}`, where its app says so, and every answer from then
on closes its connection. A client is told, not cut off: CCV does not tell a reset from a lost
answer, and an integrator's application retries a 503 rather than guessing what happened. A
request already in a handler when the stop began ends as it would (a write sent, its answer).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

RETRY_AFTER_S = 60  # a stopped daemon under systemd is started again within seconds


class Stopping:
    """Whether a listener's stop began; what its app does at that moment (`on_begin`)."""

    def __init__(self) -> None:
        self.began = False
        self._on_begin: list[Callable[[], None]] = []

    def on_begin(self, call: Callable[[], None]) -> None:
        """Call `call` when the stop begins: the app's own first step (refuse work)."""
        self._on_begin.append(call)

    def begin(self) -> None:
        """Begin the stop (once: again changes nothing)."""
        if self.began:
            return
        self.began = True
        for call in self._on_begin:
            call()


def stopping_answer(**extra: object) -> web.Response:
    """Return the 503 of a request the stop refuses: nothing was done for it, try again later;
    its connection closes after it."""
    response = web.json_response(
        {"error": "stopping", **extra},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
    response.force_close()
    return response


# The app's stop, which its listener begins and its handlers read.
STOPPING = web.AppKey("stopping", Stopping)
