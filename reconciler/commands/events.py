"""`events`: the event history, printed a page at a time as it is read."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..config import Config
from ..exits import EX_OK
from ..json_text import iso_time
from ..store.event_pages import StoredEvent
from ..terminal import columns, padded, shown
from .orders import open_store
from .status_text import status_word

_COLUMNS = ("time", "type", "account", "order", "change", "severity", "undelivered")


class _JsonList:
    """A JSON array written an element at a time: the text json.dumps(indent=1) makes of the
    whole list, without holding it."""

    def __init__(self) -> None:
        self._count = 0

    def add(self, obj: Any) -> None:
        # Inside JSON strings a line end is escaped: every "\n" of the text is a line of it.
        text = " " + json.dumps(obj, indent=1, ensure_ascii=False).replace("\n", "\n ")
        sys.stdout.write(("[\n" if not self._count else ",\n") + text)
        self._count += 1

    def end(self) -> None:
        print("\n]" if self._count else "[]")


class _Table:
    """A table printed by pages: each column as wide as its widest cell so far, so a later
    page may be wider than the ones above it, but no line waits for the whole history."""

    def __init__(self, cols: tuple[str, ...]) -> None:
        self._cols = cols
        self._widths: list[int] | None = None

    def add(self, rows: list[dict[str, Any]]) -> None:
        cells = [["-" if r[c] is None else shown(str(r[c])) for c in self._cols] for r in rows]
        lines = cells if self._widths is not None else [[c.upper() for c in self._cols], *cells]
        # Statuses, reasons and answers are the providers' text, kept as it came.
        widths = columns(lines)
        self._widths = [max(a, b) for a, b in zip(widths, self._widths or widths, strict=True)]
        for row in lines:
            print("  ".join(padded(v, w) for v, w in zip(row, self._widths, strict=True)).rstrip())

    def end(self) -> None:
        if self._widths is None:
            self.add([])  # the header alone


def _row(e: StoredEvent) -> dict[str, Any]:
    data = json.loads(e.body).get("data", {})
    change = status_word(data.get("status"), "-")
    if data.get("previous_status"):
        change = f"{status_word(data['previous_status'], '-')} -> {change}"
    return {
        "time": iso_time(e.time),
        "type": e.type,
        # With several accounts of a source, which one failed or recovered matters.
        "account": f"{data.get('source')}/{data.get('account')}",
        "order": e.order_id,
        "change": change if e.order_id else (data.get("reason") or "-"),
        "severity": e.severity,
        "undelivered": ",".join(e.undelivered) or None,
    }


async def events_command(config: Config, args: argparse.Namespace) -> int:
    """Print the event history as it is read, a page at a time: the first lines come at once
    (`events | head`), and memory holds one page of a history of any length."""
    from ..sinks import sink_names

    store = await open_store(config, readonly=True)
    out = _JsonList() if args.json else _Table(_COLUMNS)
    if store is not None:
        try:
            pages = store.events.pages(
                since=args.since,
                type=args.type,
                undelivered=args.undelivered,
                sinks=frozenset(sink_names(config)),
            )
            async for page in pages:
                if isinstance(out, _Table):
                    out.add([_row(e) for e in page])
                else:
                    for e in page:
                        obj = json.loads(e.body)
                        if args.undelivered:
                            obj["undelivered"] = list(e.undelivered)
                        out.add(obj)
                sys.stdout.flush()  # the page, now: a pipe's buffer would hold it back
        finally:
            await store.close()
    out.end()
    return EX_OK
