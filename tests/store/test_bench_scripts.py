"""The benchmarks that run the store's own statements still run (small, not timed here): a
column added to the store broke bench/store.py's baseline unseen, benchmarks being no part of
the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env


@pytest.mark.parametrize(
    "argv",
    [
        ["bench/store.py", "--orders", "1000", "--repeat", "1"],
        ["bench/schedule.py", "--orders", "200", "--days", "1"],
    ],
    ids=["store", "schedule"],
)
def test_a_benchmark_runs_to_its_summary_line(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1].startswith(f"{Path(argv[0]).stem}: "), result.stdout
