"""The jsonl sink on a real file: a batch cut off by a full file system is taken back, so that
its retry writes every event exactly once, on lines of their own."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from reconciler.config import JsonlSinkConfig
from reconciler.sinks.base import Delivered, RetryLater
from reconciler.sinks.jsonl import JsonlSink
from reconciler.store.events import OutboxEvent


def event(n: int) -> OutboxEvent:
    body = json.dumps({"id": f"ev-{n}", "data": {"n": n, "pad": "x" * 200}}).encode()
    return OutboxEvent(seq=n, id=f"ev-{n}", type="order.status_changed", order_id="1", body=body)


def jsonl_sink(path: Path, *, timeout_s: float = 15.0) -> JsonlSink:
    return JsonlSink(JsonlSinkConfig(name="j", path=path, timeout_s=timeout_s))


# The sink in a process whose files may not grow past a limit: a write stops part-way with
# EFBIG, as it does with ENOSPC when the disk fills, without filling this machine's disk.
LIMITED = """
import asyncio, json, resource, signal, sys
from pathlib import Path
from reconciler.config import JsonlSinkConfig
from tests.sinks.test_sink_jsonl import event, jsonl_sink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
results = asyncio.run(jsonl_sink(Path(sys.argv[1])).deliver([event(n) for n in range(10)]))
print(json.dumps([type(r).__name__ for r in results]))
"""


async def test_a_batch_cut_off_by_a_full_disk_is_taken_back_and_written_whole_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    sink = jsonl_sink(path)
    assert await sink.deliver([event(100)]) == [Delivered()]
    before = path.read_bytes()
    limit = len(before) + 1000  # room for about four of the ten events
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LIMITED,
        str(path),
        str(limit),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == ["RetryLater"] * 10
    assert path.read_bytes() == before  # nothing of the cut-off batch is left
    assert await sink.deliver([event(n) for n in range(10)]) == [Delivered()] * 10
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    ids = [json.loads(line)["id"] for line in lines[:-1]]
    assert ids == ["ev-100"] + [f"ev-{n}" for n in range(10)]


async def test_a_file_where_a_directory_of_the_path_goes_is_said_as_opening_says_it(
    tmp_path: Path,
) -> None:
    # mkdir's "File exists" named the path and no cause: the file is in the way.
    (tmp_path / "logs").write_text("not a directory")
    path = tmp_path / "logs" / "events.jsonl"
    assert await jsonl_sink(path).deliver([event(1)]) == [
        RetryLater(f"cannot write {path}: Not a directory")
    ]
