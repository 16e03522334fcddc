"""The writes out to a provider when the daemon stops (DESIGN.md invariant 8).

A write already sent (a CCV submit, a batch of CCNow actions) is let end within its own timeout:
its answer is recorded, its event raised and its caller answered. Cut off, it would be left
`sending`, and the next start could only call it uncertain for a person to settle, though the
provider had answered. A write not sent yet is not sent once the stop began: a submit is refused
with nothing recorded, an action stays queued for the next start. One still out at the stop's
bound is cut off (left `sending`); its caller gets `Cut`, to be answered where it stands (the
API's `503`, naming the command), not a connection closed with no answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.logs import fields
from reconciler.sources.http import Stopping

if TYPE_CHECKING:
    from reconciler.config import Config

__all__ = (
    "WRITES_STOP_MAX_S",
    "Cut",
    "Halt",
    "InFlight",
    "Stopping",
    "stop_bound",
    "writes_stop_s",
)

log = logging.getLogger("reconciler.daemon")

T = TypeVar("T")

# Past its provider's timeout, what a write's recording (the store, its event) may take.
WRITE_RECORD_S = 2.0
# The wait has this ceiling whatever timeouts the config sets: systemd's TimeoutStopSec= (60 s)
# must stay above the whole stop. A write still out then is left `sending` (see `wait`).
WRITES_STOP_MAX_S = 30.0
# What a write cut at the bound gets to end, from its cut (the daemon's stop counts it).
CUT_END_S = 1.0


def stop_bound(timeouts_s: Iterable[float]) -> float:
    """How long a stop waits for the writes out: the longest provider timeout and the time to
    record its answer, at most WRITES_STOP_MAX_S."""
    longest = max(timeouts_s, default=0.0)
    return min(longest + WRITE_RECORD_S, WRITES_STOP_MAX_S) if longest else 0.0


def writes_stop_s(config: Config) -> float:
    """`stop_bound` of a config's provider accounts: the daemon's stop, a command line's end."""
    return stop_bound([*(c.timeout_s for c in config.ccv), *(c.timeout_s for c in config.ccnow)])


class Cut(Exception):
    """The write was cut off at the stop's bound, its provider's answer not come: what it
    recorded stands (a submit `sending`, an action's post `sending`), and the next start
    settles it as interrupted. Its caller is answered with where it stands: cut off with no
    answer, a caller whose reference reconciler made would never learn it."""


class Halt(asyncio.Event):
    """Set when the stop begins. It also knows the writes that took a turn of their account's
    bound (`once.send_once`): those went out, and the stop waits for them; one still waiting
    for its turn then is not sent (Stopping), and is no write the stop waits for."""

    def __init__(self) -> None:
        super().__init__()
        # Weak: a write ends and is forgotten whether or not a stop ever comes.
        self.out: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def took_turn(self) -> None:
        """Mark the write running now as sent (its turn taken: it goes out)."""
        if (task := asyncio.current_task()) is not None:
            self.out.add(task)

    def went_out(self) -> bool:
        """Whether the write running now took a turn (`took_turn`): its request left."""
        return asyncio.current_task() in self.out


class InFlight:
    """The writes under way in one process; one shared by its submitter and action sender."""

    def __init__(self) -> None:
        self._writes: set[asyncio.Task[Any]] = set()
        self._deadline: float | None = None
        # Those cancelled at the bound (`wait`), each once, and when their time to end ends.
        self._cut: set[asyncio.Task[Any]] = set()
        self._cut_end = 0.0
        # Set when the stop begins: a write under way makes no new attempt or request (a retry,
        # a status read), which would be a write sent during the stop.
        self.halt = Halt()

    @property
    def stopping(self) -> bool:
        """Whether the stop began: nothing more is to be sent."""
        return self.halt.is_set()

    async def run(self, write: Coroutine[Any, Any, T]) -> T:
        """Run one write (from its recording to its answer recorded) to its end, even when
        its caller is cancelled (a stopping scheduler's job); Stopping once the stop began, Cut
        when the stop cut it off (`wait`)."""
        if self._deadline is not None:
            write.close()
            raise Stopping
        task = asyncio.ensure_future(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The write's own cancellation is its cut (shielded, nothing else cancels it); the
            # caller's (a stopping scheduler's job) leaves the write running.
            if task.cancelled() and task in self._cut:
                raise Cut from None
            # Nobody awaits its end now: taken here, else asyncio reports an exception of it
            # ("never retrieved", level error) when it is collected.
            task.add_done_callback(_left_ended)
            raise

    def stop(self, within_s: float) -> None:
        """Start no write from now on; those out get `within_s` from now to end."""
        if self._deadline is not None:
            return
        self._deadline = time.monotonic() + within_s
        self.halt.set()
        # Those sent: one still waiting for its turn ends now, not sent (queued, or refused).
        if out := len(self._writes & set(self.halt.out)):
            log.info("daemon.writes_in_flight", extra=fields(writes=out, within_s=within_s))

    async def wait(self) -> None:
        """Wait for the writes out until the stop's bound (none before `stop`); cancel those
        still out then (once) and wait for them up to CUT_END_S past their cut: they stay
        `sending`, and the next start settles them as interrupted."""
        if not self._writes or self._deadline is None:
            return
        left = self._deadline - time.monotonic()
        _, late = await asyncio.wait(set(self._writes), timeout=max(left, 0.0))
        if not late:
            return
        # The daemon waits twice (its stop's work, then the API's shutdown): a write cut by the
        # first is not cut again, and its second to end runs from its cut, not from each wait.
        uncut = late - self._cut
        if uncut:
            log.warning("daemon.writes_cut", extra=fields(writes=len(uncut)))
            self._cut |= uncut
            self._cut_end = time.monotonic() + CUT_END_S
            for task in uncut:
                task.cancel()
        left = self._cut_end - time.monotonic()
        if left > 0:
            await asyncio.wait(late, timeout=left)


def _left_ended(task: asyncio.Task[Any]) -> None:
    """The end of a write whose caller was cancelled (a stopping scheduler's job). Stopping is
    the stop keeping it back (not sent: queued for the next start), which its caller would have
    taken as such; any other failure is logged, once."""
    if task.cancelled():
        return  # cut at the stop's bound: `wait` said so
    exc = task.exception()
    if exc is not None and not isinstance(exc, Stopping):
        log.error("daemon.write_failed", exc_info=exc)
