"""A store in a directory this user may not search: the commands that read it or remove orders
from it say they cannot use it (74), as every other command does, and never take it for a store
not created yet. Processes of their own, run without root's right to read any directory."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Result, assert_one_line, call_cli, cli_env, write_config
from tests.fake_providers import FakeCCV

# Root reads any directory through these capabilities; without them its own mode 000 bars it.
_UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)


async def _run_unprivileged(*args: str | os.PathLike[str]) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *_UNPRIVILEGED,
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
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def _searchable_all_the_same(directory: Path) -> bool:
    probe = f"import os; os.stat({str(directory / 'x')!r})"
    run = subprocess.run([*_UNPRIVILEGED, sys.executable, "-c", probe], capture_output=True)
    return b"PermissionError" not in run.stderr


async def test_untrack_and_orders_of_a_store_in_a_directory_not_searchable_exit_74(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    closed = tmp_path / "closed"
    store = closed / "reconciler.db"
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "reconciler.db"), str(store)))
    assert (await call_cli("--config", cfg, "track", "ccv", "X1")).code == 0
    closed.chmod(0o000)
    try:
        if _searchable_all_the_same(closed):
            pytest.skip("this user searches a directory of mode 000 all the same")
        # Was 70 with a traceback: the check whether the store exists raised.
        for command in (("untrack", "ccv", "X1"), ("orders",), ("orders", "--json")):
            result = await _run_unprivileged("--config", cfg, *command)
            assert_one_line(
                result, 74, f"reconciler: cannot use database {store}: Permission denied"
            )
            assert result.stdout == ""
    finally:
        closed.chmod(0o700)
    followed = await call_cli("--config", cfg, "orders", "--json")
    assert [r["order_id"] for r in json.loads(followed.stdout)] == ["X1"]  # still followed


async def test_check_takes_a_jsonl_path_ending_in_a_slash_in_a_directory_it_may_not_search(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # `check` run as another user than the daemon's: a stat it may not make (EACCES) read as
    # "names a directory" (78), for a file the daemon's user writes to.
    cfg = write_config(tmp_path, ccv=fake_ccv)
    closed = tmp_path / "closed"
    closed.mkdir()
    (closed / "events.jsonl").write_text("", encoding="utf-8")
    cfg.write_text(cfg.read_text() + "\n[[sinks]]\ntype = 'jsonl'\npath = 'closed/events.jsonl/'\n")
    closed.chmod(0o000)
    try:
        if _searchable_all_the_same(closed):
            pytest.skip("this user searches a directory of mode 000 all the same")
        result = await _run_unprivileged("--config", cfg, "check")
    finally:
        closed.chmod(0o700)
    assert result.code == 0, result.stderr
