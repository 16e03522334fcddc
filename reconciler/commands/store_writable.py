"""Whether this user may write the store at a path, for `check`: every command that opens it
makes files beside the database (the writer's `.lock`, SQLite's -wal and -shm, at every open,
also a reader's), and a writer makes the database and the directories missing on its way; all
of them beside the file a symbolic link leads to, not beside the link. Asked with access(2) and
stat alone: `check` makes none of them."""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..logs import fields

log = logging.getLogger("reconciler.config")
# Asked as the user a command's opens are made as; where access(2) cannot, as the real one.
_EFFECTIVE = os.access in os.supports_effective_ids


@dataclass(frozen=True)
class Unwritable:
    """What keeps this user from writing the store: the database file, or the directory its
    files are made in (for directories still to make, the first one that is there)."""

    path: Path
    created: bool  # the database is not there yet: a writer would create it
    owner: int  # the uid owning `path`
    read_only: bool  # on a file system mounted read-only: no user may write it

    def refused(self, uid: int) -> bool:
        """Whether `check`, run as `uid`, refuses the store rather than warns: it is this user's
        own, or nobody may write it. One of another user's passes: `check` may run as another
        user than the daemon. Root too: one it may not write (an NFS export squashing root, no
        CAP_DAC_OVERRIDE) may be its owner's to write."""
        return self.read_only or uid == self.owner

    def problem(self, db: Path, uid: int) -> str:
        """Say what cannot be done with the store at `db`, and why."""
        verb = "create" if self.created else "write"
        if self.read_only:
            # systemd's sandbox (the units', `rctl`'s) mounts all but ReadWritePaths= read-only.
            return (
                f"cannot {verb} {db}: {self.path} is on a read-only file system (under systemd: "
                'one not in ReadWritePaths=, see README "Running commands by hand")'
            )
        return f"cannot {verb} {db}: {self.path} is not writable by this user (uid {uid})"


def unwritable(db: Path) -> Unwritable | None:
    """Return what keeps this user from writing the store at `db`, or None: also when a path on
    the way may not be looked at (a directory this user may not search: the daemon's user may)
    or is no directory (`check` says that before asking this)."""
    # Where the writer makes its lock file, and a database still to make (store/files.py
    # WriterLock), and SQLite its -wal and -shm: a link's own directory is not written. Named
    # as the config names it where that is the same directory (/var/lib/reconciler, a link).
    real = Path(os.path.realpath(db)).parent
    where = db.parent if Path(os.path.realpath(db.parent)) == real else real
    try:
        os.stat(db)
    except FileNotFoundError:
        directory = _first_there(where)
        return (
            None if directory is None else _unwritable(directory, os.W_OK | os.X_OK, created=True)
        )
    except OSError:
        return None
    for path, mode in [(db, os.R_OK | os.W_OK), (where, os.W_OK | os.X_OK)]:
        if (found := _unwritable(path, mode, created=False)) is not None:
            return found
    return None


def _first_there(directory: Path) -> Path | None:
    """The first of `directory` and its parents that is there, a directory; None when one on
    the way may not be looked at or is no directory."""
    for candidate in (directory, *directory.parents):
        try:
            info = os.stat(candidate)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                continue
            return None
        return candidate if stat.S_ISDIR(info.st_mode) else None
    return None


def _unwritable(path: Path, mode: int, *, created: bool) -> Unwritable | None:
    try:
        owner = os.stat(path).st_uid
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return None
    if not read_only and os.access(path, mode, effective_ids=_EFFECTIVE):
        return None
    return Unwritable(path, created=created, owner=owner, read_only=read_only)


def store_refusal(db: Path, uid: int) -> str | None:
    """What `check`, run as `uid`, says of the store at `db`: why it refuses it, or None, having
    logged one warning for one of another user's that this user may not write."""
    found = unwritable(db)
    if found is None:
        return None
    if found.refused(uid):
        return found.problem(db, uid)
    warn_unwritable(found, db, uid)
    return None


def this_user() -> int:
    """The uid the access is asked for."""
    return os.geteuid() if _EFFECTIVE else os.getuid()


def warn_unwritable(found: Unwritable, db: Path, uid: int) -> None:
    """Log one warning for a store this user may not write that is another user's: `check`
    passes it, the daemon's user may write it. Or the daemon runs as this user (a directory
    made by root and not given to it): the hint says what then."""
    log.warning(
        "config.store_not_writable",
        extra=fields(
            key="store.path",
            path=str(db),
            not_writable=str(found.path),
            owner=found.owner,
            uid=uid,
            hint=f"{found.problem(db, uid)}, owned by uid {found.owner}: a daemon running as "
            f"this user cannot use this store (give it {found.path}); if the daemon runs as "
            'another user, run check as that user (README "Running commands by hand")',
        ),
    )
