"""A path the program looks at before using it (the store's file, a credential, the config) that
this user cannot look at (a directory it may not search, a name over 255 bytes): each command
says so in one line with its documented exit, never a traceback (was 70). Run as processes of
their own: the exit code and stderr are the process's. A name too long is what root sees too; a
directory it may not search, only without root's right to read any directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    Result,
    assert_one_line,
    call_cli,
    cli_env,
    write_config,
)
from tests.fake_providers import FakeCCNow, FakeCCV

# One component over NAME_MAX (255 bytes): every stat of a path through it is ENAMETOOLONG.
TOO_LONG = "n" * 300
SECRET_ENV = ("RECONCILER_CCV_API_KEY", "RECONCILER_CCNOW_PASSWORD", "CREDENTIALS_DIRECTORY")
# Root reads any directory through these capabilities; without them its own mode 000 bars it.
_UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)


def _bare_env(**extra: str) -> dict[str, str]:
    """The CLI's environment with no secret in it: a credential is looked for."""
    return {k: v for k, v in cli_env().items() if k not in SECRET_ENV} | extra


def _store_at(cfg: Path, tmp_path: Path, store: Path) -> None:
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "reconciler.db"), str(store)))


async def _unprivileged(*args: str | os.PathLike[str], env: dict[str, str]) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *_UNPRIVILEGED,
        sys.executable,
        "-m",
        "reconciler",
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def _closed(directory: Path) -> bool:
    """Make `directory` one this test's processes may not search; False when they still can."""
    directory.mkdir(exist_ok=True)
    directory.chmod(0o000)
    probe = f"import os; os.stat({str(directory / 'x')!r})"
    run = subprocess.run([*_UNPRIVILEGED, sys.executable, "-c", probe], capture_output=True)
    return b"PermissionError" in run.stderr


@pytest.mark.parametrize("command", [("status",), ("status", "--json"), ("orders",), ("events",)])
async def test_a_store_path_with_a_name_too_long_is_the_store_error_74(
    tmp_path: Path, fake_ccv: FakeCCV, command: tuple[str, ...]
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    store = tmp_path / TOO_LONG / "reconciler.db"
    _store_at(cfg, tmp_path, store)
    result = await call_cli("--config", cfg, *command)
    assert_one_line(result, 74, f"reconciler: cannot use database {store}: File name too long")
    assert result.stdout == ""


async def test_status_of_a_store_in_a_directory_not_searchable_exits_74(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    if os.geteuid() == 0 and not _UNPRIVILEGED:
        pytest.skip("root searches any directory (no setpriv to drop that right)")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    store = tmp_path / "closed" / "reconciler.db"
    _store_at(cfg, tmp_path, store)
    try:
        if not _closed(tmp_path / "closed"):
            pytest.skip("this user searches a directory of mode 000 all the same")
        for command in (("status",), ("status", "--json")):
            result = await _unprivileged("--config", cfg, *command, env=cli_env())
            assert_one_line(
                result, 74, f"reconciler: cannot use database {store}: Permission denied"
            )
    finally:
        (tmp_path / "closed").chmod(0o700)


@pytest.mark.parametrize("command", [("check",), ("catch-up",)])
async def test_a_credentials_directory_with_a_name_too_long_is_a_config_error_78(
    tmp_path: Path, fake_ccv: FakeCCV, command: tuple[str, ...]
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    creds = tmp_path / TOO_LONG
    result = await call_cli(
        "--config", cfg, *command, env=_bare_env(CREDENTIALS_DIRECTORY=str(creds))
    )
    assert_one_line(
        result,
        78,
        "ccv.api_key",
        f"cannot read {creds / 'ccv-default-api-key'}: File name too long",
        "(from credential ccv-default-api-key)",
    )


async def test_a_credentials_directory_with_a_name_too_long_counts_as_not_given_for_status(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv, ccnow=fake_ccnow)
    env = _bare_env(CREDENTIALS_DIRECTORY=str(tmp_path / TOO_LONG))
    for command in (("status", "--json"), ("orders",), ("events",), ("track", "ccv", "X1")):
        result = await call_cli("--config", cfg, *command, env=env)
        assert result.code == 0, result.stderr
        assert "Traceback" not in result.stderr


async def test_a_credentials_directory_not_searchable(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    if os.geteuid() == 0 and not _UNPRIVILEGED:
        pytest.skip("root searches any directory (no setpriv to drop that right)")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    creds = tmp_path / "creds"
    try:
        if not _closed(creds):
            pytest.skip("this user searches a directory of mode 000 all the same")
        env = _bare_env(CREDENTIALS_DIRECTORY=str(creds))
        result = await _unprivileged("--config", cfg, "check", env=env)
        assert_one_line(
            result, 78, "ccv.api_key", "Permission denied", "credential ccv-default-api-key"
        )
        status = await _unprivileged("--config", cfg, "status", "--json", env=env)
        assert status.code == 0, status.stderr
    finally:
        creds.chmod(0o700)


async def test_check_pricing_with_a_config_path_too_long_needs_no_config(
    tmp_path: Path,
) -> None:
    # The config is read only to mask its secrets in what the check quotes: one that cannot
    # even be looked at is one whose secrets are not known, as one this user may not read.
    order = tmp_path / "order.json"
    order.write_text("{}", encoding="utf-8")
    config = tmp_path / TOO_LONG / "reconciler.toml"
    result = await call_cli("--config", config, "ccv", "check-pricing", order)
    assert "Traceback" not in result.stderr
    assert result.code == 65, result.stderr  # the order's problems, checked without the config
    assert "currency" in result.stdout + result.stderr


async def test_a_demo_store_with_a_name_too_long_is_the_store_error_74(tmp_path: Path) -> None:
    store = tmp_path / TOO_LONG / "demo.db"
    result = await call_cli("demo", "--store", store)
    assert_one_line(result, 74, f"cannot use database {store}: File name too long")
