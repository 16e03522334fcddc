"""The config file itself: a regular file or a pipe (`--config <(...)`) of at most 1 MiB; a
device, a directory, a FIFO no writer opens within 5 s or a bigger file is a config error
(78) naming it, never a hang or a read without end."""

from __future__ import annotations

import ast
import inspect
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler import stdio
from reconciler.config import ConfigError, load_config
from tests.conftest import REPO, call_cli, cli_env

CCNOW = "[ccnow]\nurl = 'https://ccnow.example/oapi'\nclient_id = 'c'\n"


def _at_most_2_gib() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def check(config: str, *, shell: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `reconciler --config CONFIG check` (CONFIG as bash reads it with `shell`), in at
    most 2 GiB of memory and 30 s: a return of the fault fails the test, not the machine."""
    command = [sys.executable, "-m", "reconciler", "--config", config, "check"]
    if shell:
        command = ["bash", "-c", f"exec {sys.executable} -m reconciler --config {config} check"]
    return subprocess.run(
        command,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        preexec_fn=_at_most_2_gib,
        check=False,
    )


def fifo(directory: Path) -> Path:
    os.mkfifo(directory / "fifo")
    return directory / "fifo"


def config_text(tmp_path: Path) -> str:
    return f"[store]\npath = '{tmp_path / 'reconciler.db'}'\n" + CCNOW


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        # /dev/zero was read until memory ran out (a MemoryError traceback).
        (lambda tmp: Path("/dev/zero"), "not a regular file or a pipe"),
        (lambda tmp: tmp, "not a regular file or a pipe"),
    ],
    ids=["device", "directory"],
)
def test_a_config_that_is_no_file_to_read_is_a_config_error(
    tmp_path: Path, make: Callable[[Path], Path], problem: str
) -> None:
    path = make(tmp_path)
    result = check(str(path))
    assert result.returncode == 78, result.stderr
    assert result.stderr == f"config error: {path}: -: {problem}\n"


def test_a_fifo_no_writer_opens_is_a_config_error_after_the_wait(tmp_path: Path) -> None:
    # A FIFO nothing writes to: `check` waited for a writer that never came. The loader's own
    # call, at a short wait (the command's 5 s is its default): the command line says its
    # ConfigError as it says the device's and the directory's above.
    path = fifo(tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        load_config(path, pipe_wait_s=0.2)
    assert time.monotonic() - started < 10  # the wait, not a blocking open's hang
    assert str(refused.value) == f"config error: {path}: -: a pipe nothing wrote to for 0.2 s"


def test_the_commands_wait_the_documented_5_s_for_a_fifos_writer() -> None:
    # The README's 5 s, checked without a 5 s test: the readers' defaults, and no command's
    # call giving another (`load_config` above, `track`'s and `ccv submit`'s files beside it).
    assert stdio.PIPE_WAIT_S == 5.0
    for reader in (load_config, stdio.read_bounded):
        assert inspect.signature(reader).parameters["pipe_wait_s"].default == stdio.PIPE_WAIT_S
    for module in ("cli.py", "commands/ccv.py", "commands/input.py"):
        tree = ast.parse((REPO / "reconciler" / module).read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        named = [c for c in calls if getattr(c.func, "id", None) in READERS]
        assert named, module
        assert not [k.arg for c in named for k in c.keywords if k.arg == "pipe_wait_s"], module


READERS = ("load_config", "read_bounded")


async def test_a_config_of_more_than_1_mib_is_refused(tmp_path: Path) -> None:
    # In this process: a regular file's size, which no process limit takes part in.
    path = tmp_path / "reconciler.toml"
    text = config_text(tmp_path)
    path.write_text(text + "#" * ((1 << 20) - len(text) - 1) + "\n", encoding="utf-8")
    assert (await call_cli("--config", path, "check")).code == 0
    path.write_text(text + "#" * (1 << 20) + "\n", encoding="utf-8")
    result = await call_cli("--config", path, "check")
    assert result.code == 78, result.stderr
    assert result.stderr == f"config error: {path}: -: larger than 1 MiB\n"


def test_a_config_from_process_substitution_is_read(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_text(config_text(tmp_path), encoding="utf-8")
    result = check(f"<(cat {path})", shell=True)
    assert result.returncode == 0, result.stderr
    # ... within the same bound: a writer that never stops was read until memory ran out.
    result = check("<(yes '# more')", shell=True)
    assert result.returncode == 78, result.stderr
    assert result.stderr.endswith(": -: larger than 1 MiB\n")


def test_relative_paths_of_a_config_from_a_pipe_are_in_the_current_directory(
    tmp_path: Path,
) -> None:
    # Beside the file means nothing for /dev/fd/63: the store was /dev/fd/rel.db, which `check`
    # passed and every other command refused (74).
    (tmp_path / "rel.toml").write_text("[store]\npath = 'rel.db'\n" + CCNOW, encoding="utf-8")
    command = f"exec {sys.executable} -m reconciler --config <(cat rel.toml) check"
    result = subprocess.run(
        ["bash", "-c", command],
        env={**cli_env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"store: {tmp_path / 'rel.db'})" in result.stdout


@pytest.mark.parametrize(
    "config", ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "conf/stdin-link"]
)
def test_relative_paths_of_a_config_piped_to_stdin_are_in_the_current_directory(
    tmp_path: Path, config: str
) -> None:
    # `--config /dev/stdin` made the store /dev/rel.db (created there when run as root).
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "stdin-link").symlink_to("/dev/stdin")
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", config, "check"],
        input="[store]\npath = 'rel.db'\n" + CCNOW,
        env={**cli_env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"store: {tmp_path / 'rel.db'})" in result.stdout


def start_check(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--config", str(config), "check"],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=_at_most_2_gib,
    )


def wait_until_open(pid: int, path: Path) -> None:
    """Return once process `pid` holds `path` open (a reader of a FIFO), within 30 s."""
    deadline = time.monotonic() + 30
    fds = Path(f"/proc/{pid}/fd")
    while time.monotonic() < deadline:
        for fd in fds.iterdir():
            try:
                if Path(os.readlink(fd)) == path:
                    return
            except OSError:
                continue  # closed meanwhile
        time.sleep(0.01)  # a poll, not a spin: the process it waits for needs the CPU
    raise AssertionError(f"{pid} never opened {path}")


def test_a_fifo_whose_writer_comes_after_the_reader_is_read(tmp_path: Path) -> None:
    # `mkfifo f; (sleep 1; cat c.toml >f)&; reconciler --config f check` used to load, then
    # was "a pipe nothing wrote to" (78) while the late writer blocked for ever.
    path = fifo(tmp_path)
    proc = start_check(path)
    wait_until_open(proc.pid, path)
    with open(path, "w", encoding="utf-8") as writer:
        writer.write(config_text(tmp_path))
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, "")
