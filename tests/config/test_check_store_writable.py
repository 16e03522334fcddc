"""`check` and a store this user cannot write: a directory it may not make files in (or a
directory to make under one), or a database file it may not write. `check` said ok, and every
command that opened the store then exited 74 (`cannot create lock file ...`); it is a config error
naming `store.path` (78), as `check`'s other refusals of a store path are. One that belongs to
another user passes with a warning: `check` may run as another user than the daemon."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.commands.store_writable import Unwritable, store_refusal, warn_unwritable
from tests.conftest import Result, call_cli

CCV = '[ccv]\nbase_url = "https://ccv.example"\n'
ROOT = os.geteuid() == 0


@pytest.fixture
def lock_out() -> Iterator[Callable[[Path], None]]:
    """Make a file or directory one this user may not write: its mode for a user (the owner's
    own `chmod a-w`), the immutable flag for root, whom no mode stops (skipped where that
    cannot be set). Undone at the end, so that the test's files can be removed."""
    undo: list[Callable[[], object]] = []

    def lock(path: Path) -> None:
        if not ROOT:
            mode = path.stat().st_mode
            path.chmod(0o555 if path.is_dir() else 0o444)
            undo.append(lambda: path.chmod(mode))
            return
        chattr = shutil.which("chattr")
        if (
            chattr is None
            or subprocess.run(
                [chattr, "+i", str(path)], capture_output=True, check=False
            ).returncode
        ):
            pytest.skip("root, and the immutable flag cannot be set here")
        undo.append(lambda: subprocess.run([chattr, "-i", str(path)], check=True))

    yield lock
    for step in reversed(undo):
        step()


async def check(cfg: Path, *args: str) -> Result:
    """`reconciler --config CFG ARGS`, in this process (the user and its rights are the same)."""
    return await call_cli("--config", cfg, *args)


def config(tmp_path: Path, store: Path) -> Path:
    cfg = tmp_path / "reconciler.toml"
    cfg.write_text(f'[store]\npath = "{store}"\n' + CCV, encoding="utf-8")
    return cfg


def why(path: Path) -> str:
    return f"{path} is not writable by this user (uid {os.geteuid()})"


@pytest.mark.parametrize("under", ["", "new/sub/"], ids=["in-it", "directories-to-make-in-it"])
async def test_check_refuses_a_store_in_a_directory_this_user_cannot_write(
    tmp_path: Path, lock_out: Callable[[Path], None], under: str
) -> None:
    locked = tmp_path / "state"
    locked.mkdir()
    db = locked / f"{under}reconciler.db"
    cfg = config(tmp_path, db)
    lock_out(locked)
    result = await check(cfg, "check")
    assert (result.code, result.stdout) == (78, ""), result.stderr
    assert result.stderr.strip() == f"config error: {cfg}: store.path: cannot create {db}: " + why(
        locked
    )
    assert list(locked.iterdir()) == []  # nothing made: no database, lock file or directory
    # What the commands that open it said, and still say (74), `check` having said ok.
    result = await check(cfg, "catch-up")
    assert result.code == 74, result.stderr
    assert f"cannot create lock file {db}.lock" in result.stderr


async def test_check_refuses_a_database_file_this_user_cannot_write(
    tmp_path: Path, lock_out: Callable[[Path], None]
) -> None:
    db = tmp_path / "reconciler.db"
    cfg = config(tmp_path, db)
    assert (await check(cfg, "track", "ccv", "ORDER-1")).code == 0
    lock_out(db)
    result = await check(cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == f"config error: {cfg}: store.path: cannot write {db}: " + why(
        db
    )
    assert (await check(cfg, "catch-up")).code == 74


async def test_check_refuses_a_store_whose_directory_this_user_cannot_write(
    tmp_path: Path, lock_out: Callable[[Path], None]
) -> None:
    # The database there, writable: SQLite makes its -wal and -shm files beside it at every
    # open, and removes them at the last close; the writers make the lock file there.
    locked = tmp_path / "state"
    locked.mkdir()
    db = locked / "reconciler.db"
    cfg = config(tmp_path, db)
    assert (await check(cfg, "track", "ccv", "ORDER-1")).code == 0
    made = sorted(locked.iterdir())
    lock_out(locked)
    result = await check(cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == f"config error: {cfg}: store.path: cannot write {db}: " + why(
        locked
    )
    assert sorted(locked.iterdir()) == made
    assert (await check(cfg, "status")).code == 74


@pytest.mark.skipif(ROOT, reason="root may write in /")
async def test_a_directory_of_another_user_passes_with_a_warning(tmp_path: Path) -> None:
    # `/` is root's: the daemon's user (root, or one given the directory) may make it.
    db = Path("/") / f"reconciler-test-{uuid.uuid4().hex}" / "reconciler.db"
    cfg = config(tmp_path, db)
    result = await check(cfg, "check")
    assert result.code == 0, result.stderr
    assert "config ok" in result.stdout
    (line,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert line["level"] == "warning"
    assert (line["message"], line["key"], line["path"]) == (
        "config.store_not_writable",
        "store.path",
        str(db),
    )
    assert (line["not_writable"], line["owner"], line["uid"]) == ("/", 0, os.geteuid())
    assert not db.parent.exists()


async def test_a_link_to_the_store_is_judged_by_the_directory_it_leads_to(
    tmp_path: Path, lock_out: Callable[[Path], None]
) -> None:
    # The writer's lock file and SQLite's -wal and -shm are made beside the file the link leads
    # to (store/files.py WriterLock: realpath), so a link in a directory nobody may write in
    # is a store every command uses: `check` refused it (78) while track and status worked.
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    state.mkdir()
    assert (
        await check(config(tmp_path, state / "reconciler.db"), "track", "ccv", "ORDER-1")
    ).code == 0
    link = etc / "reconciler.db"
    link.symlink_to(state / "reconciler.db")
    cfg = config(tmp_path, link)
    lock_out(etc)
    result = await check(cfg, "check")
    assert (result.code, result.stderr) == (0, ""), result.stderr
    assert "config ok" in result.stdout
    assert (await check(cfg, "track", "ccv", "ORDER-2")).code == 0
    assert (await check(cfg, "status")).code == 0


async def test_a_link_to_a_store_still_to_make_is_judged_by_where_it_leads(
    tmp_path: Path, lock_out: Callable[[Path], None]
) -> None:
    # The writer makes the lock file, then the database, beside the link's target.
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    state.mkdir()
    link = etc / "reconciler.db"
    link.symlink_to(state / "new" / "reconciler.db")
    cfg = config(tmp_path, link)
    lock_out(etc)
    result = await check(cfg, "check")
    assert (result.code, result.stderr) == (0, ""), result.stderr
    assert (await check(cfg, "catch-up")).code == 0
    assert (state / "new" / "reconciler.db").is_file()


async def test_a_link_to_a_store_in_a_directory_this_user_cannot_write_is_refused(
    tmp_path: Path, lock_out: Callable[[Path], None]
) -> None:
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    state.mkdir()
    assert (
        await check(config(tmp_path, state / "reconciler.db"), "track", "ccv", "ORDER-1")
    ).code == 0
    link = etc / "reconciler.db"
    link.symlink_to(state / "reconciler.db")
    cfg = config(tmp_path, link)
    lock_out(state)
    result = await check(cfg, "check")
    assert result.code == 78, result.stderr
    assert result.stderr.strip() == (
        f"config error: {cfg}: store.path: cannot write {link}: " + why(state)
    )
    assert (await check(cfg, "track", "ccv", "ORDER-2")).code == 74


@pytest.mark.parametrize(
    ("owner", "uid", "read_only", "refused"),
    [
        (1000, 1000, False, True),  # this user's own: nobody else runs with it
        (0, 0, False, True),  # root's own, and root may not: nobody may
        (0, 1000, True, True),  # a read-only file system: nobody may
        (0, 1000, False, False),  # another user's: the daemon's user may
        (998, 1000, False, False),
        # Root not let in (NFS root_squash, no CAP_DAC_OVERRIDE): the owner may be.
        (1000, 0, False, False),
        (1000, 0, True, True),
    ],
)
def test_who_may_write_what_this_user_may_not(
    owner: int, uid: int, read_only: bool, refused: bool
) -> None:
    found = Unwritable(Path("/srv/state"), created=True, owner=owner, read_only=read_only)
    assert found.refused(uid) is refused
    db = Path("/srv/state/r.db")
    assert found.problem(db, uid) == (
        f"cannot create {db}: /srv/state is on a read-only file system (under systemd: "
        'one not in ReadWritePaths=, see README "Running commands by hand")'
        if read_only
        else f"cannot create {db}: /srv/state is not writable by this user (uid {uid})"
    )


def hint(problem: str, path: Path, owner: int) -> str:
    return (
        f"{problem}, owned by uid {owner}: a daemon running as this user cannot use this "
        f"store (give it {path}); if the daemon runs as another user, run check as that user "
        '(README "Running commands by hand")'
    )


def test_the_warning_names_the_key_the_path_and_who_may_write_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What the test above sees where it runs (not as root), logged here for any user.
    caplog.set_level(logging.WARNING, logger="reconciler.config")
    db = Path("/srv/state/new/r.db")
    warn_unwritable(
        Unwritable(Path("/srv/state"), created=True, owner=998, read_only=False), db, 1000
    )
    [said] = [r.fields for r in caplog.records]  # type: ignore[attr-defined]
    assert said == {
        "key": "store.path",
        "path": str(db),
        "not_writable": "/srv/state",
        "owner": 998,
        "uid": 1000,
        "hint": hint(
            f"cannot create {db}: /srv/state is not writable by this user (uid 1000)",
            Path("/srv/state"),
            998,
        ),
    }


@pytest.mark.parametrize("whose", ["own", "another-user's"])
def test_a_directory_this_user_cannot_write_is_refused_if_its_own_else_a_warning(
    tmp_path: Path,
    lock_out: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
    whose: str,
) -> None:
    # The rule on a real directory, for any user (as root too: the uid `check` runs as is
    # given, not asked): its owner refused, any other user warned.
    caplog.set_level(logging.WARNING, logger="reconciler.config")
    locked = tmp_path / "state"
    locked.mkdir()
    owner = locked.stat().st_uid
    uid = owner if whose == "own" else owner + 4242
    db = locked / "new" / "reconciler.db"
    lock_out(locked)
    problem = f"cannot create {db}: {locked} is not writable by this user (uid {uid})"
    if whose == "own":
        assert store_refusal(db, uid) == problem
        assert caplog.records == []
        return
    assert store_refusal(db, uid) is None
    [said] = [r.fields for r in caplog.records]  # type: ignore[attr-defined]
    assert said == {
        "key": "store.path",
        "path": str(db),
        "not_writable": str(locked),
        "owner": owner,
        "uid": uid,
        "hint": hint(problem, locked, owner),
    }
    assert list(locked.iterdir()) == []
