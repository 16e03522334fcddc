"""Operational and event log lines: one JSON object per line on stderr, journald-aware."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TextIO

from .json_text import iso_time, lenient_json
from .redact import SecretForms, mask, text_forms

# sd-daemon(3) priority prefixes; journald strips them and sets PRIORITY, so
# `journalctl -p warning` filters our lines.
PRIORITY: Final[Mapping[int, str]] = {
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
        "time": iso_time(created),
        "level": logging.getLevelName(level).lower(),
        "logger": logger,
        "message": message,
    }
    for name, value in fields.items():
        line.setdefault(name, value)
    text = lenient_json(line)
    return PRIORITY.get(level, "<6>") + text if journal else text


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; structured fields come from `extra={"fields": {...}}`.
    `secrets` (the config's, once it is loaded: `mask_secrets`) are masked in a traceback."""

    def __init__(self, *, journal: bool, secrets: SecretForms | None = None) -> None:
        super().__init__()
        self.journal = journal
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = dict(fields) if isinstance(fields, dict) else {}
        if record.exc_info and record.levelno >= logging.ERROR:
            # Unexpected failures only: expected ones are logged without exc_info.
            # An exception's text may quote a secret (a header, a URL a library echoed),
            # whoever logged it. Only here: the event lines, by the thousand, pay nothing.
            extra["traceback"] = mask(self.formatException(record.exc_info), self.secrets)
        return render(
            record.created,
            record.levelno,
            record.name,
            record.getMessage(),
            extra,
            journal=self.journal,
        )


def mask_secrets(secrets: Iterable[str]) -> None:
    """Mask `secrets` (the config's, once loaded) in every traceback the handler `setup_logging`
    gave the `reconciler` logger writes, the libraries' records' too (they share it)."""
    forms = text_forms(secrets)
    for handler in logging.getLogger("reconciler").handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.secrets = forms


def log_handler() -> logging.StreamHandler[TextIO]:
    """Return the handler `setup_logging` gave the `reconciler` logger (a plain stderr one
    before it ran): a writer's Runtime gives it to the log sink, whose event lines so go where
    every log record goes, and a stream swapped on it (progress bars) takes them too."""
    for handler in logging.getLogger("reconciler").handlers:
        if isinstance(handler, logging.StreamHandler):
            return handler
    return logging.StreamHandler(sys.stderr)


def write_lines(handler: logging.StreamHandler[TextIO], lines: Sequence[str]) -> None:
    """Write rendered lines to the handler's stream in one call and flush."""
    handler.acquire()  # the handler's own lock: a log record is never written into a batch
    try:
        handler.stream.write("\n".join(lines) + "\n")
        handler.stream.flush()
    finally:
        handler.release()


def is_journal_stream(stream: TextIO) -> bool:
    """Whether `stream` is the one systemd connected to the journal: JOURNAL_STREAM names its
    device and inode (systemd.exec(5)). Only then do lines carry priority prefixes; a shell, a
    redirect or a child that merely inherited the variable gets plain lines."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False  # not a file at all (a test's buffer)
    return (found.st_dev, found.st_ino) == (int(device), int(inode))


def say(text: str, level: int = logging.ERROR, stream: TextIO | None = None) -> None:
    """Print one plain-text line for a person on `stream` (default stderr). Under journald it
    carries the priority of `level`: the line saying why a command stopped is an error line,
    found by `journalctl -p err`, not filed at info as unprefixed text is."""
    out = stream or sys.stderr
    print(PRIORITY.get(level, "<6>") + text if is_journal_stream(out) else text, file=out)


def is_journal(handler: logging.Handler) -> bool:
    """Whether the handler's lines carry journald's priority prefix."""
    return isinstance(handler.formatter, JsonFormatter) and handler.formatter.journal


# The loggers setup_logging configures (the events logger only by its level).
_CONFIGURED = ("reconciler", "reconciler.events", "aiohttp", "asyncio", "apscheduler")


@contextlib.contextmanager
def logging_set_up(level: str = "info", stream: TextIO | None = None) -> Iterator[None]:
    """Set logging up as `setup_logging` does for the block, then put it back as it was: a
    command run inside a longer-lived process (a test) leaves no handler behind."""
    kept = [
        (logger, logger.handlers[:], logger.level, logger.propagate)
        for logger in map(logging.getLogger, _CONFIGURED)
    ]
    setup_logging(level, stream)
    try:
        yield
    finally:
        for logger, handlers, kept_level, propagate in kept:
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(kept_level)


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every `reconciler` log record to `stream` (default stderr) as JSON lines at
    `level`."""
    journal = is_journal_stream(stream or sys.stderr)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(journal=journal))
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
