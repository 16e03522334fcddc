"""The directories a writer makes on the way to its files, for the store and for a jsonl sink,
have the mode the README gives whatever the umask (a umask of 000 made them world-writable);
a directory that was there keeps its own."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sinks.base import Delivered
from reconciler.store import Store
from tests.sinks.test_sink_jsonl import event, jsonl_sink


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o077], ids=["umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


async def test_the_stores_directories_are_its_users_alone(tmp_path: Path, umask: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)  # the operator's: left as it is
    for path in (tmp_path / "state" / "sub" / "r.db", shared / "new" / "r.db"):
        store = await Store.open(path, sinks=("log",))
        await store.close()
    assert _mode(tmp_path / "state") == _mode(tmp_path / "state" / "sub") == 0o700
    assert _mode(shared / "new") == 0o2700  # the group of the shared directory's files
    assert _mode(shared) == 0o2775


async def test_a_jsonl_sinks_directories_are_no_ones_to_write(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "out" / "deep" / "events.jsonl"
    assert await jsonl_sink(path).deliver([event(1)]) == [Delivered()]
    # Its group (a log shipper) may go in and read; no one else, and only its user writes.
    assert _mode(tmp_path / "out") == _mode(tmp_path / "out" / "deep") == 0o750
    assert path.read_bytes().endswith(b"\n")
