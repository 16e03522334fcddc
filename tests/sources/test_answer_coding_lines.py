"""Review 29e: a provider's answer sent with more than one `Content-Encoding` line is decoded
from all of them, within the size bound, by one decoder (aiohttp's decoded by the last line
alone: a bomb behind `identity` came through whole, and `gzip` on two lines stayed coded); the
coding an error names is a registered one's, never the provider's text. A raw socket server
sends the exact bytes (two header lines of a name, which FakeCCV cannot), read through the
runtime's own session (http_session) or the command line."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.model import Outcome
from reconciler.runtime import http_session
from reconciler.sources.ccv import MAX_BODY_BYTES, CCVClient
from tests.conftest import call_cli, write_config
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.fake_providers import CCV_KEY, FakeCCV, Reply
from tests.server.test_api import api_toml
from tests.writes.test_submit_crash import query

STATUS = json.dumps({"orderStatus": "Completed"}).encode()
ORDER = "0f3c9a7e-5b1d-4e2a-8c6f-9d4b3a2e1f70"


class RawAnswers:
    """A loopback server answering every request with the same bytes, then closing."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawAnswers:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.requests += 1
        writer.write(self.answer)
        await writer.drain()
        writer.close()


def answer(codings: list[str], body: bytes, status: str = "200 OK") -> bytes:
    """An answer with one `Content-Encoding` line per coding, framed by its Content-Length."""
    lines = "".join(f"Content-Encoding: {coding}\r\n" for coding in codings)
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{lines}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def config_for(
    tmp_path: Path, fake: FakeCCV | FakeCCVWrites, url: str, extra: str = "", ccv_extra: str = ""
) -> Path:
    cfg = write_config(tmp_path, ccv=fake, extra=extra, ccv_extra=ccv_extra)
    cfg.write_text(cfg.read_text().replace(fake.base_url, url))
    return cfg


async def fetched(tmp_path: Path, fake_ccv: FakeCCV, raw: RawAnswers) -> tuple[Outcome, object]:
    """What the runtime's session and a CCV client make of the raw server's answer."""
    key = f'api_key = "{CCV_KEY}"'  # in the file: no environment here
    config = load_config(config_for(tmp_path, fake_ccv, raw.url, ccv_extra=key))
    async with http_session(config) as session:
        obs = await CCVClient(config.ccv[0], session, secrets=()).fetch("A1")
    return obs.outcome, obs.status if obs.outcome is Outcome.OK else obs.reason


async def test_a_bomb_behind_an_identity_line_is_bounded(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    # aiohttp decoded by the last line, the fast path looked at the first: 4 MiB of status
    # answer, four times the bound, was read whole (200 MB as well) and taken.
    inflated = b'{"orderStatus": "Completed", "pad": "' + b"0" * (4 * MAX_BODY_BYTES) + b'"}'
    bomb = gzip.compress(inflated, compresslevel=1)
    assert len(bomb) < MAX_BODY_BYTES // 10
    async with RawAnswers(answer(["identity", "gzip"], bomb)) as raw:
        assert await fetched(tmp_path, fake_ccv, raw) == (Outcome.FAILED, "protocol")
        assert raw.requests == 1  # the provider answered: no retry


@pytest.mark.parametrize(
    ("codings", "body"),
    [
        (["gzip", "gzip"], gzip.compress(gzip.compress(STATUS))),
        (["gzip", "identity"], gzip.compress(STATUS)),
        (["identity", "gzip"], gzip.compress(STATUS)),
        (["x-gzip", "gzip"], gzip.compress(gzip.compress(STATUS))),
    ],
    ids=["gzip-twice", "gzip-then-identity", "identity-then-gzip", "x-gzip-then-gzip"],
)
async def test_codings_on_several_lines_are_all_decoded(
    tmp_path: Path, fake_ccv: FakeCCV, codings: list[str], body: bytes
) -> None:
    # Before, the answer stayed coded (once, or at all) and failed as `protocol`.
    async with RawAnswers(answer(codings, body)) as raw:
        assert await fetched(tmp_path, fake_ccv, raw) == (Outcome.OK, "Completed")


@pytest.mark.parametrize(
    ("codings", "body"),
    [
        (["gzip", "gzip"], gzip.compress(gzip.compress(json.dumps({"orderId": ORDER}).encode()))),
        (["gzip", "identity"], gzip.compress(json.dumps({"orderId": ORDER}).encode())),
    ],
    ids=["gzip-twice", "gzip-then-identity"],
)
async def test_a_submit_answer_on_several_coding_lines_names_its_order(
    tmp_path: Path, fake: FakeCCVWrites, codings: list[str], body: bytes
) -> None:
    # Before, its body came through still coded: read as naming no order (`no_order_id`),
    # which `ccv resolve --not-sent` closes, and the next submit made a second CCV order.
    async with RawAnswers(answer(codings, body, "201 Created")) as raw:
        cfg = config_for(tmp_path, fake, raw.url, api_toml(20950))
        stdin = json.dumps(submit_body(externalReference="coded-1")).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
        assert raw.requests == 1
    assert (result.code, result.stdout.strip()) == (0, ORDER), result.stderr
    assert query(tmp_path, "SELECT state, order_id FROM submissions") == [("succeeded", ORDER)]


async def test_a_submit_answer_whose_codings_do_not_decode_is_unread(
    tmp_path: Path, fake: FakeCCVWrites
) -> None:
    # Coded once, said twice: not readable, so not an answer naming no order.
    body = gzip.compress(json.dumps({"orderId": ORDER}).encode())
    async with RawAnswers(answer(["gzip", "gzip"], body)) as raw:
        cfg = config_for(tmp_path, fake, raw.url, api_toml(20951))
        stdin = json.dumps(submit_body(externalReference="coded-2")).encode()
        result = await call_cli("--config", cfg, "ccv", "submit", "-", stdin=stdin)
    assert result.code == 75, result.stderr
    assert query(tmp_path, "SELECT state, reason FROM submissions") == [
        ("uncertain", "answer_unread")
    ]
    assert "content-encoding that cannot be decoded (gzip, gzip)" in result.stderr


KEY_LIKE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


async def test_an_unknown_coding_is_named_unknown_never_as_sent(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    # The header is the provider's (or a proxy's) text: up to 40 of its characters were put in
    # the error, which `check --online` prints and `ccv.submit_answer_unread` logs unmasked.
    fake_ccv.always = Reply(200, STATUS, "application/json", {"Content-Encoding": KEY_LIKE})
    result = await call_cli("--config", write_config(tmp_path, ccv=fake_ccv), "check", "--online")
    assert result.code == 75
    assert "answer in a content-encoding that cannot be decoded (unknown)" in result.stderr
    assert KEY_LIKE[:8] not in result.stderr


async def test_a_registered_coding_not_decoded_is_named(tmp_path: Path, fake_ccv: FakeCCV) -> None:
    coded = {"Content-Encoding": f"br, {KEY_LIKE}"}
    fake_ccv.always = Reply(200, STATUS, "application/json", coded)
    result = await call_cli("--config", write_config(tmp_path, ccv=fake_ccv), "check", "--online")
    assert "answer in a content-encoding that cannot be decoded (br, unknown)" in result.stderr
    assert KEY_LIKE[:8] not in result.stderr
