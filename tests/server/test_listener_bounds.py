"""Both listeners under requests whose bodies stall, never come, or never end: a body has a
deadline (408), a refusal does not read the body it refused, the API screens `Expect:
100-continue` like the receiver, and the connection cap closes only idle connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from reconciler.metrics import Metrics
from reconciler.server.connections import ConnectionLimits
from reconciler.server.http import Listener, read_body
from reconciler.sources.codings import BodyUnreadable
from tests.fake_ccv_writes import FakeCCVWrites
from tests.server.conftest import FakeHub
from tests.server.test_api import ORDER, TOKEN, Api, api, api_port, serve_api
from tests.server.test_server import bounded_receiver

__all__ = ("api",)  # the fixture, used by name

AUTH = f"Authorization: Bearer {TOKEN}"
TERABYTE = 10**12
FORGED = "/notify/ccv/default/order/x/forged"


def head(method: str, target: str, *headers: str) -> bytes:
    return "\r\n".join([f"{method} {target} HTTP/1.1", "Host: x", *headers, "", ""]).encode()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def until_closed(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Return what the server sends until it closes the connection (a reset counts: it closed
    with body bytes unread); fail when it keeps the connection open longer than `timeout_s`."""
    received = bytearray()

    async def read() -> None:
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                received.extend(chunk)

    await asyncio.wait_for(read(), timeout_s)
    return bytes(received)


@contextlib.asynccontextmanager
async def flooding(port: int, request_head: bytes) -> AsyncIterator[asyncio.StreamReader]:
    """Open a connection, send `request_head` and then body bytes without end, as fast as the
    server takes them, until it closes the connection; yield the reader."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_head)

    async def send_forever() -> None:
        chunk = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing():
                writer.write(chunk)
                await writer.drain()

    sending = asyncio.ensure_future(send_forever())
    try:
        yield reader
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# --- a body has a deadline ---------------------------------------------------------------------


async def test_stalled_api_bodies_get_408_and_free_the_api(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    limits = ConnectionLimits(4, header_timeout_s=0.3)
    async with serve_api(tmp_path, fake, limits=limits) as api:
        stalled = []
        for _ in range(4):  # every connection the cap allows
            reader, writer = await asyncio.open_connection("127.0.0.1", api_port(api))
            # 5 of the 100 bytes announced, then nothing.
            writer.write(head("POST", "/api/v1/orders", AUTH, "Content-Length: 100") + b'{"so')
            stalled.append((reader, writer))
        started = time.monotonic()
        for reader, writer in stalled:
            status, headers, body = parse(await until_closed(reader, 5))
            assert status == 408 and headers["connection"] == "close"
            assert json.loads(body) == {
                "error": "the body did not arrive within 0.3 s",
                "field": "$",
            }
            writer.close()
        assert time.monotonic() - started < 5
        status, document, _ = await api.call("GET", "/api/v1/events")
        assert status == 200 and document["events"] == []
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]


# --- a refusal does not read the body it refused -----------------------------------------------


async def test_the_receiver_refuses_an_endless_body_and_closes_at_once(
    hub: FakeHub, metrics: Metrics
) -> None:
    # A header timeout far above the wait below: the close is not a timeout's.
    async with (
        bounded_receiver(hub, metrics, max_connections=20, header_timeout_s=30) as port,
        flooding(port, head("POST", FORGED, f"Content-Length: {TERABYTE}")) as reader,
    ):
        status, headers, body = parse(await until_closed(reader, 3))
    assert (status, body) == (404, b'{"error": "not found"}')
    assert headers["connection"] == "close"
    assert hub.calls == []


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (head("POST", "/api/v1/orders", f"Content-Length: {TERABYTE}"), 401),
        (
            head(
                "POST",
                "/api/v1/orders",
                "Authorization: Bearer wrong-token-000000",
                f"Content-Length: {TERABYTE}",
            ),
            401,
        ),
        (head("GET", "/api/v1/events", AUTH, f"Content-Length: {TERABYTE}"), 200),
        (head("POST", "/api/v1/nothing", AUTH, f"Content-Length: {TERABYTE}"), 404),
    ],
)
async def test_the_api_answers_a_request_whose_body_it_does_not_read_and_closes_at_once(
    api: Api, request_head: bytes, status: int
) -> None:
    async with flooding(api_port(api), request_head) as reader:
        got, headers, _ = parse(await until_closed(reader, 3))
    assert got == status and headers["connection"] == "close"
    assert api.rows("SELECT count(*) FROM orders") == [(0,)]


# --- Expect: 100-continue on the API -----------------------------------------------------------

_REFUSED_BEFORE_CONTINUE = [
    # (method, target, headers, status)
    ("POST", "/api/v1/orders", ["Content-Length: 10"], 401),
    (
        "POST",
        "/api/v1/orders",
        ["Authorization: Bearer wrong-token-000000", "Content-Length: 10"],
        401,
    ),
    ("POST", "/api/v1/nothing", [f"Content-Length: {TERABYTE}"], 401),
    ("POST", "/api/v1/orders", [AUTH, f"Content-Length: {TERABYTE}"], 413),
    ("POST", "/api/v1/orders", [AUTH, "Content-Length: 4097"], 413),
    ("POST", "/api/v1/nothing", [AUTH, "Content-Length: 10"], 404),
    ("PUT", "/api/v1/orders", [AUTH, "Content-Length: 10"], 405),
]


@pytest.mark.parametrize(("method", "target", "headers", "status"), _REFUSED_BEFORE_CONTINUE)
async def test_the_api_does_not_invite_a_body_it_would_refuse(
    api: Api, method: str, target: str, headers: list[str], status: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api_port(api))
    try:
        writer.write(head(method, target, "Expect: 100-continue", *headers))
        answer = await until_closed(reader, 3)
    finally:
        writer.close()
    assert b"100 Continue" not in answer
    got, answer_headers, body = parse(answer)
    assert got == status and answer_headers["connection"] == "close"
    # As every other answer: not aiohttp's banner naming the Python and aiohttp versions.
    assert answer_headers["server"] == "reconciler"
    assert answer_headers["content-type"].startswith("application/json")
    assert "error" in json.loads(body)
    if status == 401:
        assert answer_headers["www-authenticate"].startswith("Bearer")
    if status == 405:
        assert "POST" in answer_headers["allow"]


async def test_the_api_invites_the_body_of_a_request_it_takes(api: Api) -> None:
    body = json.dumps({"source": "ccv", "order_id": ORDER}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", api_port(api))
    try:
        headers = [AUTH, "Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(head("POST", "/api/v1/orders", "Expect: 100-continue", *headers))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        status_line = await asyncio.wait_for(reader.readline(), 3)
        assert status_line.startswith(b"HTTP/1.1 201")
    finally:
        writer.close()
    assert api.rows("SELECT count(*) FROM orders") == [(1,)]


async def test_an_unknown_expectation_gets_417_in_json_from_the_api(api: Api) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api_port(api))
    try:
        writer.write(head("POST", "/api/v1/orders", AUTH, "Expect: teapot", "Content-Length: 9"))
        status, headers, body = parse(await until_closed(reader, 3))
    finally:
        writer.close()
    assert (status, json.loads(body)) == (417, {"error": "expectation failed"})
    assert headers["server"] == "reconciler"


# --- the cap closes only idle connections ------------------------------------------------------


async def test_at_the_cap_a_request_whose_head_has_arrived_is_not_closed_to_make_room(
    tmp_path: Path, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    limits = ConnectionLimits(1, header_timeout_s=0.3)
    async with serve_api(tmp_path, fake, limits=limits) as api:
        port = api_port(api)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Without yielding to the loop: the head of a stalled POST, then another connection.
        # The server sees both at once, the head first (its handler has not started yet).
        writer.write(head("POST", "/api/v1/orders", AUTH, "Content-Length: 100") + b'{"so')
        late = socket.create_connection(("127.0.0.1", port))
        late_reader, late_writer = await asyncio.open_connection(sock=late)
        try:
            # The late one is shed; the stalled request keeps its connection until its deadline.
            assert (await until_closed(late_reader, 3)).startswith(b"HTTP/1.1 503")
            answer = await until_closed(reader, 3)
            assert answer.startswith(b"HTTP/1.1 408")
            assert json.loads(parse(answer)[2])["field"] == "$"
        finally:
            writer.close()
            late_writer.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    full = [r.getMessage() for r in caplog.records if r.getMessage().endswith(".at_capacity")]
    assert full == ["api.at_capacity"]


async def test_a_burst_of_stalled_bodies_over_the_cap_logs_no_error(
    tmp_path: Path, fake: FakeCCVWrites, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    limits = ConnectionLimits(8, header_timeout_s=0.3)
    stall = head("POST", "/api/v1/orders", AUTH, "Content-Length: 100") + b'{"so'
    async with serve_api(tmp_path, fake, limits=limits) as api:
        port = api_port(api)
        burst = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(3 * 8))
        )
        for _, writer in burst:
            writer.write(stall)
        statuses = []
        for reader, writer in burst:
            answer = await until_closed(reader, 5)
            # Shed (503), or the body's deadline (408); never a request cut off unanswered.
            statuses.append(parse(answer)[0] if answer else None)
            writer.close()
        status, _, _ = await api.call("GET", "/api/v1/events")
        assert status == 200
    assert set(statuses) <= {408, 503, None} and 408 in statuses and 503 in statuses
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records)
    full = [r.getMessage() for r in caplog.records if r.getMessage().endswith(".at_capacity")]
    assert full == ["api.at_capacity"]


async def test_a_body_read_from_a_connection_already_closed_is_unreadable() -> None:
    # What the cap did to a connection whose request head had arrived: closed it before its
    # handler read the body; aiohttp then says RuntimeError (read at once: with a deadline, the
    # read runs in a task of its own, after aiohttp has seen the connection go).
    outcome: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        request.protocol.force_close()
        try:
            await read_body(request, 100)
        except BodyUnreadable:
            outcome.append("unreadable")
        return web.Response()

    app = web.Application()
    app.router.add_post("/", handler)
    listener = Listener(app, ConnectionLimits(4), logger=logging.getLogger("test"), name="test")
    port = await listener.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head("POST", "/", "Content-Length: 10") + b"12345")
        assert await until_closed(reader, 3) == b""
        writer.close()
    finally:
        await listener.close()
    assert outcome == ["unreadable"]
