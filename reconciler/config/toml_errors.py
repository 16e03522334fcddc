"""The key a TOML parser's error is about, read from the line it points at (tomllib's message
for a value set again, `Cannot overwrite a value (at line 4, column 20)`, names no key) or
from the names its message gives as a tuple (`Cannot declare ('store',) twice`)."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Final

_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_ASSIGNMENT = re.compile(rf"\s*({_DOTTED})\s*=")
_HEADER = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]")
# The messages naming a key as a tuple of its names: "Cannot declare ('a', 'b') twice".
_NAMED = re.compile(
    r"^Cannot (?:declare|mutate immutable namespace|redefine namespace) "
    r"(\((?:(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"),? ?)+\))"
)
_WHERE = re.compile(r"\(at (?:line (\d+), column \d+|end of document)\)$")
# What opens or closes where a line's text may be inside a value: strings (a multi-line one
# first), comments, arrays and inline tables.
_TOKEN = re.compile(r'"""|\'\'\'|"(?:[^"\\]|\\.)*"|\'[^\'\n]*\'|#.*|[\[\]{}]')
_CLOSE: Final[Mapping[str, re.Pattern[str]]] = {
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""'),
    "'''": re.compile(r"[^']*(?:'(?!'')[^']*)*'''"),
}


def toml_error(text: str, message: str) -> tuple[str, str]:
    """Return the config error's key and problem for tomllib's `message` about `text`: a value
    set again names its key (`ccv.api_key`, never its value, which may be a secret), and its
    table only when read from a header outside any string; a table declared again names the
    table (`store`, from "Cannot declare ('store',) twice", or `ccv` from the header `[[ccv]]`
    after `[ccv]`). "-" only where nothing can be named."""
    if (named := _NAMED.search(message)) is not None:
        return _dotted(named.group(1)), f"invalid TOML: {message}"
    where = _WHERE.search(message)
    if not message.startswith("Cannot overwrite a value") or where is None:
        return "-", f"invalid TOML: {message}"
    # Lines as tomllib counts them: at "\n" alone (splitlines would also break at U+2028 or
    # NEL inside a string or comment, and point at the wrong line's text).
    lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]
    number = int(where.group(1)) if where.group(1) else len(lines)
    line = lines[number - 1] if 0 < number <= len(lines) else ""
    table, outside = _table(lines[: max(number - 1, 0)])
    if not outside:
        # The line begins inside a value (the last line of a multi-line string or array set
        # twice): its text may look like a key or a header (`  ["ccv"]]`), or be a secret.
        return "-", f"invalid TOML: {message}"
    assignment = _ASSIGNMENT.match(line)
    if assignment is None:
        if (header := _HEADER.match(line)) is not None:
            key = ".".join(_parts(header.group(1)))
            return key, f"invalid TOML: {message}: a value set before would be overwritten"
        return "-", f"invalid TOML: {message}"
    key = ".".join(_parts(table or "") + _parts(assignment.group(1)))
    # Said as tomllib says it: `a = 1` then `a.b = 2` overwrites `a`, no key given twice.
    return key, f"invalid TOML: {message}: a value set before would be overwritten"


def _table(lines: list[str]) -> tuple[str | None, bool]:
    """The last table header of `lines`, read only from a line that starts outside every
    string, array and inline table (a multi-line string's text may look like a header), and
    whether the line after `lines` starts outside them too."""
    table, depth, inside = None, 0, ""
    for line in lines:
        if not inside and depth == 0 and (header := _HEADER.match(line)):
            table = header.group(1)
            continue
        rest = line + "\n"
        while rest:
            if inside:
                closed = _CLOSE[inside].match(rest)
                if closed is None:
                    break  # the string goes on past this line
                rest, inside = rest[closed.end() :], ""
                continue
            token = _TOKEN.search(rest)
            if token is None:
                break
            rest, word = rest[token.end() :], token.group()
            if word in _CLOSE:
                inside = word
            elif word in "[{":
                depth += 1
            elif word in "]}":
                depth -= 1
    return table, not inside and depth == 0


def _parts(dotted: str) -> list[str]:
    """The names of a dotted key, their quotes taken off (escapes in them kept as written)."""
    return [p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_PART, dotted)]


def _dotted(names: str) -> str:
    """A key tuple as tomllib writes it (`('a', 'b')`) as a dotted key (`a.b`)."""
    try:
        parts = ast.literal_eval(names)
    except (ValueError, SyntaxError):
        return "-"
    if not isinstance(parts, tuple) or not all(isinstance(p, str) for p in parts):
        return "-"
    return ".".join(parts) or "-"
