"""A webhook sink's secret is what Standard Webhooks says: `whsec_` and base64 of 24 to 64
random bytes. A shorter one (a byte, a word) signs events anyone can forge: refused when the
config is loaded (exit 78 naming the key, the value never printed), wherever it came from."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from tests.conftest import assert_one_line, cli_env, run_cli, webhook_sink

CONFIG = """[store]
path = "{db}"
[ccv]
base_url = "https://ccv.example/api/"
"""


def secret(size: int, *, padded: bool = True) -> str:
    key = base64.b64encode(os.urandom(size)).decode()
    return "whsec_" + (key if padded else key.rstrip("="))


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "r.toml"
    path.write_text(
        CONFIG.format(db=tmp_path / "r.db") + webhook_sink("https://hooks.example/in") + extra
    )
    return path


@pytest.mark.parametrize("size", [1, 16, 23])
@pytest.mark.parametrize("given", ["file", "env", "secret_file"])
async def test_a_webhook_secret_under_24_bytes_is_a_config_error(
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
    result = await run_cli("--config", cfg, "check", env=env)
    assert_one_line(result, 78, "sinks[0].secret", "24")
    assert value not in result.stdout + result.stderr
    assert value.removeprefix("whsec_").rstrip("=") not in result.stdout + result.stderr


@pytest.mark.parametrize("size", [24, 32, 64])
async def test_a_webhook_secret_of_24_to_64_bytes_is_taken(tmp_path: Path, size: int) -> None:
    cfg = config(tmp_path, f'secret = "{secret(size, padded=False)}"\n')
    os.chmod(cfg, 0o600)
    result = await run_cli("--config", cfg, "check", env=cli_env())
    assert result.code == 0, result.stderr
