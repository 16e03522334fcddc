"""JSON text as reconciler writes it: compact, UTF-8 as is, times in RFC 3339 UTC.

Every event body and every log line is made with these helpers, so both read the same way.
"""

from __future__ import annotations

import functools
import json
import time

# Encoders made once: json.dumps with options builds a new encoder on every call.
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# For log lines, whose fields may hold anything (a path, an exception): written as str().
lenient_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode

# json's own string encoder, the one compact_json applies to every str (ensure_ascii=False).
string_json = json.encoder.encode_basestring


def optional_string_json(value: str | None) -> str:
    """Return the JSON of a string or None, as compact_json writes it."""
    return "null" if value is None else string_json(value)


# The events of a batch share one time, and a batch of log lines another: the text is kept.
@functools.lru_cache(maxsize=64)
def iso_time(ts: float) -> str:
    """Render epoch seconds as RFC 3339 UTC with milliseconds."""
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1))
    return f"{second}.{int(ts % 1 * 1000):03d}Z"
