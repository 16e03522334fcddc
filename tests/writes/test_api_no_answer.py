"""A command handed to the running daemon whose answer does not come within its wait: exit 75
and the words saying so, on Python 3.10 too. There aiohttp's whole-request timeout is
asyncio.TimeoutError, not the built-in TimeoutError it is from 3.11 on: the command failed
with a traceback (exit 70)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.commands.ccv_submit import _through_api
from reconciler.config import load_config
from reconciler.exits import EX_TEMPFAIL
from reconciler.redact import config_secrets
from reconciler.writes.daemon_api import post_to_api
from tests.conftest import free_port, write_config
from tests.fake_ccv_writes import submit_body
from tests.fake_providers import FakeCCV
from tests.server.test_api import api_toml


@asynccontextmanager
async def silent_api(port: int) -> AsyncIterator[None]:
    """A stand-in daemon's API that takes every request and answers none while it lasts."""
    over = asyncio.Event()

    async def hold(request: web.Request) -> web.StreamResponse:
        await over.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/{path:.*}", hold)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield
    finally:
        over.set()
        await server.close()


async def test_an_api_command_left_unanswered_exits_75(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    async with FakeCCV() as fake:  # never asked: the daemon's API is
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    config = load_config(cfg, secrets_optional=True)
    assert config.api is not None
    async with silent_api(port):
        got = await post_to_api(config.file, config.api, "/api/v1/orders", {}, timeout_s=0.3)
    assert got == EX_TEMPFAIL
    assert "the daemon's API did not answer (TimeoutError)" in capsys.readouterr().err


async def test_a_submit_through_the_daemon_left_unanswered_exits_75(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    async with FakeCCV() as fake:  # never asked: the daemon's API is
        cfg = write_config(tmp_path, ccv=fake, extra=api_toml(port))
    config = load_config(cfg, secrets_optional=True)
    assert config.api is not None
    document = json.loads(json.dumps(submit_body(externalReference="slow-1")))
    async with silent_api(port):
        code = await _through_api(
            config, config.api, "default", document, config_secrets(config), wait_s=1.0
        )
    assert code == EX_TEMPFAIL
    err = capsys.readouterr().err
    assert "the daemon's API did not answer within 1 s" in err, err
    assert "external reference slow-1 is not known yet" in err, err
