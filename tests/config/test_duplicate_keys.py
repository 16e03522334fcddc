"""A key given twice is named in the config error (the parser's own message names none), and
its values, which may be secrets, are not shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config

CCV = '[ccv]\nbase_url = "https://x.example"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (CCV + 'api_key = "t_SECRET1"\napi_key = "t_SECRET2"\n', "ccv.api_key"),
        (CCV + 'api_key = "t_SECRET1"\napi_key = "t_SECRET2"', "ccv.api_key"),  # no last newline
        (CCV + 'api_key = "t_SECRET1"\n  "api_key"= "t_SECRET2"\n', "ccv.api_key"),
        ('[[ccnow]]\nname = "a"\nname = "b"\n', "ccnow.name"),
        ('[ store ]\nkeep_events = "1d"\nkeep_events = "2d"\n' + CCV, "store.keep_events"),
        ("x = 1\nx = 2\n" + CCV, "x"),
    ],
)
def test_a_key_given_twice_is_named(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert info.value.problem.startswith("invalid TOML: ") and "twice" in info.value.problem
    assert "SECRET" not in str(info.value)
