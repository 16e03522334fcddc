"""Values a config took and no account or sink could use: a CCNow login of white space alone or
with white space at an end (CCNow matches it as sent: every request refused, or every order of
another store), a timeout no request can meet ("1ms") or one that never ends ("36500d"). Each
is a config error naming the key (exit 78), at load, not at the first request."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config
from tests.conftest import call_cli

CCV = "[ccv]\nbase_url = 'https://ccv.example/api/'\napi_key = 't_0123'\n"
CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\npassword = 'pw-0123'\n"
SECRET = "0123456789abcdef"
RECEIVER = "[receiver]\nlisten = '127.0.0.1:24700'\npublic_url = 'https://i.example'\n"
API = f"[api]\nlisten = '127.0.0.1:24701'\ntoken = '{SECRET}'\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own environment out of secret resolution."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "reconciler.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


@pytest.mark.parametrize(
    ("keys", "key", "problem"),
    [
        ("client_id = ' '\n", "ccnow.client_id", "must not be only white space"),
        ("client_id = '\u3000'\n", "ccnow.client_id", "must not be only white space"),
        ("client_id = ' c'\n", "ccnow.client_id", "must not begin or end with white space"),
        ("client_id = 'c'\nstore_id = ' x'\n", "ccnow.store_id", "must not begin or end with"),
        ("client_id = 'c'\nstore_id = 'x '\n", "ccnow.store_id", "must not begin or end with"),
        ("client_id = 'c'\nstore_id = ' '\n", "ccnow.store_id", "must not be only white space"),
    ],
)
def test_a_ccnow_login_with_white_space_is_refused(
    tmp_path: Path, keys: str, key: str, problem: str
) -> None:
    error = load_error(tmp_path, CCNOW + keys)
    assert error.key == key and error.problem.startswith(problem), error


TIMEOUTS = [
    (CCV, "ccv.timeout"),
    (CCNOW + "client_id = 'c'\n", "ccnow.timeout"),
    (CCV + "[[sinks]]\ntype = 'log'\n", "sinks[0].timeout"),
    (CCV + RECEIVER + f"secret = '{SECRET}'\n", "receiver.header_timeout"),
    (CCV + API, "api.refresh_timeout"),
]


@pytest.mark.parametrize(("text", "key"), TIMEOUTS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1ms", 'must be at least "100ms"'),
        ("36500d", 'must be at most "10m"'),
        ("0", "must be greater than 0"),
    ],
)
def test_every_timeout_is_one_a_request_can_meet_and_that_ends(
    tmp_path: Path, text: str, key: str, value: str, problem: str
) -> None:
    name = key.rpartition(".")[2]
    error = load_error(tmp_path, text + f"{name} = '{value}'\n")
    assert (error.key, error.problem) == (key, problem), error


@pytest.mark.parametrize(("text", "key"), TIMEOUTS)
def test_the_bounds_of_a_timeout_are_taken(tmp_path: Path, text: str, key: str) -> None:
    name = key.rpartition(".")[2]
    for value in ("100ms", "10m"):
        path = tmp_path / "reconciler.toml"
        path.write_text(text + f"{name} = '{value}'\n", encoding="utf-8")
        load_config(path)


async def test_check_exits_78_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_text(CCV + "timeout = '1ms'\n", encoding="utf-8")
    result = await call_cli("--config", path, "check")
    assert result.code == 78
    assert result.stderr.strip() == f'config error: {path}: ccv.timeout: must be at least "100ms"'
