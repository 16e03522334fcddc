"""Where each sink name sent when last started (meta `sink_targets`), for telling that a name
now sends elsewhere, and the random salt (meta `sink_target_salt`) its fingerprints are keyed
with: a fingerprint of a URL or a command line made without one could be checked offline
against a guess of the secret in it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping

import aiosqlite

_READ = "SELECT key, value FROM meta WHERE key IN ('sink_targets', 'sink_target_salt')"
_WRITE = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


async def swap_targets(
    conn: aiosqlite.Connection, targets: Callable[[bytes], Mapping[str, str]]
) -> dict[str, str]:
    """Record `targets(salt)`, this store's salt given; return the targets recorded before.
    Run in a transaction. A store without a salt gets one, and forgets what it recorded
    without: those were made another way (an origin in clear), nothing to compare with."""
    meta = {r[0]: r[1] for r in await conn.execute_fetchall(_READ)}
    salt = meta.get("sink_target_salt")
    before: dict[str, str] = {}
    if salt is None:
        salt = secrets.token_hex(16)
        await conn.execute(_WRITE, ("sink_target_salt", salt))
    elif "sink_targets" in meta:
        before = json.loads(meta["sink_targets"])
    now = before | dict(targets(bytes.fromhex(salt)))
    await conn.execute(_WRITE, ("sink_targets", json.dumps(now)))
    return before
