"""A usage error argparse finds itself (an unknown command, an option's bad value, a choice
not offered) says so under journald as an error line, as every line saying why a command
stopped does: `journalctl -p err` finds it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import pytest

from reconciler import cli
from tests.conftest import REPO, cli_env, environ


async def _usage_error(
    tmp_path: Path, journal: bool, *args: str, process: bool
) -> tuple[int, list[str]]:
    """Run the CLI with stderr a file, JOURNAL_STREAM naming it (as systemd connects the
    journal's stream) or not set; return the exit code and stderr's lines. In a process of its
    own, or in this one (the console script's `cli.run`, this process's stderr the file for the
    call): argparse and the journal's test both read sys.stderr when they write."""
    path = tmp_path / "stderr"
    with path.open("wb") as err:
        found = os.fstat(err.fileno())
        extra = {"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"} if journal else {}
        if process:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "reconciler", *args),
                stderr=err,
                env=cli_env(**extra),
                cwd=REPO,
            )
            code = await asyncio.wait_for(proc.wait(), 60)
        else:
            with (
                open(err.fileno(), "w", encoding="utf-8", closefd=False) as text,
                environ(cli_env(**extra)),
                contextlib.redirect_stderr(text),
            ):
                code = cli.run(list(args))
    return code, path.read_text().splitlines()


# The first case as the command line runs it, a process (what the console script does with the
# code is the exit status); the others, argparse's other refusals, in this process.
@pytest.mark.parametrize(
    ("args", "error", "process"),
    [
        (("rn",), "reconciler: error: argument COMMAND: invalid choice: 'rn'", True),
        (
            ("catch-up", "--deliver-timeout", "5x"),
            "reconciler catch-up: error: argument --deliver-timeout: ",
            False,
        ),
        (
            ("events", "--type", "bogus"),
            "reconciler events: error: argument --type: invalid",
            False,
        ),
        (
            ("ccv", "resolve", "--made"),
            "reconciler ccv resolve: error: the following arguments",
            False,
        ),
        (
            ("untrack", "ccv", "x", "--nosuch"),
            "reconciler: error: unrecognized arguments: --nosuch",
            False,
        ),
    ],
)
async def test_usage_error_is_an_error_line_under_journald(
    tmp_path: Path, args: tuple[str, ...], error: str, process: bool
) -> None:
    code, lines = await _usage_error(tmp_path, True, *args, process=process)
    assert code == 2, lines
    assert lines and all(line.startswith("<3>") for line in lines), lines
    # One line says what is wrong, the last, as argparse has it.
    assert lines[-1].startswith("<3>" + error), lines
    assert [line for line in lines if "error:" in line] == lines[-1:], lines
    # Not under journald: argparse's own text, no prefix.
    code, plain = await _usage_error(tmp_path, False, *args, process=process)
    assert code == 2
    assert plain == [line.removeprefix("<3>") for line in lines]
    assert plain[0].startswith("usage: reconciler"), plain
