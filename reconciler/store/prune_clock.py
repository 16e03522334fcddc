"""What a prune may take the clock's word for: a clock far ahead would take the whole history
for old (`retention.prune`'s `newest_s`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from ..json_text import iso_time
from ..logs import fields
from .db import Store
from .retention import PruneReport, newest_event_at, prune

# The wall clock gone ahead of the steady one by more than this since the last read was put
# forward: NTP's slewing moves it a few seconds a day at most, and a step this small lets a
# prune delete no more than this much history too early.
JUMP_S = 60.0

log = logging.getLogger("reconciler.retention")

_AHEAD_HINT = (
    "the wall clock went ahead since the store was read: prunes cut at the time the history "
    "vouches for (history_until) until a restart; set the clock right before it"
)


def steady_clock() -> float:
    """A clock never stepped that, like the wall clock, counts a suspend (Linux's
    CLOCK_BOOTTIME; the monotonic clock elsewhere): a host resumed after a night is no jump."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.monotonic() if boottime is None else time.clock_gettime(boottime)


class History:
    """The newest time the history vouches for (`prune`'s `newest_s`): the newest event stored
    when it was last read, plus the time run since (`steady`, never stepped). Read when the
    store is opened, before the process writes, and again after each prune, where the larger of
    the two bounds is kept: the events a daemon wrote before one prune vouch for its clock at
    the next, a day later, as they would for a later start's (read at the opening alone, a
    store left unused longer than `keep_events` was pruned by no daily prune of the process
    that opened it), while a quiet store's bound still grows with the time run.

    Not once the wall clock has gone ahead of `steady` by more than JUMP_S since a read: the
    events written under a clock put far ahead would vouch for it, and the next prune would
    delete the whole history. The bound read before stays for the process's life then, and
    each prune takes it for its `now` when the clock is past it (`store.prune_clock_ahead`):
    a clock ahead by less than the window, taken at its word, deleted that much delivered
    history too early at every daily prune. A restart's catch-up would take the events written
    under such a clock for its word: the clock must be set right before it."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        steady: Callable[[], float] = steady_clock,
    ) -> None:
        self._wall = wall
        self._steady = steady
        self._newest: float | None = None
        self._read_at = steady()
        self._offset = wall() - self._read_at  # the wall clock less the steady one, at a read
        self._jumped = False

    async def read(self, store: Store) -> None:
        """Take the newest event stored now (the store opened: before this process writes)."""
        self._newest, self._read_at = await newest_event_at(store), self._steady()
        self._offset = self._wall() - self._read_at

    def newest_s(self) -> float | None:
        """Return the newest time vouched for now, or None: an empty history bounds nothing."""
        return None if self._newest is None else self._newest + self._steady() - self._read_at

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
        # Asked before the prune too: the first prune after a jump would cut at its word.
        self._jumped = self._jumped or self._ahead(self._wall() - self._steady())
        bound = self.newest_s()
        if self._jumped and bound is not None and now > bound:
            said = fields(now=iso_time(now), history_until=iso_time(bound), hint=_AHEAD_HINT)
            log.warning("store.prune_clock_ahead", extra=said)
            now = bound  # a clock ahead deletes nothing a right clock would keep
        report = await prune(
            store,
            sinks=sinks,
            keep_s=keep_s,
            now=now,
            watched=watched,
            remember_ref_s=remember_ref_s,
            newest_s=bound,
        )
        await self._read_again(store)
        return report

    async def _read_again(self, store: Store) -> None:
        if self._jumped:
            return
        # The events first, the clocks after: an event read was written before the clocks are,
        # so a jump it was dated by is seen.
        newest = await newest_event_at(store)
        steady = self._steady()
        offset = self._wall() - steady
        if self._ahead(offset):
            self._jumped = True
            return
        kept = self.newest_s()
        if newest is None or (kept is not None and kept > newest):
            # A quiet store: its last event is older than the bound grown since the last read
            # (newest at that read plus the time run since), which stays.
            newest = kept
        self._newest, self._read_at, self._offset = newest, steady, offset

    def _ahead(self, offset: float) -> bool:
        """Whether the wall clock, `offset` ahead of the steady one, was put forward."""
        return offset > self._offset + JUMP_S
