"""A reader (`status`, `orders`, `events`) of a store on a read-only mount, with no -wal and
-shm files there: SQLite opens the file read-only, cannot make the -shm file it reads a WAL
store through, and says only "unable to open database file". The line says the system's
reason, as a writer's "cannot create lock file ...: Read-only file system" does. (A directory
of mode 555 is said already: SQLite's words there are "attempt to write a readonly
database", which the writers' explanation covers.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import call_cli
from tests.fake_providers import FakeCCV
from tests.store.test_store_files import ORDER, _run, _state_directory

READERS = (["status"], ["orders"], ["events"])


def assert_says_why(stderr: str, reason: str, db: Path) -> None:
    assert "unable to open database file" in stderr, stderr
    assert f"{reason}: SQLite cannot make {db.name}-shm in {db.parent}" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@contextlib.contextmanager
def read_only_mount(directory: Path) -> Iterator[None]:
    """Mount `directory` on itself read-only for the block; skip where this user may not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only mount needs root")
    made = subprocess.run(["mount", "--bind", directory, directory], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount here: {made.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", directory, directory], check=True)
        yield
    finally:
        subprocess.run(["umount", directory], check=True)


async def test_a_reader_of_a_store_on_a_read_only_mount_says_so(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg, db = _state_directory(tmp_path, fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    with read_only_mount(db.parent):
        for command in READERS:
            result = await _run("--config", cfg, *command)
            assert result.code == 74, result.stderr
            assert_says_why(result.stderr, "Read-only file system", db)


async def test_a_reader_through_a_symbolic_link_says_why_of_the_target_s_directory(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # SQLite makes the -shm beside the link's target, not beside the link.
    cfg, db = _state_directory(tmp_path, fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    links = tmp_path / "links"
    links.mkdir()
    (links / db.name).symlink_to(db)
    cfg.write_text(cfg.read_text().replace(str(db), str(links / db.name)))
    with read_only_mount(db.parent):
        for command in READERS:
            result = await _run("--config", cfg, *command)
            assert result.code == 74, result.stderr
            assert_says_why(result.stderr, "Read-only file system", db)
