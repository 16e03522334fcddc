"""A command sink's delivery cancelled (the stop's cutoff) in the very step its program's start
ends: the cancellation is not lost. asyncio.wait_for on Python 3.10 and 3.11 returns its result
instead of raising when the awaited future and the cancellation come together; the delivery
then went on with its program for all its `timeout`, and the stop waited for it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.sinks.test_sink_command import alive, event, make_sink


def children() -> list[int]:
    tasks = Path(f"/proc/{os.getpid()}/task")
    return [int(pid) for f in tasks.glob("*/children") for pid in f.read_text().split()]


async def test_a_cancel_as_the_start_ends_cancels_the_delivery() -> None:
    sink = make_sink((sys.executable, "-c", "import time; time.sleep(60)"), timeout_s=30.0)
    delivery = asyncio.ensure_future(sink.deliver([event(1)]))
    await asyncio.sleep(0)  # its first step hands the start to its thread: its end is `_last`
    started = sink._launcher._last
    assert started is not None
    if started.done():
        pytest.skip("the start ended before the cancellation could be tied to its end")
    # Cancelled in the step the start's end is told to the loop, before the delivery resumes.
    started.add_done_callback(lambda _: delivery.cancel())
    done, _ = await asyncio.wait((delivery,), timeout=10)
    assert done, "the cancelled delivery went on with its program"
    assert delivery.cancelled(), delivery.result()
    assert not any(alive(pid) for pid in children())  # its program stopped with it
