"""The receiver on a real port at its edges: `Expect: 100-continue` answered only for a request
that will be taken, request targets that are no path, no version banner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from reconciler.config import Secret
from reconciler.metrics import Metrics
from reconciler.server import Receiver, build_app
from reconciler.server.receiver import DEBOUNCER
from tests.server.conftest import CCNOW_TOKEN, RECEIVER, FakeHub, ccv_path

CCNOW_PATH = f"/notify/ccnow/default/{CCNOW_TOKEN}"
TEN_MB = 10 * 1024 * 1024


@contextlib.asynccontextmanager
async def serving(hub: FakeHub, metrics: Metrics) -> AsyncIterator[tuple[Receiver, int]]:
    app = build_app(
        RECEIVER,
        hub,
        ccv_accounts=["default"],
        ccnow_tokens={"default": Secret(CCNOW_TOKEN)},
        metrics=metrics,
    )
    receiver = Receiver(app)
    try:
        yield receiver, await receiver.start("127.0.0.1", 0)
    finally:
        await receiver.close()


@pytest.fixture
async def port(hub: FakeHub, metrics: Metrics) -> AsyncIterator[int]:
    async with serving(hub, metrics) as (_, bound):
        yield bound


def head(method: str, target: str, *headers: str) -> bytes:
    return "\r\n".join([f"{method} {target} HTTP/1.1", "Host: x", *headers, "", ""]).encode()


async def answer_until_closed(port: int, request: bytes, timeout_s: float = 2.0) -> bytes:
    """Send `request` (no body follows) and return all the server sends until it closes the
    connection; fail when it keeps the connection open waiting for a body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


# --- Expect: 100-continue ------------------------------------------------------------------------

_REFUSED_BEFORE_CONTINUE = [
    # (method, target, declared length, status, body)
    ("POST", "/forged/path", TEN_MB, 404, b'{"error": "not found"}'),
    ("POST", ccv_path(order_id="O-1")[:-3] + "AAA", TEN_MB, 404, b'{"error": "not found"}'),
    ("POST", "/notify/ccnow/default/wrong-token-000000000000", 10, 404, b'{"error": "not found"}'),
    ("PUT", ccv_path(order_id="O-1"), 10, 405, b'{"error": "method not allowed"}'),
    ("POST", ccv_path(order_id="O-1"), TEN_MB, 413, b'{"error": "body too large"}'),
    ("POST", CCNOW_PATH, 64 * 1024 + 1, 413, b'{"error": "body too large"}'),
]


@pytest.mark.parametrize(("method", "target", "length", "status", "body"), _REFUSED_BEFORE_CONTINUE)
async def test_a_request_that_will_be_refused_is_not_invited_to_send_its_body(
    port: int, hub: FakeHub, method: str, target: str, length: int, status: int, body: bytes
) -> None:
    request = head(method, target, "Expect: 100-continue", f"Content-Length: {length}")
    answer = await answer_until_closed(port, request)
    assert b"100 Continue" not in answer
    got, headers, page = parse(answer)
    assert (got, page) == (status, body)
    assert headers["connection"] == "close"
    assert hub.calls == []


async def test_a_valid_notification_is_invited_to_send_its_body(port: int, hub: FakeHub) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for target, body in ((ccv_path(order_id="O-1"), b""), (CCNOW_PATH, b"396-10-1142")):
            headers = ["Expect: 100-continue", f"Content-Length: {len(body)}"]
            writer.write(head("POST", target, *headers))
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            status_line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert status_line.startswith(b"HTTP/1.1 202")
            await asyncio.wait_for(reader.readexactly(len(b'{"accepted": true}')), 2)
    finally:
        writer.close()
    await hub.wait_calls(2)


async def test_an_unknown_expectation_gets_417_in_json(port: int, hub: FakeHub) -> None:
    request = head("POST", ccv_path(order_id="O-1"), "Expect: teapot", "Content-Length: 10")
    status, _, page = parse(await answer_until_closed(port, request))
    assert (status, page) == (417, b'{"error": "expectation failed"}')
    assert hub.calls == []


# --- request targets that are no path ----------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        head("OPTIONS", "*"),
        head("CONNECT", "example.com:443"),
        head("CONNECT", "/notify/ccnow/default/x"),
        head("OPTIONS", "*", "Expect: 100-continue", f"Content-Length: {TEN_MB}"),
    ],
)
async def test_a_target_that_is_no_path_gets_the_fixed_json_page(
    port: int, request_bytes: bytes
) -> None:
    answer = await answer_until_closed(port, request_bytes)
    status, headers, page = parse(answer)
    assert (status, page) == (404, b'{"error": "not found"}')
    assert headers["content-type"].startswith("application/json")
    assert b"100 Continue" not in answer


@pytest.mark.parametrize(
    "target",
    [
        "/healthz%0A",
        "/a%0Ab",
        "/notify/ccv/default/ref/a%0Ab/x",
        "/notify/ccnow/default/x%0D%0A",
    ],
)
async def test_a_path_with_an_encoded_line_break_gets_the_json_page(port: int, target: str) -> None:
    # Decoded, the path holds a line break, which a route pattern's `.` does not take: such a
    # path got aiohttp's own text page, naming the software behind the receiver.
    answer = await answer_until_closed(
        port, head("POST", target, "Content-Length: 0", "Connection: close")
    )
    status, headers, page = parse(answer)
    assert (status, page) == (404, b'{"error": "not found"}')
    assert headers["content-type"].startswith("application/json")


# --- no version banner -------------------------------------------------------------------------


async def test_no_answer_names_the_server_software(port: int, hub: FakeHub) -> None:
    answers = [
        await answer_until_closed(port, head("GET", "/healthz", "Connection: close")),
        await answer_until_closed(port, head("GET", "/nothing", "Connection: close")),
        await answer_until_closed(port, head("OPTIONS", "*")),
        await answer_until_closed(port, b"GARBAGE \xff\r\n\r\n"),  # aiohttp's parser refuses it
        await answer_until_closed(
            port, head("POST", ccv_path(order_id="O-1"), "Content-Length: 0", "Connection: close")
        ),
    ]
    for answer in answers:
        _, headers, _ = parse(answer)
        assert headers["server"] == "reconciler", answer[:300]
        assert b"aiohttp" not in answer and b"Python" not in answer


# --- the stop ------------------------------------------------------------------------------------


async def test_a_notification_the_stop_overtakes_is_refused_not_taken(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    # A request on a connection accepted just before the stop closed the listening socket was
    # answered 202 while the stop waited (for an API request in flight, say), and its check was
    # then cut off: taken, never done. From the stop's first step it is a 503, which says it is
    # the stop's (it said "busy", as when every check slot is taken, in the log line too).
    async with serving(hub, metrics) as (receiver, bound):
        reader, writer = await asyncio.open_connection("127.0.0.1", bound)
        writer.write(head("POST", ccv_path(order_id="O-1"), "Content-Length: 0"))
        with caplog.at_level(logging.WARNING, logger="reconciler.server"):
            closing = asyncio.ensure_future(receiver.close())  # before the request is read
            answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await closing
    status, _, page = parse(answer)
    assert (status, page) == (503, b'{"error": "stopping"}')
    assert hub.calls == []
    said = [r.__dict__["fields"] for r in caplog.records if r.message == "notification.refused"]
    assert [(f["source"], f["reason"]) for f in said] == [("ccv", "stopping")]
    rendered = metrics.render()[0].decode()
    assert 'reconciler_notifications_total{outcome="stopping",source="ccv"} 1.0' in rendered


async def test_a_notification_when_every_check_slot_is_busy_is_refused_as_busy(
    hub: FakeHub, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    hub.gate = asyncio.Event()  # the first order's check holds its slot
    async with serving(hub, metrics) as (receiver, bound):
        receiver._runner.app[DEBOUNCER].max_keys = 1
        first = head("POST", ccv_path(order_id="O-1"), "Content-Length: 0", "Connection: close")
        assert parse(await answer_until_closed(bound, first))[0] == 202
        await hub.wait_calls(1)
        second = head("POST", ccv_path(order_id="O-2"), "Content-Length: 0", "Connection: close")
        with caplog.at_level(logging.WARNING, logger="reconciler.server"):
            status, headers, page = parse(await answer_until_closed(bound, second))
        hub.gate.set()
    assert (status, headers["retry-after"], page) == (503, "60", b'{"error": "busy"}')
    said = [r.__dict__["fields"] for r in caplog.records if r.message == "notification.refused"]
    assert [f["reason"] for f in said] == ["busy"]


@pytest.mark.parametrize(
    ("method", "target", "page", "said"),
    [
        (
            "POST",
            ccv_path(order_id="O-1"),
            b'{"error": "stopping"}',
            [{"source": "ccv", "kind": "order", "order_id": "O-1"}],
        ),
        (
            "POST",
            ccv_path(reference="INV-1"),
            b'{"error": "stopping"}',
            [{"source": "ccv", "kind": "ref", "reference": "INV-1"}],
        ),
        ("POST", CCNOW_PATH, b'{"error": "stopping"}', [{"source": "ccnow"}]),
        ("GET", "/healthz", b'{"error": "stopping", "status": "stopping"}', []),
    ],
    ids=["ccv", "ccv-reference", "ccnow", "healthz"],
)
async def test_a_request_expecting_100_continue_during_the_stop_is_told_503_unread(
    hub: FakeHub,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
    method: str,
    target: str,
    page: bytes,
    said: list[dict[str, str]],
) -> None:
    # Invited to send its body (100 Continue), the request would have sent it to a daemon that
    # does not read it: it is told the stop's 503 at once, as without the expectation, and its
    # connection closed (one taken before the stop: it answered a request then).
    async with serving(hub, metrics) as (receiver, bound):
        reader, writer = await asyncio.open_connection("127.0.0.1", bound)
        try:
            writer.write(head("GET", "/healthz"))
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(parse(first)[1]["content-length"])
            await asyncio.wait_for(reader.readexactly(length), 5)
            with caplog.at_level(logging.WARNING, logger="reconciler.server"):
                await receiver.stop_accepting()
                writer.write(head(method, target, "Expect: 100-continue", "Content-Length: 10"))
                answer = await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
    assert b"100 Continue" not in answer
    status, headers, body = parse(answer)
    assert (status, headers["retry-after"], headers["connection"]) == (503, "60", "close")
    assert body == page
    assert hub.calls == []
    refused = [r.__dict__["fields"] for r in caplog.records if r.message == "notification.refused"]
    # The line a notification gets without the expectation: which order's CCV's was (CCV does
    # not call again), but the CCNow body's hints, which are not read.
    assert refused == [{**f, "reason": "stopping", "account": "default"} for f in said]
