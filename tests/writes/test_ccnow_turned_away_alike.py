"""A ship, cancel or tracking upload (posted again after a failure that is no answer) tells a
post turned away or never sent from one that may have reached CCNow as an `adjust` (posted
once) does: a status that says the post was not run whose body broke before any byte of it
came, or a TLS handshake that never ended, reached nothing, so CCNow's later `not pending`
refuses a tracking upload rather than leaving it for a person. A refusal whose body broke keeps
whether that body began, not its bytes. Each answer is sent by a fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from reconciler.sources.connection import WriteAwareConnector
from reconciler.writes.once import send_once
from tests.conftest import write_config
from tests.fake_providers import FakeCCNow, Raw, Reply
from tests.writes.test_ccnow_actions import A, ccnow, commands, make_due
from tests.writes.test_ccnow_commands_one_at_a_time import action_events

TRACK = ("add-tracking", A, "--carrier", "DHL", "--number", "JD0146")
NOT_PENDING = Reply(200, f"{A} error_message order not pending\n")

BODILESS = {
    # Its Content-Length promised a body; the connection closed before any byte of it.
    "401-short": b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 20\r\n\r\n",
    # Chunked, closed before its first chunk.
    "404-no-chunk": b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n",
    # A 429 is tried again within the post: its first attempt reached nothing either.
    "429-short": b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 200\r\n\r\n",
}


@pytest.mark.parametrize("raw", list(BODILESS.values()), ids=list(BODILESS))
async def test_a_not_run_status_whose_body_never_began_is_no_earlier_attempt_of_an_upload(
    tmp_path: Path, fake_ccnow: FakeCCNow, raw: bytes
) -> None:
    # It was taken for a lost answer (posted again at once, a 401 too): CCNow's `not pending`
    # afterwards left the upload `uncertain` for a person, "an earlier attempt may have reached
    # CCNow with it", though no attempt had.
    fake_ccnow.orders = {A: "completed"}
    fake_ccnow.script = [Raw(raw=raw), NOT_PENDING]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    for _ in range(2):  # a 401 or 404 leaves it queued for the next run, which posts it
        await make_due(tmp_path)
        result = await ccnow(cfg, *TRACK)
        if commands(tmp_path)[0][1] != "queued":
            break
        assert result.code == 75, result.stdout + result.stderr
        assert commands(tmp_path) == [(A, "queued", f"http {raw[9:12].decode()}")]
        assert len(fake_ccnow.requests) == 1  # not posted again at once: nothing to retry
    assert result.code == 65, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "refused", "error_message order not pending")]
    assert action_events(tmp_path) == ["order.action_refused"]
    assert len(fake_ccnow.requests) == 2


async def test_a_not_run_status_whose_body_began_and_broke_is_a_lost_answer_for_a_ship(
    tmp_path: Path, fake_ccnow: FakeCCNow
) -> None:
    # As for an adjust (tests/writes/test_ccnow_broken_action_answers.py): the rest may have
    # been its line.
    # Posted again at once, as after any lost answer, CCNow's `not pending` is read as an
    # earlier attempt's doing. (So it was before: this one guards the retry's reading.)
    fake_ccnow.orders = {A: "mark_shipped"}
    raw = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 90\r\n\r\n" + f"{A} mark_sh".encode()
    fake_ccnow.script = [Raw(raw=raw), NOT_PENDING]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    result = await ccnow(cfg, "ship", A)
    assert result.code == 0, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "succeeded", "mark_shipped (taken by an earlier attempt)")]


@pytest.fixture
async def silent_tls() -> AsyncIterator[int]:
    """A port whose kernel takes the TCP connection and where nobody answers a ClientHello."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_an_upload_whose_tls_handshake_never_ended_was_not_sent(
    tmp_path: Path, fake_ccnow: FakeCCNow, silent_tls: int
) -> None:
    # Its timeout was taken for a lost answer (`timeout`): the next `not pending` left it
    # `uncertain`, though nothing of the post had left.
    fake_ccnow.orders = {A: "completed"}
    fake_ccnow.script = [NOT_PENDING]
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    text = cfg.read_text()
    silent = text.replace(fake_ccnow.url, f"https://127.0.0.1:{silent_tls}/oapi")
    cfg.write_text(silent.replace('timeout = "2s"', 'timeout = "300ms"'))
    result = await ccnow(cfg, *TRACK)
    assert result.code == 75, result.stdout + result.stderr
    assert commands(tmp_path) == [(A, "queued", "connect timeout")]
    cfg.write_text(text)
    await make_due(tmp_path)
    again = await ccnow(cfg, *TRACK)
    assert again.code == 65, again.stdout + again.stderr
    assert commands(tmp_path) == [(A, "refused", "error_message order not pending")]


async def test_a_refusal_whose_body_broke_keeps_whether_it_began_not_its_bytes() -> None:
    # Up to 256 KiB of the answer, as it came, was kept on the reply (`Reply.cut`) for one
    # question: whether its body began.
    body = b"x" * 100_000

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 200000\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        connector = WriteAwareConnector()
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            reply = await send_once(
                session,
                "POST",
                URL(f"http://127.0.0.1:{port}/oapi"),
                headers={},
                data=b"x_clientid=amylove",
                timeout=aiohttp.ClientTimeout(total=5),
                gate=asyncio.Semaphore(1),
                max_body=1_000_000,
            )
    finally:
        server.close()
        await server.wait_closed()
    assert (reply.status, reply.body, reply.body_began) == (401, b"", True)
    assert [f for f in reply if isinstance(f, bytes) and f] == []
