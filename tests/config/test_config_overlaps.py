"""Config parts that are one thing twice (probe 42): a sink or the store on a file a secret is
read from, two accounts that are one provider account."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env

KEY = "t_key_0123456789"
CCV_KEY_FILE = "[ccv]\nbase_url = 'https://ccv.example/api/'\napi_key_file = 'keyS'\n"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = tmp_path / "keyS"
    key.write_text(KEY + "\n", encoding="utf-8")
    key.chmod(0o600)
    os.link(key, tmp_path / "key-hard-link")
    (tmp_path / "key-link").symlink_to(key)
    return key


@pytest.mark.parametrize("path", ["keyS", "key-link", "key-hard-link"])
async def test_a_jsonl_sink_on_a_secret_file_is_a_config_error(
    tmp_path: Path, key_file: Path, path: str
) -> None:
    # `check` passed it; `catch-up` appended events to the key, and the next start was 78
    # (`api_key_file: must not contain a line break`) until someone mended the key by hand.
    cfg = tmp_path / "reconciler.toml"
    store = f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n"
    sink = f"[[sinks]]\ntype = 'jsonl'\npath = '{path}'\n"
    cfg.write_text(store + CCV_KEY_FILE + sink, encoding="utf-8")
    for command in ("check", "catch-up"):
        result = await call_cli("--config", cfg, command, env=cli_env())
        assert (result.code, result.stderr.strip()) == (
            78,
            f"config error: {cfg}: sinks[0].path: {tmp_path / path} is the file "
            "ccv.api_key_file names; the sink needs a file of its own",
        )
        assert KEY not in result.stdout + result.stderr
    assert key_file.read_text(encoding="utf-8") == KEY + "\n"


async def test_a_jsonl_sink_on_a_later_sinks_secret_file_is_a_config_error(
    tmp_path: Path,
) -> None:
    # The webhook's secret is read after the jsonl sink's table: refused all the same.
    (tmp_path / "hook.secret").write_text("whsec_MDEyMzQ1Njc4OWFiY2RlZg\n", encoding="utf-8")
    cfg = tmp_path / "reconciler.toml"
    sinks = (
        "[[sinks]]\ntype = 'jsonl'\npath = 'hook.secret'\n"
        "[[sinks]]\ntype = 'webhook'\nurl = 'https://hooks.example/in'\n"
        "secret_file = 'hook.secret'\n"
    )
    cfg.write_text(
        f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n"
        "[ccv]\nbase_url = 'https://ccv.example/api/'\n" + sinks,
        encoding="utf-8",
    )
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert (result.code, result.stderr.strip()) == (
        78,
        f"config error: {cfg}: sinks[0].path: {tmp_path / 'hook.secret'} is the file "
        "sinks[1].secret_file names; the sink needs a file of its own",
    )


async def test_the_store_on_a_secret_file_is_a_config_error(tmp_path: Path, key_file: Path) -> None:
    # `check` passed it; every other command said 74 "file is not a database" and left
    # keyS.lock beside the key.
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text("[store]\npath = 'key-link'\n" + CCV_KEY_FILE, encoding="utf-8")
    for command in ("check", "catch-up", "status"):
        result = await call_cli("--config", cfg, command, env=cli_env())
        assert (result.code, result.stderr.strip()) == (
            78,
            f"config error: {cfg}: store.path: {tmp_path / 'key-link'} is the file "
            "ccv.api_key_file names; the store needs a file of its own",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "key-hard-link",
        "key-link",
        "keyS",
        "reconciler.toml",
    ]


async def test_a_command_sink_running_a_secret_file_is_a_config_error(
    tmp_path: Path, key_file: Path
) -> None:
    cfg = tmp_path / "reconciler.toml"
    sink = "[[sinks]]\ntype = 'command'\ncommand = ['./keyS', '--event']\n"
    store = f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n"
    cfg.write_text(store + CCV_KEY_FILE + sink, encoding="utf-8")
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert (result.code, result.stderr.strip()) == (
        78,
        f"config error: {cfg}: sinks[0].command[0]: {tmp_path / 'keyS'} is the file "
        "ccv.api_key_file names; a secret's file is no program",
    )
