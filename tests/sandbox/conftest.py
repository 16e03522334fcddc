"""What the sandbox's tests share: a sandbox on a loopback port, and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from reconciler.sandbox import Sandbox, SandboxOptions

Serve = Callable[..., Awaitable[tuple[Sandbox, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start sandboxes (nothing advances by itself, 5 orders unless told) and stop them after."""
    started: list[Sandbox] = []

    async def _serve(**options: Any) -> tuple[Sandbox, str]:
        sandbox = Sandbox(SandboxOptions(**{"advance": False, "orders": 5, **options}))
        started.append(sandbox)
        return sandbox, await sandbox.start("127.0.0.1", 0)

    yield _serve
    for sandbox in started:
        await sandbox.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
