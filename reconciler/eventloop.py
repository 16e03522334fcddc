"""The event loop every command runs on: uvloop where it is installed, asyncio's own otherwise.

A catch-up keeps one core busy in the event loop and aiohttp; uvloop's loop (libuv, as uvicorn
uses it) takes 3-8 % off it in the benchmarks. RECONCILER_EVENT_LOOP=asyncio keeps the standard
loop, with the allocator tuned for its read buffers. Both are process-wide, so they are chosen
here, at the one entry every command runs through.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "RECONCILER_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


class EventLoopError(Exception):
    """RECONCILER_EVENT_LOOP names a loop that cannot be used."""


def loop_name() -> str:
    """Return the loop commands run on: "uvloop" or "asyncio"."""
    wanted = os.environ.get(ENV, "").strip().lower() or "auto"
    if wanted not in CHOICES:
        raise EventLoopError(
            f"config error: {ENV}: must be one of {', '.join(CHOICES)}, not {wanted!r}"
        )
    installed = importlib.util.find_spec("uvloop") is not None
    if wanted == "uvloop" and not installed:
        raise EventLoopError(f"config error: {ENV}: uvloop is not installed")
    return "uvloop" if wanted != "asyncio" and installed else "asyncio"


def tune_allocator() -> None:
    """Let the heap serve the 256 KiB read buffers of asyncio's own loop (uvloop reads into one
    buffer of its own, so it needs nothing).

    glibc serves allocations above its mmap threshold (128 KiB at start) with a fresh mmap and
    munmap each: three system calls for every HTTP answer read. Freeing one larger mmapped
    block raises that threshold for the rest of the process (glibc's dynamic threshold), so the
    buffers come from the heap instead. Elsewhere this is a harmless allocation. Measured to
    save about 8 % of a catch-up's CPU time on asyncio's loop (bench/README.md).
    """
    block = bytearray(4 << 20)
    del block


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the chosen loop (see loop_name)."""
    try:
        name = loop_name()
    except EventLoopError:
        main.close()  # never started; closed, it is not reported as "never awaited"
        raise
    if name == "uvloop":
        import uvloop

        return uvloop.run(main)
    tune_allocator()
    return asyncio.run(main)
