"""A write (a CCNow action's post, a CCV submit: `once.send_once`) never goes out on a
connection that sat idle in the pool: a server closes an idle keep-alive connection when it
likes, and one it closes just as the write goes out is read as an answer lost after the
provider got it (an adjust `uncertain`, for a person), though the server never read it. The
idle connections are kept for the reads after it. A server on 127.0.0.1 that answers a write
coming on a connection something used before by closing it, unanswered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from reconciler.sources.http import Reply
from reconciler.writes.once import WriteAwareConnector, send_once

BODY = b"396-10-1142 mark_shipped\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


class KeepAlive:
    """Answers each request on its connection, kept open; a write (its body `write`) that
    comes on a connection a request came on before is met by a close (the keep-alive ended)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes]] = []  # (connection number, body), as they came
        self.connections = 0
        # A body `hold` is answered once `release` is set; `holding`: one came.
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number, served = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.seen.append((number, body))
                if body == b"write" and served:
                    return  # closed, unanswered
                served += 1
                if body == b"hold":
                    self.holding.set()
                    await self.release.wait()
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
async def keep_alive() -> AsyncIterator[tuple[KeepAlive, URL]]:
    server = KeepAlive()
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield server, URL(f"http://127.0.0.1:{port}/oapi")
    finally:
        listening.close()
        await listening.wait_closed()


async def test_a_write_takes_a_connection_of_its_own_and_the_idle_one_is_kept(
    keep_alive: tuple[KeepAlive, URL],
) -> None:
    # It took the idle connection a poll had left in the pool: closed as it went out, the
    # write was `Uncertain` ("connection"), an adjust uncertain for a person.
    server, url = keep_alive
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=WriteAwareConnector()) as session:

        async def poll() -> None:
            async with session.post(url, data=b"poll", timeout=timeout) as resp:
                assert (resp.status, await resp.read()) == (200, BODY)

        await poll()
        reply = await write(session, url, b"write", asyncio.Semaphore(1))
        assert (reply.status, reply.body) == (200, BODY)
        await poll()  # the idle connection was kept for it, not closed
    assert server.seen == [(1, b"poll"), (2, b"write"), (1, b"poll")]


async def test_a_write_waiting_for_a_free_slot_takes_a_connection_of_its_own(
    keep_alive: tuple[KeepAlive, URL],
) -> None:
    # The pool is full (limit 1) with a write whose answer is held: the next write waits for
    # its slot, and takes a new connection when the first ends, never the first's.
    server, url = keep_alive
    gate = asyncio.Semaphore(2)  # the account's bound lets both go: the pool's limit holds one
    async with aiohttp.ClientSession(connector=WriteAwareConnector(limit=1)) as session:
        first = asyncio.ensure_future(write(session, url, b"hold", gate))
        await server.holding.wait()  # the first is out
        second = asyncio.ensure_future(write(session, url, b"write", gate))
        for _ in range(20):  # it got as far as it can: waiting for the slot
            await asyncio.sleep(0)
        assert not second.done() and server.seen == [(1, b"hold")]
        server.release.set()
        replies = await asyncio.gather(first, second)
    assert [(r.status, r.body) for r in replies] == [(200, BODY)] * 2
    assert server.seen == [(1, b"hold"), (2, b"write")]


async def write(
    session: aiohttp.ClientSession, url: URL, data: bytes, gate: asyncio.Semaphore
) -> Reply:
    return await send_once(
        session,
        "POST",
        url,
        headers={},
        data=data,
        timeout=aiohttp.ClientTimeout(total=5),
        gate=gate,
        max_body=1_000,
    )
