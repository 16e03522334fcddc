"""Webhook sink: POST each event, signed as Standard Webhooks describes, and classify the answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import hmac
import logging
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Final

import aiohttp

from reconciler import USER_AGENT
from reconciler.config import WebhookSinkConfig
from reconciler.config.secret import webhook_key
from reconciler.sinks.base import (
    Cutoff,
    Delivered,
    DeliveryResult,
    OutboxEvent,
    RetryLater,
    SinkGone,
    deliver_in_order,
)
from reconciler.sources.http import parse_retry_after

log = logging.getLogger("reconciler.sinks.webhook")

# Enough of a response body to keep the connection reusable; the rest is not ours to read.
_MAX_RESPONSE_BYTES = 64 * 1024

# Transport failures, checked in order (the first match wins) after a TLS failure's; anything
# else is a "connection error". Reasons are fixed words so that no URL or payload ends up in
# them.
_ERROR_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncio.TimeoutError, "timeout"),
    (aiohttp.InvalidURL, "invalid url"),
    (socket.gaierror, "name resolution failed"),
    (aiohttp.ServerDisconnectedError, "server disconnected"),
    (aiohttp.ClientResponseError, "bad response"),
    (aiohttp.ClientPayloadError, "bad response"),
)


decode_secret = webhook_key  # the config checks a secret by the same rule


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` value (`v1,<base64>`) for one message, signed with the
    key `decode_secret` gives (decoded once per sink, not per message)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


async def _drain(response: aiohttp.ClientResponse) -> None:
    # A fully read body lets the connection be reused; more than the bound is not worth it.
    remaining = _MAX_RESPONSE_BYTES
    while remaining > 0 and (chunk := await response.content.read(remaining)):
        remaining -= len(chunk)


# OpenSSL's verify codes whose message Python words with the URL's host or address
# (`Hostname mismatch, certificate is not valid for 'HOST'.`): said without it, as a webhook's
# URL is kept out of logs and the database (only salted HMACs of targets are).
_MISMATCHES: Final[Mapping[int, str]] = {
    62: "hostname mismatch",
    63: "email address mismatch",
    64: "ip address mismatch",
}


def _tls_reason(exc: aiohttp.ClientSSLError) -> str:
    """`tls error` and what the handshake found wrong: the certificate check's words
    (`certificate has expired`, `self-signed certificate`, `hostname mismatch` without the
    host) or OpenSSL's reason (`wrong version number`: plain HTTP behind https). Both are
    OpenSSL's fixed words: no host, payload, nor the URL's path or query."""
    cause = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None)
    detail = getattr(cause, "verify_message", None)
    mismatch = _MISMATCHES.get(getattr(cause, "verify_code", None) or 0)
    if mismatch is not None or (detail and " is not valid for " in str(detail)):
        # Its words up to the comma where the name begins, should a release word another so.
        detail = mismatch or str(detail).split(",")[0].lower()
    if not detail and isinstance(cause, ssl.SSLError) and cause.reason:
        detail = cause.reason.lower().replace("_", " ")
    return f"tls error: {str(detail)[:200]}" if detail else "tls error"


def _error_reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientSSLError):
        return _tls_reason(exc)
    for cls, reason in _ERROR_REASONS:
        if isinstance(exc, cls):
            return reason
    # aiohttp wraps socket errors; the errno is what tells a refusal from the rest.
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, socket.gaierror):
        return "name resolution failed"
    return "connection error"


class WebhookSink:
    """POSTs events one by one to `config.url` with Standard Webhooks headers."""

    def __init__(
        self, config: WebhookSinkConfig, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.name = config.name
        self._url = config.url
        self._key = decode_secret(config.secret.reveal())
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._session = session
        self._owns_session = session is None
        self._closed = False

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r})"

    async def deliver(
        self, events: Sequence[OutboxEvent], cutoff: Cutoff | None = None
    ) -> list[DeliveryResult]:
        """POST each event, in order (the dispatcher logs failures)."""
        return await deliver_in_order(events, self._post, cutoff)

    async def close(self) -> None:
        """Close the HTTP session if this sink created it."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _fields(self, event: OutboxEvent) -> dict[str, object]:
        return {"sink": self.name, "event_id": event.id, "attempts": event.attempts}

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use so that the sink can be built outside a running loop.
        if self._closed:
            raise RuntimeError(f"webhook sink {self.name!r} is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _post(self, event: OutboxEvent) -> DeliveryResult:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, event.id, timestamp, event.body),
        }
        try:
            async with self._client().post(
                self._url,
                data=event.body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("retry-after")
                # The status has decided; a body that breaks off afterwards changes nothing.
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    await _drain(response)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return RetryLater(_error_reason(exc))
        if 200 <= status < 300:
            return Delivered()
        if status == 410:
            return SinkGone("http 410")
        delay = parse_retry_after(retry_after, datetime.now(timezone.utc))
        if 300 <= status < 400:
            # Never followed: the signed event and its secret's signature must not go wherever a
            # Location points. Said in the reason, as a 302 alone reads like the receiver's fault.
            return RetryLater(f"http {status} (redirect not followed)", delay)
        return RetryLater(f"http {status}", delay)
