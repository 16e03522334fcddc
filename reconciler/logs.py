"""Operational and event log lines: one JSON object per line on stderr, journald-aware."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

# sd-daemon(3) priority prefixes; journald strips them and sets PRIORITY, so
# `journalctl -p warning` filters our lines.
_PRIORITY = {
    logging.CRITICAL: "<2>",
    logging.ERROR: "<3>",
    logging.WARNING: "<4>",
    logging.INFO: "<6>",
    logging.DEBUG: "<7>",
}

LEVELS = ("debug", "info", "warning", "error")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; structured fields come from `extra={"fields": {...}}`."""

    def __init__(self, *, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                line.setdefault(name, value)
        if record.exc_info and record.levelno >= logging.ERROR:
            # Unexpected failures only: expected ones are logged without exc_info.
            line["traceback"] = self.formatException(record.exc_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        if self.journal:
            return _PRIORITY.get(record.levelno, "<6>") + text
        return text


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every `reconciler` log record to stderr as JSON lines at `level`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # Library chatter only when it is a warning or worse; APScheduler's skips and misses are
    # logged by our scheduler listener (once, structured), so only its errors pass.
    for name, floor in (
        ("aiohttp", logging.WARNING),
        ("asyncio", logging.WARNING),
        ("apscheduler", logging.ERROR),
    ):
        lib = logging.getLogger(name)
        lib.handlers[:] = [handler]
        lib.setLevel(max(floor, root.level))
        lib.propagate = False
    # Events always reach the log, whatever --log-level says.
    logging.getLogger("reconciler.events").setLevel(logging.INFO)


def fields(**values: Any) -> dict[str, Any]:
    """Build the `extra` argument for a structured log call."""
    return {"fields": values}
