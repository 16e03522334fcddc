"""Command sink when file descriptors run out: an attempt that fails, said in one line, and no
descriptor lost."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from reconciler.sinks.command import filled_stdin

# Delivers one event with every descriptor taken (a low RLIMIT_NOFILE filled with /dev/null),
# then again once they are free; prints both results and how many descriptors the two left open
# (counted after a first delivery: the loop opens what it needs for programs once).
OUT_OF_DESCRIPTORS = """
import asyncio, json, logging, os, resource, sys
from reconciler.config import CommandSinkConfig
from reconciler.sinks.command import CommandSink
from reconciler.store.events import OutboxEvent

logging.basicConfig(level=logging.INFO, stream=sys.stderr)

async def main():
    sink = CommandSink(CommandSinkConfig(name="hook", command=("/bin/cat",)))
    event = OutboxEvent(seq=1, id="ev-1", type="t", order_id="o", body=b"{}")
    await sink.deliver([event])
    before = len(os.listdir("/proc/self/fd"))
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    starved = await sink.deliver([event])
    for fd in held:
        os.close(fd)
    freed = await sink.deliver([event])
    left = len(os.listdir("/proc/self/fd")) - before
    print(json.dumps({"starved": [repr(r) for r in starved], "freed": [repr(r) for r in freed],
                      "left": left}))

resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_descriptors_is_an_attempt_that_failed_not_a_crash(loop: str) -> None:
    # The pipe that holds the event before the program starts was made outside the attempt's
    # error handling: EMFILE was `sink.crashed` with a traceback, every attempt. Said by the
    # pipe, the reason is the same on uvloop (the daemon's loop) as on asyncio's own.
    done = subprocess.run(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS, loop],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result == {
        "starved": [
            "RetryLater(reason='cannot run: /bin/cat: Too many open files', retry_after_s=None)"
        ],
        "freed": ["Delivered()"],
        "left": 0,
    }
    assert "sink.crashed" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failed_write_to_the_pipe_leaves_no_descriptor_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A write failing otherwise than "full" left the pipe's read end open: one descriptor lost
    # per attempt, until the daemon could open none.
    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    before = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(OSError):
        filled_stdin(b"{}\n")
    monkeypatch.undo()
    assert sorted(os.listdir("/proc/self/fd")) == before
