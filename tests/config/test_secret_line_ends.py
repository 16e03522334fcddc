"""A secret file's trailing line ends are no part of the secret, however many: an editor's
blank last line, or `echo >>` into a file that ended with one, made `api.token_file` holding
`tok\\n\\n` exit 78 ("must not contain a line break") while `tok\\n` passed. Every secret file is
read by one reader: a `*_file` key's and a systemd credential's alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config
from tests.config.test_secret_files import CCNOW, CCV, config_file

TOKEN = "api-token-0123456789abcdef"
ENDS = ["\n", "\n\n", "\r\n\r\n", "\n\n\n", "\r\n\n"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


@pytest.mark.parametrize("end", ENDS)
def test_trailing_line_ends_are_taken_off_every_secret_file(tmp_path: Path, end: str) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "token").write_text(TOKEN + end)
    (tmp_path / "etc" / "key").write_text("ccv-key" + end)
    cfg = config_file(
        tmp_path,
        CCV + "api_key_file = 'key'\n" + "[api]\nlisten = '127.0.0.1:1'\ntoken_file = 'token'\n",
    )
    config = load_config(cfg)
    assert config.api is not None and config.api.token.reveal() == TOKEN
    assert config.ccv[0].api_key.reveal() == "ccv-key"


@pytest.mark.parametrize("end", ENDS)
def test_trailing_line_ends_are_taken_off_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ccnow-password").write_text("pass-word" + end)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load_config(config_file(tmp_path, CCNOW))
    assert config.ccnow[0].password.reveal() == "pass-word"


@pytest.mark.parametrize("text", [TOKEN + "\n \n", TOKEN + "\nmore\n", TOKEN + "\n\t\n"])
def test_a_line_break_inside_is_still_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "token").write_text(text)
    api = "[api]\nlisten = '127.0.0.1:1'\ntoken_file = 'token'\n"
    cfg = config_file(tmp_path, CCV + "api_key = 'ccv-key'\n" + api)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.key == "api.token_file"
    assert "line break" in info.value.problem and TOKEN not in str(info.value)
