"""An API key or password with white space at an end is refused (78), naming its key and not
showing it: it would be sent as written, and fail only later as the provider's 401."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config

CCV = "[ccv]\nbase_url = 'https://ccv.example'\n"
CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\nclient_id = 'c'\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (CCV + "api_key = ' t_SP '\n", "api_key"),
        (CCV + "auth = 'bearer'\napi_key = ' t_SP'\n", "api_key"),
        (CCV + "api_key_file = 'key'\n", "api_key_file"),
        (CCNOW + "password = 'p_SP '\n", "password"),
        (CCNOW + "password_file = 'key'\n", "password_file"),
    ],
)
def test_blanks_at_an_end_are_refused(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "key").write_text(" t_SP \n")
    path = tmp_path / "reconciler.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key.rsplit(".", 1)[-1] == key
    assert "white space" in info.value.problem and "_SP" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "env"),
    [(CCV, "RECONCILER_CCV_API_KEY"), (CCNOW, "RECONCILER_CCNOW_PASSWORD")],
)
def test_blanks_from_env_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: str
) -> None:
    monkeypatch.setenv(env, "s_SP ")
    path = tmp_path / "reconciler.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert env in info.value.problem and "white space" in info.value.problem
    assert "_SP" not in str(info.value)


def test_a_files_last_newline_is_still_taken_off(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("t_ok\n")
    path = tmp_path / "reconciler.toml"
    path.write_text(CCV + "api_key_file = 'key'\n")
    key = load_config(path).ccv[0].api_key
    assert key.reveal() == "t_ok"
