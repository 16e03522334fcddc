"""A provider write call sent once, never retried: neither provider documents its write calls as
idempotent, so a request whose answer was lost must not go out again. The caller learns whether
the provider answered, surely got nothing, or may have got it (or that the stop kept it back)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
from yarl import URL

from reconciler.sources.errors import ProtocolError
from reconciler.sources.http import Reply, Stopping, read_body, reply_of


class NotSent(Exception):
    """The request surely did not reach the provider (the connection was never made)."""


class Uncertain(Exception):
    """The request may have reached the provider, but its answer was lost (timeout, dropped
    connection). `str()` is a short word: `timeout` or `connection`."""


class AnswerTooLarge(Exception):
    """The provider answered with more than the caller reads: it got the request."""

    def __init__(self, status: int) -> None:
        super().__init__(f"http {status}: answer too large")
        self.status = status


async def send_once(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
    gate: asyncio.Semaphore,
    max_body: int,
    halt: asyncio.Event | None = None,
    leaving: Callable[[], None] | None = None,
) -> Reply:
    """Send one request; return the answer, whatever its status. Raise NotSent, Uncertain or
    AnswerTooLarge; never retry, never follow a redirect (it would carry the credential). It
    holds `gate`, the account's bound (sources/http.py Gates), taken before its timeout starts;
    once `halt` is set (the daemon stops) while it waits for that, it is not sent (Stopping: not
    a failure to reach the provider). `leaving` is called when its turn came and it goes out."""
    async with gate:
        if halt is not None and halt.is_set():
            raise Stopping
        if leaving is not None:
            leaving()
        return await _send(session, method, url, headers, data, timeout, max_body)


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: dict[str, str],
    data: bytes,
    timeout: aiohttp.ClientTimeout,
    max_body: int,
) -> Reply:
    sent_at = time.time()
    try:
        async with session.request(
            method, url, data=data, headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            try:
                body = await read_body(resp, max_body)
            except ProtocolError:
                raise AnswerTooLarge(resp.status) from None
            return reply_of(resp, body, sent_at)
    except aiohttp.ClientConnectorError:
        raise NotSent("connection") from None
    except asyncio.TimeoutError:
        raise Uncertain("timeout") from None
    except aiohttp.ClientError:
        raise Uncertain("connection") from None
