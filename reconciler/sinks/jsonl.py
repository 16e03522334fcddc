"""The jsonl sink: one CloudEvent per line, appended and fsynced per delivered batch."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

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
    """Appends events to a file; a batch counts as delivered only once it is on disk."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        """Append the batch and fsync; on an OS error nothing is confirmed (one write, too
        quick to be worth a cutoff)."""
        data = b"".join(e.body + b"\n" for e in events)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            reason = f"cannot write {self.path}: {exc.strerror or exc}"
            return [RetryLater(reason)] * len(events)
        return [Delivered()] * len(events)

    def _append(self, data: bytes) -> None:
        # Readable by those the umask lets read the file (its group: a log shipper).
        make_parents(self.path, mode=0o777)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A crash mid-write left a torn last line; never glue the next event onto it.
                data = b"\n" + data
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                # The batch is retried whole: what of it was written (a full disk stops a
                # write half-way) must go, or the retry repeats events after a torn line.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Nothing held open between batches."""
