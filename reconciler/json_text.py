"""JSON text as reconciler writes it: compact, UTF-8 as is (but for three line ends), times in
RFC 3339 UTC.

Every event body and every log line is made with these helpers, so both read the same way.
"""

from __future__ import annotations

import json
import time

# U+2028, U+2029 and U+0085 end a line for str.splitlines() (and many a log shipper), but JSON
# leaves them as they are: a reader splitting a log or a JSONL file into lines broke one record
# into three. Written as escapes they are the same JSON text; every other character is as
# json.dumps writes it.
_LINE_ENDS = (("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\x85", "\\u0085"))


def line_safe(text: str) -> str:
    """Return JSON text with the line ends JSON keeps as they are escaped."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return text
    for end, escaped in _LINE_ENDS:
        if end in text:
            text = text.replace(end, escaped)
    return text


# Encoders made once: json.dumps with options builds a new encoder on every call.
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# For log lines, whose fields may hold anything (a path, an exception): written as str().
_lenient = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def compact_json(value: object) -> str:
    """Return compact JSON of `value`, line ends escaped (`line_safe`)."""
    return line_safe(_compact(value))


def lenient_json(value: object) -> str:
    """Return compact JSON of `value`, anything JSON has no type for as its str()."""
    return line_safe(_lenient(value))


# json's own string encoder (ensure_ascii=False), for pieces of a text that `line_safe` makes
# safe once whole (Event.body), and for ids, which are made from this text as it always was.
string_json = json.encoder.encode_basestring


def optional_string_json(value: str | None) -> str:
    """Return json.dumps' JSON of a string or None (the text event ids are made from)."""
    return "null" if value is None else string_json(value)


def iso_time(ts: float) -> str:
    """Render epoch seconds as RFC 3339 UTC with milliseconds."""
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1))
    return f"{second}.{int(ts % 1 * 1000):03d}Z"


def optional_iso_time(ts: float | None) -> str | None:
    """Return iso_time of epoch seconds, None for None (a time not known yet)."""
    return None if ts is None else iso_time(ts)
