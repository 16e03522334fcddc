"""The CLI with one of its output streams on a pseudo-terminal, as run at a terminal."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import sys
import termios
from collections.abc import Mapping
from typing import Literal

from tests.conftest import REPO, Result

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


async def run_cli_on_tty(
    *args: str | os.PathLike[str],
    env: Mapping[str, str],
    tty: Literal["stdout", "stderr"],
    timeout_s: float = 60.0,
) -> Result:
    """Run `python -m reconciler ARGS` with `tty` on a terminal 100 columns wide (its text in
    that field of the result, line ends as "\\n") and the other stream on a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            *map(str, args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=slave if tty == "stdout" else asyncio.subprocess.PIPE,
            stderr=slave if tty == "stderr" else asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=REPO,
        )
    finally:
        os.close(slave)
    try:
        reader = asyncio.get_running_loop().run_in_executor(None, _read_all, master)
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        text = (await asyncio.wait_for(reader, timeout_s)).decode().replace("\r\n", "\n")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
    assert proc.returncode is not None
    if tty == "stdout":
        return Result(proc.returncode, text, err.decode())
    return Result(proc.returncode, out.decode(), text)
