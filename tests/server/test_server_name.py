"""Both listeners name themselves once, `Server: reconciler`, in every answer (not aiohttp's
banner naming the Python and aiohttp versions, to whoever scans an internet-facing port): the
API's own refusals, the fixed page of a malformed request, a body over the limit, an `Expect`
refused before the body is invited, and the 503 of a listener whose every connection is busy
(written raw, without a response; it had no `Server:` line). Raw sockets: a client library
would merge or hide a repeated header."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.metrics import Metrics
from reconciler.server.connections import ConnectionLimits
from tests.fake_ccv_writes import FakeCCVWrites
from tests.server.conftest import FakeHub, ccv_path
from tests.server.test_api import api_port, serve_api
from tests.server.test_listener_bounds import AUTH, FORGED, TERABYTE, head, until_closed
from tests.server.test_server import bounded_receiver

MALFORMED = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"
# (listener, request, status); "busy": the request on a new connection while the listener's one
# connection holds a request whose body has not come.
CASES = {
    "api-401": ("api", head("GET", "/api/v1/events", "Connection: close"), 401),
    "api-404": ("api", head("GET", "/api/v1/nothing", AUTH, "Connection: close"), 404),
    "api-malformed-400": ("api", MALFORMED, 400),
    "api-413": (
        "api",
        head("POST", "/api/v1/orders", AUTH, "Content-Length: 4097", "Connection: close")
        + b"x" * 4097,
        413,
    ),
    "api-expect-refused": (
        "api",
        head("POST", "/api/v1/orders", "Expect: 100-continue", "Content-Length: 10"),
        401,
    ),
    "api-busy-503": ("api", b"", 503),
    "receiver-malformed-400": ("receiver", MALFORMED, 400),
    "receiver-404": (
        "receiver",
        head("POST", FORGED, "Content-Length: 0", "Connection: close"),
        404,
    ),
    "receiver-413": (
        "receiver",
        head("POST", ccv_path(order_id="O-1"), f"Content-Length: {TERABYTE}"),
        413,
    ),
    "receiver-expect-refused": (
        "receiver",
        head("POST", FORGED, "Expect: 100-continue", "Content-Length: 10"),
        404,
    ),
    "receiver-busy-503": ("receiver", b"", 503),
}
# A request each listener takes, its body not sent: it holds its connection.
HOLDS = {
    "api": head("POST", "/api/v1/orders", AUTH, "Expect: 100-continue", "Content-Length: 10"),
    "receiver": head(
        "POST", ccv_path(order_id="O-1"), "Expect: 100-continue", "Content-Length: 10"
    ),
}


@contextlib.asynccontextmanager
async def listening(
    which: str, tmp_path: Path, fake: FakeCCVWrites, hub: FakeHub, metrics: Metrics
) -> AsyncIterator[int]:
    """Run the API or the receiver, one connection at most; yield its port."""
    if which == "api":
        async with serve_api(tmp_path, fake, limits=ConnectionLimits(1, 30)) as api:
            yield api_port(api)
    else:
        async with bounded_receiver(hub, metrics, max_connections=1, header_timeout_s=30) as port:
            yield port


@pytest.mark.parametrize("case", list(CASES))
async def test_every_answer_names_the_server_once(
    tmp_path: Path, fake: FakeCCVWrites, hub: FakeHub, metrics: Metrics, case: str
) -> None:
    which, request, status = CASES[case]
    async with listening(which, tmp_path, fake, hub, metrics) as port:
        held: asyncio.StreamWriter | None = None
        if status == 503:
            reader, held = await asyncio.open_connection("127.0.0.1", port)
            held.write(HOLDS[which])
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            answer = await until_closed(reader, 5)
        finally:
            writer.close()
            if held is not None:
                held.close()
    head_bytes = answer.partition(b"\r\n\r\n")[0]
    status_line, *lines = head_bytes.split(b"\r\n")
    assert int(status_line.split()[1]) == status, answer[:300]
    named = [line for line in lines if line.lower().startswith(b"server:")]
    assert named == [b"Server: reconciler"], head_bytes
