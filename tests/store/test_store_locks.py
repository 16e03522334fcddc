"""SQLite's own locks on the database file while a process holds stores on it: another process
must always see that the file is in use (else the last to close deletes the write-ahead log
from under the daemon, and what it commits afterwards is lost)."""

from __future__ import annotations

import asyncio
import fcntl
import struct
import sys
from pathlib import Path

import pytest

from reconciler.store import Store, StoreLocked, WriterLock
from tests.conftest import REPO, call_cli, cli_env, daemon, free_port, write_config
from tests.fake_providers import FakeCCV
from tests.server.test_api import api_toml
from tests.store.test_orders import config_for
from tests.writes.test_submit_crash import listening

# Another process opens the store, reads, and closes: SQLite lets the last connection to close
# checkpoint and delete the write-ahead log, which it may only do when no other holds the file.
_OTHER_PROCESS = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM meta").fetchall()
conn.close()
"""


async def another_process_reads_and_closes(db: Path) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _OTHER_PROCESS, str(db))
    assert await proc.wait() == 0


@pytest.mark.parametrize("second", ["read-only", "writable"])
async def test_a_second_store_in_the_process_keeps_the_first_ones_locks(
    tmp_path: Path, second: str
) -> None:
    # The daemon holds its store and, with [api], a read-only one beside it on the same file.
    db = tmp_path / "reconciler.db"
    store = await Store.open(db)
    try:
        await store.orders.track("ccv", "default", [("O1", None)], now=1.0)
        wal = db.with_name(db.name + "-wal")
        assert wal.exists()
        other = await Store.open(db, readonly=second == "read-only")
        try:
            # `reconciler track` or an operator's sqlite3 beside the daemon.
            await another_process_reads_and_closes(db)
            assert wal.exists(), "the write-ahead log was deleted under an open store"
            # And what the first store commits now is on the file others read.
            await store.orders.track("ccv", "default", [("O2", None)], now=2.0)
            seen = await Store.open(db, readonly=True)
            try:
                assert {s.key.order_id for s in await seen.orders.snapshot()} == {"O1", "O2"}
            finally:
                await seen.close()
        finally:
            await other.close()
    finally:
        await store.close()


def test_one_writer_per_database_file_whatever_path_names_it(tmp_path: Path) -> None:
    # A second config names the daemon's store through a symbolic link (or a directory link).
    real = tmp_path / "state" / "reconciler.db"
    real.parent.mkdir()
    real.touch()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "reconciler.db").symlink_to(real)
    (tmp_path / "linked").symlink_to(real.parent, target_is_directory=True)
    held = WriterLock(real)
    held.acquire()
    try:
        for path in (tmp_path / "other" / "reconciler.db", tmp_path / "linked" / "reconciler.db"):
            with pytest.raises(StoreLocked):
                WriterLock(path).acquire()
    finally:
        held.release()
    again = WriterLock(tmp_path / "other" / "reconciler.db")
    again.acquire()
    again.release()


async def test_a_daemon_with_the_api_keeps_its_write_ahead_log_beside_a_track(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The probe's steps: the daemon with [api] (a second, read-only store), then `reconciler
    # track` beside it. Before, the track deleted the daemon's -wal and -shm, and what the daemon
    # committed afterwards was lost with its process.
    port = free_port()
    cfg = write_config(tmp_path, ccv=fake_ccv, extra=api_toml(port))
    wal = tmp_path / "reconciler.db-wal"
    async with daemon(cfg, cli_env()):
        await listening(port)
        assert wal.exists()
        assert (await call_cli("--config", cfg, "track", "ccv", "O-1")).code == 0
        assert wal.exists(), "the daemon's write-ahead log was deleted by the track"


async def test_a_writer_is_refused_only_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ccv submit` and `ccnow` go through the daemon only when the store's writer lock is
    # refused at their start; a busy database later (after a request was sent) is an error of
    # its own, never taken for "nothing was sent".
    from reconciler.runtime import writer_unless_held

    cfg = config_for(tmp_path)
    held = WriterLock(tmp_path / "reconciler.db")
    held.acquire()
    try:
        async with writer_unless_held(cfg) as runtime:
            assert runtime is None
    finally:
        held.release()
    with pytest.raises(StoreLocked, match="busy"):
        async with writer_unless_held(cfg) as runtime:
            assert runtime is not None
            raise StoreLocked("database is busy: another process is writing it")
    # A database busy while the writer opens it, past the lock: not "another writer".
    from reconciler import runtime as runtime_module

    async def busy(self: object) -> object:
        raise StoreLocked("database is busy: another process is writing it")

    monkeypatch.setattr(runtime_module.Runtime, "__aenter__", busy)
    with pytest.raises(StoreLocked, match="busy"):
        async with writer_unless_held(cfg):
            pass


# Another process takes the writer lock, says so, and holds it until its stdin closes.
_HOLDER = """
import sys
from pathlib import Path
from reconciler.store import WriterLock
lock = WriterLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


async def holder(db: Path) -> asyncio.subprocess.Process:
    """Start another process holding `db`'s writer lock until its stdin closes; return it
    once it holds the lock."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        str(db),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"held\n"
    return proc


def range_lock(lock_file: Path) -> int:
    """The type of the byte-range lock that would stop this process reading `lock_file`
    (F_UNLCK: none), as any program on the host can ask it, with POSIX's F_GETLK."""
    with open(lock_file, "rb") as f:
        asked = struct.pack("hhqqi", fcntl.F_RDLCK, 0, 0, 0, 0).ljust(64, b"\0")
        return int(struct.unpack_from("hhqqi", fcntl.fcntl(f, fcntl.F_GETLK, asked))[0])


@pytest.mark.skipif(sys.platform != "linux", reason="struct flock as Linux lays it out")
async def test_whether_a_writer_runs_is_told_without_taking_its_lock(tmp_path: Path) -> None:
    # `status` asks it of a `ccv submit` still `sending`. Not from /proc/locks, which names the
    # file system's device where stat() gives a btrfs subvolume's: the writer also holds a
    # byte-range lock, which F_GETLK reports without taking anything, on every file system.
    db = tmp_path / "reconciler.db"
    assert not WriterLock(db).held()  # no writer ever ran: no lock file
    proc = await holder(db)
    assert proc.stdin is not None
    lock_file = tmp_path / "reconciler.db.lock"
    assert range_lock(lock_file) == fcntl.F_WRLCK
    assert WriterLock(db).held()
    proc.stdin.close()
    assert await proc.wait() == 0
    assert range_lock(lock_file) == fcntl.F_UNLCK
    assert not WriterLock(db).held()  # the lock file stays, nobody holds it
    lock = WriterLock(db)
    lock.acquire()  # and a writer may start
    lock.release()
