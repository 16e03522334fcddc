"""One CCV write call, sent once: never retried, since CCV's write calls are not known to be
idempotent. The caller learns whether CCV answered, surely got nothing, or may have got it."""

from __future__ import annotations

import asyncio
import json
from typing import NamedTuple

import aiohttp
from aiohttp import hdrs
from yarl import URL

from reconciler.config import CCVConfig
from reconciler.sources.ccv import auth_headers
from reconciler.sources.errors import ProtocolError
from reconciler.sources.http import read_body

MAX_ANSWER_BYTES = 1024 * 1024


class Answer(NamedTuple):
    """CCV's answer, whatever its status: a 4xx or 5xx is a definite answer too."""

    status: int
    body: bytes
    content_type: str


class NotSent(Exception):
    """The request surely did not reach CCV (the connection was never made)."""


class Uncertain(Exception):
    """The request may have reached CCV, but its answer was lost (timeout, dropped connection).
    `str()` is a short word: `timeout` or `connection`."""


async def send_once(
    session: aiohttp.ClientSession, config: CCVConfig, method: str, path: str, payload: bytes
) -> Answer:
    """Send one JSON request to a CCV account; raise NotSent or Uncertain, never retry."""
    base = URL(config.base_url)
    url = base.with_path(base.raw_path.rstrip("/") + path, encoded=True)
    headers = {**auth_headers(config), hdrs.CONTENT_TYPE: "application/json"}
    try:
        async with session.request(
            method,
            url,
            data=payload,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=config.timeout_s),
            allow_redirects=False,  # a redirect would carry the credential elsewhere
        ) as resp:
            try:
                body = await read_body(resp, MAX_ANSWER_BYTES)
            except ProtocolError:
                note = {"error": "CCV's answer was too large to pass on"}
                return Answer(resp.status, json.dumps(note).encode(), "application/json")
            return Answer(resp.status, body, resp.headers.get(hdrs.CONTENT_TYPE, ""))
    except aiohttp.ClientConnectorError:
        raise NotSent("connection") from None
    except asyncio.TimeoutError:
        raise Uncertain("timeout") from None
    except aiohttp.ClientError:
        raise Uncertain("connection") from None
