"""An older release's running daemon holds its store by a `flock` on the lock file alone (no
byte-range lock beside it): the readers of a store it still holds at an older schema say so
(75, its pid, restart it), not "starting the daemon or catch-up upgrades it" (74), which a
catch-up then refuses."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from reconciler.store import WriterLock
from reconciler.store.flocks import flocked
from tests.conftest import assert_one_line, call_cli, write_config
from tests.fake_providers import FakeCCV
from tests.store.test_store_upgrade import make_old_store

# What an older release's writer did: its pid into the lock file, then flock, and nothing else.
_OLDER_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("held", flush=True)
sys.stdin.read()
"""


async def older_holder(lock_file: Path) -> asyncio.subprocess.Process:
    """Start another process holding a flock on `lock_file` alone until its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _OLDER_HOLDER,
        str(lock_file),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"held\n"
    return proc


async def ended(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert await proc.wait() == 0


@pytest.mark.skipif(sys.platform != "linux", reason="a flock is asked of /proc/locks")
async def test_a_flock_alone_on_the_lock_file_is_a_writer_held(tmp_path: Path) -> None:
    db = tmp_path / "reconciler.db"
    db.touch()
    proc = await older_holder(tmp_path / "reconciler.db.lock")
    try:
        assert WriterLock(db).held()
    finally:
        await ended(proc)
    assert not WriterLock(db).held()


@pytest.mark.skipif(sys.platform != "linux", reason="a flock is asked of /proc/locks")
async def test_readers_of_a_store_an_older_release_holds_by_flock_say_to_restart_it(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    cfg = write_config(tmp_path, ccv=fake_ccv)
    db = tmp_path / "reconciler.db"
    make_old_store(db, version=13)
    before = db.read_bytes()
    proc = await older_holder(tmp_path / "reconciler.db.lock")
    try:
        for command in (["status"], ["orders"], ["events"]):
            result = await call_cli("--config", cfg, *command)
            assert_one_line(
                result,
                75,
                str(db),
                f"in use by another reconciler process (pid {proc.pid})",
                "schema version 13 is older than this program's",
                "if that process runs an older release, restart it",
            )
            assert "catch-up" not in result.stderr
        # What the readers say is what a writer meets: catch-up is refused the same way.
        assert (await call_cli("--config", cfg, "catch-up")).code == 75
        assert db.read_bytes() == before
    finally:
        await ended(proc)


def fake_proc(root: Path, listing: str, holders: dict[int, Path]) -> Path:
    """A /proc of `listing` as its locks, where the process of each pid holds that file open."""
    root.mkdir()
    (root / "locks").write_text(listing)
    for pid, held in holders.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "fd" / "3").symlink_to(held)
    return root


def test_a_flock_listed_under_another_device_counts_when_its_holder_holds_the_file(
    tmp_path: Path,
) -> None:
    # btrfs: /proc/locks names the file system's device, stat() the subvolume's.
    lock_file = tmp_path / "reconciler.db.lock"
    lock_file.write_text("4242\n")
    fd = os.open(lock_file, os.O_RDONLY)
    try:
        inode = os.fstat(fd).st_ino
        lines = {
            f"1: FLOCK  ADVISORY  WRITE 4242 00:ff:{inode} 0 EOF\n": True,  # the pid it says
            f"1: FLOCK  ADVISORY  WRITE 4243 00:ff:{inode} 0 EOF\n": False,  # another file's
            f"1: FLOCK  ADVISORY  READ  4242 00:ff:{inode} 0 EOF\n": False,
            f"1: POSIX  ADVISORY  WRITE 4242 00:ff:{inode} 0 EOF\n": False,
            f"1: FLOCK  ADVISORY  WRITE 4242 00:ff:{inode + 1} 0 EOF\n": False,
        }
        for n, (line, held) in enumerate(lines.items()):
            proc = fake_proc(tmp_path / f"proc{n}", line, {4242: lock_file, 4243: lock_file})
            assert flocked(fd, proc=proc) is held, line
        assert not flocked(fd, proc=tmp_path / "none")  # no /proc: nothing said
    finally:
        os.close(fd)


def test_a_copy_keeping_inode_numbers_is_not_held_by_the_original_s_holder(
    tmp_path: Path,
) -> None:
    # A snapshot (LVM, ZFS, btrfs) or block copy mounted elsewhere: its lock file has the
    # original's inode number and pid, and the original's flock is listed under the original's
    # device. The holder holds the original open, not this file.
    original = tmp_path / "original.lock"
    original.write_text("4242\n")
    copy = tmp_path / "reconciler.db.lock"
    copy.write_text("4242\n")
    fd = os.open(copy, os.O_RDONLY)
    try:
        line = f"1: FLOCK  ADVISORY  WRITE 4242 00:ff:{os.fstat(fd).st_ino} 0 EOF\n"
        assert not flocked(fd, proc=fake_proc(tmp_path / "proc", line, {4242: original}))
        # Its process gone, or in another pid namespace: nothing confirms it.
        assert not flocked(fd, proc=fake_proc(tmp_path / "gone", line, {}))
    finally:
        os.close(fd)


@pytest.mark.skipif(sys.platform != "linux", reason="a process's files are read in /proc")
async def test_a_flock_under_another_device_is_confirmed_by_the_holder_s_open_files(
    tmp_path: Path,
) -> None:
    lock_file = tmp_path / "reconciler.db.lock"
    holder = await older_holder(lock_file)
    try:
        copy = tmp_path / "copy.lock"  # a snapshot's, as the test above
        copy.write_text(f"{holder.pid}\n")
        for path, held in ((lock_file, True), (copy, False)):
            fd = os.open(path, os.O_RDONLY)
            try:
                line = f"1: FLOCK  ADVISORY  WRITE {holder.pid} 00:ff:{os.fstat(fd).st_ino} 0 EOF\n"
                proc = tmp_path / f"proc-{path.name}"
                proc.mkdir()
                (proc / "locks").write_text(line)
                (proc / str(holder.pid)).symlink_to(Path("/proc") / str(holder.pid))
                assert flocked(fd, proc=proc) is held, path
            finally:
                os.close(fd)
    finally:
        await ended(holder)
