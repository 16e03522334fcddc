"""Config parts that are one thing twice (probe 42): a sink or the store on a file a secret is
read from, two accounts that are one provider account."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import call_cli, cli_env
from tests.fake_providers import CCNOW_CLIENT_ID, CCNOW_PASSWORD, CCV_KEY, FakeCCNow, FakeCCV

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
    (tmp_path / "hook.secret").write_text(
        "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3\n", encoding="utf-8"
    )
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


def same_account_warnings(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line.lstrip("<0123456789>")) for line in stderr.splitlines()]
    return [line for line in lines if line["message"] == "config.same_provider_account"]


def ccnow_table(url: str, name: str, client_id: str = CCNOW_CLIENT_ID) -> str:
    return (
        f"[[ccnow]]\nname = '{name}'\nurl = '{url}'\nclient_id = '{client_id}'\n"
        f"password = '{CCNOW_PASSWORD}'\ntimeout = '2s'\nretries = 0\n"
    )


async def test_two_accounts_that_are_one_provider_account_are_taken_with_a_warning(
    tmp_path: Path, fake_ccv: FakeCCV, fake_ccnow: FakeCCNow
) -> None:
    # Accepted in silence: every order was followed twice, two events per change. Not
    # refused: tests and users run several accounts against one sandbox.
    ccv = "".join(
        f"[[ccv]]\nname = '{name}'\nbase_url = '{url}'\napi_key = '{CCV_KEY}'\ntimeout = '2s'\n"
        for name, url in (("x", fake_ccv.base_url), ("y", fake_ccv.base_url + "/"))
    )
    ccnow = ccnow_table(fake_ccnow.url, "a") + ccnow_table(fake_ccnow.url, "b")
    cfg = tmp_path / "reconciler.toml"
    store = f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n"
    cfg.write_text(store + ccv + ccnow, encoding="utf-8")
    cfg.chmod(0o600)
    for command in ("check", "catch-up"):
        result = await call_cli("--config", cfg, command, env=cli_env())
        assert result.code == 0, result.stderr
        warnings = same_account_warnings(result.stderr)
        assert [(w["level"], w["source"], w["account"], w["same_as"]) for w in warnings] == [
            ("warning", "ccv", "y", "x"),
            ("warning", "ccnow", "b", "a"),
        ]
        assert warnings[1]["hint"] == (
            "ccnow accounts a and b are one provider account: every order of it is followed "
            "twice, with two events per change"
        )
        assert CCNOW_PASSWORD not in result.stderr and CCV_KEY not in result.stderr


async def test_accounts_of_other_logins_or_stores_are_not_warned_of(tmp_path: Path) -> None:
    url = "https://ccnow.example/oapi"
    ccnow = (
        ccnow_table(url, "a")
        + "store_id = '1'\n"
        + ccnow_table(url, "b")
        + "store_id = '2'\n"
        + ccnow_table(url, "c", client_id="another-login")
        + "store_id = '1'\n"
    )
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f"[store]\npath = '{tmp_path / 'r.db'}'\n" + ccnow, encoding="utf-8")
    cfg.chmod(0o600)
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert (result.code, same_account_warnings(result.stderr)) == (0, [])
