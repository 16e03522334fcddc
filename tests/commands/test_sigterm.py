"""SIGTERM to a command line (a script's `timeout`, a supervisor's stop): it ends as Ctrl-C
ends it, a write already sent let end (tests/writes/test_submit_crash.py), and then by the
signal itself; a command blocked before anything is under way (reading its config from a pipe
no one writes) ends at once, as it did before SIGTERM was handled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, free_port, poll_until, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, FakeCCV
from tests.server.test_api import api_toml

# x86-64 numbers of the calls a read of a pipe waits in: read(2), poll(2), select(2), pselect6,
# ppoll (the config reader waits for a FIFO's writer with a poll).
WAITING = {"0", "7", "23", "270", "271"}


def _blocked_in_read(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return bool(fields) and fields[0] in WAITING


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not Path("/proc/self/syscall").exists(),
    reason="reads x86-64 system call numbers in /proc/PID/syscall",
)
async def test_a_command_blocked_reading_its_config_from_a_pipe_ends_on_one_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "reconciler", "--config", "/dev/stdin", "status"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    try:
        # Past its imports, in the read of the config that never comes (a read of a module
        # file is over long before the next look).
        async def settled_in_read() -> bool:
            if not _blocked_in_read(proc.pid):
                return False
            await asyncio.sleep(0.2)
            return _blocked_in_read(proc.pid)

        deadline = time.monotonic() + 20
        while not await settled_in_read():
            assert time.monotonic() < deadline, "never blocked in its config's read"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGTERM
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    _, stderr = await proc.communicate()
    assert b"Traceback" not in stderr


# timeout(1)'s two SIGTERMs are microseconds apart; a test's are as far apart as this machine's
# load makes them, and past the command's 1 s window the second is a genuine second signal.
ECHO_GAP_MAX_S = 0.9


async def _submit_stopped_by_two_sigterms(directory: Path) -> tuple[float, int, str]:
    """Run `ccv submit` while CCV holds its answer, send it SIGTERM and, once it took that one,
    another; return the seconds between the two sends, its exit code and its stderr."""
    directory.mkdir()
    async with FakeCCVWrites() as fake:
        fake.submit_hold = asyncio.Event()
        cfg = write_config(directory, ccv=fake, extra=api_toml(free_port()))
        body = directory / "order.json"
        body.write_text(json.dumps(submit_body(externalReference="timeout-1")))
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "reconciler", "--config", str(cfg)),
            *("ccv", "submit", str(body)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(),
        )
        assert proc.stderr is not None
        await poll_until(lambda: len(fake.submits) == 1, 60, "the submit at CCV")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        err = b""
        # Sent once the first is taken (the kernel merges two that are both pending): its
        # first word is the stop waiting for the write.
        while b"daemon.writes_in_flight" not in err:
            line = await asyncio.wait_for(proc.stderr.readline(), 10)
            assert line, err.decode()
            err += line
        proc.send_signal(signal.SIGTERM)
        gap_s = time.monotonic() - sent
        fake.submit_hold.set()
        rest = await asyncio.wait_for(proc.stderr.read(), 15)
        code = await proc.wait()
    return gap_s, code, (err + rest).decode()


async def test_timeout_s_two_sigterms_are_one_stop(tmp_path: Path) -> None:
    # GNU `timeout` sends SIGTERM to the command, then to its process group, the command again:
    # the second counted as "a second SIGTERM kills at once", and the command died without its
    # line, the submit it let end left `sending` (uncertain at the next start).
    for attempt in ("first", "again"):
        gap_s, code, stderr = await _submit_stopped_by_two_sigterms(tmp_path / attempt)
        if gap_s < ECHO_GAP_MAX_S:
            break
    else:
        pytest.skip(
            f"a loaded machine: the two SIGTERMs were {gap_s:.2f} s apart at the second try, "
            "past timeout(1)'s echo; its window is not tested"
        )
    assert code == -signal.SIGTERM, stderr
    assert "reconciler: stopped by SIGTERM" in stderr, stderr
    with contextlib.closing(sqlite3.connect(tmp_path / attempt / "reconciler.db")) as conn:
        assert conn.execute("SELECT state FROM submissions").fetchall() == [("succeeded",)]


@pytest.mark.parametrize(("stop", "returncode"), [(signal.SIGTERM, -15), (signal.SIGINT, 130)])
async def test_sigterm_ends_a_catch_up_whose_passes_all_wait(
    tmp_path: Path, stop: signal.Signals, returncode: int
) -> None:
    # The catch-up asks every account at once: one SIGTERM ends every pass, none left running
    # (a pending task destroyed at exit says so on stderr), without waiting for the answers.
    # Ctrl-C too, on Python 3.10 as well (its asyncio.run let a KeyboardInterrupt out of the
    # loop, where 3.11's cancels the command).
    async with FakeCCV() as a, FakeCCV() as b:
        a.orders, b.orders = {"A-1": "Processing"}, {"B-1": "Processing"}
        a.hold, b.hold = asyncio.Event(), asyncio.Event()
        cfg = tmp_path / "reconciler.toml"
        accounts = [
            f'[[ccv]]\nname = "{name}"\nbase_url = "{fake.base_url}"\napi_key = "{CCV_KEY}"\n'
            'timeout = "60s"\nretries = 0\n'
            for name, fake in (("a", a), ("b", b))
        ]
        cfg.write_text(
            f'[store]\npath = "{tmp_path / "reconciler.db"}"\n'
            + "".join(accounts)
            + f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "events.jsonl"}"\n'
        )
        cfg.chmod(0o600)
        for name, order in (("a", "A-1"), ("b", "B-1")):
            tracked = await call_cli("--config", cfg, "track", "ccv", "--account", name, order)
            assert tracked.code == 0, tracked.stderr
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "reconciler", "--config", str(cfg), "catch-up"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(),
        )
        try:
            await a.wait_until(lambda: a.in_flight == 1, 20)
            await b.wait_until(lambda: b.in_flight == 1, 20)
            proc.send_signal(stop)
            # Within 10 s: neither answer comes, and each may take 60 s.
            _, err = await asyncio.wait_for(proc.communicate(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    stderr = err.decode()
    assert proc.returncode == returncode, stderr
    assert stderr.count("stopped by SIGTERM") == (stop == signal.SIGTERM), stderr
    assert "Task was destroyed" not in stderr and "Traceback" not in stderr, stderr
    assert [len(a.requests), len(b.requests)] == [1, 1]
