"""The log sink: every event as one structured line on stderr (journald priority by severity)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from .base import Delivered, DeliveryResult, OutboxEvent

log = logging.getLogger("reconciler.events")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def event_fields(body: bytes) -> dict[str, Any]:
    """Flatten a CloudEvent into the fields of its log line (what alert rules key on)."""
    event = json.loads(body)
    flat: dict[str, Any] = {"event_id": event["id"], "event_type": event["type"]}
    data = event.get("data")
    if isinstance(data, dict):
        flat.update(data)
    flat["event_time"] = event.get("time")
    return flat


class LogSink:
    """Writes events to the `reconciler.events` logger; it cannot fail, so it delivers all."""

    def __init__(self, name: str = "log") -> None:
        self.name = name

    async def deliver(self, events: Sequence[OutboxEvent]) -> list[DeliveryResult]:
        """Log each event as one line at the level of its severity."""
        for event in events:
            flat = event_fields(event.body)
            level = _LEVELS.get(str(flat.get("severity")), logging.INFO)
            log.log(level, event.type, extra={"fields": flat})
        return [Delivered()] * len(events)

    async def close(self) -> None:
        """Nothing to release."""
