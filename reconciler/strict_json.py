"""JSON as RFC 8259 defines it, for bodies reconciler records or passes on to a provider.

Python's json module also takes `NaN` / `Infinity` and `\\u` escapes of half a character (a lone
surrogate). Neither could be passed on: the first is not JSON, the second not UTF-8, so a body
holding one would fail only later, after its submission was recorded.
"""

from __future__ import annotations

import json
import re

# A `\u` escape of a surrogate; only then is the decoded document checked for a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class NotJSON(ValueError):
    """Text json.loads takes but JSON does not."""


def _refuse_constant(name: str) -> object:
    raise NotJSON(f"{name} is not a JSON number")


def loads(raw: bytes) -> object:
    """Decode one JSON document; ValueError (NotJSON for what Python alone accepts) if it is not."""
    document = json.loads(raw, parse_constant=_refuse_constant)
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise NotJSON("a \\u escape names half a character (a lone surrogate)") from None
    return document
