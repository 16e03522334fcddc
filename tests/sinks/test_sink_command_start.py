"""A command sink's delivery cancelled while its program starts: nothing the program started
outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sinks.test_sink_command import HANG, alive, event, make_sink, py, reaped, wait_until


def children() -> set[str]:
    """This process's children's pids."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    return {pid for f in tasks.glob("*/children") for pid in f.read_text().split()}


def hold_the_loop_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Block the caller's event loop (no other step of it runs) until `predicate` holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.mark.parametrize("cancels", [1, 2])
async def test_a_delivery_cancelled_while_its_program_starts_kills_what_it_started(
    tmp_path: Path, cancels: int
) -> None:
    # On a loaded machine the program ran and started its own child before the loop had
    # connected its pipes: a cancellation then, inside the start, ended in asyncio's (and
    # uvloop's) clean-up of a start cut short, which kills the program alone. Its child lived
    # on, and on asyncio the cancelled delivery waited for that child to close stderr. The
    # loop is held here, as a slow one was, until the program's child is there. A second
    # cancellation (the cutoff's, then its batch's) while the start ends did the same.
    pids = tmp_path / "pids"
    before = children()  # a child another test left (not reaped yet) is not this program
    task = asyncio.ensure_future(make_sink(py(HANG, pids)).deliver([event(1)]))
    deadline = time.monotonic() + 30
    while not children() - before:  # the program spawned, its pipes not connected yet
        assert time.monotonic() < deadline, "the program was not started"
        await asyncio.sleep(0)
    hold_the_loop_until(pids.exists)
    pid, child = map(int, pids.read_text().split())
    try:
        task.cancel()
        for _ in range(cancels - 1):
            await asyncio.sleep(0)  # the delivery took the first: it waits for the start
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)  # not TimeoutError: it waited for the child

        await wait_until(lambda: reaped(pid), 10)
        await wait_until(lambda: not alive(child), 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)  # a failure leaves no sleeper behind
