"""Notice the wall clock stepped back between an account's due reads (or a start, which may
follow one), and plan again the checks planned before it (`store.order_steps`): at runtime
moved back by the step, at a start planned again where further ahead than the planner sets."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from ..config import CCNowConfig, CCVConfig
from ..logs import fields
from ..model import Source
from ..store import Store
from ..store.order_steps import pull_ahead, shift_back

log = logging.getLogger("reconciler.poller")

# A wall clock gone back this much against the monotonic one since the last read was stepped
# back; less is not worth a look at every open order (a step that small costs as little).
STEP_S = 1.0


class ClockSteps:
    """One account's watch on its clock: `check(now)` before each read of its due orders.
    `rng`: the jitter of the checks planned again (the reconciler's, which `plan` uses);
    `monotonic`: the clock that is never stepped, against which a step is seen."""

    def __init__(
        self,
        store: Store,
        source: Source,
        config: CCVConfig | CCNowConfig,
        *,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._source = source
        self._config = config
        self._rng = rng if rng is not None else random.Random()
        self._monotonic = monotonic
        self._last: float | None = None  # the wall clock less the monotonic one, at the last read

    async def check(self, now: float) -> None:
        """At the first read, or when `now` went back against the monotonic clock since the
        last one, plan again the checks planned before the step. Against the monotonic clock:
        while an account fails or rests its due reads stop, and a step back smaller than that
        pause left the clock later than at the last read, the checks planned meanwhile (a
        probe's, a notification's) as far ahead as the step."""
        offset = now - self._monotonic()
        last = self._last
        if last is not None and offset >= last - STEP_S:
            self._last = offset
            return
        cfg = self._config
        if last is not None:
            # Seen at runtime, the step has a size: every check planned before it moves back
            # by that much (a 2 min order after a 190 s step, whatever the poll interval).
            pulled = await shift_back(self._store, self._source, cfg.name, now, last - offset)
        else:
            pulled = await self._pull_ahead(now)
        # Only now: a store that failed (busy) leaves the step to be seen at the next read.
        self._last = offset
        if pulled:
            values = fields(source=self._source, account=cfg.name, orders=pulled)
            log.warning("orders.clock_stepped_back", extra=values)

    async def _pull_ahead(self, now: float) -> int:
        """A start's read: a step before it has no size, nor is it known when each check was
        planned; plan again those further ahead than the planner may set them."""
        cfg = self._config
        schedule = cfg.schedule
        # What the planner sets whatever the order's interval (store.order_steps): a failed
        # check is retried no sooner than min_interval (`plan`; a recovery forgets the failure
        # but not its plan), and a CCV circuit breaker postpones the orders it left unasked by
        # up to 110 % of the poll interval (CCVCoordinator._postpone).
        retry = min(schedule.min_interval_s, schedule.max_interval_s)
        floor = max(retry, cfg.poll_interval_s) if isinstance(cfg, CCVConfig) else retry
        return await pull_ahead(
            self._store,
            self._source,
            cfg.name,
            now,
            longest_s=schedule.max_interval_s,
            floor_s=floor,
            retry_s=retry,
            jitter=self._rng.random,
        )
