"""A CCNow action's answer whose body broke after whole lines for some of the post's orders,
however its framing broke: short of its Content-Length, a chunked answer without its last chunk
(every line whole or not), or the rest not within the timeout. The lines that came whole close
their orders' commands as a whole answer's would; only the others are posted again (a tracking
upload) or `uncertain` (an adjust, never posted again). Such an answer was thrown away whole:
every tracking upload posted again, every adjust `uncertain`. Each answer is sent by a raw
server on 127.0.0.1: aiohttp's cannot send such framing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from tests.conftest import call_cli, write_config
from tests.fake_providers import FakeCCNow
from tests.writes.test_ccnow_actions import A, B, ccnow, commands, no_password

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"


def _broken(mode: str, lines: list[bytes]) -> bytes:
    """The first answer as `mode` breaks it: A's line whole, B's cut mid-word or missing (but
    `chunkedall`: both whole, no last chunk)."""
    first, whole = lines[0], b"".join(lines)
    if mode == "clcut":
        return HEAD + b"Content-Length: %d\r\n\r\n" % len(whole) + first + lines[1][:15]
    if mode == "chunked":
        return HEAD + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(first), first)
    if mode == "chunkedall":
        return HEAD + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(whole), whole)
    assert mode == "stall"
    return HEAD + b"Content-Length: %d\r\n\r\n" % len(whole) + first


class RawCCNow:
    """Answers its first post broken as `mode` says, every later one whole; keeps each post's
    (order id, action) pairs. A stalled answer's connection is held until `close`."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.posts: list[list[tuple[str, str]]] = []
        self.released = asyncio.Event()
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        form = dict(parse_qsl((await reader.readexactly(length)).decode()))
        n = sum(1 for name in form if name.startswith("x_orderid_"))
        post = [(form[f"x_orderid_{i}"], form[f"x_action_{i}"]) for i in range(1, n + 1)]
        self.posts.append(post)
        lines = [f"{order_id} pending\n".encode() for order_id, _action in post]
        if len(self.posts) == 1:
            writer.write(_broken(self.mode, lines))
            if self.mode == "stall":
                await writer.drain()
                await self.released.wait()
        else:
            whole = b"".join(lines)
            writer.write(HEAD + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(whole))
            writer.write(whole)
        await writer.drain()
        writer.close()

    def posted(self, order_id: str) -> int:
        """How many posts carried an action of the order."""
        return sum(1 for post in self.posts for o, _a in post if o == order_id)


@pytest.fixture
async def raw_ccnow(request: pytest.FixtureRequest) -> AsyncIterator[RawCCNow]:
    raw = RawCCNow(request.param)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/oapi"
    try:
        yield raw
    finally:
        raw.released.set()
        server.close()
        await server.wait_closed()


def _config(tmp_path: Path, fake_ccnow: FakeCCNow, raw: RawCCNow) -> Path:
    cfg = write_config(tmp_path, ccnow=fake_ccnow)
    # A stalled answer is given up after this timeout (its lines kept).
    text = cfg.read_text().replace(fake_ccnow.url, raw.url)
    cfg.write_text(text.replace('timeout = "2s"', 'timeout = "500ms"'))
    return cfg


async def _queued_writes(cfg: Path) -> int:
    found = json.loads((await call_cli("--config", cfg, "status", "--json")).stdout)
    [entry] = [a for a in found["accounts"] if a["source"] == "ccnow"]
    return int(entry["queued_writes"])


MODES = ["clcut", "chunked", "chunkedall", "stall"]
# What ended the answer whose lines came, as the others' commands say.
BROKE = {"clcut": "connection", "chunked": "connection", "stall": "timeout"}


@pytest.mark.parametrize("raw_ccnow", MODES, indirect=True)
async def test_a_tracking_upload_whose_answer_broke_after_a_whole_line_posts_only_the_rest(
    tmp_path: Path, fake_ccnow: FakeCCNow, raw_ccnow: RawCCNow
) -> None:
    cfg = _config(tmp_path, fake_ccnow, raw_ccnow)
    result = await ccnow(cfg, "add-tracking", A, B, "--carrier", "DHL", "--number", "JD1")
    assert result.code == 0, result.stdout + result.stderr
    # A's line came whole: its upload is not added again; B's is (its fate unknown).
    again = 0 if raw_ccnow.mode == "chunkedall" else 1
    assert (raw_ccnow.posted(A), raw_ccnow.posted(B)) == (1, 1 + again)
    assert raw_ccnow.posts[0] == [(A, "track"), (B, "track")]
    assert commands(tmp_path) == [(A, "succeeded", "pending"), (B, "succeeded", "pending")]
    assert "sent 2, done 2, refused 0, uncertain 0, queued 0" in result.stderr
    assert await _queued_writes(cfg) == 0
    no_password(tmp_path, result.stdout, result.stderr)


@pytest.mark.parametrize("raw_ccnow", MODES, indirect=True)
async def test_an_adjust_whose_answer_broke_after_a_whole_line_is_closed_by_it(
    tmp_path: Path, fake_ccnow: FakeCCNow, raw_ccnow: RawCCNow
) -> None:
    cfg = _config(tmp_path, fake_ccnow, raw_ccnow)
    result = await ccnow(cfg, "adjust", A, B, "--amount", "1.00")
    # Never posted again, whatever came.
    assert raw_ccnow.posts == [[(A, "adjust"), (B, "adjust")]]
    if raw_ccnow.mode == "chunkedall":
        assert result.code == 0, result.stdout + result.stderr
        assert commands(tmp_path) == [(A, "succeeded", "pending"), (B, "succeeded", "pending")]
    else:
        assert result.code == 75, result.stdout + result.stderr
        # B's line did not come whole: its discount may have been given.
        word = BROKE[raw_ccnow.mode]
        assert commands(tmp_path) == [(A, "succeeded", "pending"), (B, "uncertain", word)]
        assert "sent 2, done 1, refused 0, uncertain 1, queued 0" in result.stderr
    assert await _queued_writes(cfg) == 0
    no_password(tmp_path, result.stdout, result.stderr)
