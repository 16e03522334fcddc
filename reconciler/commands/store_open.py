"""Opening the store for a command that reads it: one creates none; a remark only peeks.

Their own module: `events` and `check` open the store as `orders` does without loading the
bodies of `track`, `untrack` and `orders`."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence

from ..config import Config
from ..store import Store, StoreError
from ..store.files import store_exists


async def open_store(
    config: Config, *, readonly: bool = False, sinks: Sequence[str] = ("log",)
) -> Store | None:
    """Open the store, or None when it does not exist yet (nothing tracked): a command that
    reads or removes orders creates none (a mistyped path made its directory and an empty
    database)."""
    if not store_exists(config.store_path):
        return None
    try:
        return await Store.open(config.store_path, readonly=readonly, sinks=sinks)
    except FileNotFoundError:
        return None


@contextlib.asynccontextmanager
async def peek_store(config: Config) -> AsyncIterator[Store | None]:
    """The store opened read-only for a side remark (a warning, a hint), or None when it cannot
    be read for any reason: missing, unreadable to this user, a directory, not upgraded yet.
    The commands whose work is the store report those themselves."""
    try:
        store = await open_store(config, readonly=True)
    except (StoreError, sqlite3.Error, OSError):
        store = None
    try:
        yield store
    finally:
        if store is not None:
            await store.close()
