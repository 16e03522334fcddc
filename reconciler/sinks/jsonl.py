"""The jsonl sink: one CloudEvent per line, appended and fsynced per delivered batch."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import JsonlSinkConfig
from ..store.files import make_parents
from .base import Cutoff, Delivered, DeliveryResult, OutboxEvent, RetryLater


def path_problem(path: Path, *, regular: bool = False) -> str | None:
    """Say why `path` is no place for the events (a directory, under a file, a loop of links),
    or None; `regular`: nor, when it exists, anything but a regular file (a database's path:
    not a device). The directories that do not exist yet are made at the first delivery;
    whether this user may write there is not asked: `check` may run as another user than the
    daemon."""
    # os.stat, not Path.exists(): that takes a loop of links (ELOOP) for a name not made yet.
    for candidate in (path, *path.parents):
        try:
            info = os.stat(candidate)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue  # not made yet, or under a file: the first one there says which
            if exc.errno in (errno.EACCES, errno.EPERM):
                return None  # a directory this user may not search: the daemon's user may
            # A name too long, a loop of links: no user can write there.
            return f"{path}: {exc.strerror or exc}"
        if candidate == path:
            if stat.S_ISDIR(info.st_mode):
                return f"{path} is a directory"
            if regular and not stat.S_ISREG(info.st_mode):
                return f"{path} is not a regular file"
            return None
        return None if stat.S_ISDIR(info.st_mode) else f"{candidate} is not a directory"
    return None


class JsonlSink:
    """Appends events to a file; a batch counts as delivered only once it is on disk (on a
    device: written; on a pipe: in it, a reader attached), within the sink's `timeout`: the
    file's data, and its entry and those of the directories made for it. `fsync`: os.fsync
    (a test passes one that notes what each call was for)."""

    def __init__(self, config: JsonlSinkConfig, *, fsync: Callable[[int], None] = os.fsync) -> None:
        self.name = config.name
        self.path = config.path
        self._timeout_s = config.timeout_s
        self._fsync = fsync
        # The directories whose entries (the file, a directory made for it) may not be on disk
        # yet: fsynced after the file, before a batch counts. The file's own at the first batch
        # of this process: one stopped between the file's fsync and its directory's may have
        # left its entry in memory only.
        self._unsynced = {self.path.parent: None}
        # The write under way, or the last one: a write that blocks (a full FIFO, a hung NFS
        # mount) cannot be stopped, and the next must not write beside it.
        self._writing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"JsonlSink(name={self.name!r})"

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        """Append the batch and fsync; one attempt for the whole batch: an OS error, the
        timeout or a cutoff that gives up on it confirms none of it."""
        data = b"".join(e.body + b"\n" for e in events)
        attempt = self._write(data)
        result = await (attempt if cutoff is None else cutoff.attempt(attempt))
        return [result] * len(events)

    async def _write(self, data: bytes) -> DeliveryResult:
        try:
            await asyncio.wait_for(self._write_in_turn(data), self._timeout_s)
        except asyncio.TimeoutError:  # first: on 3.11 it is an OSError too
            return RetryLater(f"cannot write {self.path}: timeout")
        except OSError as exc:
            return RetryLater(f"cannot write {self.path}: {exc.strerror or exc}")
        return Delivered()

    async def _write_in_turn(self, data: bytes) -> None:
        if self._writing is not None:
            # An earlier write that timed out may still block: this one waits its turn (that
            # write's outcome was told already, as a timeout).
            await asyncio.wait((self._writing,))
        self._writing = _in_thread(self.name, lambda: self._append(data))
        await asyncio.shield(self._writing)

    def _append(self, data: bytes) -> None:
        # Its group (a log shipper) may go in and read the file; only its user writes there.
        made = make_parents(self.path, mode=JSONL_DIRECTORIES)
        # An entry made is on disk once its directory is fsynced: each directory's made on the
        # way, and the file's (made again after a rotation moved it away, or a deletion).
        self._unsynced.update(dict.fromkeys(d.parent for d in made))
        fd, created = _open(self.path)
        if created:
            self._unsynced[self.path.parent] = None
        try:
            info = os.fstat(fd)
            regular, size = stat.S_ISREG(info.st_mode), info.st_size
            if regular and size and os.pread(fd, 1, size - 1) != b"\n":
                # A crash mid-write left a torn last line; never glue the next event onto it.
                data = b"\n" + data
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                _sync(fd, self._fsync, regular=regular)
                if regular:
                    self._sync_entries()
            except OSError:
                if regular:
                    # The batch is retried whole: what of it was written (a full disk stops a
                    # write half-way) must go, or the retry repeats events after a torn line.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def _sync_entries(self) -> None:
        # Each one once synced, so that a failure after some leaves the rest for the retry.
        for directory in list(self._unsynced):
            _sync_directory(directory, self._fsync)
            del self._unsynced[directory]

    async def close(self) -> None:
        """Nothing held open between batches (a write still blocked keeps its thread)."""


# The mode of the directories the sink makes on the way to its file (README, "The store's
# files").
JSONL_DIRECTORIES = 0o750


def _open(path: Path) -> tuple[int, bool]:
    """Open `path` to append to, made if not there; say whether it may have been made (it was
    not there just before). A FIFO is opened for writing only: opened read-write the sink is a
    reader of its own, a batch in the pipe's buffer counted delivered with no shipper attached,
    and the kernel dropped it when the sink closed the pipe."""
    try:
        fifo, missing = stat.S_ISFIFO(os.stat(path).st_mode), False
    except FileNotFoundError:
        fifo, missing = False, True
    if not fifo:
        # Read-write: the torn-line check reads a regular file's last byte.
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return fd, missing
        os.close(fd)  # a FIFO made between the stat and the open (a shipper starting)
    try:
        # Without O_NONBLOCK the open waits for a reader, beyond the sink's timeout.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "no reader on the pipe") from None
        raise
    # A write waits for the reader to make room (within the timeout), as on a file's disk.
    os.set_blocking(fd, True)
    return fd, False


# What an fsync says where there is nothing to flush.
_NOTHING_TO_SYNC = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)


def _sync(fd: int, fsync: Callable[[int], None], *, regular: bool) -> None:
    """fsync; on a pipe or a character device (a FIFO a log shipper reads, /dev/stdout in a
    container) the batch is delivered once written: there is nothing to flush (EINVAL), and
    nothing to take back, so failing it made each retry write every event again."""
    try:
        fsync(fd)
    except OSError as exc:
        if regular or exc.errno not in _NOTHING_TO_SYNC:
            raise


def _sync_directory(directory: Path, fsync: Callable[[int], None]) -> None:
    """fsync a directory, so that the entries made in it are on disk. A file system that cannot
    fsync a directory (EINVAL: some network and FUSE ones) keeps them as it keeps them."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    except OSError as exc:
        if exc.errno not in _NOTHING_TO_SYNC:
            raise
    finally:
        os.close(fd)


def _in_thread(name: str, work: Callable[[], None]) -> asyncio.Future[None]:
    """Run `work` on a daemon thread of its own (one per write, not per sink: a sink's writes
    take turns, so at most one of its threads is blocked); the future ends with it. Not the loop's
    executor: a write that never returns would keep the process from exiting (the executor's
    threads are waited for at exit), and would hold one of its few workers for ever."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: Exception | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def run() -> None:
        error: Exception | None = None
        try:
            work()
        except Exception as exc:  # handed to the loop, raised where the write is awaited
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while the write blocked
            loop.call_soon_threadsafe(settle, error)

    # An outcome nobody awaits any more (the write timed out) is not an error to report.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    threading.Thread(target=run, name=f"jsonl-{name}", daemon=True).start()
    return future
