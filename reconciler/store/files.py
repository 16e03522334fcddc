"""The files beside and of the database that are used without SQLite: the writer's lock file,
and the checks of the database file before SQLite opens it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from ..logs import fields
from ..paths import DATABASE, HISTORY, LOCK, SHM, WAL, beside
from .errors import HardLinked, WriterLockHeld, file_error
from .flocks import flocked
from .ranges import GETLK, SETLK, holder, holder_pid, lock_pid, lock_range, unlock_pid

T = TypeVar("T")

log = logging.getLogger("reconciler.store")


def made_by_a_demo(path: Path) -> bool:
    """Whether the SQLite file at `path` is a store `reconciler demo` made (its `meta` says so,
    `Store.mark_demo`), read as an immutable file: no lock taken, no WAL file made beside a
    store of yours. False for any file that cannot be read as one."""
    try:
        uri = path.resolve().as_uri() + "?immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return bool(conn.execute("SELECT 1 FROM meta WHERE key = 'demo'").fetchall())
    except (sqlite3.Error, OSError, ValueError):
        return False


def remove_store_files(path: Path) -> None:
    """Remove a store's database file, its WAL files and its history mark (history.py: kept,
    the next store there would be taken for this one restored); not its lock file: a writer may
    be about to take it."""
    for suffix in (DATABASE, WAL, SHM, HISTORY):
        beside(path, suffix).unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Unanswered(Generic[T]):
    """A store's writes (CCV submits, CCNow posts) left `sending`, as a reader finds them."""

    in_flight: tuple[T, ...]  # a running writer's: it records the provider's answer
    cut_off: tuple[T, ...]  # a stopped process's: the next writer's start settles them

    @classmethod
    def split(cls, left: tuple[T, ...], writing: bool) -> Unanswered[T]:
        """Split writes left `sending` by one answer of `writer_running`."""
        return cls(left, ()) if writing else cls((), left)


def writer_running(path: Path, *left: tuple[object, ...], database: int | None = None) -> bool:
    """Whether the writes of the store at `path` left `sending` (none: not asked) are a running
    writer's, not a stopped process's: every writer settles at its start those a stopped
    process left, so one still `sending` while a process holds the writer lock is that
    process's; with none holding it, it was cut off. The lock is asked, not taken: taking it,
    even for a moment, could make a writer's start fail. Asked once for all the lists a reader
    shows together: twice, a writer starting between would show one write its and another
    cut off. `database`: see `WriterLock.held`."""
    return any(left) and WriterLock(path).held(database)


class WriterLock:
    """An exclusive advisory lock on the database file and beside it: one writer per store.

    `connected`: this process has a connection to the database open while it asks for the lock
    (`track` settling a submit): the descriptor of the database the lock opens is closed by
    `close` alone, once that connection closed. Closing any descriptor of a file drops every
    POSIX lock the process holds on it, SQLite's own included (see `check_file`)."""

    def __init__(self, db_path: Path, *, connected: bool = False) -> None:
        # Beside the file itself, not beside a symbolic link to it: two configs naming one
        # database by two paths still get one writer.
        real = Path(os.path.realpath(db_path))
        self.db_path = real
        self.path = beside(real, LOCK)
        self.connected = connected
        self._fd: int | None = None
        self._db_fd: int | None = None

    def acquire(self, *, lock_file_only: bool = False) -> None:
        """Take the lock or raise WriterLockHeld at once; never waits. Two `flock` locks: the
        lock file's, which earlier releases take alone, and the database file's own, which
        follows the file, not its name: a lock file deleted under a running writer (taken for
        a stale one) or a hard link to the database under another name lets no second writer
        in. A database not there yet is made first, under the lock file's lock.
        `lock_file_only`: the first alone (a store's upgrade, against an earlier release)."""
        try:
            make_parents(self.path)
            fd = self._take_lock_file()
        except OSError as exc:
            raise file_error(f"cannot create lock file {self.path}", self.db_path, exc) from None
        try:
            if not lock_file_only:
                self._take_database()
            # What `held` asks: flock's lock cannot be asked about without taking it.
            lock_range(fd, SETLK, fcntl.F_WRLCK)
        except OSError as exc:
            os.close(fd)
            self._let_go_database()
            raise file_error(f"cannot lock file {self.path}", self.db_path, exc) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            self._let_go_database()
            os.close(fd)  # and the lock with it
            raise file_error(f"cannot write lock file {self.path}", self.db_path, exc) from None
        self._fd = fd

    def _take_lock_file(self) -> int:
        """Open and lock the lock file; return its descriptor. The file locked must still be
        the one at its path: deleted and made anew meanwhile, another writer may hold the new
        one, so it is opened again."""
        for _ in range(_LOCK_FILE_TRIES):
            fd = open_beside(self.path, self.db_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise self._held(int(holder) if holder.isdigit() else None) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                return fd
            os.close(fd)
        raise BlockingIOError(errno.EAGAIN, "deleted again at every try")

    def _take_database(self) -> None:
        """Lock the database file itself (`flock`'s lock and SQLite's POSIX ones are apart),
        through a descriptor kept open until `release` (or `close`, when `connected`)."""
        if self._db_fd is None:
            try:
                create_private(self.db_path)
                # Read-only and non-blocking: nothing written, and a FIFO there (refused by
                # the store's open) does not hang the start.
                self._db_fd = os.open(self.db_path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            except OSError as exc:
                raise file_error(f"cannot use database {self.db_path}", self.db_path, exc) from None
        try:
            fcntl.flock(self._db_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Its own lock file, which says the holder's process id, may be gone or another:
            # the database file's byte says it (none: an earlier release's holder).
            pid = holder_pid(self._db_fd)
            self._let_go_database()
            raise self._held(pid) from None
        try:
            lock_pid(self._db_fd)  # what `held` and a refusal ask when the lock file cannot say
        except BaseException:
            self._let_go_database()
            raise

    def _let_go_database(self) -> None:
        """Drop the database file's lock; its descriptor too, unless `connected`."""
        if self._db_fd is None:
            return
        if self.connected:
            unlock_pid(self._db_fd)
            fcntl.flock(self._db_fd, fcntl.LOCK_UN)
        else:
            os.close(self._db_fd)
            self._db_fd = None

    def refusal(self) -> WriterLockHeld:
        """The words of a refusal naming the process that holds the lock, as its lock file
        says (read, not locked)."""
        try:
            with open(self.path, "rb") as f:
                said = f.read(32).decode(errors="replace").strip()
        except OSError:
            said = ""
        return self._held(int(said) if said.isdigit() else None)

    def _held(self, pid: int | None) -> WriterLockHeld:
        return WriterLockHeld(
            f"store {self.db_path} is in use by another reconciler process"
            + (f" (pid {pid})" if pid is not None else ""),
            pid,
        )

    def release(self) -> None:
        """Release the lock (also released by the kernel when the process dies). The database
        file's first: a writer taking the lock file from then on finds the database free."""
        self._let_go_database()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Release the lock and close the database's descriptor (`connected`: once every
        connection of this process to the database closed)."""
        self.release()
        if self._db_fd is not None:
            os.close(self._db_fd)
            self._db_fd = None

    def held(self, database: int | None = None) -> bool:
        """Whether some process holds the lock (a writer is running), told without taking it:
        a reader that took it, even for a moment, could make a writer's start fail. Asked of
        the byte-range lock this release's writers hold beside it (GETLK takes nothing and
        answers on every file system), and of the flock an older release's holds alone.
        `database`: a descriptor of the database file (see `DatabaseFile`), whose byte is asked
        too: a writer whose lock file was deleted (taken for a stale one) holds it still."""
        if self._lock_file_held():
            return True
        if database is None:
            return False
        try:
            return holder(database)[0]
        except OSError:
            return True  # cannot be asked: taken as held, as the lock file's

    def _lock_file_held(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False  # no writer ever ran, or its lock file was deleted
        except OSError:
            return True  # not ours to read: taken as held, as the daemon's user holds it
        try:
            # A read lock conflicts with the writer's write lock, and needs only read access.
            return lock_range(fd, GETLK, fcntl.F_RDLCK) != fcntl.F_UNLCK or flocked(fd)
        except OSError:
            return True  # cannot be asked (ENOLCK on NFS): taken as held, as an unreadable file
        finally:
            os.close(fd)


class DatabaseFile:
    """A descriptor of the database file for asking its writer's lock (`WriterLock.held`),
    opened before this process's connections to the file and closed after them: closing any
    descriptor of a file drops every POSIX lock the process holds on it, SQLite's own included
    (see `check_file`). `fd` is None when the file cannot be opened (the lock file is asked
    alone)."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = None
        # A regular file alone (no device opened by a mistyped path), read-only and
        # non-blocking, as the writer lock opens it. A path this user cannot even look at (a
        # directory it may not search, a name too long) is the store's open to report (74),
        # not Path.is_file's OSError here (a traceback, 70).
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(path).st_mode):
                self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)

    def close(self) -> None:
        """Close the descriptor, once every connection of this process to the file closed."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def one_name(path: Path, *, locked: bool) -> None:
    """Unless this process holds the writer lock (`locked`), refuse to write the database file
    at `path` when the file has another name (a hard link): SQLite keeps the write-ahead log
    beside the name it is given, so a process using the other name (a daemon, or one killed
    with its log left) does not see this one's, and the two can lose writes or corrupt the
    file. Either name may be the one in use: both are refused. A symbolic link is resolved (by
    SQLite too), and safe. The writers holding the lock are kept apart by its database file's
    `flock`, which follows the file."""
    if not locked and os.stat(path).st_nlink > 1:
        raise HardLinked(
            f"database {path} has another name (a hard link): a process using that name keeps "
            "a write-ahead log of its own, so nothing is written through this one: name the "
            "store by one path and remove its other names (`find` with `-samefile` lists them)"
        )


# Opening the lock file again when it was deleted and made anew between its open and its lock.
_LOCK_FILE_TRIES = 3


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open at `fd`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


def store_exists(path: Path) -> bool:
    """Whether the database file is there: False only when it is not (nothing stored yet). Not
    knowing (a directory on the way this user may not search) is the store's file error (74),
    not an empty store: `orders` would show nothing, `untrack` remove nothing, both exit 0."""
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise file_error(f"cannot use database {path}", path, exc) from None
    return True


def check_file(path: Path, mode: int) -> None:
    """Raise OSError unless `path` is a regular file this process may open with `mode`.

    Never by opening it: closing any descriptor of a database file drops every POSIX lock this
    process holds on it, SQLite's own included (a daemon's second, read-only store did, and
    the next `reconciler track` took the daemon for gone and deleted its write-ahead log).
    """
    # os.stat, not Path.is_file(): that raises some errors (EACCES) and hides others (ELOOP).
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise IsADirectoryError(errno.EISDIR, "not a regular file")
    if not os.access(path, mode):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


def make_parents(path: Path, *, mode: int = 0o700) -> list[Path]:
    """Make the directories `path` goes in that are not there, each with `mode` whatever the
    umask (which only takes bits away: a umask of 000 left them world-writable, 077 kept a
    group's out), for this user alone unless `mode` says otherwise. A directory that was there
    keeps its mode; a new one keeps the setgid bit its parent gave it (a group's shared
    directory). A file in their way is "Not a directory", as opening a path under a file
    says, not mkdir's "File exists". Return the directories made, outermost first."""
    missing: list[Path] = []
    made: list[Path] = []
    parent = path.parent
    while True:
        try:
            found = parent.stat()
        except FileNotFoundError:
            if parent.parent == parent:
                raise
            missing.append(parent)
            parent = parent.parent
            continue
        if not stat.S_ISDIR(found.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        break
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not directory.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
            continue  # made meanwhile by another process: its mode is its maker's
        made.append(directory)
        inherited = stat.S_IMODE(directory.stat().st_mode) & stat.S_ISGID
        os.chmod(directory, mode | inherited)
    return made


def create_private(path: Path) -> None:
    """Create the database file and its directories unless they exist, for this user alone,
    not readable by others even for a moment. An existing file keeps the mode its operator gave
    it (a group shared with the service's user, a backup group's read): it is not opened (see
    `check_file`) nor changed (`warn_readable`)."""
    make_parents(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


def warn_readable(path: Path) -> None:
    """Say so when any user may read the database file (orders, references, the provider's
    answers), once per writer's open: its mode is the operator's to change."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & stat.S_IROTH:
        log.warning("store.world_readable", extra=fields(path=str(path), mode=f"{mode:04o}"))


def open_beside(path: Path, db_path: Path) -> int:
    """Open a file of the store beside its database for reading and writing, creating it as
    SQLite creates the -wal and -shm files: of the database file's mode whatever the umask and,
    made by root, of its owner and group (a root's run must leave no file the service's user
    cannot write), or for this user alone before the database exists."""
    try:
        db = os.stat(db_path)
    except FileNotFoundError:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = stat.S_IMODE(db.st_mode) & 0o666
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode & 0o600)
    except FileExistsError:
        return os.open(path, os.O_RDWR)
    try:
        # The mode first: root without CAP_FOWNER may change it only while the file is its own.
        os.fchmod(fd, mode)
        if os.geteuid() == 0:
            os.fchown(fd, db.st_uid, db.st_gid)
    except OSError:
        os.close(fd)
        raise
    return fd
