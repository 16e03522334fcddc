"""The refusals to use a store this release has not upgraded yet while another process holds
it: a writer's (which would upgrade it) and a reader's (`status`, `orders`, `events`) say the
same, naming the holder."""

from __future__ import annotations

from pathlib import Path

from .errors import StoreError, StoreLocked
from .files import WriterLock


def upgrade_held(held: StoreLocked, why: str) -> StoreLocked:
    """The refusal to upgrade a store another process holds, a writer's and a reader's alike:
    the holder may be an older release, which only its restart makes give the store up (a
    `catch-up` would be refused as well), or this release's, upgrading it meanwhile."""
    return StoreLocked(
        f"{held}; this release must upgrade the store ({why}): if that process runs an older "
        "release, restart it, which upgrades the store; else try again in a moment"
    )


def not_upgraded(path: Path, why: str) -> StoreError:
    """The refusal of a reader (`status`, `orders`, `events`) to read a store this release has
    not upgraded yet: who upgrades it depends on whether another process holds it. The lock
    is asked, not taken (`writer_running`)."""
    lock = WriterLock(path)
    if lock.held():
        return upgrade_held(lock.refusal(), why)
    return StoreError(f"{why}; starting the daemon or `reconciler catch-up` upgrades it")
