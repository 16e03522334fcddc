"""What a prune may take the clock's word for: a clock far ahead would take the whole history
for old (`retention.prune`'s `newest_s`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from .db import Store
from .retention import PruneReport, newest_event_at, prune


class History:
    """The newest time the history vouches for (`prune`'s `newest_s`): the newest event stored
    when it was last read, plus the time run since (`monotonic`, never stepped). Read when the
    store is opened, before the process writes, and again after each prune: the events a daemon
    wrote before one prune vouch for its clock at the next, a day later, as they would for a
    later start's (read at the opening alone, a store left unused longer than `keep_events` was
    pruned by no daily prune of the process that opened it). A clock put far ahead while a
    daemon runs skips one daily prune so, as a restart's catch-up."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._newest: float | None = None
        self._read_at = monotonic()

    async def read(self, store: Store) -> None:
        """Take the newest event stored now (the store opened: before this process writes)."""
        self._newest, self._read_at = await newest_event_at(store), self._monotonic()

    def newest_s(self) -> float | None:
        """Return the newest time vouched for now, or None: an empty history bounds nothing."""
        return None if self._newest is None else self._newest + self._monotonic() - self._read_at

    async def prune(
        self,
        store: Store,
        *,
        sinks: Sequence[str],
        keep_s: float,
        now: float,
        watched: Mapping[tuple[str, str], float],
        remember_ref_s: float | None = None,
    ) -> PruneReport:
        """`prune` within what the history vouches for, then read the history again."""
        report = await prune(
            store,
            sinks=sinks,
            keep_s=keep_s,
            now=now,
            watched=watched,
            remember_ref_s=remember_ref_s,
            newest_s=self.newest_s(),
        )
        await self.read(store)
        return report
