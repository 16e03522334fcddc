"""Config values and files an outside probe got past `check` or named no key for (probe C):
durations with control characters or other white space at an end, a table header given
twice, store and jsonl paths of white space, a config in UTF-16."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config

CCV = "[ccv]\nbase_url = 'https://ccv.example/api/'\napi_key = 't_0123'\n"
CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\nclient_id = 'c'\npassword = 'pw-0123'\n"
SINK = "[[sinks]]\ntype = 'jsonl'\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own environment out of secret resolution."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


def load_error(tmp_path: Path, text: str | bytes) -> ConfigError:
    path = tmp_path / "reconciler.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    return info.value


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('poll_interval = "5m\\n"', "ccnow.poll_interval"),
        ('timeout = "10s\\r"', "ccnow.timeout"),
        ('poll_interval = "\\t5m"', "ccnow.poll_interval"),
        ('poll_interval = "5m\\u000b"', "ccnow.poll_interval"),
        ('poll_interval = "5m\\u0085"', "ccnow.poll_interval"),
        ('status_intervals = { pending = "1h\\n" }', "ccnow.status_intervals.pending"),
    ],
)
def test_a_duration_with_a_control_character_is_refused(
    tmp_path: Path, line: str, key: str
) -> None:
    # Taken as "5m" before: README refuses a control character in every string value.
    error = load_error(tmp_path, CCNOW + line + "\n")
    assert error.key == key
    assert error.problem == "must not contain a line break, tab, NUL or other control character"


@pytest.mark.parametrize("value", ["\\u00a02m", "2m\\u00a0", "\\u20032m", "2m\\u3000", "\\u200b2m"])
def test_a_duration_with_other_white_space_at_an_end_is_refused(tmp_path: Path, value: str) -> None:
    error = load_error(tmp_path, CCNOW + f'min_interval = "{value}"\n')
    assert error.key == "ccnow.min_interval"
    assert error.problem.startswith("invalid duration '")


def test_a_duration_keeps_its_spaces_at_the_ends(tmp_path: Path) -> None:
    # Plain spaces around a duration were always read (" 10s "); a config that worked loads.
    path = tmp_path / "reconciler.toml"
    path.write_text(CCNOW + 'poll_interval = " 5m "\n', encoding="utf-8")
    assert load_config(path).ccnow[0].poll_interval_s == 300.0


# --- a table header given twice -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[store]\nkeep_events = '1d'\n[store]\n" + CCV, "store"),
        (CCV + "[ccv]\n", "ccv"),
        (CCV + "[[ccv]]\n", "ccv"),
        ("[[sinks]]\ntype = 'log'\n[sinks]\n" + CCV, "sinks"),
        ("x = 1\n[x]\n" + CCV, "x"),
        ("[ a . 'b' ]\n[a.b]\n" + CCV, "a.b"),
        ("a = { b = 1 }\n[a.c]\n" + CCV, "a.c"),
    ],
)
def test_a_table_given_twice_is_named(tmp_path: Path, text: str, key: str) -> None:
    # "-" before: tomllib's "Cannot declare ('store',) twice" or "Cannot overwrite a value".
    error = load_error(tmp_path, text)
    assert error.key == key
    assert error.problem.startswith("invalid TOML: Cannot ")


@pytest.mark.parametrize(
    "text",
    [
        # A value set twice whose last line, inside the value, looks like a header.
        'a = 1\na = [\n  ["ccv"]]\n' + CCV,
        CCV + 'command = 1\ncommand = """\nrm x\n[ "SECRETWORD" ]"""\n',
        # ... or like a key: its text (a secret's, say) is never taken for one.
        CCV + 'password = 1\npassword = """\nSECRETWORD = x"""\n',
    ],
)
def test_a_value_set_twice_ending_inside_a_string_names_no_text_of_it(
    tmp_path: Path, text: str
) -> None:
    error = load_error(tmp_path, text)
    assert error.key == "-"
    assert "SECRETWORD" not in str(error) and "ccv" not in error.key


@pytest.mark.parametrize(
    "text",
    [
        CCV + 'a = 1\nx = "foo\u2028SECRETWORD = 1"\na = 2\n',
        CCV + 'a = 1\nx = "foo\u2028[SECRETWORD]"\na = 2\n',
        CCV + "a = 1 # x\x85[SECRETWORD]\na = 2\n",
    ],
)
def test_a_line_separator_inside_a_string_or_comment_breaks_no_line(
    tmp_path: Path, text: str
) -> None:
    # The parser counts lines at "\n" alone: the key set twice is named, no text of the string.
    error = load_error(tmp_path, text)
    assert error.key == "ccv.a"
    assert "SECRETWORD" not in str(error)


def test_a_toml_error_naming_nothing_keeps_the_dash(tmp_path: Path) -> None:
    error = load_error(tmp_path, CCV + "= 1\n")
    assert error.key == "-"
    assert error.problem.startswith("invalid TOML: Invalid statement")


# --- paths of white space -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[store]\npath = ' '\n" + CCV, "store.path"),
        ('[store]\npath = "\\u3000"\n' + CCV, "store.path"),
        ("[store]\npath = ' r.db'\n" + CCV, "store.path"),
        ("[store]\npath = 'r.db '\n" + CCV, "store.path"),
        (CCV + SINK + "path = ' '\n", "sinks[0].path"),
        (CCV + SINK + "path = 'events.jsonl '\n", "sinks[0].path"),
    ],
)
def test_a_path_of_white_space_or_with_it_at_an_end_is_refused(
    tmp_path: Path, text: str, key: str
) -> None:
    # `catch-up` made files named " ", " -history" and " .lock" beside the config.
    error = load_error(tmp_path, text)
    assert error.key == key
    assert "white space" in error.problem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reconciler.toml"]


# --- the file's encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (CCV.encode("utf-16-le"), "UTF-16"),
        (CCV.encode("utf-16-be"), "UTF-16"),
        (b"\xff\xfe" + CCV.encode("utf-16-le"), "UTF-16"),
        (b"\xfe\xff" + CCV.encode("utf-16-be"), "UTF-16"),
        (b"\xff\xfe\x00\x00" + CCV.encode("utf-32-le"), "UTF-32"),
        (CCV.encode("utf-32-be"), "UTF-32"),
    ],
)
def test_a_config_in_utf_16_or_32_says_so(tmp_path: Path, data: bytes, what: str) -> None:
    # "invalid TOML: Invalid statement (at line 1, column 1)" before, for one without a BOM.
    error = load_error(tmp_path, data)
    assert error.key == "-"
    assert error.problem == f"not UTF-8 text (it looks like {what}): save it as UTF-8"


def test_a_config_with_a_utf_8_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_bytes(b"\xef\xbb\xbf" + CCV.encode())
    assert load_config(path).ccv[0].base_url == "https://ccv.example/api"
