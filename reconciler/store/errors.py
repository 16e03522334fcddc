"""The store's errors, and the guard that turns "cannot use the file" SQLite errors into them."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..paths import SHM, beside
from .health import is_unusable, kind_of


class StoreError(Exception):
    """The database cannot be used (unreadable, newer schema, not a reconciler store)."""


class StoreLocked(StoreError):
    """Another process (a running daemon or catch-up) holds the store's writer lock, or keeps
    the database busy."""


class WriterLockHeld(StoreLocked):
    """The writer lock was refused: another process is the store's writer (nothing was done).
    `pid`: the holder's, as its lock file says (None when it says none)."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class HardLinked(StoreLocked):
    """The database file has another name (a hard link), and this command would write it
    without the writer lock: a process using the other name keeps a write-ahead log of its own
    (nothing was done). 75, as a store held elsewhere: that process may be running."""


class StoreFull(StoreError):
    """The file system holding the store has no space left: a temporary failure (exit 75),
    since space can be freed, not a damaged store (exit 74, which systemd does not restart)."""


def unusable_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """Return the one-line error for an SQLite failure on the database at `path`."""
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return StoreLocked(f"database {path} is busy: another process is writing it")
    if kind_of(exc, path) == "full":
        return StoreFull(f"cannot use database {path}: the disk is full ({exc})")
    if "readonly" in str(exc) and not os.access(path.parent, os.W_OK | os.X_OK):
        # SQLite's words alone point at the file, which may well be writable.
        return StoreError(
            f"cannot use database {path}: {exc} (this user may not write its directory "
            f"{path.parent}, where SQLite makes {path.name}-wal and {path.name}-shm)"
        )
    if "unable to open" in str(exc) and (why := _no_shm(path)):
        # A reader's (`status`): SQLite reads a store in WAL mode through its -shm file, and
        # says only that it cannot open the database when it cannot make that file.
        return StoreError(f"cannot use database {path}: {exc} ({why})")
    return StoreError(f"cannot use database {path}: {exc}")


def _no_shm(path: Path) -> str | None:
    """Why this user cannot make the database's -shm file (the system's words), None when
    it is there or nothing says it cannot."""
    real = Path(os.path.realpath(path))  # SQLite makes it beside a symbolic link's target
    shm = beside(real, SHM)
    if os.path.lexists(shm):
        return None
    try:
        read_only = bool(os.statvfs(real.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return None
    if not read_only and os.access(real.parent, os.W_OK | os.X_OK):
        return None
    reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
    return f"{reason}: SQLite cannot make {shm.name} in {real.parent}, which it needs to read it"


@contextlib.contextmanager
def named_unusable(path: Path) -> Iterator[None]:
    """Raise an SQLite error of the database at `path` that says it cannot be used as the
    one-line StoreError its guards make, for a command's statements outside them (a module's
    own read: the writes a stopped process left, read at every writer's start). An error of a
    statement itself (a constraint, a syntax error) is a bug, and stays what it is."""
    try:
        yield
    except sqlite3.Error as exc:
        if not is_unusable(exc):
            raise
        raise unusable_error(path, exc) from None


def file_error(what: str, db_path: Path, exc: OSError) -> StoreError:
    """Return the one-line error for an OSError on a file of the store (`what` names it)."""
    if kind_of(exc, db_path) == "full":
        return StoreFull(f"{what}: the disk is full ({exc.strerror})")
    return StoreError(f"{what}: {exc.strerror}")


class Guarded(Protocol):
    """What a guarded class has: a way to record a failure and name the file."""

    def unusable(self, exc: sqlite3.Error) -> StoreError: ...


_F = TypeVar("_F", bound=Callable[..., Any])
_C = TypeVar("_C", bound=type)


def _guard(method: _F) -> _F:
    @functools.wraps(method)
    async def guarded(self: Guarded, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if not is_unusable(exc):
                raise  # a bug in a statement, not a property of the file
            raise self.unusable(exc) from None

    return guarded  # type: ignore[return-value]


def guarded(cls: _C) -> _C:
    """Guard every public coroutine method of a store class: a corrupt file, a full disk or an
    I/O error is a StoreError naming the file wherever it is found, never a traceback."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _guard(member))
    return cls
