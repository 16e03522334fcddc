"""When a write fails under a command: a full disk at the start of `run` or `catch-up` (a real
tmpfs, filled), stdout that cannot be written (/dev/full), and the plain stderr lines that say
why under journald. Processes of their own: exit codes and streams are what is tested."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sources.ccv import PROBE_ORDER_ID
from reconciler.store.health import kind_of
from tests.commands.test_cli import _stderr_to_file
from tests.conftest import REPO, assert_one_line, call_cli, cli_env, run_cli, write_config
from tests.fake_providers import FakeCCNow, FakeCCV, Reply

ORDER = "0b7c1f3e-0000-4000-8000-000000000001"
SECRET = "receiver-secret-0123456789abcdef"


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at `where`; the test is skipped where mounting is not permitted."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system has no space left; return it."""
    filler = directory / f"filler-{uuid.uuid4().hex[:8]}"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    assert shutil.disk_usage(directory).free == 0
    return filler


async def test_a_full_disk_at_start_is_a_temporary_failure_naming_the_file(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fake_ccv.orders = {ORDER: "New"}
    disk = small_tmpfs(tmp_path / "disk")
    with disk as mounted:
        db = mounted / "reconciler.db"
        cfg = write_config(tmp_path, ccv=fake_ccv)
        cfg.write_text(cfg.read_text().replace(str(tmp_path / "reconciler.db"), str(db)))
        assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
        fillers = [fill(mounted)]
        # The lock file is there from the track: SQLite finds no space (for its -shm index).
        # `catch-up` through the console script's entry in this process, `run` as a process.
        for command, runs in (("catch-up", call_cli), ("run", run_cli)):
            result = await runs("--config", cfg, command)
            # 75, not 74: the unit's RestartPreventExitStatus=74 kept it failed after space was
            # freed.
            assert_one_line(result, 75, str(db), "the disk is full")
        # A new lock file cannot take the process id.
        (mounted / "reconciler.db.lock").unlink()
        fillers.append(fill(mounted))
        for command, runs in (("catch-up", call_cli), ("run", run_cli)):
            result = await runs("--config", cfg, command)
            assert_one_line(result, 75, f"{db}.lock", "the disk is full")
        # Space comes back: the same command goes through.
        for filler in fillers:
            filler.unlink()
        result = await call_cli("--config", cfg, "catch-up")
        assert result.code == 0, result.stderr


def _io_error(name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorname = name  # type: ignore[attr-defined]  # as SQLite names it
    return exc


def test_an_io_error_is_a_full_disk_only_while_no_space_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "reconciler.db"
    grow = _io_error("SQLITE_IOERR_SHMSIZE")  # what a start on a full disk meets
    read = _io_error("SQLITE_IOERR_READ")
    denied = PermissionError(errno.EACCES, "Permission denied")
    assert kind_of(OSError(errno.ENOSPC, "No space left on device"), db) == "full"
    assert kind_of(grow, db) == "io"
    assert kind_of(sqlite3.OperationalError("database or disk is full")) == "full"
    usage = shutil.disk_usage(tmp_path)
    full = os.path.realpath(tmp_path)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda d: usage._replace(free=4096 if str(d) == full else 10**12)
    )
    assert kind_of(grow, db) == "full"
    # Python 3.10 names no SQLite error: its words say it.
    assert kind_of(sqlite3.OperationalError("disk I/O error"), db) == "full"
    # Not every failure beside a full disk is for want of space: a read, a damaged device, a
    # permission.
    assert kind_of(read, db) == "io"
    assert kind_of(OSError(errno.EIO, "Input/output error"), db) == "io"
    assert kind_of(denied, db) == "io"
    assert kind_of(sqlite3.DatabaseError("database disk image is malformed"), db) == "corrupt"
    assert kind_of(grow) == "io"  # no file named: nothing known of its disk
    # Named through a symbolic link elsewhere: the disk of the file itself counts.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link.db").symlink_to(db)
    assert kind_of(grow, tmp_path / "elsewhere" / "link.db") == "full"


async def _to_dev_full(*args: str, env: dict[str, str]) -> tuple[int, str]:
    with open("/dev/full", "wb") as full:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            *args,
            stdout=full,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
async def test_output_that_cannot_be_written_is_one_line_and_exit_74(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(
        tmp_path,
        ccv=fake_ccv,
        extra='[receiver]\nlisten = "127.0.0.1:1"\npublic_url = "http://127.0.0.1:1"\n',
    )
    env = cli_env(RECONCILER_RECEIVER_SECRET=SECRET)
    fake_ccv.orders = {ORDER: "New"}
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER, env=env)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", env=env)).code == 0
    for command in (
        ["status"],
        ["status", "--json"],
        ["orders"],
        ["events"],
        ["notification-url", "ccv", "--order", ORDER],
        ["--version"],
    ):
        code, err = await _to_dev_full("--config", str(cfg), *command, env=env)
        assert code == 74, (command, err)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        (line,) = err.strip().splitlines()
        assert line == "reconciler: cannot write standard output: No space left on device"


async def test_a_reader_that_leaves_is_still_no_failure(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    # Kept as it was: output far beyond what a pipe holds, and `| head -1`.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    ids = "".join(f"0b7c1f3e-0000-4000-8000-{n:012d}\n" for n in range(3000))
    tracked = await call_cli(
        "--config", cfg, "track", "ccv", "--from-file", "-", stdin=ids.encode()
    )
    assert tracked.code == 0, tracked.stderr
    command = f'"{sys.executable}" -m reconciler --config "{cfg}" orders | head -1'
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command + "; exit ${PIPESTATUS[0]}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, err, len(out.splitlines())) == (0, b"", 1)


async def test_why_a_check_or_an_action_stopped_has_a_journal_priority(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(401, '{"message": "no"}', "application/json")
    lines = await _stderr_to_file(tmp_path, "self", "--config", str(cfg), "check", "--online")
    assert "<3>ccv/default: credentials refused (http 401)" in lines, lines
    fake_ccv.replies[PROBE_ORDER_ID] = Reply(503, "busy", "text/plain")
    lines = await _stderr_to_file(tmp_path, "self", "--config", str(cfg), "check", "--online")
    assert any(line.startswith("<4>ccv/default: unavailable (") for line in lines), lines
    assert all(line.startswith(("<3>", "<4>", "<6>")) for line in lines), lines

    a, b = "396-10-1142", "397-10-1159"
    fake_ccnow.orders = {a: "pending", b: "completed"}
    assert (await call_cli("--config", cfg, "track", "ccnow", a, b)).code == 0
    assert (await call_cli("--config", cfg, "catch-up", "--source", "ccnow")).code == 0
    lines = await _stderr_to_file(tmp_path, "self", "--config", str(cfg), "ccnow", "ship", a)
    assert "<6>reconciler: ccnow ship: sent 1, done 1, refused 0, uncertain 0, queued 0" in lines
    assert all(line.startswith(("<3>", "<4>", "<6>")) for line in lines), lines
    # Refused (the order is past pending): `journalctl -p err` shows the summary.
    lines = await _stderr_to_file(tmp_path, "self", "--config", str(cfg), "ccnow", "cancel", b)
    assert "<3>reconciler: ccnow cancel: sent 0, done 0, refused 1, uncertain 0, queued 0" in lines
    # Plain lines where the variable names another stream.
    lines = await _stderr_to_file(tmp_path, "8:1234", "--config", str(cfg), "ccnow", "ship", a)
    assert any(line.startswith("reconciler: ccnow ship:") for line in lines), lines
