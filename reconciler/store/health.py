"""Whether the database can be used: what kind of SQLite failure an error is, and the store's
health as the daemon reports it (one line when it starts failing, one when it recovers).

A full disk or an I/O error may pass (space is freed, the device comes back): the store is
"failing" until the next write succeeds, and the daemon keeps trying. A corrupt file does not
heal: the daemon stops with exit 74 (see `Daemon`), so that systemd shows the unit failed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ..logs import fields
from ..paths import WAL, beside

log = logging.getLogger("reconciler.store")

Kind = Literal["corrupt", "full", "busy", "io", "gone"]

# Result code names (sqlite3 errors carry them from Python 3.11 on) and, for older Pythons,
# the words of SQLite's messages for the same codes.
_KINDS: Final[Mapping[str, Kind]] = {
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "corrupt",
    "SQLITE_FULL": "full",
    "SQLITE_BUSY": "busy",
    "SQLITE_LOCKED": "busy",
}
_MESSAGES: tuple[tuple[str, Kind], ...] = (
    ("malformed", "corrupt"),
    ("not a database", "corrupt"),
    ("is full", "full"),
    ("is locked", "busy"),
)


# An I/O error with less free space than this left is a full disk: SQLite reports a write that
# found no space as SQLITE_IOERR, not SQLITE_FULL, when it grows its shared-memory index
# (SQLITE_IOERR_SHMSIZE: a start on a full disk), and what such a write needs is this small.
NEARLY_FULL_BYTES = 1 << 20
# The I/O errors of writes that take space (SQLite maps ENOSPC of a plain write to SQLITE_FULL).
_GROWING = frozenset(
    {"SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_SHMMAP", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_TRUNCATE"}
)


def kind_of(exc: sqlite3.Error | OSError, path: Path | None = None) -> Kind:
    """Return what an SQLite error, or an OSError on one of the store's files, says about the
    database file; with the database's `path`, an I/O error while its file system has (all but)
    no space left is "full": space can come back, a damaged device does not heal by itself."""
    if isinstance(exc, OSError):
        return "full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io"
    kind = _sqlite_kind(exc)
    if kind != "io":
        return kind
    # Only an error of a write that needs space, not a read or a missing permission or file,
    # which a full disk may happen to be beside: a damaged device on a full disk stays "io".
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11 on; before, only the words
    growing = name in _GROWING if isinstance(name, str) else "disk I/O error" in str(exc)
    if growing and path is not None and _no_space_left(path):
        return "full"
    return "io"


def _sqlite_kind(exc: sqlite3.Error) -> Kind:
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str):
        for prefix, kind in _KINDS.items():
            if name == prefix or name.startswith(prefix + "_"):
                return kind
    text = str(exc)
    return next((kind for words, kind in _MESSAGES if words in text), "io")


def _no_space_left(path: Path) -> bool:
    try:
        # Beside the file itself: SQLite follows a symbolic link, its -wal and -shm too.
        return shutil.disk_usage(Path(os.path.realpath(path)).parent).free < NEARLY_FULL_BYTES
    except OSError:
        return False  # the directory cannot be asked: nothing known about its space


# SQLite's words for the result codes, but SQLITE_ERROR, that Python raises as OperationalError
# (a lock may name its table after them), and Python's own for a text that is not UTF-8 (damage:
# the store writes Python strings; no result code name on 3.11 either). Without a result code
# name (Python 3.10), any other OperationalError is SQLITE_ERROR, whose words are many: a
# statement's own fault.
_NOT_THE_STATEMENTS = (
    "access permission denied",  # SQLITE_PERM
    "query aborted",  # SQLITE_ABORT
    "abort due to ROLLBACK",
    "database is locked",  # SQLITE_BUSY
    "database table is locked",  # SQLITE_LOCKED
    "database schema is locked",
    "attempt to write a readonly database",  # SQLITE_READONLY
    "interrupted",  # SQLITE_INTERRUPT
    "disk I/O error",  # SQLITE_IOERR
    "database or disk is full",  # SQLITE_FULL
    "unable to open database",  # SQLITE_CANTOPEN ("... file"; ATTACH's: "...: PATH")
    "locking protocol",  # SQLITE_PROTOCOL
    "database schema has changed",  # SQLITE_SCHEMA
    "Could not decode to UTF-8 column",  # Python's (3.10-3.12), raised as OperationalError
)


def is_unusable(exc: BaseException) -> bool:
    """Whether an exception says the database cannot be used, rather than that a statement is
    wrong (SQLITE_ERROR: no such table, a syntax error; a constraint; a misuse)."""
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(
        exc, (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError)
    ):
        return False
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11 on
    if isinstance(name, str) or not isinstance(exc, sqlite3.OperationalError):
        return name != "SQLITE_ERROR"  # other classes: corrupt, not a database, too big, ...
    return str(exc).startswith(_NOT_THE_STATEMENTS)


def _identity(path: Path) -> tuple[int, int] | None:
    """The device and inode a path names, None when it names nothing."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def file_size(path: Path) -> int:
    """Return the bytes of a database file and its write-ahead log."""
    wal = beside(path, WAL)
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


@dataclass(frozen=True, slots=True)
class Episode:
    """One time the store could not be used; `until` is None while it lasts."""

    since: float
    error: str
    kind: Kind
    until: float | None = None


class StoreHealth:
    """The health of one store as its users saw it: failing from the first failed statement
    until the next committed write. Silent until `watch`ed (a command reports its failure as
    its exit status instead)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        stat: Callable[[Path], os.stat_result] = os.stat,
    ) -> None:
        self.path = path
        self.clock = clock
        self._stat = stat
        self.current: Episode | None = None
        self.last: Episode | None = None  # the latest episode that ended
        # The file the store opened (made just after opening): its path must go on naming it.
        self._file = _identity(path)
        self._watching = False
        self._on_corrupt: Callable[[], None] = lambda: None
        # Called when an episode starts or ends (the daemon's systemd Status: line).
        self.on_change: Callable[[], object] = lambda: None

    @property
    def failing(self) -> bool:
        """True from a failed statement until the next committed write."""
        return self.current is not None

    def watch(self, *, on_corrupt: Callable[[], None]) -> None:
        """Log each change of health, and call `on_corrupt` when the file turns out damaged."""
        self._watching = True
        self._on_corrupt = on_corrupt

    def failed(self, exc: sqlite3.Error) -> Kind:
        """Record a failed statement; return its kind."""
        kind = kind_of(exc, self.path)
        if kind == "busy":
            return kind  # another process writes: a wait, not a failure of the store
        if self.current is None or (kind == "corrupt" and self.current.kind != "corrupt"):
            self.current = Episode(self.clock(), str(exc), kind)
            if self._watching:
                log.error(
                    "store.failing",
                    extra=fields(store=str(self.path), kind=kind, error=str(exc)),
                )
            self.on_change()
        if kind == "corrupt":
            self._on_corrupt()
        return kind

    def check_file(self) -> None:
        """Start a `gone` episode when the store's path no longer names the open file (its
        directory deleted, the file moved or replaced): every write would go into a file that
        nothing reads, and the next `catch-up` would make a fresh store beside it. It ends
        when the path names the file again. Another kind's episode under way (a full disk)
        stays as it is: neither replaced nor ended by the file's coming back."""
        gone = None if self._file is None else self._gone(self._file)
        if gone and self.current is None:
            error = f"database file {self.path} is gone (removed or replaced while in use)"
            self.current = Episode(self.clock(), error, "gone")
            if self._watching:
                log.error(
                    "store.failing", extra=fields(store=str(self.path), kind="gone", error=error)
                )
            self.on_change()
        elif gone is False and self.current is not None and self.current.kind == "gone":
            self._ended(self.current)

    def _gone(self, file: tuple[int, int]) -> bool | None:
        """True when the path names nothing (ENOENT, ENOTDIR) or another file; None when a
        stat fails otherwise (ESTALE, EIO on a network mount): that tells neither way."""
        try:
            st = self._stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return True
        except (OSError, ValueError):
            return None
        return (st.st_dev, st.st_ino) != file

    def committed(self) -> None:
        """Record a committed write: a failure episode ends, but that of a store gone."""
        self.check_file()
        episode = self.current
        if episode is None or episode.kind == "gone":
            return
        self._ended(episode)

    def _ended(self, episode: Episode) -> None:
        now = self.clock()
        self.current, self.last = None, Episode(episode.since, episode.error, episode.kind, now)
        if self._watching:
            log.info(
                "store.recovered",
                extra=fields(
                    store=str(self.path),
                    kind=episode.kind,
                    failing_for_s=round(now - episode.since, 3),
                ),
            )
        self.on_change()
