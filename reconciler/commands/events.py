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
from .paged import JsonList, Table
from .status_text import status_word
from .store_open import open_store

_COLUMNS = ("time", "type", "account", "order", "change", "severity", "undelivered")


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
    out = JsonList() if args.json else Table(_COLUMNS)
    if store is not None:
        try:
            pages = store.events.pages(
                since=args.since,
                type=args.type,
                undelivered=args.undelivered,
                sinks=frozenset(sink_names(config)),
            )
            async for page in pages:
                if isinstance(out, Table):
                    out.add([_row(e) for e in page])
                else:
                    objs = [json.loads(e.body) for e in page]
                    if args.undelivered:
                        for obj, e in zip(objs, page, strict=True):
                            obj["undelivered"] = list(e.undelivered)
                    out.add(objs)
                sys.stdout.flush()  # the page, now: a pipe's buffer would hold it back
        finally:
            await store.close()
    out.end()
    return EX_OK
