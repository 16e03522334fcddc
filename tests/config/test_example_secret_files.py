"""The example config's secret files are ones the service could read: the shipped units run as
a dynamic user, which reads no root-only file, and /etc/reconciler is world-readable (README,
"Operations"), so the example gives secrets as credentials and no `*_file` there."""

from __future__ import annotations

import re
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "config" / "reconciler.example.toml"


def test_no_secret_file_under_the_config_directory() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    files = re.findall(r"^[#\s]*\w+_file = \"([^\"]*)\"", text, re.MULTILINE)
    assert files  # still shown, for reconciler run without the units
    assert [f for f in files if f.startswith("/etc/")] == []


def test_the_example_says_where_secrets_go_under_systemd() -> None:
    head = EXAMPLE.read_text(encoding="utf-8").split("[store]", 1)[0]
    assert "LoadCredential" in head and "dynamic user" in head
