"""A second Ctrl-C while `reconciler ccv submit` lets a write already sent end: it interrupts the
stop (130) with no traceback, the submit left `sending` for the next start to make uncertain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, free_port, poll_until, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import api_toml

# Linux's number of the `write` system call, as /proc/PID/syscall names it.
WRITE_CALL = {"x86_64": 1, "aarch64": 64}.get(platform.machine())
FILL = b"\0"


def blocked_writing_stderr(pid: int) -> bool:
    """Whether process `pid`'s main thread waits in a write to its standard error: the call's
    number, then its first argument, the file descriptor (/proc/PID/syscall)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] == str(WRITE_CALL) and fields[1] == "0x2"


def can_see_system_calls() -> bool:
    try:
        return WRITE_CALL is not None and bool(Path("/proc/self/syscall").read_text())
    except OSError:
        return False


def fill(fd: int) -> None:
    """Write FILL to the non-blocking pipe end `fd` until the pipe holds no more."""
    for size in (4096, 1):
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(fd, FILL * size)


def read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def stored(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "reconciler.db")) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.skipif(not can_see_system_calls(), reason="needs Linux's /proc/PID/syscall")
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_a_second_ctrl_c_in_the_middle_of_the_stops_step_leaves_no_traceback(
    tmp_path: Path, loop: str
) -> None:
    # The second Ctrl-C raised its KeyboardInterrupt wherever the command was: in the middle of
    # the stop's own step (here its log line, held by a standard error nobody reads), it closed
    # the store and the session under the write still out, which then failed to record its
    # lost answer: "Task exception was never retrieved" and a traceback (2 runs in 6 on a
    # terminal; every run here, where the step is held until the signal came).
    async with FakeCCVWrites() as fake:
        fake.submit_hold = asyncio.Event()
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(free_port()))
        cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "30s"', 1))
        body = tmp_path / "order.json"
        body.write_text(json.dumps(submit_body(externalReference="ctrl-c-3")))
        err_r, err_w = os.pipe()
        # A file description of its own: non-blocking, it leaves the command's writes blocking.
        filler = os.open(f"/proc/self/fd/{err_w}", os.O_WRONLY | os.O_NONBLOCK)
        try:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "reconciler", "--config", str(cfg)),
                *("ccv", "submit", str(body)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err_w,
                env=cli_env(RECONCILER_EVENT_LOOP=loop),
            )
        finally:
            os.close(err_w)
        try:
            await poll_until(lambda: len(fake.submits) == 1, 60, "the submit at CCV")
            fill(filler)
            proc.send_signal(signal.SIGINT)
            # The stop's line, daemon.writes_in_flight, waits for room in the pipe.
            await poll_until(lambda: blocked_writing_stderr(proc.pid), 60, "the stop's line")
            proc.send_signal(signal.SIGINT)  # CCV still holds its answer
            os.close(filler)
            filler = -1
            err = await asyncio.wait_for(asyncio.to_thread(read_to_end, err_r), 60)
            returncode = await asyncio.wait_for(proc.wait(), 60)
        finally:
            fake.submit_hold.set()
            if filler != -1:
                os.close(filler)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            os.close(err_r)
        stderr = err.replace(FILL, b"").decode()
        assert returncode == 130, stderr
        assert "daemon.writes_in_flight" in stderr
        assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
        assert "unhandled" not in stderr, stderr
        # Cut off, the write is left as the process left it; the next writer's start makes
        # it uncertain (README: recorded before it is sent; uncertain when its answer is lost).
        assert stored(tmp_path, "SELECT state FROM submissions") == [("sending",)]
        result = await call_cli("--config", cfg, "catch-up")
        assert result.code == 0, result.stderr
        assert stored(tmp_path, "SELECT state FROM submissions") == [("uncertain",)]
