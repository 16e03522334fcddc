"""The event loop every command runs on: uvloop where it is installed, asyncio's own otherwise.

A catch-up keeps one core busy in the event loop and aiohttp; uvloop's loop (libuv, as uvicorn
uses it) takes 3-8 % off it in the benchmarks. RECONCILER_EVENT_LOOP=asyncio keeps the standard
loop.
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
    return asyncio.run(main)
