"""`reconciler status [--json]`: gather the status, then print it as JSON or as text."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..config import Config
from ..exits import EX_OK
from ..poller.unconfigured import warn_unconfigured, warn_unconfigured_sinks
from ..store import Store
from ..store.files import DatabaseFile
from .status_report import gather_status, to_json
from .status_text import render_text, use_colour


async def status_command(config: Config, args: argparse.Namespace) -> int:
    """Print the status; the store is opened read-only (a running daemon keeps writing)."""
    # Opened before the store and closed after it: a writer whose lock file was deleted is
    # still seen, by its lock on the database file.
    database = DatabaseFile(config.store_path)
    try:
        try:
            store: Store | None = await Store.open(config.store_path, readonly=True)
        except FileNotFoundError:
            store = None
        try:
            status = await gather_status(config, store, time.time(), database=database.fd)
        finally:
            if store is not None:
                await store.close()
    finally:
        database.close()
    warn_unconfigured(status.unconfigured)
    gone = {name: (n, oldest) for name, n, oldest, _ in status.unconfigured_sinks}
    since = {name: at for name, _, _, at in status.unconfigured_sinks if at is not None}
    warn_unconfigured_sinks(gone, config.keep_events_s, since, status.time)
    if args.json:
        print(json.dumps(to_json(status), indent=1, ensure_ascii=False))
    else:
        print(render_text(status, colour=use_colour(sys.stdout, os.environ)))
    return EX_OK
