"""The store's files as an operator sets them up: the modes a writer leaves, a state directory
it may not write, a history mark it has to make again. Real files, the CLI in its own process
where the exit and the user matter."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Result, call_cli, cli_env, write_config
from tests.fake_providers import FakeCCV

ORDER = "a1b2c3d4-0000-4000-8000-000000000001"

# Root writes any file and directory, and changes any file's mode, through these capabilities;
# without them it meets the modes as any other user does.
_AS_A_USER = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)


async def _run(*args: str | os.PathLike[str], unprivileged: bool = False) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *(_AS_A_USER if unprivileged else []),
        sys.executable,
        "-m",
        "reconciler",
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _messages(result: Result, message: str) -> list[dict[str, object]]:
    return [line for line in result.log_lines() if line["message"] == message]


async def _store_with_an_event(tmp_path: Path, fake_ccv: FakeCCV) -> Path:
    fake_ccv.orders = {ORDER: "Processing"}
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    return cfg


async def test_a_new_stores_files_are_its_users_alone(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    await _store_with_an_event(tmp_path, fake_ccv)
    db = tmp_path / "reconciler.db"
    for path in (db, tmp_path / "reconciler.db-history", tmp_path / "reconciler.db.lock"):
        assert _mode(path) == 0o600, path


async def test_an_operators_mode_of_the_database_is_kept(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    cfg = await _store_with_an_event(tmp_path, fake_ccv)
    db = tmp_path / "reconciler.db"
    db.chmod(0o640)  # a backup group's read
    result = await call_cli("--config", cfg, "catch-up")
    assert result.code == 0, result.stderr
    assert _mode(db) == 0o640  # was 0600 again
    assert not _messages(result, "store.world_readable")
    db.chmod(0o644)
    result = await call_cli("--config", cfg, "track", "ccv", ORDER)
    assert result.code == 0, result.stderr
    assert _mode(db) == 0o644
    [line] = _messages(result, "store.world_readable")
    assert line["path"] == str(db) and line["mode"] == "0644"


async def test_the_files_a_writer_makes_beside_a_shared_database_take_its_mode(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = await _store_with_an_event(tmp_path, fake_ccv)
    db = tmp_path / "reconciler.db"
    for suffix in ("-history", ".lock"):
        (tmp_path / f"reconciler.db{suffix}").unlink()
    db.chmod(0o660)  # shared with the service's user by its group
    old = os.umask(0o077)
    try:
        result = await call_cli("--config", cfg, "catch-up")
    finally:
        os.umask(old)
    assert result.code == 0, result.stderr
    for suffix in ("", "-history", ".lock"):
        assert _mode(tmp_path / f"reconciler.db{suffix}") == 0o660, suffix


async def test_a_writer_uses_a_database_it_may_write_but_not_chmod(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    if not _AS_A_USER:
        pytest.skip("needs root and setpriv: a file of another owner it may write")
    cfg = await _store_with_an_event(tmp_path, fake_ccv)
    db = tmp_path / "reconciler.db"
    nobody = 65534
    os.chown(db, nobody, os.getgid())
    db.chmod(0o660)
    # Was 74: `cannot use database ...: Operation not permitted` (its mode forced to 0600).
    result = await _run("--config", cfg, "track", "ccv", ORDER, unprivileged=True)
    assert result.code == 0, result.stderr
    assert _mode(db) == 0o660 and db.stat().st_uid == nobody


def _state_directory(tmp_path: Path, fake_ccv: FakeCCV) -> tuple[Path, Path]:
    """A config whose store is in a directory of its own."""
    state = tmp_path / "state"
    state.mkdir()
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = state / "reconciler.db"
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "reconciler.db"), str(db)))
    return cfg, db


def _leave_wal(db: Path) -> None:
    """Leave the -wal and -shm files as a process killed before it closed the store does."""
    code = (
        "import os, sqlite3; c = sqlite3.connect(os.sys.argv[1]); "
        "c.execute(\"UPDATE meta SET value = value WHERE key = 'store_id'\"); c.commit(); "
        "os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)
    assert db.with_name(db.name + "-wal").exists()


def _writable_all_the_same(directory: Path) -> bool:
    probe = f"import os; os.close(os.open({str(directory / 'x')!r}, os.O_CREAT | os.O_WRONLY))"
    run = subprocess.run([*_AS_A_USER, sys.executable, "-c", probe], capture_output=True)
    (directory / "x").unlink(missing_ok=True)
    return run.returncode == 0


async def test_a_read_only_state_directory_is_said_alike_by_every_writer(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg, db = _state_directory(tmp_path, fake_ccv)
    fake_ccv.orders = {ORDER: "Processing"}
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    history = db.with_name(db.name + "-history")
    history.unlink()
    db.parent.chmod(0o555)
    try:
        if _writable_all_the_same(db.parent):
            pytest.skip("this user writes a directory of mode 555 all the same")
        # No -wal file: SQLite cannot make it, and no writer can start.
        for command in (["catch-up"], ["track", "ccv", ORDER]):
            result = await _run("--config", cfg, *command, unprivileged=True)
            assert result.code == 74, result.stderr
            assert f"may not write its directory {db.parent}" in result.stderr, result.stderr
        db.parent.chmod(0o755)
        _leave_wal(db)
        db.parent.chmod(0o555)
        # With them there every writer works, and says once that the mark is not kept.
        for command in (["catch-up"], ["track", "ccv", ORDER]):
            result = await _run("--config", cfg, *command, unprivileged=True)
            assert result.code == 0, result.stderr
            [line] = _messages(result, "store.history_mark_failed")
            assert line["path"] == str(history) and line["error"] == "Permission denied"
    finally:
        db.parent.chmod(0o755)


async def test_a_history_mark_made_again_for_a_store_with_events_is_said(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    fresh = await call_cli("--config", write_config(tmp_path, ccv=fake_ccv), "track", "ccv", ORDER)
    assert fresh.code == 0 and not _messages(fresh, "store.history_rebuilt"), fresh.stderr
    cfg = await _store_with_an_event(tmp_path, fake_ccv)
    history = tmp_path / "reconciler.db-history"
    with sqlite3.connect(tmp_path / "reconciler.db") as conn:
        events = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    for damage, reason in ((None, "missing"), (b"\x00garbage\xff\n", "unreadable")):
        if damage is None:
            history.unlink()
        else:
            history.write_bytes(damage)
        result = await call_cli("--config", cfg, "track", "ccv", ORDER)
        assert result.code == 0, result.stderr
        [line] = _messages(result, "store.history_rebuilt")
        assert line["path"] == str(history) and line["reason"] == reason
        assert line["events"] == events
        again = await call_cli("--config", cfg, "track", "ccv", ORDER)
        assert not _messages(again, "store.history_rebuilt")


async def test_check_online_says_no_config_ok_when_credentials_are_refused(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    bad = await call_cli(
        "--config", cfg, "check", "--online", env=cli_env(RECONCILER_CCV_API_KEY="t_wrong-key-0000")
    )
    assert bad.code == 78 and "ccv/default: credentials refused" in bad.stderr
    assert "config ok" not in bad.stdout, bad.stdout
    # After the accounts' answers, which it sums up.
    good = await call_cli("--config", cfg, "check", "--online")
    assert good.code == 0 and good.stdout.splitlines()[-1].startswith("config ok: "), good
