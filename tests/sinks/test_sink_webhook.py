"""Webhook sink against a real loopback receiver that verifies with the standardwebhooks library."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from reconciler.config import Secret
from reconciler.config import WebhookSinkConfig as SinkConfig
from reconciler.sinks.base import Delivered, OutboxEvent, RetryLater, SinkGone
from reconciler.sinks.webhook import WebhookSink, decode_secret, sign
from reconciler.sources.http import parse_retry_after

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Attempt:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """A webhook endpoint that answers from a script of responses (default 200)."""

    server: TestServer
    script: list[web.StreamResponse | str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    rec = Receiver(TestServer(app, host="127.0.0.1"))

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        try:
            Webhook(SECRET).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        rec.attempts.append(Attempt(request.path, headers, body, verified))
        action = rec.script.pop(0) if rec.script else web.Response(text="ok")
        if action == "slow":
            await rec.release.wait()
            return web.Response(text="too late")
        if isinstance(action, str):
            raise AssertionError(f"unknown action {action}")
        return action if verified else web.Response(status=400, text="bad signature")

    app.router.add_post("/{tail:.*}", handle)
    await rec.server.start_server()
    try:
        yield rec
    finally:
        rec.release.set()
        await rec.server.close()


def make_sink(url: str, *, timeout_s: float = 5.0, secret: str = SECRET) -> WebhookSink:
    config = SinkConfig(
        type="webhook", name="hooks", url=url, secret=Secret(secret), timeout_s=timeout_s
    )
    return WebhookSink(config)


@pytest.fixture
async def sink(receiver: Receiver) -> AsyncIterator[WebhookSink]:
    s = make_sink(receiver.url())
    try:
        yield s
    finally:
        await s.close()


def event(n: int, body: bytes | None = None) -> OutboxEvent:
    body = body if body is not None else b'{"specversion": "1.0", "id": "ev-%d"}' % n
    return OutboxEvent(seq=n, id=f"ev-{n}", type="order.status_changed", order_id="1", body=body)


async def test_delivers_signed_events_in_order(receiver: Receiver, sink: WebhookSink) -> None:
    results = await sink.deliver([event(1), event(2), event(3)])

    assert results == [Delivered(), Delivered(), Delivered()]
    assert [a.headers["webhook-id"] for a in receiver.attempts] == ["ev-1", "ev-2", "ev-3"]
    assert all(a.verified for a in receiver.attempts)
    first = receiver.attempts[0].headers
    assert first["Content-Type"] == "application/json"
    assert first["User-Agent"].startswith("reconciler/")
    assert abs(int(first["webhook-timestamp"]) - time.time()) < 60


async def test_body_is_byte_identical(receiver: Receiver, sink: WebhookSink) -> None:
    body = '{"b":  "é",\t"a": 1}\r\n'.encode()

    assert await sink.deliver([event(1, body)]) == [Delivered()]

    assert receiver.attempts[0].body == body


async def test_redelivery_keeps_the_webhook_id(receiver: Receiver, sink: WebhookSink) -> None:
    receiver.script.append(web.Response(status=500))

    assert await sink.deliver([event(7)]) == [RetryLater("http 500")]
    assert await sink.deliver([event(7)]) == [Delivered()]

    assert [a.headers["webhook-id"] for a in receiver.attempts] == ["ev-7", "ev-7"]
    assert [a.body for a in receiver.attempts] == [event(7).body] * 2
    assert all(a.verified for a in receiver.attempts)


def _http_date_in(seconds: int) -> str:
    return format_datetime(datetime.fromtimestamp(time.time() + seconds, timezone.utc), usegmt=True)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, Delivered()),
        (204, {}, Delivered()),
        (500, {}, RetryLater("http 500")),
        (503, {"Retry-After": "7"}, RetryLater("http 503", 7.0)),
        (429, {"Retry-After": "120"}, RetryLater("http 429", 120.0)),
        (503, {"Retry-After": "soon"}, RetryLater("http 503")),
        (400, {}, RetryLater("http 400")),
        (404, {}, RetryLater("http 404")),
        (410, {}, SinkGone("http 410")),
    ],
)
async def test_classifies_answers(
    receiver: Receiver,
    sink: WebhookSink,
    status: int,
    headers: dict[str, str],
    expected: object,
) -> None:
    receiver.script.append(web.Response(status=status, headers=headers))

    assert await sink.deliver([event(1)]) == [expected]


async def test_retry_after_as_http_date(receiver: Receiver, sink: WebhookSink) -> None:
    receiver.script.append(web.Response(status=503, headers={"Retry-After": _http_date_in(90)}))

    [result] = await sink.deliver([event(1)])

    assert isinstance(result, RetryLater)
    assert result.reason == "http 503"
    assert result.retry_after_s is not None
    assert 85 <= result.retry_after_s <= 91


async def test_redirect_is_not_followed(receiver: Receiver, sink: WebhookSink) -> None:
    receiver.script.append(web.Response(status=302, headers={"Location": receiver.url("/other")}))

    # Said in the reason (the `sink.retry` line's): a 302 alone reads like the receiver's fault.
    assert await sink.deliver([event(1)]) == [RetryLater("http 302 (redirect not followed)")]

    assert [a.path for a in receiver.attempts] == ["/hook"]


async def test_an_order_s_later_events_wait_behind_its_refused_one(
    receiver: Receiver, sink: WebhookSink
) -> None:
    receiver.script += [web.Response(), web.Response(status=503)]

    results = await sink.deliver([event(1), event(2), event(3), event(4)])

    not_attempted = RetryLater("not attempted: earlier event failed")
    assert results == [Delivered(), RetryLater("http 503"), not_attempted, not_attempted]
    assert [a.headers["webhook-id"] for a in receiver.attempts] == ["ev-1", "ev-2"]


def of_order(n: int, order_id: str | None) -> OutboxEvent:
    return event(n)._replace(order_id=order_id)


async def test_an_event_refused_alone_holds_back_its_own_order_only(
    receiver: Receiver, sink: WebhookSink
) -> None:
    # Before, the batch stopped at the refusal: one payload the receiver rejects held every
    # order behind it until max_age.
    receiver.script += [web.Response(status=400), web.Response(), web.Response()]
    events = [of_order(1, "X"), of_order(2, "Y"), of_order(3, "X"), of_order(4, "Z")]
    results = await sink.deliver(events)
    not_attempted = RetryLater("not attempted: earlier event failed")
    assert results == [RetryLater("http 400"), Delivered(), not_attempted, Delivered()]
    assert [a.headers["webhook-id"] for a in receiver.attempts] == ["ev-1", "ev-2", "ev-4"]


def health(n: int, kind: str, account: str) -> OutboxEvent:
    body = b'{"id": "ev-%d", "type": "%s", "source": "reconciler/ccv/%s"}' % (
        n,
        kind.encode(),
        account.encode(),
    )
    return OutboxEvent(seq=n, id=f"ev-{n}", type=kind, order_id=None, body=body)


async def test_events_without_an_order_are_held_by_their_account(
    receiver: Receiver, sink: WebhookSink
) -> None:
    # Account-level events (source.failed, source.recovered) name no order: one account's
    # are held together (its recovery never before its failure), another account's are not.
    receiver.script += [web.Response(status=400), web.Response()]
    events = [
        health(1, "source.failed", "default"),
        health(2, "source.recovered", "default"),
        health(3, "source.recovered", "shop2"),
    ]
    results = await sink.deliver(events)
    not_attempted = RetryLater("not attempted: earlier event failed")
    assert results == [RetryLater("http 400"), not_attempted, Delivered()]


async def test_refusals_of_two_orders_in_a_row_stop_the_batch(
    receiver: Receiver, sink: WebhookSink
) -> None:
    # A receiver that is down costs two attempts per batch, not one per event.
    receiver.script += [web.Response(status=503), web.Response(status=503)]
    events = [of_order(1, "X"), of_order(2, None), of_order(3, "Y"), of_order(4, None)]
    results = await sink.deliver(events)
    not_attempted = RetryLater("not attempted: earlier event failed")
    assert results == [RetryLater("http 503")] * 2 + [not_attempted] * 2
    assert len(receiver.attempts) == 2


async def test_gone_stops_the_batch(receiver: Receiver, sink: WebhookSink) -> None:
    receiver.script.append(web.Response(status=410))

    results = await sink.deliver([event(1), event(2)])

    assert results == [SinkGone("http 410"), RetryLater("not attempted: earlier event failed")]
    assert len(receiver.attempts) == 1


async def test_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.script.append("slow")
    sink = make_sink(receiver.url(), timeout_s=0.3)
    try:
        started = time.monotonic()
        assert await sink.deliver([event(1)]) == [RetryLater("timeout")]
        assert time.monotonic() - started < 3
    finally:
        await sink.close()


async def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = make_sink(f"http://127.0.0.1:{port}/hook")
    try:
        assert await sink.deliver([event(1), event(2)]) == [
            RetryLater("connection refused"),
            RetryLater("not attempted: earlier event failed"),
        ]
    finally:
        await sink.close()


async def test_secret_appears_nowhere(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.script += [web.Response(), web.Response(status=503), web.Response(status=410)]
    sink = make_sink(receiver.url())
    try:
        results = await sink.deliver([event(1), event(2)])
        results += await sink.deliver([event(2)])
    finally:
        await sink.close()

    key_b64 = SECRET.removeprefix("whsec_")
    texts = [repr(sink), *map(repr, results), caplog.text]
    texts += [repr(record.__dict__) for record in caplog.records]
    for text in texts:
        assert key_b64 not in text
    for attempt in receiver.attempts:
        assert key_b64 not in repr(attempt.headers)


async def test_invalid_secret_is_refused_without_echo() -> None:
    bad = "whsec_not*base64!"
    with pytest.raises(ValueError) as info:
        make_sink("http://127.0.0.1:1/hook", secret=bad)
    assert "not*base64" not in str(info.value)


def test_sign_matches_the_reference_library() -> None:
    body = b'{"x": "\xc3\xa9"}'
    when = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
    expected = Webhook(SECRET).sign("msg_1", when, body.decode())

    assert sign(decode_secret(SECRET), "msg_1", int(when.timestamp()), body) == expected
    # the prefix is optional, as in the reference library
    key = decode_secret(SECRET.removeprefix("whsec_"))
    assert sign(key, "msg_1", int(when.timestamp()), body) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        (" 30 ", 30.0),
        ("Sun, 22 Nov 2026 10:01:00 GMT", 60.0),
        ("Sun, 22 Nov 2026 10:01:00 -0000", 60.0),
        ("Sun, 22 Nov 2026 09:00:00 GMT", 0.0),  # in the past: now
        ("-5", None),
        ("1.5", None),
        ("²", None),
        ("tomorrow", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    # The providers' parser, which a webhook's answer goes through too.
    now = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)

    assert parse_retry_after(value, now) == expected


async def test_close_leaves_a_given_session_open(receiver: Receiver) -> None:
    async with aiohttp.ClientSession() as session:
        config = SinkConfig(type="webhook", name="hooks", url=receiver.url(), secret=Secret(SECRET))
        sink = WebhookSink(config, session)
        assert await sink.deliver([event(1)]) == [Delivered()]
        await sink.close()
        assert not session.closed
        # A closed sink's attempt fails that event (logged as sink.crashed), not the batch.
        assert await sink.deliver([event(2)]) == [RetryLater("sink raised RuntimeError")]
