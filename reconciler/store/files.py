"""The files beside and of the database that are used without SQLite: the writer's lock file,
and the checks of the database file before SQLite opens it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .errors import WriterLockHeld, file_error

PROC_LOCKS = Path("/proc/locks")  # Linux: every file lock of the system, by device and inode


class WriterLock:
    """An exclusive advisory lock beside the database: one writer per store."""

    def __init__(self, db_path: Path) -> None:
        # Beside the file itself, not beside a symbolic link to it: two configs naming one
        # database by two paths still get one writer.
        real = Path(os.path.realpath(db_path))
        self.db_path = real
        self.path = real.with_name(real.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise WriterLockHeld at once; never waits."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise file_error(f"cannot create lock file {self.path}", self.db_path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise WriterLockHeld(
                f"store {self.path.with_suffix('')} is in use by another reconciler process"
                + (f" (pid {holder})" if holder else "")
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)  # and the lock with it
            raise file_error(f"cannot write lock file {self.path}", self.db_path, exc) from None
        self._fd = fd

    def release(self) -> None:
        """Release the lock (also released by the kernel when the process dies)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def held(self, locks: Path = PROC_LOCKS) -> bool:
        """Whether some process holds the lock (a writer is running), told without taking it:
        a reader that took it, even for a moment, could make a writer's start fail. On Linux
        from the kernel's table of locks (`locks`); elsewhere a shared lock is tried and let go
        at once."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # no writer ever ran
        try:
            table = locks.read_text()
        except OSError:
            return self._probe()
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:5310179 0 EOF" (a waiter's has "->" after "1:")
        file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        return any("FLOCK" in line.split() and file in line.split() for line in table.splitlines())

    def _probe(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return True  # not ours to read: taken as held, as the daemon's user holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # and the shared lock with it
        return False


def check_file(path: Path, mode: int) -> None:
    """Raise OSError unless `path` is a regular file this process may open with `mode`.

    Never by opening it: closing any descriptor of a database file drops every POSIX lock this
    process holds on it, SQLite's own included (a daemon's second, read-only store did, and
    the next `reconciler track` took the daemon for gone and deleted its write-ahead log).
    """
    if not path.is_file():
        raise IsADirectoryError(errno.EISDIR, "not a regular file")
    if not os.access(path, mode):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


def create_private(path: Path) -> None:
    """Create the database file unless it exists, never world-readable, not even for a moment
    (an existing one is not opened: see `check_file`)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
