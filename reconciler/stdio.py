"""The process's standard streams."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable

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
