"""The log sink: every event as one structured line on stderr (journald priority by severity)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..events import compact_json, constant_json, iso_time
from ..logs import line_writer, render, render_spliced
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
    """Writes each event as one line of the `reconciler.events` logger, a batch per write: the
    same lines a LogRecord would give, without building one per event."""

    def __init__(self, name: str = "log") -> None:
        self.name = name

    async def deliver(self, events: Sequence[OutboxEvent]) -> list[DeliveryResult]:
        """Log each event at the level of its severity (the logger's level still applies)."""
        now = time.time()
        journal = line_writer.journal
        lines = []
        for row in events:
            event = row.event
            if event is None:  # read back from the store
                flat = event_fields(row.body)
                level = _LEVELS.get(str(flat.get("severity")), logging.INFO)
                if log.isEnabledFor(level):
                    lines.append(render(now, level, log.name, row.type, flat, journal=journal))
                continue
            level = _LEVELS.get(event.severity, logging.INFO)
            if log.isEnabledFor(level):
                data = event.data_json[1:-1]
                members = (
                    f'"event_id":{compact_json(event.id)},"event_type":{constant_json(row.type)}'
                    f'{"," if data else ""}{data},"event_time":"{iso_time(event.time)}"'
                )
                lines.append(
                    render_spliced(now, level, log.name, row.type, members, journal=journal)
                )
        if lines:
            line_writer.write(lines)
        return [Delivered()] * len(events)

    async def close(self) -> None:
        """Nothing to release."""
