"""The log sink: every event as one structured line on stderr (journald priority by severity)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ..logs import is_journal, log_handler, render, write_lines
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
    same lines a LogRecord would give, without building one per event.

    The lines go through `handler` (by default the one `setup_logging` installed), so they
    share its stream, its journald mode and its lock with every other log line.
    """

    def __init__(
        self, name: str = "log", *, handler: logging.StreamHandler[TextIO] | None = None
    ) -> None:
        self.name = name
        self.handler = log_handler() if handler is None else handler

    async def deliver(self, events: Sequence[OutboxEvent]) -> list[DeliveryResult]:
        """Log each event at the level of its severity (the logger's level still applies)."""
        now = time.time()
        journal = is_journal(self.handler)
        lines = []
        for row in events:
            flat = event_fields(row.body)
            level = _LEVELS.get(str(flat.get("severity")), logging.INFO)
            if log.isEnabledFor(level):
                lines.append(render(now, level, log.name, row.type, flat, journal=journal))
        if lines:
            write_lines(self.handler, lines)
        return [Delivered()] * len(events)

    async def close(self) -> None:
        """Nothing to release."""
