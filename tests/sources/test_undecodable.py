"""An answer in a Content-Encoding that cannot be decoded (`br` without Brotli, a gzip that is
none) came from CCV or a proxy: that order's `protocol` failure, never a connection's, so it
opens no circuit breaker; a body cut mid-way is still the connection's."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from reconciler.model import Observation, OrderKey, Outcome
from reconciler.sources.ccv import CCVClient
from reconciler.sources.errors import ProtocolError
from tests.conftest import call_cli, write_config
from tests.fake_providers import STAMPED, FakeCCV, Reply, ccv_config

BROTLI = Reply(200, b"\x0b\x02\x80{}\x03", "application/json", {"Content-Encoding": "br"})
NOT_GZIP = Reply(200, b'{"orderStatus": "New"}', "application/json", {"Content-Encoding": "gzip"})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def failed(order_id: str, reason: str) -> Observation:
    return Observation(
        OrderKey("ccv", "default", order_id), Outcome.FAILED, reason=reason, asked=STAMPED
    )


@pytest.mark.parametrize("reply", [BROTLI, NOT_GZIP], ids=["br", "not-gzip"])
async def test_an_undecodable_answer_fails_the_order_as_protocol_without_a_retry(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession, reply: Reply
) -> None:
    fake_ccv.replies["A1"] = reply
    client = CCVClient(ccv_config(fake_ccv.base_url), session, secrets=())
    assert await client.fetch("A1") == failed("A1", "protocol")
    assert len(fake_ccv.requests) == 1


async def test_undecodable_answers_open_no_circuit_breaker(
    fake_ccv: FakeCCV, session: aiohttp.ClientSession
) -> None:
    # Twice the breaker's run (at least 5 checks in a row): each is its order's failure.
    ids = [f"A{n}" for n in range(12)]
    fake_ccv.always = BROTLI
    seen: list[Observation] = []

    async def emit(observation: Observation) -> None:
        seen.append(observation)

    client = CCVClient(ccv_config(fake_ccv.base_url, concurrency=1), session, secrets=())
    await client.check_orders(ids, emit)  # no SourceUnavailable: the account answers
    assert sorted(seen, key=lambda o: o.key) == [failed(i, "protocol") for i in sorted(ids)]


async def test_a_compressed_body_cut_mid_way_is_still_the_connections(
    session: aiohttp.ClientSession,
) -> None:
    body = gzip.compress(b'{"orderStatus": "New"}' * 200)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body[: len(body) // 2])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = CCVClient(ccv_config(f"http://127.0.0.1:{port}"), session, secrets=())
        assert await client.fetch("A1") == failed("A1", "connection")
    finally:
        server.close()
        await server.wait_closed()


async def test_the_probe_and_check_online_say_what_the_answer_was(
    tmp_path: Path, fake_ccv: FakeCCV, session: aiohttp.ClientSession
) -> None:
    fake_ccv.always = BROTLI
    with pytest.raises(ProtocolError, match=r"content-encoding .*\(br\)"):
        await CCVClient(ccv_config(fake_ccv.base_url), session, secrets=()).probe()
    result = await call_cli("--config", write_config(tmp_path, ccv=fake_ccv), "check", "--online")
    assert result.code == 75
    assert "ccv/default: unavailable (answer in a content-encoding" in result.stderr
    assert "(br)" in result.stderr and "connection" not in result.stderr
