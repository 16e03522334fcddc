"""A jsonl write that blocks (here a FIFO whose buffer is full and that nobody reads; a hung NFS
mount blocks the same way) fails the delivery at the sink's `timeout`, lets `catch-up` end at
its `--deliver-timeout` and the daemon at its stop: it used to hang each of them for ever."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from reconciler.sinks.base import Delivered, RetryLater
from tests.conftest import cli_env, daemon, poll_until, run_cli, write_config
from tests.fake_providers import FakeCCNow
from tests.sinks.test_sink_jsonl import event, jsonl_sink


@contextlib.contextmanager
def fifo_at(path: Path, *, full: bool) -> Iterator[int]:
    """Make a FIFO at `path`, its buffer filled when `full`; yield a descriptor that reads it.
    Filled with whole pages: then a write of a batch (at most PIPE_BUF bytes) blocks before
    any of it is in."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        with contextlib.suppress(BlockingIOError):
            while full:
                os.write(fd, b"x" * 4096)
        yield fd
    finally:
        os.close(fd)


def read_all(fd: int) -> bytes:
    """Read what the FIFO holds, without waiting."""
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_write_that_blocks_fails_at_the_timeout_and_the_next_waits_its_turn(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.fifo"
    sink = jsonl_sink(path, timeout_s=0.3)  # a write's thread, in this process: no start
    with fifo_at(path, full=True) as fifo:
        timed_out = [RetryLater(f"cannot write {path}: timeout")]
        assert await asyncio.wait_for(sink.deliver([event(1)]), 10) == timed_out
        # The first write still blocks: the retry does not write beside it.
        assert await asyncio.wait_for(sink.deliver([event(2)]), 10) == timed_out
        # The reader comes back: the first write ends (while it reads, or after).
        drained = read_all(fifo).lstrip(b"x")
        # The next is written after it, whole.
        assert await asyncio.wait_for(sink.deliver([event(3)]), 10) == [Delivered()]
        ids = [json.loads(line)["id"] for line in (drained + read_all(fifo)).splitlines()]
    # At least once: the batch that timed out got there late, the one that waited did not.
    assert ids == ["ev-1", "ev-3"]


async def test_a_pipe_has_each_batch_once_it_is_written(tmp_path: Path) -> None:
    # A FIFO a log shipper reads (or /dev/stdout in a container) cannot be fsynced (EINVAL):
    # the batch counted as failed, and each retry wrote it again, then it was dead-lettered.
    path = tmp_path / "events.fifo"
    with fifo_at(path, full=False) as fifo:
        assert await jsonl_sink(path).deliver([event(1), event(2)]) == [Delivered()] * 2
        assert await jsonl_sink(path).deliver([event(3)]) == [Delivered()]
        ids = [json.loads(line)["id"] for line in read_all(fifo).splitlines()]
    assert ids == ["ev-1", "ev-2", "ev-3"]


async def test_a_fifo_nobody_reads_is_retried_not_delivered(tmp_path: Path) -> None:
    # The sink opened the FIFO read-write, a reader of its own: the batch went into the pipe's
    # buffer, counted delivered, and the kernel dropped it when the sink closed the pipe.
    path = tmp_path / "events.fifo"
    os.mkfifo(path)
    sink = jsonl_sink(path)
    no_reader = [RetryLater(f"cannot write {path}: no reader on the pipe")]
    assert await asyncio.wait_for(sink.deliver([event(1)]), 10) == no_reader
    # The shipper comes: the retry is its, once.
    fifo = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert await asyncio.wait_for(sink.deliver([event(1)]), 10) == [Delivered()]
        ids = [json.loads(line)["id"] for line in read_all(fifo).splitlines()]
    finally:
        os.close(fifo)
    assert ids == ["ev-1"]


def ccnow_config(tmp_path: Path, fake: FakeCCNow, jsonl: str) -> Path:
    """A config with one pending CCNow order to discover; `jsonl`: more keys of the jsonl
    sink, the table write_config ends with."""
    fake.orders = {"396-10-1142": "pending"}
    return write_config(tmp_path, ccnow=fake, ccnow_extra='poll_interval = "1h"', extra=jsonl)


async def test_catch_up_ends_at_its_deliver_timeout_while_a_write_blocks(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # The sink's own timeout is far beyond the run's: `--deliver-timeout` is what ends it (a
    # systemd oneshot that runs it must not hang).
    cfg = ccnow_config(tmp_path, fake_ccnow, 'timeout = "10m"\n')
    with fifo_at(tmp_path / "events.jsonl", full=True):
        # A process: its exit is the point, with a thread still blocked in the write.
        result = await run_cli("--config", cfg, "catch-up", "--deliver-timeout", "1s", timeout_s=30)
    assert result.code == 75, result.stderr
    [done] = [x for x in result.log_lines() if x["message"] == "catch-up.done"]
    assert done["undelivered"] == {"jsonl": 1}
    assert done["events"] == 1


async def test_the_daemon_stops_while_a_write_blocks(tmp_path: Path, fake_ccnow: FakeCCNow) -> None:
    cfg = ccnow_config(tmp_path, fake_ccnow, 'timeout = "10m"\n')
    log = tmp_path / "daemon.log"
    with fifo_at(tmp_path / "events.jsonl", full=True):
        async with daemon(cfg, cli_env()) as proc:
            # The log sink has the event: it is in the outbox, and the jsonl lane has it in hand
            # or gets it at the stop's flush.
            await poll_until(lambda: '"order.discovered"' in log.read_text(), 20, "the event")
            proc.send_signal(signal.SIGTERM)
            # The stop gives up on the write; its thread does not keep the process alive.
            assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert '"daemon.stopped"' in log.read_text()
