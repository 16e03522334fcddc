"""The CLI with one of its output streams on a pseudo-terminal, as run at a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import pty
import re
import struct
import termios
from collections.abc import Mapping
from typing import Literal

from reconciler import cli
from tests.conftest import _CONTEXT_STREAM, Result, _log_to, _stdin, cli_env, environ

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def call_cli_on_tty(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    tty: Literal["stdout", "stderr"],
) -> Result:
    """Run a command as `call_cli` does (in this process, through `cli.run`), with `tty` on a
    real terminal 100 columns wide (its text in that field of the result, line ends as "\\n")
    and the other stream on a string. On a terminal stderr, log lines go to that terminal, as
    they go to a process's stderr: the progress bars must keep them whole."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    reader = asyncio.get_running_loop().run_in_executor(None, _read_all, master)
    other = io.StringIO()
    try:
        with open(slave, "w", encoding="utf-8") as terminal:
            out, err = (terminal, other) if tty == "stdout" else (other, terminal)
            with (
                environ(env if env is not None else cli_env()),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                _stdin(b""),
                _log_to(err),
            ):
                code = await asyncio.to_thread(
                    cli.run,
                    [str(a) for a in args],
                    log_stream=_CONTEXT_STREAM if tty == "stdout" else None,
                )
        text = (await reader).decode().replace("\r\n", "\n")
    finally:
        os.close(master)
    if tty == "stdout":
        return Result(code, text, other.getvalue())
    return Result(code, other.getvalue(), text)
