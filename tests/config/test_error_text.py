"""A config error is one printable line, whatever the file holds: keys and quoted values that
carry control characters are shown escaped, never raw."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config
from tests.conftest import call_cli

CCV = '[ccv]\nbase_url = "https://ccv.example"\napi_key = "t_0123"\n'
CCNOW = '[ccnow]\nurl = "https://ccnow.example/oapi"\nclient_id = "c"\npassword = "pw-0123"\n'


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (CCV + '"a\\nb\\u001b[31mRED" = 1\n', "ccv.a\\x0ab\\x1b[31mRED", "unknown key"),
        (
            CCV + 'poll_interval = "5\\u2028m"\n',
            "ccv.poll_interval",
            "invalid duration '5\\u2028m' (use seconds or a number with ms, s, m, h, d)",
        ),
        (
            CCNOW + '[alerts.stuck_after.ccnow]\n"pending\\n" = "1d"\n',
            "alerts.stuck_after.ccnow.pending\\x0a",
            "not a status word (empty, blanks around it, or a control character)",
        ),
        (
            CCV + 'auth = "header"\nauth_header = "X-Key\\u202e"\n',
            "ccv.auth_header",
            "not a valid HTTP header name",
        ),
        (CCV + '"zero\\u200bwidth" = 1\n', "ccv.zero\\u200bwidth", "unknown key"),
        # A string key, a duration too, refuses a control character before quoting it.
        (
            CCV + 'poll_interval = "a\\rb"\n',
            "ccv.poll_interval",
            "must not contain a line break, tab, NUL or other control character",
        ),
    ],
)
def test_control_characters_are_escaped_in_keys_and_values(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.isprintable()
    assert (info.value.key, info.value.problem[: len(problem)]) == (key, problem)
    assert message == f"config error: {path}: {key}: {info.value.problem}"


def test_escaping_twice_changes_nothing() -> None:
    # A MissingSecret raises its error again from the parts it kept.
    first = ConfigError("/etc/r\n.toml", "k\x1b", "bad 'v\u2028'")
    again = ConfigError(first.file, first.key, first.problem)
    assert str(again) == str(first) == "config error: /etc/r\\x0a.toml: k\\x1b: bad 'v\\u2028'"


async def test_check_says_a_key_with_control_characters_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(
        f'[store]\npath = "{tmp_path / "r.db"}"\n' + CCV + '"a\\nb\\u001b[31mRED" = 1\n',
        encoding="utf-8",
    )
    result = await call_cli("--config", cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr == f"config error: {cfg}: ccv.a\\x0ab\\x1b[31mRED: unknown key\n"
