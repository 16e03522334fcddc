"""The process's standard streams."""

from __future__ import annotations

import os
import sys


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
