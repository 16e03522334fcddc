"""Output written a page at a time as it is read (`events`, `orders`): a JSON array or a
table, without holding the whole of it."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from ..terminal import columns, padded, shown


class JsonList:
    """A JSON array written a page of elements at a time: the text json.dumps(indent=1) makes
    of the whole list, without holding it."""

    def __init__(self) -> None:
        self._started = False

    def add(self, objs: list[Any]) -> None:
        if not objs:
            return
        # One dumps per page, not per element (a fresh encoder each took as long as the
        # encoding): the page's own array, but its brackets, is the whole list's middle.
        text = json.dumps(objs, indent=1, ensure_ascii=False)[2:-2]
        sys.stdout.write((",\n" if self._started else "[\n") + text)
        self._started = True

    def end(self) -> None:
        print("\n]" if self._started else "[]")


class Table:
    """A table printed by pages: each column as wide as its widest cell so far, so a later
    page may be wider than the ones above it, but no line waits for the whole output."""

    def __init__(self, cols: Sequence[str]) -> None:
        self._cols = tuple(cols)
        self._widths: list[int] | None = None

    def add(self, rows: list[dict[str, Any]]) -> None:
        cells = [["-" if r[c] is None else shown(str(r[c])) for c in self._cols] for r in rows]
        lines = cells if self._widths is not None else [[c.upper() for c in self._cols], *cells]
        # Statuses, reasons and answers are the providers' text, kept as it came.
        widths = columns(lines)
        self._widths = [max(a, b) for a, b in zip(widths, self._widths or widths, strict=True)]
        sys.stdout.write(
            "".join(
                "  ".join(padded(v, w) for v, w in zip(row, self._widths, strict=True)).rstrip()
                + "\n"
                for row in lines
            )
        )

    def end(self) -> None:
        if self._widths is None:
            self.add([])  # the header alone
