"""Text from a provider made safe to print on a terminal.

A status word, a `source.failed` reason or an action's answer is the provider's text, kept as it
came. Printed raw, its escape sequences would drive the operator's terminal (clear the screen,
retitle the window, colour or hide what follows) and a bidi override would show a line in
another order than it reads. Every human output of such text passes through `shown`; `--json`
outputs stay JSON.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

# C0 controls, DEL, C1 controls; the bidi marks, embeddings, overrides and isolates; the line
# and paragraph separators that some terminals and editors break lines at.
_UNSAFE = (
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
)
_ESCAPES: Final[Mapping[int, str]] = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNSAFE
}


def shown(text: str) -> str:
    """Return `text` with every character that could drive a terminal written as an escape
    (ESC as `\\x1b`, RIGHT-TO-LEFT OVERRIDE as `\\u202e`); other text is left as it is."""
    return text.translate(_ESCAPES)


def width(text: str) -> int:
    """Return how many terminal cells `text` takes: two for a wide or full-width character (CJK,
    most emoji), none for a combining mark or a zero-width format character, else one."""
    # One cell each, as _cells has it: a lookup per character of every cell of `orders` or
    # `events` cost seconds over 100,000 rows.
    if text.isascii():
        return len(text)
    return sum(_cells(c) for c in text)


def columns(rows: Iterable[Sequence[str]]) -> list[int]:
    """Return the width in terminal cells of each column of a table's `rows` (of its widest
    cell): padded to these, the columns line up."""
    return [max(map(width, column)) for column in zip(*rows, strict=True)]


def padded(text: str, cells: int) -> str:
    """Return `text` followed by the spaces that make it `cells` cells wide (a table's column)."""
    return text + " " * max(cells - width(text), 0)


def _cells(char: str) -> int:
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 2
    # Combining and enclosing marks, and format characters (ZERO WIDTH SPACE, JOINER), but the
    # SOFT HYPHEN, which terminals show.
    if unicodedata.category(char) in ("Mn", "Me", "Cf") and char != "\u00ad":
        return 0
    return 1
