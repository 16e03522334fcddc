"""A webhook sink's secret is what Standard Webhooks says: `whsec_` and base64 of 24 to 64
random bytes. A shorter one (a byte, a word) signs events anyone can forge: taken, as the
receivers' libraries take it, with one `config.webhook_secret_short` warning naming the key and
its length (never the value), wherever it came from."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import call_cli, cli_env, run_cli, webhook_sink

CONFIG = """[store]
path = "{db}"
[ccv]
base_url = "https://ccv.example/api/"
"""


def secret(size: int, *, padded: bool = True) -> str:
    key = base64.b64encode(os.urandom(size)).decode()
    return "whsec_" + (key if padded else key.rstrip("="))


def short_warnings(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["message"] == "config.webhook_secret_short"]


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "r.toml"
    path.write_text(
        CONFIG.format(db=tmp_path / "r.db") + webhook_sink("https://hooks.example/in") + extra
    )
    return path


@pytest.mark.parametrize("size", [1, 16, 23])
@pytest.mark.parametrize("given", ["file", "env", "secret_file"])
async def test_a_webhook_secret_under_24_bytes_is_taken_and_warned_of(
    tmp_path: Path, size: int, given: str
) -> None:
    value = secret(size, padded=size != 1)
    env = cli_env()
    if given == "file":
        cfg = config(tmp_path, f'secret = "{value}"\n')
    elif given == "secret_file":
        (tmp_path / "hook.secret").write_text(value + "\n")
        os.chmod(tmp_path / "hook.secret", 0o600)
        cfg = config(tmp_path, f'secret_file = "{tmp_path / "hook.secret"}"\n')
    else:
        cfg = config(tmp_path)
        env["RECONCILER_SINK_WEBHOOK_SECRET"] = value
    os.chmod(cfg, 0o600)
    # One size per source in a process of its own, whose stderr is the whole file descriptor
    # (nothing could print the value around the log): the others in this process, the same
    # command, the same output.
    run = run_cli if size == 16 else call_cli
    result = await run("--config", cfg, "check", env=env)
    assert result.code == 0, result.stderr
    warnings = short_warnings(result.stderr)
    assert [(w["key"], w["bytes"]) for w in warnings] == [("sinks[0].secret", size)]
    assert "24 to 64" in warnings[0]["hint"]
    assert value not in result.stdout + result.stderr
    key_text = value.removeprefix("whsec_").rstrip("=")
    # A one-byte key is two base64 characters, found by chance in the output's words; the
    # longer ones (22 and 31 characters) are not.
    if len(key_text) > 2:
        assert key_text not in result.stdout + result.stderr


@pytest.mark.parametrize("size", [24, 32, 64])
async def test_a_webhook_secret_of_24_to_64_bytes_is_taken(tmp_path: Path, size: int) -> None:
    cfg = config(tmp_path, f'secret = "{secret(size, padded=False)}"\n')
    os.chmod(cfg, 0o600)
    result = await call_cli("--config", cfg, "check", env=cli_env())
    assert result.code == 0, result.stderr
    assert short_warnings(result.stderr) == []
