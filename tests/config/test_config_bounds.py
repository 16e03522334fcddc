"""Values a config took and no account or sink could use: a CCNow login of white space alone or
with white space at an end (CCNow matches it as sent: every request refused, or every order of
another store), a timeout no request can meet ("1ms") or one that never ends ("36500d"), a
reference remembered for no time. Each is a config error naming the key (exit 78), at load, not
at the first request. A 0 that means something (`watch_settled`) is taken."""

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


@pytest.mark.parametrize("value", ["0", "'0s'", "'0ms'", "0.0"])
def test_a_reference_remembered_for_no_time_is_refused(tmp_path: Path, value: str) -> None:
    # Taken before: a CCV notification naming a reference not tracked yet (CCV calls once) was
    # recorded and forgotten at once, the order's first check no longer counting as notified.
    receiver = RECEIVER + f"secret = '{SECRET}'\nremember_ref = {value}\n"
    error = load_error(tmp_path, CCV + receiver)
    assert (error.key, error.problem) == ("receiver.remember_ref", "must be greater than 0")


TWO_CCV = "".join(
    f"[[ccv]]\nname = '{name}'\nbase_url = 'https://ccv.example/{name}/'\napi_key = 't_0123'\n"
    for name in ("a", "b")
)


@pytest.mark.parametrize(
    ("text", "watched"),
    [
        (CCV + "watch_settled = 0\n", {("ccv", "default"): 0.0}),
        (CCNOW + "client_id = 'c'\nwatch_settled = '0s'\n", {("ccnow", "default"): 0.0}),
        (TWO_CCV + "watch_settled = '0s'\n", {("ccv", "a"): 180 * 86400.0, ("ccv", "b"): 0.0}),
    ],
    ids=["ccv", "ccnow", "one-of-two-accounts"],
)
def test_a_watch_settled_of_0_is_taken(
    tmp_path: Path, text: str, watched: dict[tuple[str, str], float]
) -> None:
    # 0 means something (the example config says it): that account's settled orders are not
    # watched at all, as if their status were an end state (its behaviour:
    # tests/passes/test_watch_and_stuck.py). Not refused, unlike a 0 where none is meant.
    path = tmp_path / "reconciler.toml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).watch_settled() == watched


async def test_check_refuses_remember_ref_0_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_text(
        CCV + RECEIVER + f"secret = '{SECRET}'\nremember_ref = '0s'\n", encoding="utf-8"
    )
    result = await call_cli("--config", path, "check")
    assert result.code == 78
    assert result.stderr.strip() == (
        f"config error: {path}: receiver.remember_ref: must be greater than 0"
    )
