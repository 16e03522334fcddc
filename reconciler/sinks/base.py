"""What a sink is: something that takes outbox events and says whether it has them."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..logs import fields
from ..redact import SecretForms, mask
from ..store.errors import StoreError
from ..store.events import OutboxEvent
from ..store.ordering import Key, held_key

log = logging.getLogger("reconciler.outbox")

__all__ = ("OutboxEvent",)  # the store owns the record; sinks receive it


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
        that takes time per event starts none once `cutoff` is closed (or, after the first,
        interrupted) and hands each attempt to `cutoff.attempt`; a sink that writes its batch
        at once may ignore it."""
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


# How soon a batch sent one event at a time records what the receiver confirmed: after this
# many confirmations or seconds, whichever comes first, in one write. Recorded only at the
# batch's end, a crash sent a slow receiver its whole batch again (up to `BATCH` events, each
# answered long before); a sink that delivers its batch at once says nothing until its end.
RECORD_EVERY = 50
RECORD_AFTER_S = 1.0


class Cutoff:
    """Ends the batches in hand early, keeping what their sinks confirmed so far: once closed
    no event starts (the rest stay pending, untouched), and an attempt still under way when
    its grace ends is cancelled (`ABANDONED`). Cancelling a whole batch instead would lose the
    confirmations it holds, and those events would be sent again. With `record`, it also
    records what a sink sending one event at a time confirmed as the answers come (`confirmed`),
    so that a crash in mid-batch does not lose them either; `sink` names the sink in its log,
    whose texts have `secrets` (the config's) masked.
    `interrupt` ends only the batch in hand, the same way: an event came that must go first."""

    def __init__(
        self,
        record: Callable[[list[int]], Awaitable[None]] | None = None,
        *,
        sink: str,
        secrets: SecretForms | None = None,
    ) -> None:
        self.sink = sink
        self.secrets = secrets
        self.closed = False
        self.interrupted = False  # the batch in hand starts no more events; `resume` for the next
        self._abandoning = False
        self._running: set[asyncio.Future[DeliveryResult]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._record = record
        self._unrecorded: list[int] = []  # seqs confirmed, not yet handed to `record`
        self._recorded: list[int] = []  # seqs `record` wrote, in this batch
        # The last write handed over; each waits for the one before, so that they end in order.
        self._writing: asyncio.Future[None] | None = None
        self._soon: asyncio.TimerHandle | None = None

    def close(self, grace_s: float | None = None) -> None:
        """Start no more events; abandon the attempts under way after `grace_s` (None: each
        ends by its sink's own timeout)."""
        self.closed = True
        if grace_s is not None:
            self._later(grace_s, self._abandon)

    def interrupt(self) -> None:
        """End the batch in hand after the attempt under way (its first, at least), leaving
        the rest pending, untouched: a notification's event was queued after the batch was read,
        and the lane's next read hands it first."""
        self.interrupted = True

    def resume(self) -> None:
        """Let the next batch run whole (called before its read: an interruption after the
        read began is for the batch it reads)."""
        self.interrupted = False

    def close_in(self, delay_s: float, grace_s: float | None) -> None:
        """`close(grace_s)` after `delay_s`."""
        self._later(delay_s, lambda: self.close(grace_s))

    def release(self) -> None:
        """Forget the timers of `close_in` and `close` (the batches are over)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        # Cancelled and forgotten: one left set would stop `confirmed` starting a timer again.
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self._writing is not None:  # a batch cancelled in mid-write: sent again, at least once
            self._writing.cancel()
            self._writing = None

    def confirmed(self, event: OutboxEvent) -> None:
        """Hear that the receiver confirmed `event`: recorded within `RECORD_AFTER_S`, or with the
        next `RECORD_EVERY` confirmations, while the batch goes on."""
        if self._record is None:
            return
        self._unrecorded.append(event.seq)
        if len(self._unrecorded) >= RECORD_EVERY:
            self._write()
        elif self._soon is None:
            self._soon = asyncio.get_running_loop().call_later(RECORD_AFTER_S, self._write)

    async def recorded(self) -> list[int]:
        """End the batch's recording: return the seqs already recorded, once every write under
        way has ended; the rest of the batch is its caller's to record."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self._unrecorded = []
        if self._writing is not None:
            await asyncio.wait((self._writing,))
            self._writing = None
        done, self._recorded = self._recorded, []
        return done

    def _write(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        seqs, self._unrecorded = self._unrecorded, []
        if seqs and self._record is not None:
            self._writing = asyncio.ensure_future(
                self._write_after(self._writing, self._record, seqs)
            )

    async def _write_after(
        self,
        before: asyncio.Future[None] | None,
        record: Callable[[list[int]], Awaitable[None]],
        seqs: list[int],
    ) -> None:
        if before is not None:
            await asyncio.wait((before,))
        # Either way the batch's end records them.
        try:
            await record(seqs)
        except StoreError:
            return  # the store says why, once
        except Exception as exc:
            log.warning(
                "sink.record_failed",
                extra=fields(sink=self.sink, error=mask(repr(exc), self.secrets), events=len(seqs)),
            )
            return
        self._recorded.extend(seqs)

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
    """Attempt events one by one, in commit order. After a failure the failed event's ordering
    key waits (its later events are not attempted: a sink gets an order's events in order, and
    an account's `source.*` or a submission's `order.submit_*` likewise), and
    the next event of another order tells whether the receiver is down (`looks_down`): refused
    too, the rest are not attempted; taken, the refusal was that event's own (a payload the
    receiver rejects) and the others go on. Nothing is attempted once `cutoff` is closed, nor
    once it is interrupted but the first event: each batch delivers something, so that a stream
    of notifications, each interrupting the batch read before it, cannot stop a lane."""
    results: list[DeliveryResult] = []
    # Ordering keys with a refused event in this batch: an order's, or an account's health, a
    # submission's reference (store/ordering.py) for the events that name no order.
    held: set[str | Key] = set()
    down, refused = False, None
    for event in events:
        if (
            down
            or (held and held_key(event.type, event.order_id, event.body) in held)
            or (cutoff is not None and (cutoff.closed or (cutoff.interrupted and bool(results))))
        ):
            results.append(NOT_ATTEMPTED)
            continue
        try:
            if cutoff is None:
                result = await attempt(event)
            else:
                result = await cutoff.attempt(attempt(event))
        except Exception as exc:
            # A bug in one attempt fails that event, not the batch: the events the receiver
            # already confirmed stay confirmed (else they would be sent again).
            if cutoff is None:
                crashed(exc, None, event_id=event.id)
            else:
                crashed(exc, cutoff.secrets, sink=cutoff.sink, event_id=event.id)
            result = RetryLater(f"sink raised {type(exc).__name__}")
        results.append(result)
        if cutoff is not None and isinstance(result, Delivered):
            cutoff.confirmed(event)
        down, refused = _after(event, result, refused)
        if not isinstance(result, Delivered):
            held.add(held_key(event.type, event.order_id, event.body))
    return results


def crashed(exc: BaseException, secrets: SecretForms | None, **values: object) -> None:
    """Log a sink's unexpected exception (a bug) as `sink.crashed` with its traceback, every
    secret of the config masked in it: its text may quote one (a header, a form, a URL a
    library echoed), and logged with `exc_info` it reached the log as it was."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log.error("sink.crashed", extra=fields(**values, traceback=mask(text.rstrip("\n"), secrets)))


def looks_down(
    events: Sequence[OutboxEvent], results: Sequence[DeliveryResult], refused: str | None = None
) -> tuple[bool, str | None]:
    """Whether a receiver looks down after these results, and which order the last event
    attempted belongs to when it was refused (None: it was taken). Down: an event never tried
    before refused right after another order's refusal (`refused`: the lane's last attempt),
    a receiver asking to wait (Retry-After), or a gone one, with no event taken after. One
    order's event refused again and again is its own."""
    down = False
    for event, result in zip(events, results, strict=False):
        after, refused = _after(event, result, refused)
        down = after or (down and refused is not None)
    return down, refused


def _after(
    event: OutboxEvent, result: DeliveryResult, refused: str | None
) -> tuple[bool, str | None]:
    """`looks_down`'s step: (down, refused) after one more event's result."""
    # Delivered first: nearly every result is, and it is neither of the two below, which are
    # compared by value (a dataclass's __eq__, a Python call each).
    if isinstance(result, Delivered):
        return False, None
    if result in (NOT_ATTEMPTED, ABANDONED):
        return False, refused  # said nothing of the receiver
    order = event.order_id if event.order_id is not None else f"#{event.seq}"
    gone = not isinstance(result, RetryLater) or result.retry_after_s is not None
    # A retry refused again tells nothing new: payloads the receiver rejects for good lead
    # every batch as its oldest rows, and must not make it look down to the others.
    fresh = event.attempts == 0
    return gone or (fresh and refused is not None and refused != order), order
