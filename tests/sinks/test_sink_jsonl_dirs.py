"""The jsonl sink's new entries on disk before a batch counts as delivered: a file it made, and
each directory it made on the way, are in their directories once those are fsynced too (a
file fsynced alone may be gone after a power cut, its batch counted delivered)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from reconciler.config import JsonlSinkConfig
from reconciler.sinks.base import Delivered, RetryLater
from reconciler.sinks.jsonl import JsonlSink
from reconciler.store.events import OutboxEvent


def event(n: int) -> OutboxEvent:
    body = json.dumps({"id": f"ev-{n}", "data": {"n": n}}).encode()
    return OutboxEvent(seq=n, id=f"ev-{n}", type="order.status_changed", order_id="1", body=body)


class Fsyncs:
    """os.fsync, noting what each call was for (the path its descriptor names)."""

    def __init__(self, fail: Path | None = None) -> None:
        self.paths: list[Path] = []
        self.fail = fail  # fails once, as a disk's error would

    def __call__(self, fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        self.paths.append(path)
        if path == self.fail:
            self.fail = None
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)

    def taken(self) -> list[Path]:
        paths, self.paths = self.paths, []
        return paths


async def test_the_file_and_the_directories_the_sink_made_are_fsynced_in_their_parents(
    tmp_path: Path,
) -> None:
    path = tmp_path / "newdir" / "sub" / "events.jsonl"
    fsyncs = Fsyncs()
    sink = JsonlSink(JsonlSinkConfig(name="j", path=path), fsync=fsyncs)
    assert await sink.deliver([event(1)]) == [Delivered()]
    # The file first, then the directory of each entry made: the file's, and each directory's.
    made = fsyncs.taken()
    assert made[0] == path
    assert sorted(made[1:]) == sorted([path.parent, path.parent.parent, tmp_path])

    assert await sink.deliver([event(2)]) == [Delivered()]
    assert fsyncs.taken() == [path]  # nothing made: the file alone

    # Moved away (a rotation) or deleted: the next batch makes the file again, in its directory.
    path.rename(path.with_suffix(".1"))
    assert await sink.deliver([event(3)]) == [Delivered()]
    assert fsyncs.taken() == [path, path.parent]
    path.unlink()
    assert await sink.deliver([event(4)]) == [Delivered()]
    assert fsyncs.taken() == [path, path.parent]
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["ev-4"]


async def test_a_file_found_is_fsynced_in_its_directory_at_the_first_batch(tmp_path: Path) -> None:
    # A process stopped between the file's fsync and its directory's left an entry that may not
    # be on disk; the batch it wrote was not counted, but the next process's are, in that file.
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    fsyncs = Fsyncs()
    sink = JsonlSink(JsonlSinkConfig(name="j", path=path), fsync=fsyncs)
    assert await sink.deliver([event(1)]) == [Delivered()]
    assert fsyncs.taken() == [path, tmp_path]
    assert await sink.deliver([event(2)]) == [Delivered()]
    assert fsyncs.taken() == [path]


async def test_a_directory_not_fsynced_is_fsynced_at_the_retry(tmp_path: Path) -> None:
    # The batch failed after the sink made the directories; its retry finds them there, and
    # must still fsync their entries before it counts.
    path = tmp_path / "a" / "b" / "events.jsonl"
    fsyncs = Fsyncs(fail=tmp_path)
    sink = JsonlSink(JsonlSinkConfig(name="j", path=path), fsync=fsyncs)
    (failed,) = await sink.deliver([event(1)])
    assert isinstance(failed, RetryLater)
    assert "Input/output error" in failed.reason
    assert path.read_bytes() == b""  # taken back
    fsyncs.taken()
    assert await sink.deliver([event(1)]) == [Delivered()]
    assert tmp_path in fsyncs.taken()
