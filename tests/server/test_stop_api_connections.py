"""A daemon (its Runtime, in this loop) whose stop lasts, a CCV submit sent through the API
waiting for its answer: a request on a connection the API or the receiver took before the stop
(kept alive after an answer, or idle since it opened) is answered 503 `stopping` and its
connection closed, /healthz among them, as README ("Start, stop, status") says, not cut off; a
submit asking `Expect: 100-continue` is not invited to send its body; the submit in flight
still ends, answered and recorded."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reconciler.config import load_config
from reconciler.daemon import Daemon
from reconciler.runtime import Runtime
from reconciler.server.connections import ConnectionLimits
from reconciler.systemd import Notifier
from tests.conftest import cli_env, environ, free_port, poll_until, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import TOKEN, api_toml
from tests.server.test_stop_taken_connections import read_answer
from tests.writes.test_submit_crash import submission_state

ANSWER_S = 20.0  # for an answer the daemon gives at once; bounds a loaded machine only
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The kept connections must outlive the stop's first step on a slow machine.
KEPT_S = 60.0


async def answer(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    """Send one request; return its status, headers and JSON body."""
    async with http.request(method, url, **kwargs) as resp:
        return resp.status, dict(resp.headers), json.loads(await resp.read())


def one_connection() -> aiohttp.ClientSession:
    """A client that keeps one connection alive and sends each request on it."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(ANSWER_S)
    )


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


async def test_requests_on_kept_alive_connections_during_the_stop_are_told_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    api_port, receiver_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}/api/v1"
    healthz = f"http://127.0.0.1:{receiver_port}/healthz"
    async with FakeCCVWrites() as ccv:
        toml = api_toml(api_port, receiver_port=receiver_port)
        cfg = write_config(
            tmp_path,
            ccv=ccv,
            ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n',
            extra=toml.replace("[api]", f'header_timeout = "{KEPT_S:g}s"\n\n[api]', 1),
        )
        # The submit's answer holds the stop (its timeout and 2 s) until the test lets it come.
        cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "20s"'))
        with environ(cli_env()):
            config = load_config(cfg)
        stop = asyncio.Event()
        async with (
            Runtime(config) as rt,
            aiohttp.ClientSession(headers=AUTH) as submitting,
            one_connection() as reader,
            one_connection() as stranger,
            one_connection() as monitor,
        ):
            limits = ConnectionLimits(max_connections=16, header_timeout_s=KEPT_S)
            served = Daemon(config, rt, Notifier(None), api_limits=limits)
            serving = asyncio.ensure_future(served.serve(stop))
            try:
                await poll_until(lambda: logged(caplog, "daemon.ready"), 30, "daemon.ready")
                ccv.submit_hold = asyncio.Event()
                body = submit_body(externalReference="shop-12")
                submit = asyncio.ensure_future(
                    answer(submitting, "POST", f"{api}/ccv/orders", json=body)
                )
                await ccv.wait_until(lambda: len(ccv.submits) == 1, ANSWER_S)
                idle_api = await asyncio.open_connection("127.0.0.1", api_port)
                idle_receiver = await asyncio.open_connection("127.0.0.1", receiver_port)
                # Each kept connection answered once before the stop: taken and kept alive; and
                # the idle ones, opened before them, were taken before them.
                assert (await answer(reader, "GET", f"{api}/events", headers=AUTH))[0] == 200
                assert (await answer(stranger, "GET", f"{api}/events"))[0] == 401
                assert (await answer(monitor, "GET", healthz))[0] in (200, 503)

                stop.set()
                await poll_until(lambda: logged(caplog, "daemon.stopping"), 30, "the stop")
                read = await answer(reader, "GET", f"{api}/events", headers=AUTH)
                unauthorized = await answer(stranger, "GET", f"{api}/events")
                health = await answer(monitor, "GET", healthz)
                idle_api[1].write(
                    b"POST /api/v1/ccv/orders HTTP/1.1\r\nHost: x\r\n"
                    + f"Authorization: Bearer {TOKEN}\r\n".encode()
                    + b"Content-Type: application/json\r\nContent-Length: 80\r\n"
                    b"Expect: 100-continue\r\n\r\n"
                )
                expecting = await read_answer(idle_api[0])
                idle_receiver[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                first_health = await read_answer(idle_receiver[0])
                closed = [await reader.read() for reader, _ in (idle_api, idle_receiver)]
                still_stopping = not logged(caplog, "daemon.stopped")
            finally:
                stop.set()
                if ccv.submit_hold is not None:
                    ccv.submit_hold.set()
                await asyncio.wait_for(serving, 60)
            submitted = await submit
            for _, writer in (idle_api, idle_receiver):
                writer.close()

    assert still_stopping
    status, headers, body = read
    assert (status, body) == (503, {"error": "stopping"})
    assert headers["Connection"] == "close" and headers["Retry-After"] == "60"
    # The token first, as ever: nothing is said to a caller without it.
    status, headers, body = unauthorized
    assert (status, body) == (401, {"error": "a bearer token is required"})
    assert headers["Connection"] == "close"
    status, headers, body = health
    assert (status, body) == (503, {"status": "stopping", "error": "stopping"})
    assert headers["Connection"] == "close" and headers["Retry-After"] == "60"
    head, page = expecting
    assert head.startswith(b"HTTP/1.1 503 "), head  # no `100 Continue` before it
    assert json.loads(page) == {"error": "stopping"}
    head, page = first_health
    assert head.startswith(b"HTTP/1.1 503 "), head
    assert json.loads(page) == {"status": "stopping", "error": "stopping"}
    assert closed == [b"", b""]
    # The write sent before the stop ended: answered and recorded.
    assert submitted[0] == 201 and submitted[2]["orderId"]
    assert submission_state(tmp_path, "shop-12") == "succeeded"
    refused = [r.__dict__["fields"] for r in logged(caplog, "api.refused")]
    assert refused == [{"reason": "stopping", "method": m} for m in ("GET", "POST")]
