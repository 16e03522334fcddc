"""A CCV account's probe, shared: a question about an order id that does not exist, whose
answer says whether the account answers at all."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..sources.errors import SourceError
from .health import Verdict


@dataclass
class _Probe:
    """One probe of the account: its verdict once it is in, and when it came in
    (time.monotonic(); infinite while the probe is in flight)."""

    verdict: asyncio.Future[Verdict]
    answered_at: float = math.inf


class SharedProbe:
    """The account's probes: a probe in flight, or answered after a caller's `since`, is that
    caller's answer too. Notifications for orders that fail alone (a 403 each) come in bursts,
    and each check then asks whether the account answers: a probe answered after the check
    began tells as much as a new one, so the burst costs one probe, not one per order."""

    def __init__(
        self, ask: Callable[[], Awaitable[None]], reason: Callable[[SourceError], str]
    ) -> None:
        self._ask = ask
        self._reason = reason
        self._last: _Probe | None = None

    async def verdict(self, *, since: float | None = None) -> Verdict:
        """Return whether the account answers: the verdict of a probe in flight or answered
        after `since` (time.monotonic(); now when None), else of a new one."""
        if since is None:
            since = time.monotonic()
        while (shared := self._last) is not None and shared.answered_at >= since:
            # Waited for, not awaited: a caller that is cancelled leaves the probe to the
            # others, and one whose probe's sender was cancelled (a stop, a time limit) asks
            # afresh, or shares the probe another waiter sent meanwhile.
            await asyncio.wait({shared.verdict})
            if not shared.verdict.cancelled():
                return shared.verdict.result()
        probe = self._last = _Probe(asyncio.get_running_loop().create_future())
        try:
            try:
                await self._ask()
                verdict = Verdict(True)
            except SourceError as exc:
                verdict = Verdict(False, self._reason(exc))
        except BaseException:
            probe.verdict.cancel()
            if self._last is probe:
                self._last = None
            raise
        probe.answered_at = time.monotonic()
        probe.verdict.set_result(verdict)
        return verdict
