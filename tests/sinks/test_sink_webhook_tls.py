"""A webhook whose TLS handshake fails says why in its reason (`sink.retry`, `last_error`): a
self-signed certificate, one for another host and plain HTTP behind `https` each read apart,
not all as `tls error`, and never naming the URL's host. Real HTTPS servers on loopback, their
certificate made by openssl."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.config import Secret
from reconciler.config import WebhookSinkConfig as SinkConfig
from reconciler.sinks.base import OutboxEvent, RetryLater
from reconciler.sinks.webhook import WebhookSink

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
EVENT = OutboxEvent(seq=1, id="ev-1", type="t", order_id="o", body=b"{}", attempts=0)


def _made(where: Path, name: str, alt: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (its subjectAltName `alt`) and its key."""
    cert, key = where / "cert.pem", where / "key.pem"
    made = ("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}")
    names = ("-addext", f"subjectAltName={alt}")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *made, *names],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 alone (no name) and its key."""
    return _made(tmp_path_factory.mktemp("tls"), "127.0.0.1", "IP:127.0.0.1")


@pytest.fixture(scope="module")
def named_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` alone (no address) and its key."""
    return _made(tmp_path_factory.mktemp("tls-named"), "localhost", "DNS:localhost")


async def _ok(_request: web.Request) -> web.Response:
    return web.Response()


async def _server(tls: ssl.SSLContext | None) -> TestServer:
    app = web.Application()
    app.router.add_post("/hook", _ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=tls)
    return server


@pytest.fixture
async def https(certificate: tuple[Path, Path]) -> AsyncIterator[int]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*certificate)
    server = await _server(tls)
    try:
        assert server.port is not None
        yield server.port
    finally:
        await server.close()


async def _reason(url: str, trusted: Path | None = None) -> str:
    config = SinkConfig(type="webhook", name="hooks", url=url, secret=Secret(SECRET))
    session = None
    if trusted is not None:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(trusted)))
        session = aiohttp.ClientSession(connector=connector)
    sink = WebhookSink(config, session)
    try:
        [result] = await sink.deliver([EVENT])
    finally:
        await sink.close()
        if session is not None:
            await session.close()
    assert isinstance(result, RetryLater)
    return result.reason


async def test_a_certificate_nobody_trusts_is_said(https: int) -> None:
    assert await _reason(f"https://127.0.0.1:{https}/hook") == "tls error: self-signed certificate"


async def test_a_certificate_for_another_host_is_said(
    https: int, certificate: tuple[Path, Path]
) -> None:
    # Trusted, but made for 127.0.0.1 alone: `localhost` is another name.
    reason = await _reason(f"https://localhost:{https}/hook", trusted=certificate[0])

    # Without the name: webhook URLs are kept out of logs and the database (only salted HMACs
    # of targets are), and this reason goes to both (`sink.retry`, `last_error`).
    assert reason == "tls error: hostname mismatch", reason


async def test_a_certificate_for_another_address_is_said_without_it(
    named_certificate: tuple[Path, Path],
) -> None:
    # Trusted, but made for the name `localhost` alone: the URL's 127.0.0.1 is not in it.
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*named_certificate)
    server = await _server(tls)
    try:
        url = f"https://127.0.0.1:{server.port}/hook"
        reason = await _reason(url, trusted=named_certificate[0])
    finally:
        await server.close()

    assert reason == "tls error: ip address mismatch", reason


async def test_the_trusted_certificate_delivers(https: int, certificate: tuple[Path, Path]) -> None:
    config = SinkConfig(
        type="webhook", name="hooks", url=f"https://127.0.0.1:{https}/hook", secret=Secret(SECRET)
    )
    tls = ssl.create_default_context(cafile=str(certificate[0]))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
        sink = WebhookSink(config, session)
        assert [type(r).__name__ for r in await sink.deliver([EVENT])] == ["Delivered"]


async def test_plain_http_behind_https_is_said() -> None:
    server = await _server(None)
    try:
        reason = await _reason(f"https://127.0.0.1:{server.port}/hook")
    finally:
        await server.close()

    assert reason == "tls error: wrong version number"
