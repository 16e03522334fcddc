"""SIGTERM to a real daemon whose stop lasts (a CCV submit sent waits for its answer): a
notification on a connection the receiver took before the stop (one idle, one that had sent
half its request head, one kept alive after an answer) is answered 503 `stopping`, as README
("Start, stop, status") says, not closed unanswered; the connections close once the stop is
done."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.conftest import (
    call_cli,
    cli_env,
    daemon,
    free_port,
    poll_until,
    write_config,
)
from tests.fake_ccv_writes import FakeCCVWrites, submit_body
from tests.server.test_api import RECEIVER_SECRET, TOKEN
from tests.writes.test_submit_crash import listening

ORDER = "d4e5f6a7-0000-4000-8000-00000000000a"
ANSWER_S = 20.0  # for an answer the daemon gives at once; bounds a loaded machine only


def log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "daemon.log").read_text()
    return [json.loads(line.lstrip("<0123456789>")) for line in text.splitlines() if line]


def logged(tmp_path: Path, message: str) -> bool:
    return any(x["message"] == message for x in log_lines(tmp_path))


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one HTTP answer; return its head and body (what came, and b"", when the
    connection closed before a whole head)."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_S)
    except asyncio.IncompleteReadError as closed:
        return closed.partial, b""
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), ANSWER_S)


async def test_a_notification_on_a_connection_taken_before_the_stop_is_told_503(
    tmp_path: Path,
) -> None:
    api_port, receiver_port = free_port(), free_port()
    async with FakeCCVWrites() as ccv:
        ccv.orders = {ORDER: "AwaitingPayment"}
        cfg = write_config(
            tmp_path,
            ccv=ccv,
            ccv_extra='poll_interval = "1h"\nmin_interval = "1h"\nmax_interval = "1h"\n',
            extra=(
                f'[receiver]\nlisten = "127.0.0.1:{receiver_port}"\n'
                f'public_url = "http://127.0.0.1:{receiver_port}"\n'
                f'secret = "{RECEIVER_SECRET}"\n'
                # The idle and half-sent connections must outlive the stop on a slow machine.
                'header_timeout = "60s"\n\n'
                f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n'
            ),
        )
        # The submit's answer holds the stop (its timeout and 2 s) until the test lets it come.
        cfg.write_text(cfg.read_text().replace('timeout = "2s"', 'timeout = "20s"'))
        assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
        url = (await call_cli("--config", cfg, "notification-url", "ccv", "--order", ORDER)).stdout
        target = urlsplit(url.strip())
        path = f"{target.path}?{target.query}" if target.query else target.path
        request = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
        first_line, rest = request.split(b"\r\n", 1)
        async with daemon(cfg, cli_env()) as proc, aiohttp.ClientSession() as http:
            await listening(api_port)
            await poll_until(lambda: logged(tmp_path, "daemon.ready"), 30, "daemon.ready")
            ccv.submit_hold = asyncio.Event()
            submit = asyncio.ensure_future(
                http.post(
                    f"http://127.0.0.1:{api_port}/api/v1/ccv/orders",
                    json=submit_body(externalReference="shop-11"),
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
            )
            await ccv.wait_until(lambda: len(ccv.submits) == 1, ANSWER_S)

            idle = await asyncio.open_connection("127.0.0.1", receiver_port)
            partial = await asyncio.open_connection("127.0.0.1", receiver_port)
            partial[1].write(first_line + b"\r\n")
            kept = await asyncio.open_connection("127.0.0.1", receiver_port)
            kept[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await kept[1].drain()
            # Answered, so taken; and the two opened before it were taken before it.
            head, _ = await read_answer(kept[0])
            assert head.startswith(b"HTTP/1.1 "), head

            proc.send_signal(signal.SIGTERM)
            await poll_until(lambda: logged(tmp_path, "daemon.stopping"), 30, "the stop")
            idle[1].write(request)
            partial[1].write(rest)
            kept[1].write(request)
            answers = [await read_answer(reader) for reader, _ in (idle, partial, kept)]
            still_stopping = not logged(tmp_path, "daemon.stopped")

            ccv.submit_hold.set()
            assert await asyncio.wait_for(proc.wait(), 60) == 0
            async with await submit as submitted:
                assert submitted.status == 201
            for _, writer in (idle, partial, kept):
                writer.close()

    assert still_stopping
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 503 "), head
        assert b"connection: close" in head.lower()
        assert json.loads(body) == {"error": "stopping"}
    refused = [x for x in log_lines(tmp_path) if x["message"] == "notification.refused"]
    assert [x["reason"] for x in refused] == ["stopping"] * 3
