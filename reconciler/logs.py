"""Operational and event log lines: one JSON object per line on stderr, journald-aware."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from typing import Any, TextIO

from .events import compact_json as _encode
from .events import iso_time as _iso

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


def render(
    created: float, level: int, logger: str, message: str, fields: dict[str, Any], *, journal: bool
) -> str:
    """Return one log line: a JSON object, with the sd-daemon priority prefix under journald."""
    line: dict[str, Any] = {
        "time": _iso(created),
        "level": logging.getLevelName(level).lower(),
        "logger": logger,
        "message": message,
    }
    for name, value in fields.items():
        line.setdefault(name, value)
    text = json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)
    return _PRIORITY.get(level, "<6>") + text if journal else text


def render_spliced(
    created: float, level: int, logger: str, message: str, members: str, *, journal: bool
) -> str:
    """Return the line `render` gives for fields already serialized: `members` is the inside
    of their compact JSON object (no braces; none of the line's own keys). The event log line,
    without serializing the event's data again."""
    text = f'{{"time":"{_iso(created)}",{_line_head(level, logger, message)}'
    text = f"{text},{members}}}" if members else f"{text}}}"
    return _PRIORITY.get(level, "<6>") + text if journal else text


@functools.lru_cache(maxsize=256)
def _line_head(level: int, logger: str, message: str) -> str:
    # What follows "time" in a line; the same for every event of a type.
    level_name = logging.getLevelName(level).lower()
    return f'"level":{_encode(level_name)},"logger":{_encode(logger)},"message":{_encode(message)}'


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; structured fields come from `extra={"fields": {...}}`."""

    def __init__(self, *, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = dict(fields) if isinstance(fields, dict) else {}
        if record.exc_info and record.levelno >= logging.ERROR:
            # Unexpected failures only: expected ones are logged without exc_info.
            extra["traceback"] = self.formatException(record.exc_info)
        return render(
            record.created,
            record.levelno,
            record.name,
            record.getMessage(),
            extra,
            journal=self.journal,
        )


class LineWriter:
    """Writes pre-rendered lines to the log stream in one call; the log sink's fast path."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.journal = False

    def write(self, lines: list[str]) -> None:
        """Write lines at once and flush."""
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


# Where event lines go: the stream and journal mode that setup_logging chose.
line_writer = LineWriter()


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every `reconciler` log record to stderr as JSON lines at `level`."""
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(journal=journal))
    line_writer.stream, line_writer.journal = handler.stream, journal
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
