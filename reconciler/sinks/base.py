"""What a sink is: something that takes outbox events and says whether it has them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..store.events import OutboxEvent

__all__ = ["OutboxEvent"]  # the store owns the record; sinks receive it


@dataclass(frozen=True, slots=True)
class Delivered:
    """The sink confirmed the event."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """The attempt failed; try again later (no sooner than `retry_after_s` when given)."""

    reason: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class SinkGone:
    """The receiver said it wants no more events (webhook 410): disable the sink."""

    reason: str


DeliveryResult = Delivered | RetryLater | SinkGone


class Sink(Protocol):
    """A destination of events. `deliver` never raises for a failed delivery; it says so."""

    name: str

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        """Deliver events in order; return one result per event, in the same order. A sink
        that takes time per event starts none once `cutoff` is closed and hands each attempt to
        `cutoff.attempt`; a sink that writes its batch at once may ignore it."""
        ...

    async def close(self) -> None:
        """Release what the sink holds (files, HTTP sessions)."""
        ...


# The result for an event a sink did not try because an earlier one failed; the dispatcher
# leaves such rows untouched (no attempt counted, no backoff).
NOT_ATTEMPTED = RetryLater("not attempted: earlier event failed")
# The result for the event whose attempt a cutoff abandoned: left untouched like NOT_ATTEMPTED
# (the receiver may have it after all, and gets it again later: at least once).
ABANDONED = RetryLater("not confirmed: delivery stopped waiting")


class Cutoff:
    """Ends the batches in hand early, keeping what their sinks confirmed so far: once closed
    no event starts (the rest stay pending, untouched), and an attempt still under way when
    its grace ends is cancelled (`ABANDONED`). Cancelling a whole batch instead would lose the
    confirmations it holds, and those events would be sent again."""

    def __init__(self) -> None:
        self.closed = False
        self._abandoning = False
        self._running: set[asyncio.Future[DeliveryResult]] = set()
        self._timers: list[asyncio.TimerHandle] = []

    def close(self, grace_s: float | None = None) -> None:
        """Start no more events; abandon the attempts under way after `grace_s` (None: each
        ends by its sink's own timeout)."""
        self.closed = True
        if grace_s is not None:
            self._later(grace_s, self._abandon)

    def close_in(self, delay_s: float, grace_s: float | None) -> None:
        """`close(grace_s)` after `delay_s`."""
        self._later(delay_s, lambda: self.close(grace_s))

    def release(self) -> None:
        """Forget the timers of `close_in` and `close` (the batches are over)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    async def attempt(self, attempt: Awaitable[DeliveryResult]) -> DeliveryResult:
        """Await one event's attempt, or `ABANDONED` when the cutoff gave up on it."""
        if self._abandoning:
            # Never awaited: close it so that Python does not warn about it.
            if asyncio.iscoroutine(attempt):
                attempt.close()
            return ABANDONED
        task = asyncio.ensure_future(attempt)
        self._running.add(task)
        try:
            # `wait`, not `await task`: only a cancellation of this batch raises here, one of
            # the attempt alone is the cutoff's.
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            task.cancel()
            # The attempt's own clean-up (a command sink kills its program and what it
            # started) ends before this batch is gone, not at the loop's shutdown.
            await asyncio.shield(asyncio.wait((task,)))
            raise
        finally:
            self._running.discard(task)
        return ABANDONED if task.cancelled() else task.result()

    def _later(self, delay_s: float, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(max(delay_s, 0.0), callback))

    def _abandon(self) -> None:
        self.closed = True
        self._abandoning = True
        for task in self._running:
            task.cancel()


async def deliver_in_order(
    events: Sequence[OutboxEvent],
    attempt: Callable[[OutboxEvent], Awaitable[DeliveryResult]],
    cutoff: Cutoff | None = None,
) -> list[DeliveryResult]:
    """Attempt events one by one, in commit order. After a failure the failed event's order
    waits (its later events are not attempted: a sink gets an order's events in order), and
    the next event of another order tells whether the receiver is down: refused too, the rest
    are not attempted (a receiver that is down costs two attempts per batch, not one per
    event); taken, the refusal was that event's own (a payload the receiver rejects) and the
    others go on, instead of waiting behind it until `max_age`. Nothing is attempted once
    `cutoff` is closed."""
    results: list[DeliveryResult] = []
    held: set[str | None] = set()  # orders with a failed event in this batch
    failed_last = False
    down = False
    for event in events:
        if down or event.order_id in held or (cutoff is not None and cutoff.closed):
            results.append(NOT_ATTEMPTED)
            continue
        if cutoff is None:
            result = await attempt(event)
        else:
            result = await cutoff.attempt(attempt(event))
        results.append(result)
        if isinstance(result, Delivered):
            failed_last = False
            continue
        # A second refusal in a row, a receiver asking to wait, a gone one or a cutoff: stop.
        retry_after = isinstance(result, RetryLater) and result.retry_after_s is not None
        down = failed_last or retry_after or not isinstance(result, RetryLater)
        failed_last = True
        held.add(event.order_id)
    return results
