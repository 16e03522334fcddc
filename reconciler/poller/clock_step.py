"""Notice the wall clock stepped back between an account's due reads (or a start, which may
follow one), and plan again the checks planned before it (`store.order_steps`)."""

from __future__ import annotations

import logging

from ..config import CCNowConfig, CCVConfig
from ..logs import fields
from ..model import Source
from ..store import Store
from ..store.order_steps import pull_ahead

log = logging.getLogger("reconciler.poller")

# A clock read this much earlier than the last one was stepped back; less is not worth a look
# at every open order (a step that small costs as little).
STEP_S = 1.0


class ClockSteps:
    """One account's watch on its clock: `check(now)` before each read of its due orders."""

    def __init__(self, store: Store, source: Source, config: CCVConfig | CCNowConfig) -> None:
        self._store = store
        self._source = source
        self._config = config
        self._last: float | None = None

    async def check(self, now: float) -> None:
        """At the first read, or when `now` is earlier than the last one's, plan again the
        checks planned further ahead than their interval allows."""
        last, self._last = self._last, now
        if last is not None and now >= last - STEP_S:
            return
        cfg = self._config
        longest = cfg.schedule.max_interval_s
        pulled = await pull_ahead(self._store, self._source, cfg.name, now, longest_s=longest)
        if pulled:
            values = fields(source=self._source, account=cfg.name, orders=pulled)
            log.warning("orders.clock_stepped_back", extra=values)
