"""Reading the config file and the secret files it names, bounded: a regular file (a symbolic
link to one will do) or, for the config, a pipe (`--config <(...)`), never more than a cap."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotReadHere(Exception):
    """A file of a kind not read here (a device, a directory, a FIFO) or larger than the cap;
    the message says which, without the path ("not a regular file", "larger than 64 KiB")."""


def read_bounded(path: Path, cap: int, *, pipes: bool = False) -> bytes:
    """Return the bytes of a regular file (symlinks followed) or, with `pipes`, a pipe or FIFO,
    of at most `cap` bytes; raise NotReadHere for anything else (opening a FIFO would wait for
    a writer, reading /dev/zero would never end), OSError when it cannot be read."""
    # Judged before it is opened (opening some devices acts), and again on what was opened.
    _judge(os.stat(path), cap, pipes)
    # Non-blocking, so that a FIFO nothing has open for writing opens at once and reads empty.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        _judge(info, cap, pipes)
        pipe = stat.S_ISFIFO(info.st_mode)
        if pipe:
            os.set_blocking(fd, True)  # a writer holds it: wait for what it writes
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, cap + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise NotReadHere(f"larger than {_size_text(cap)}")
        if pipe and not size:
            raise NotReadHere("a pipe nothing wrote to")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _judge(info: os.stat_result, cap: int, pipes: bool) -> None:
    if pipes and stat.S_ISFIFO(info.st_mode):
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotReadHere("not a regular file" + (" or a pipe" if pipes else ""))
    if info.st_size > cap:
        raise NotReadHere(f"larger than {_size_text(cap)}")


def _size_text(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 else f"{cap >> 10} KiB"
