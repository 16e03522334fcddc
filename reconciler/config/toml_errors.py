"""The key a TOML parser's error is about, read from the line it points at: tomllib's message
for a key given twice names no key (`Cannot overwrite a value (at line 4, column 20)`)."""

from __future__ import annotations

import re

_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_ASSIGNMENT = re.compile(rf"\s*({_DOTTED})\s*=")
_HEADER = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]")
_WHERE = re.compile(r"\(at (?:line (\d+), column \d+|end of document)\)$")


def toml_error(text: str, message: str) -> tuple[str, str]:
    """Return the config error's key and problem for tomllib's `message` about `text`: a value
    given twice names its key (`ccv.api_key`, never its value, which may be a secret)."""
    where = _WHERE.search(message)
    if not message.startswith("Cannot overwrite a value") or where is None:
        return "-", f"invalid TOML: {message}"
    lines = text.removeprefix("\ufeff").splitlines()
    number = int(where.group(1)) if where.group(1) else len(lines)
    before = lines[: max(number - 1, 0)]
    assignment = _ASSIGNMENT.match(lines[number - 1]) if 0 < number <= len(lines) else None
    if assignment is None:
        return "-", f"invalid TOML: {message}"
    table = next((h.group(1) for line in reversed(before) if (h := _HEADER.match(line))), None)
    key = ".".join(_parts(table or "") + _parts(assignment.group(1)))
    return key, f"invalid TOML: {message}: the key is given twice"


def _parts(dotted: str) -> list[str]:
    """The names of a dotted key, their quotes taken off (escapes in them kept as written)."""
    return [p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_PART, dotted)]
