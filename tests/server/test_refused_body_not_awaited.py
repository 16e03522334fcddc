"""A refused request (a forged signature, an unknown path) whose body has not arrived is answered
at once and its connection closed: the receiver does not wait `header_timeout` for a body it
would only throw away. It waited, so a few such requests held every connection and CCV's one
notification call got a 503. Real sockets against the receiver on loopback."""

from __future__ import annotations

import asyncio
import gzip

from reconciler.metrics import Metrics
from tests.server.conftest import FakeHub, ccv_path
from tests.server.test_rejections import signed_path
from tests.server.test_server import bounded_receiver, close_all

FORGED = signed_path("not-the-secret-0123456789", "O-1")


def head(path: str, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n").encode()


async def test_refusals_whose_body_never_comes_do_not_crowd_out_ccvs_call(
    hub: FakeHub, metrics: Metrics
) -> None:
    # The header timeout far beyond the test's patience: an answer only comes if not waited for.
    async with bounded_receiver(hub, metrics, max_connections=8, header_timeout_s=60) as port:
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
        for index, (_, writer) in enumerate(opened):
            writer.write(head(FORGED if index % 2 else "/wp-login.php", 100))
        for reader, _ in opened:
            answer = await asyncio.wait_for(reader.read(), 5)  # to EOF: closed after it
            assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
            assert b"\r\nConnection: close\r\n" in answer
        await close_all([writer for _, writer in opened])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(ccv_path(order_id="O-7"), 0, "Connection: close\r\n"))
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 202"), answer[:100]
        await close_all([writer])
    await hub.wait_calls(1)


async def test_a_broken_body_that_came_whole_is_still_the_first_thing_wrong(
    hub: FakeHub, metrics: Metrics
) -> None:
    async with bounded_receiver(hub, metrics, max_connections=8, header_timeout_s=60) as port:
        broken = gzip.compress(b"396-10-1142")[:-6]  # its trailer cut off
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(FORGED, len(broken), "Content-Encoding: gzip\r\n") + broken)
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line.startswith(b"HTTP/1.1 400"), line
        await close_all([writer])
