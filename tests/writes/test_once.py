"""A write call sent once, for both providers: what the caller learns of each way it can end."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from reconciler.sources.http import Stopping
from reconciler.writes.once import (
    AnswerTooLarge,
    BodyBroke,
    NotSent,
    Uncertain,
    UndecodableAnswer,
    WriteAwareConnector,
    send_once,
)

# Generous: an answer on a loaded machine took more than the 0.5 s these tests once gave it,
# and read as a timeout.
TIMEOUT = aiohttp.ClientTimeout(total=30)
# A timeout after the connection was made: the read's, which starts once the request is sent,
# so that a slow connect on a loaded machine cannot make it the connect's.
READ_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_read=0.5)
# For a peer that never answers (a TLS handshake left hanging): how soon it is given up.
SHORT = aiohttp.ClientTimeout(total=0.5)


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        if request.path == "/big":
            return web.Response(status=201, body=b"x" * 2048)
        if request.path == "/gzip-bomb":
            # 512 kB inflated from under 1 kB: the limit (1 kB here) is on what the body
            # becomes, not on its Content-Length.
            bomb = gzip.compress(b" " * (512 << 10))
            assert len(bomb) < 1024
            return web.Response(status=201, body=bomb, headers={"Content-Encoding": "gzip"})
        if request.path == "/gzip":
            small = gzip.compress(b'{"ok": true}')
            return web.Response(status=201, body=small, headers={"Content-Encoding": "gzip"})
        if request.path == "/br":
            # Brotli, which aiohttp cannot decode here: refused with the headers.
            brotli = b"\x0b\x02\x80{}\x03"
            return web.Response(status=201, body=brotli, headers={"Content-Encoding": "br"})
        if request.path == "/not-gzip":
            return web.Response(status=201, body=b"{}", headers={"Content-Encoding": "gzip"})
        if request.path == "/slow":
            await asyncio.sleep(5)
        if request.path == "/drop":
            assert request.transport is not None
            request.transport.abort()
        if request.path == "/redirect":
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=500, text="busy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield srv, seen
    finally:
        await srv.close()


async def send(
    url: URL, *, aware: bool = False, timeout: aiohttp.ClientTimeout = TIMEOUT
) -> object:
    connector = WriteAwareConnector() if aware else None
    # As the runtime's session: answers are decoded by read_body alone.
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        return await send_once(
            session,
            "POST",
            url,
            headers={},
            data=b"{}",
            timeout=timeout,
            gate=asyncio.Semaphore(1),
            max_body=1024,
        )


async def test_each_ending_is_told_apart_and_nothing_is_sent_twice(
    server: tuple[TestServer, list[str]],
) -> None:
    srv, seen = server
    reply = await send(srv.make_url("/busy"))
    assert getattr(reply, "status", None) == 500  # an answer, even a 5xx: not retried
    with pytest.raises(AnswerTooLarge) as big:
        await send(srv.make_url("/big"))
    assert big.value.status == 201
    with pytest.raises(Uncertain, match="timeout"):
        await send(srv.make_url("/slow"), timeout=READ_TIMEOUT)
    with pytest.raises(Uncertain, match="connection"):
        await send(srv.make_url("/drop"))
    with pytest.raises(AnswerTooLarge):
        await send(srv.make_url("/gzip-bomb"))
    assert getattr(await send(srv.make_url("/gzip")), "body", None) == b'{"ok": true}'
    redirect = await send(srv.make_url("/redirect"))
    assert getattr(redirect, "status", None) == 302  # not followed: the credential stays
    # An answer that cannot be decoded came from the provider: it got the request, and its
    # connection was not lost.
    with pytest.raises(UndecodableAnswer, match="br") as br:
        await send(srv.make_url("/br"))
    assert br.value.status == 201  # its status came: the body is what could not be read
    with pytest.raises(UndecodableAnswer, match="gzip") as not_gzip:
        await send(srv.make_url("/not-gzip"))
    assert not_gzip.value.status == 201
    assert seen == [
        "/busy",
        "/big",
        "/slow",
        "/drop",
        "/gzip-bomb",
        "/gzip",
        "/redirect",
        "/br",
        "/not-gzip",
    ]


@pytest.mark.parametrize("aware", [False, True])
async def test_a_timeout_after_the_connection_was_made_stays_uncertain(
    server: tuple[TestServer, list[str]], aware: bool
) -> None:
    srv, seen = server
    with pytest.raises(Uncertain, match="timeout"):
        await send(srv.make_url("/slow"), aware=aware, timeout=READ_TIMEOUT)
    assert seen == ["/slow"]


async def test_a_tls_handshake_that_never_ends_is_not_sent() -> None:
    # The listener's kernel takes the TCP connection; nobody answers the ClientHello, so the
    # request never left: safe to send again, not uncertain for ever.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        url = URL(f"https://127.0.0.1:{sock.getsockname()[1]}/x")
        with pytest.raises(NotSent, match="connect timeout"):
            await send(url, aware=True, timeout=SHORT)
        # Without the connector's word the phase is unknown: a timeout may have sent it.
        with pytest.raises(Uncertain, match="timeout"):
            await send(url, timeout=SHORT)


async def test_a_location_is_passed_on_made_absolute(
    server: tuple[TestServer, list[str]],
) -> None:
    srv, _ = server
    redirect = await send(srv.make_url("/redirect"))
    assert getattr(redirect, "location", None) == str(srv.make_url("/elsewhere"))


async def test_a_refused_connection_is_not_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NotSent):
        await send(URL(f"http://127.0.0.1:{port}/x"))


async def test_a_write_waits_for_its_accounts_turn_outside_its_timeout(
    server: tuple[TestServer, list[str]],
) -> None:
    # The account's one request in flight holds the gate past the write's whole timeout (2 s):
    # the write is sent when its turn comes, and answered, not failed as a timeout. (2 s, not
    # less: once its turn comes the write has that long to be answered, on a loaded machine.)
    srv, seen = server
    gate, timeout = asyncio.Semaphore(1), aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession() as session:
        async with gate:
            write = asyncio.ensure_future(
                send_once(
                    session,
                    "POST",
                    srv.make_url("/busy"),
                    headers={},
                    data=b"{}",
                    timeout=timeout,
                    gate=gate,
                    max_body=1024,
                )
            )
            done, _ = await asyncio.wait({write}, timeout=2.5)
            assert not done and seen == []
        assert (await write).status == 500
    assert seen == ["/busy"]


async def test_a_write_still_waiting_for_its_turn_when_the_stop_begins_is_not_sent(
    server: tuple[TestServer, list[str]],
) -> None:
    srv, seen = server
    gate, halt = asyncio.Semaphore(1), asyncio.Event()
    async with aiohttp.ClientSession() as session:
        async with gate:
            write = asyncio.ensure_future(
                send_once(
                    session,
                    "POST",
                    srv.make_url("/busy"),
                    headers={},
                    data=b"{}",
                    timeout=TIMEOUT,
                    gate=gate,
                    max_body=1024,
                    halt=halt,
                )
            )
            halt.set()
        # Not a failure to reach the provider: the caller answers "stopping", records nothing.
        with pytest.raises(Stopping):
            await write
    assert seen == []


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        (b"Content-Length: 40\r\nRetry-After: 7\r\n", b"line one\nline tw"),
        (b"Transfer-Encoding: chunked\r\nRetry-After: 7\r\n", b"line one\nline tw"),
        # Encoded, what came cannot be read: none of it is kept.
        (b"Content-Length: 40\r\nContent-Encoding: gzip\r\nRetry-After: 7\r\n", b""),
    ],
    ids=["length", "chunked", "gzip"],
)
async def test_a_body_that_broke_keeps_what_came_before_it(headers: bytes, kept: bytes) -> None:
    # Nothing of it was kept: the whole lines CCNow's answer brought before the break were lost.
    body = b"line one\nline tw"
    if b"chunked" in headers:
        body = b"%x\r\n%s\r\n" % (len(body), body)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n" + body)
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/w")
    try:
        connector = WriteAwareConnector()
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            with pytest.raises(BodyBroke) as broke:
                await send_once(
                    *(session, "GET", url),
                    headers={},
                    data=b"",
                    timeout=TIMEOUT,
                    gate=asyncio.Semaphore(1),
                    max_body=1024,
                )
    finally:
        listening.close()
        await listening.wait_closed()
    assert (str(broke.value), broke.value.status) == ("connection", 200)
    came = broke.value.came
    assert came is not None
    assert (came.body, came.framed, came.chunked, came.retry_after) == (kept, False, False, "7")
