"""The log sink: every event as one structured line on stderr (journald priority by severity)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..events import compact_json, constant_json
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


def spliced_members(row: OutboxEvent) -> str | None:
    """Return the fields of an event's log line as the inside of a JSON object, cut from the
    body's own text (what `event_fields` gives, without decoding and encoding it again), or
    None when the body is not of the shape `Event` writes.

    `Event` writes "time" before "data", and "data" last. No JSON string holds an unescaped
    quote, so the first `"time":"` and `,"data":{` in the text are the envelope's own keys.
    """
    text = row.body.decode()
    at = text.find(_DATA)
    start = text.find(_TIME)
    if row.severity is None or at < 0 or not 0 < start < at or not text.endswith("}}"):
        return None
    start += len(_TIME)
    stamp = text[start : text.index('"', start)]
    data = text[at + len(_DATA) : -2]
    return (
        f'"event_id":{compact_json(row.id)},"event_type":{constant_json(row.type)}'
        f'{"," if data else ""}{data},"event_time":"{stamp}"'
    )


_DATA = ',"data":{'
_TIME = ',"time":"'


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
            members = spliced_members(row)
            if members is None:  # a body of another shape: decode it
                flat = event_fields(row.body)
                level = _LEVELS.get(str(flat.get("severity")), logging.INFO)
                if log.isEnabledFor(level):
                    lines.append(render(now, level, log.name, row.type, flat, journal=journal))
                continue
            level = _LEVELS.get(str(row.severity), logging.INFO)
            if log.isEnabledFor(level):
                lines.append(
                    render_spliced(now, level, log.name, row.type, members, journal=journal)
                )
        if lines:
            line_writer.write(lines)
        return [Delivered()] * len(events)

    async def close(self) -> None:
        """Nothing to release."""
