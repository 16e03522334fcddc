"""`track SOURCE --from-file`: a regular file or a pipe of at most 64 MiB, or stdin ('-'); a
device, a directory, a FIFO no writer opens within 5 s or a bigger input is a data error (65)
naming it, never a hang or a read without end (tests/commands/test_stdio.py checks the FIFO
waits)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\nclient_id = 'c'\n"


def _at_most_1_5_gib() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))


def reconciler(
    tmp_path: Path, *args: str, shell: bool = False, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `reconciler --config CONFIG ARGS` (as bash reads ARGS with `shell`), in at most
    1.5 GiB of memory and 60 s: a return of the fault fails the test, not the machine."""
    config = tmp_path / "reconciler.toml"
    config.write_text(f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n" + CCNOW)
    command = [sys.executable, "-m", "reconciler", "--config", str(config), *args]
    if shell:
        command = ["bash", "-c", f"exec {' '.join(command)}"]
    return subprocess.run(
        command,
        env=cli_env(),
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        preexec_fn=_at_most_1_5_gib,
        check=False,
    )


def tracked(tmp_path: Path) -> list[str]:
    result = reconciler(tmp_path, "orders", "--json")
    assert result.returncode == 0, result.stderr
    return [row["order_id"] for row in json.loads(result.stdout)]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        # /dev/zero was read until memory ran out: a MemoryError traceback, exit 70.
        (lambda tmp: "/dev/zero", "not a regular file or a pipe"),
        (str, "not a regular file or a pipe"),
    ],
    ids=["device", "directory"],
)
def test_a_track_file_that_is_no_file_to_read_is_a_data_error(
    tmp_path: Path, make: object, problem: str
) -> None:
    assert callable(make)
    path = make(tmp_path)
    result = reconciler(tmp_path, "track", "ccnow", "--from-file", path)
    assert result.returncode == 65, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"{path}: {problem}")
    assert not (tmp_path / "reconciler.db").exists()


def test_a_track_input_without_end_stops_at_64_mib(tmp_path: Path) -> None:
    result = reconciler(tmp_path, "track", "ccnow", "--from-file", "<(yes 396101142)", shell=True)
    assert result.returncode == 65, result.stderr
    assert result.stderr.strip().endswith(": larger than 64 MiB")
    with open("/dev/zero", "rb") as zero:
        result = reconciler(tmp_path, "track", "ccnow", "--from-file", "-", stdin=zero.fileno())
    assert result.returncode == 65, result.stderr
    assert result.stderr.strip().endswith("-: larger than 64 MiB")


def test_a_track_file_from_a_pipe_is_read(tmp_path: Path) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("396101142\n396101143\n")
    result = reconciler(tmp_path, "track", "ccnow", "--from-file", f"<(cat {ids})", shell=True)
    assert result.returncode == 0, result.stderr
    assert tracked(tmp_path) == ["396-10-1142", "396-10-1143"]
