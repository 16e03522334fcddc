"""The process's standard streams, and the files it is given to read (the config, its secret
files, `track --from-file`): a regular file or a pipe, never more than a cap."""

from __future__ import annotations

import io
import os
import re
import select
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from .exits import EX_OK, OutputError


def open_closed_standard_streams() -> None:
    """Put /dev/null on a standard descriptor the caller closed (cron jobs and daemonizers do).
    Left closed, the next file opened takes its number: the event loop's epoll became fd 2, the
    log lines were written into it, and libuv aborted the process."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:  # Python found it closed at start; kept for good
                stream = open(fd, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115
                setattr(sys, name, stream)


class _Stdout(io.TextIOWrapper):
    """Standard output whose failed writes are OutputError: the command says so in one line
    and exits 74, where an OSError out of `print` was taken for a bug (exit 70, a traceback).
    A closed pipe stays BrokenPipeError: the reader left, which is no failure."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from None

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from None


def _output_error(exc: OSError) -> OutputError:
    return OutputError(f"cannot write standard output: {exc.strerror}")


def report_failed_output() -> None:
    """Make sys.stdout raise OutputError when a write to it fails, but for a closed pipe."""
    stdout = sys.stdout
    if type(stdout) is not io.TextIOWrapper:
        return  # replaced by the caller (a test's buffer): its failures are its own
    try:
        fd = stdout.fileno()
    except (OSError, ValueError):
        return
    stdout.flush()
    # A second wrapper of the same descriptor; the first stays as sys.__stdout__, unused.
    sys.stdout = _Stdout(
        io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
        encoding=stdout.encoding,
        errors=stdout.errors,
        line_buffering=stdout.line_buffering,
        write_through=stdout.write_through,
    )


def output_written(command: Callable[[], int], *, failed: Callable[[OutputError], int]) -> int:
    """Run `command`, write out what it left in stdout's buffer, and return its exit code. A
    reader that left (`reconciler events | head`) ends it quietly with 0; output that cannot
    be written, with `failed(error)`. Then nothing more is written, not even at exit."""
    try:
        code = command()
        sys.stdout.flush()  # here, not at exit: a failed write is then this command's
        return code
    except (BrokenPipeError, OutputError) as exc:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK if isinstance(exc, BrokenPipeError) else failed(exc)


# How long a FIFO may wait for its first writer: one may open it a moment after the reader (a
# script that starts reconciler, then writes), but with none it would wait for ever. Once a
# writer holds it, its silence is no fault: `sops -d` waits on KMS or a PIN as long as it takes.
PIPE_WAIT_S = 5.0


# An open descriptor's path, as a shell's process substitution gives (/dev/fd/63) or /proc shows
# one (/proc/self/fd/0, /proc/thread-self/fd/0 once resolved: /proc/PID/task/TID/fd/0).
_FD_PATH = re.compile(r"/(?:dev|proc/(?:self|thread-self|[0-9]+)(?:/task/[0-9]+)?)/fd/[0-9]+")
# Linux follows at most this many links in one path (ELOOP beyond).
_MAX_LINKS = 40


def names_a_descriptor(path: str | Path) -> bool:
    """Whether `path` is, or leads through links to, an open descriptor's (`/dev/stdin`,
    `<(...)`'s /dev/fd/63, /proc/self/fd/0): what it reads is in no directory of its own."""
    here = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        # /dev/fd is itself a link (to /proc/self/fd): the directory is resolved, the name not.
        here = os.path.join(os.path.realpath(os.path.dirname(here)), os.path.basename(here))
        if _FD_PATH.fullmatch(here):
            return True
        try:
            target = os.readlink(here)
        except OSError:  # not a link (or not there): a file where it stands
            return False
        here = os.path.normpath(os.path.join(os.path.dirname(here), target))
    return False


class NotReadHere(Exception):
    """A file of a kind not read here (a device, a directory), larger than the cap or a pipe
    nothing wrote to; the message says which, without the path ("larger than 64 KiB")."""


def read_bounded(
    path: Path, cap: int, *, pipes: bool = False, pipe_wait_s: float = PIPE_WAIT_S
) -> bytes:
    """Return the bytes of a regular file (symlinks followed) or, with `pipes`, a pipe or FIFO,
    of at most `cap` bytes; raise NotReadHere for anything else (opening a FIFO would wait for
    a writer, reading /dev/zero would never end), OSError when it cannot be read. A FIFO no
    writer opens within `pipe_wait_s` is one nothing wrote to."""
    # Judged before it is opened (opening some devices acts), and again on what was opened.
    _judge(os.stat(path), cap, pipes)
    # Non-blocking, so that a FIFO nothing has open for writing opens at once.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        _judge(info, cap, pipes)
        if stat.S_ISFIFO(info.st_mode):
            return _read_pipe(fd, cap, pipe_wait_s)
        return _read_up_to(fd, cap)
    finally:
        os.close(fd)


def read_stdin_bounded(cap: int) -> bytes:
    """Return standard input, of at most `cap` bytes, else raise NotReadHere. Waits as long as
    the input takes: the operator's own terminal or pipe (`--from-file -`)."""
    data = sys.stdin.buffer.read(cap + 1)
    if len(data) > cap:
        raise NotReadHere(f"larger than {_size_text(cap)}")
    return data


def _read_up_to(fd: int, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, cap + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise NotReadHere(f"larger than {_size_text(cap)}")
    return b"".join(chunks)


def _read_pipe(fd: int, cap: int, wait_s: float) -> bytes:
    # Until a writer has opened the FIFO, a read says end of file at once, so poll() waits at
    # most `wait_s` for one; a read that would block says a writer holds it (an anonymous
    # pipe's has from the start), and from then on it is waited for as stdin is.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    size = 0
    writer = False
    while True:
        waited = not poller.poll(-1 if writer else wait_s * 1000)
        try:
            chunk = os.read(fd, cap + 1 - size)
        except BlockingIOError:
            writer = True
            continue
        if not chunk:
            if waited and not writer:
                raise NotReadHere(f"a pipe nothing wrote to for {wait_s:g} s")
            break
        writer = True
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise NotReadHere(f"larger than {_size_text(cap)}")
    if not size:
        raise NotReadHere("a pipe nothing wrote to")
    return b"".join(chunks)


def _judge(info: os.stat_result, cap: int, pipes: bool) -> None:
    if pipes and stat.S_ISFIFO(info.st_mode):
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotReadHere("not a regular file" + (" or a pipe" if pipes else ""))
    if info.st_size > cap:
        raise NotReadHere(f"larger than {_size_text(cap)}")


def _size_text(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 else f"{cap >> 10} KiB"
