"""What a sink is: something that takes outbox events and says whether it has them."""

from __future__ import annotations

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

    async def deliver(self, events: Sequence[OutboxEvent]) -> list[DeliveryResult]:
        """Deliver events in order; return one result per event, in the same order."""
        ...

    async def close(self) -> None:
        """Release what the sink holds (files, HTTP sessions)."""
        ...


# The result for an event a sink did not try because an earlier one failed; the dispatcher
# leaves such rows untouched (no attempt counted, no backoff).
NOT_ATTEMPTED = RetryLater("not attempted: earlier event failed")


async def deliver_in_order(
    events: Sequence[OutboxEvent],
    attempt: Callable[[OutboxEvent], Awaitable[DeliveryResult]],
) -> list[DeliveryResult]:
    """Attempt events one by one; after the first failure the rest are not attempted, so a
    receiver that is down costs one attempt per batch, not one per event."""
    results: list[DeliveryResult] = []
    for event in events:
        if results and not isinstance(results[-1], Delivered):
            results.append(NOT_ATTEMPTED)
        else:
            results.append(await attempt(event))
    return results
