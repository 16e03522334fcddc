"""A command run from a directory deleted since (a shell left standing in it): a config or a
store named relative to it cannot be found, and a command says so in one line, with the code
README gives (a config that cannot be read, 78; the demo's store, 2), not a traceback (70).
A path that is absolute works there as anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, Result, assert_one_line, cli_env, run_cli

CCV = "[ccv]\nbase_url = 'https://ccv.example/api/'\napi_key = 't_0123'\n"
GONE = "the current directory, which cannot be named (deleted, or outside this process's mounts)"


def env(**extra: str) -> dict[str, str]:
    # The child stands in no directory: the package is found through PYTHONPATH alone.
    made = {**cli_env(**extra), "PYTHONPATH": str(REPO)}
    made.pop("STATE_DIRECTORY", None)  # the default store is then ./reconciler.db
    return made


async def from_deleted_cwd(
    tmp_path: Path, *args: str, environ: dict[str, str] | None = None, stdin: bytes | None = None
) -> Result:
    # About the process itself (its working directory), so a subprocess: `run_cli` with its
    # cwd, removed in the child before Python starts; not `call_cli`, which shares this one's.
    cwd = tmp_path / "gone"
    cwd.mkdir()
    return await run_cli(*args, env=environ or env(), stdin=stdin, cwd=cwd, cwd_deleted=True)


@pytest.mark.parametrize("given", ["option", "variable", "default"])
async def test_a_relative_config_path_is_one_config_error_line(tmp_path: Path, given: str) -> None:
    # `../reconciler.toml` is still read from a deleted directory (its `..` is kept), but the
    # config's own relative paths are beside it, and it has no absolute path: a traceback.
    (tmp_path / "reconciler.toml").write_text(f"[store]\npath = 'r.db'\n{CCV}", encoding="utf-8")
    if given == "option":
        result = await from_deleted_cwd(tmp_path, "--config", "../reconciler.toml", "check")
        name = "../reconciler.toml"
    elif given == "variable":
        environ = env(RECONCILER_CONFIG="../reconciler.toml")
        result = await from_deleted_cwd(tmp_path, "check", environ=environ)
        name = "../reconciler.toml"
    else:  # ./reconciler.toml: said as for a file not there, before; now why it is not
        result = await from_deleted_cwd(tmp_path, "check")
        name = "reconciler.toml"
    assert_one_line(
        result, 78, f"config error: {name}: -: cannot read file: a path relative to {GONE}"
    )
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("command", ["check", "run", "orders"])
async def test_the_default_store_in_a_deleted_directory_is_a_config_error(
    tmp_path: Path, command: str
) -> None:
    config = tmp_path / "reconciler.toml"
    config.write_text(CCV, encoding="utf-8")
    result = await from_deleted_cwd(tmp_path, "--config", str(config), command)
    assert_one_line(
        result,
        78,
        f"config error: {config}: store.path: not set, and the default ./reconciler.db is in "
        f"{GONE}: set [store] path",
    )


async def test_a_config_read_from_a_descriptor_is_a_config_error(tmp_path: Path) -> None:
    # Its relative paths are in the current directory, which has none.
    config = f"[store]\npath = '{tmp_path / 'r.db'}'\n{CCV}".encode()
    result = await from_deleted_cwd(tmp_path, "--config", "/dev/stdin", "check", stdin=config)
    assert_one_line(result, 78, "config error: /dev/stdin: -: ", GONE)


@pytest.mark.parametrize("store", [[], ["--store", "demo.db"]])
async def test_the_demos_store_in_a_deleted_directory_is_a_usage_error(
    tmp_path: Path, store: list[str]
) -> None:
    result = await from_deleted_cwd(tmp_path, "demo", "--orders", "1", *store)
    assert_one_line(result, 2, "the current directory cannot be named: give the demo --store /PATH")


async def test_absolute_paths_work_from_a_deleted_directory(tmp_path: Path) -> None:
    config = tmp_path / "reconciler.toml"
    config.write_text(f"[store]\npath = 'r.db'\n{CCV}", encoding="utf-8")
    result = await from_deleted_cwd(tmp_path, "--config", str(config), "check")
    assert result.code == 0, result.stderr
    assert f"store: {tmp_path / 'r.db'}" in result.stdout
